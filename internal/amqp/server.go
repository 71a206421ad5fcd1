package amqp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// Server is the AMQP 0-9-1 face: it accepts client connections and
// translates them into broker-core calls. Create with NewServer, then Start
// (or Serve a listener of your own); Stop to shut down.
type Server struct {
	cfg Config
	b   *broker.Broker
	log *slog.Logger
	id  string // distinguishes this server's connection owners

	mu       sync.Mutex
	lns      []net.Listener
	conns    map[*conn]struct{}
	stopping bool
	stopped  chan struct{} // closed when Stop has finished

	wg      sync.WaitGroup // accept loops started by Start, and connections
	connSeq atomic.Uint64
	replyTo replyRegistry
}

// NewServer validates cfg and returns a server that accepts nothing yet.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:     cfg,
		b:       cfg.Broker,
		log:     cfg.Logger,
		id:      randomToken(6),
		conns:   map[*conn]struct{}{},
		stopped: make(chan struct{}),
		replyTo: replyRegistry{m: map[string]*channel{}},
	}, nil
}

// ErrServerStopped is returned by Serve and Start after Stop.
var ErrServerStopped = errors.New("amqp: server stopped")

// Start listens on addr ("host:port"; ":5672" and "[::]:5672" accept IPv4
// and IPv6) and serves it in the background until Stop. It may be called
// once per address.
func (s *Server) Start(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("amqp: listening on %s: %w", addr, err)
	}
	if err := s.addListener(ln); err != nil {
		_ = ln.Close()
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.serve(ln); err != nil {
			s.log.Error("amqp listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	s.log.Info("amqp listening", "addr", ln.Addr().String())
	return nil
}

// Serve accepts connections on ln until Stop (then it returns nil) or until
// ln fails. The server owns ln from then on.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.addListener(ln); err != nil {
		_ = ln.Close()
		return err
	}
	return s.serve(ln)
}

// Addrs returns the addresses the server listens on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, 0, len(s.lns))
	for _, ln := range s.lns {
		out = append(out, ln.Addr())
	}
	return out
}

func (s *Server) addListener(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return ErrServerStopped
	}
	s.lns = append(s.lns, ln)
	return nil
}

func (s *Server) serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			if stopping {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("amqp accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.accept(nc)
	}
}

// accept starts serving one connection, unless the server is full or stopping.
func (s *Server) accept(nc net.Conn) {
	s.mu.Lock()
	if s.stopping || len(s.conns) >= s.cfg.MaxConnections {
		full := !s.stopping
		s.mu.Unlock()
		if full {
			s.log.Warn("amqp connection refused: MaxConnections reached", "peer", nc.RemoteAddr().String(), "max", s.cfg.MaxConnections)
		}
		_ = nc.Close()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
}

// Stop stops accepting, asks every client to close (connection.close 320
// CONNECTION_FORCED), waits for the connections to finish until ctx ends,
// then cuts the remaining ones and waits at most abortWait more for them.
// Safe to call twice or before Start; every call returns once the server is
// stopped.
func (s *Server) Stop(ctx context.Context) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-s.stopped
		return
	}
	s.stopping = true
	lns := s.lns
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	defer close(s.stopped)

	for _, ln := range lns {
		_ = ln.Close()
	}
	for _, c := range conns {
		c.Close("broker shutdown")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	s.mu.Lock()
	stuck := len(s.conns)
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	// A connection goroutine blocked inside the broker (an ack waiting for
	// room in the engine's delete window, say) does not see its socket
	// close. Do not wait for it forever: the server stops the broker and
	// the engine next, which releases it with an error.
	select {
	case <-done:
	case <-time.After(abortWait):
		s.log.Warn("amqp: stopped with connections still busy in the broker", "connections", stuck)
	}
}

// abortWait bounds how long Stop waits for connections it has cut.
const abortWait = 5 * time.Second

// randomToken returns n random bytes, base64url encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
