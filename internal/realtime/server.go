package realtime

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the real-time web face. Create with New, Mount on a mux, Start,
// and Stop to shut down.
type Server struct {
	cfg  Config
	log  *slog.Logger
	node string // random id of this server instance (node queue names, socket ids)

	hubs     []*hub
	hubByKey map[string]*hub
	hubByID  map[string]*hub
	bus      bus
	hooks    *webhooks
	metrics  metrics

	socketHi uint32        // first part of socket ids, random per instance
	socketLo atomic.Uint32 // second part: a counter

	state  atomic.Int32 // 0 new, 1 running, 2 stopped
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed by Stop: handlers return
	wg     sync.WaitGroup

	nconns atomic.Int64
	mu     sync.Mutex
	conns  map[*wsConn]struct{}
	sse    map[*sseConn]struct{}
}

// metrics are counters since Start.
type metrics struct {
	published       atomic.Uint64 // events dispatched to local channels
	delivered       atomic.Uint64 // WebSocket frames written
	subscriptions   atomic.Uint64
	slowDisconnects atomic.Uint64
	dropped         atomic.Uint64 // broker messages refused (no event header, too large)
}

// Stats is a snapshot of the face's counters.
type Stats struct {
	Connections     int    // open WebSocket and SSE connections
	Published       uint64 // events dispatched to channels on this node
	Delivered       uint64 // WebSocket frames written
	Subscriptions   uint64 // subscriptions made
	SlowDisconnects uint64 // connections closed because their send queue was full
	Dropped         uint64 // broker messages dropped (no event header, invalid channel, too large)
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections:     int(s.nconns.Load()),
		Published:       s.metrics.published.Load(),
		Delivered:       s.metrics.delivered.Load(),
		Subscriptions:   s.metrics.subscriptions.Load(),
		SlowDisconnects: s.metrics.slowDisconnects.Load(),
		Dropped:         s.metrics.dropped.Load(),
	}
}

// New validates cfg and returns a server that is not started.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		node:     strconv.FormatUint(binary.BigEndian.Uint64(rnd[:8]), 36),
		hubByKey: map[string]*hub{},
		hubByID:  map[string]*hub{},
		socketHi: binary.BigEndian.Uint32(rnd[8:]) % 1_000_000_000,
		done:     make(chan struct{}),
		conns:    map[*wsConn]struct{}{},
		sse:      map[*sseConn]struct{}{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	epoch := strconv.FormatInt(cfg.Now().UnixNano(), 36)
	for _, a := range cfg.Apps {
		h := newHub(s, a, epoch)
		s.hubs = append(s.hubs, h)
		s.hubByKey[a.Key] = h
		s.hubByID[a.ID] = h
	}
	s.hooks = newWebhooks(s)
	if cfg.Broker != nil {
		s.bus = &brokerBus{srv: s, b: cfg.Broker, owner: "realtime-" + s.node}
	} else {
		s.bus = localBus{}
	}
	return s, nil
}

// Start declares the apps' exchanges and node queues (with a broker) and
// starts background work: history expiry, activity checks, webhooks. ctx
// bounds the startup only.
func (s *Server) Start(ctx context.Context) error {
	if !s.state.CompareAndSwap(0, 1) {
		return errors.New("realtime: Start called twice or after Stop")
	}
	if err := s.bus.start(ctx); err != nil {
		s.state.Store(2)
		s.cancel()
		s.bus.stop(ctx)
		return err
	}
	s.wg.Go(s.janitor)
	s.wg.Go(s.hooks.run)
	return nil
}

func (s *Server) running() bool { return s.state.Load() == 1 }

// Stop closes every connection (WebSocket close 4200, reconnect at once;
// SSE streams end), stops consuming from the broker and waits for every
// goroutine. Closing handshakes get until ctx is done; then connections are
// dropped. Queued webhooks are posted until ctx is done. Safe to call twice
// or before Start.
func (s *Server) Stop(ctx context.Context) {
	s.mu.Lock()
	prev := s.state.Swap(2)
	if prev == 2 {
		s.mu.Unlock()
		return
	}
	close(s.done)
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if prev == 0 {
		s.cancel()
		return
	}
	for _, c := range conns {
		c.kill(codeShuttingDown, "server shutting down")
	}
	s.bus.stop(ctx)
	s.hooks.close()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		s.cancel()
	case <-ctx.Done():
		s.cancel() // abort writes, reads and webhook posts
		s.mu.Lock()
		for c := range s.conns {
			_ = c.ws.CloseNow()
		}
		s.mu.Unlock()
		<-finished
	}
}

// Mount registers the face's routes on mux:
//
//	GET  /app/{key}                                   Pusher protocol over WebSocket
//	POST /apps/{app_id}/events                        Pusher HTTP API: trigger
//	POST /apps/{app_id}/batch_events                  Pusher HTTP API: batch trigger
//	GET  /apps/{app_id}/channels                      Pusher HTTP API: occupied channels
//	GET  /apps/{app_id}/channels/{channel}            Pusher HTTP API: one channel
//	GET  /apps/{app_id}/channels/{channel}/users      Pusher HTTP API: presence users
//	POST /apps/{app_id}/users/{user_id}/terminate_connections
//	GET  /v1/apps/{app_id}/channels/{channel}/events  Server-Sent Events
func (s *Server) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /app/{key}", s.serveWS)
	mux.HandleFunc("POST /apps/{app_id}/events", s.api(s.apiEvents))
	mux.HandleFunc("POST /apps/{app_id}/batch_events", s.api(s.apiBatchEvents))
	mux.HandleFunc("GET /apps/{app_id}/channels", s.api(s.apiChannels))
	mux.HandleFunc("GET /apps/{app_id}/channels/{channel}", s.api(s.apiChannel))
	mux.HandleFunc("GET /apps/{app_id}/channels/{channel}/users", s.api(s.apiUsers))
	mux.HandleFunc("POST /apps/{app_id}/users/{user_id}/terminate_connections", s.api(s.apiTerminate))
	mux.HandleFunc("GET /v1/apps/{app_id}/channels/{channel}/events", s.serveSSE)
}

func (s *Server) newSocketID() string {
	return strconv.FormatUint(uint64(s.socketHi), 10) + "." + strconv.FormatUint(uint64(s.socketLo.Add(1)), 10)
}

func (s *Server) acquireConn() bool {
	if s.nconns.Add(1) > int64(s.cfg.MaxConnections) {
		s.nconns.Add(-1)
		return false
	}
	return true
}

func (s *Server) releaseConn() { s.nconns.Add(-1) }

// addConn registers c; false when the server is stopping. Registration and
// Stop's state change are serialised by s.mu, so no wg.Add follows Wait.
func (s *Server) addConn(c *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return false
	}
	s.wg.Add(1)
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) removeConn(c *wsConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// janitor expires history and pings idle connections.
func (s *Server) janitor() {
	every := min(s.cfg.HistoryTTL, s.cfg.ActivityTimeout, s.cfg.PongTimeout) / 4
	every = max(min(every, 5*time.Second), 50*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var conns []*wsConn
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		for _, h := range s.hubs {
			h.sweep(now)
		}
		conns = conns[:0]
		s.mu.Lock()
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.checkActivity(now)
		}
		clear(conns)
	}
}

func (s *Server) debug(msg string, args ...any) {
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug(msg, args...)
	}
}
