package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/metrics"
	"sync"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/engine"
)

// Server is one Herald node.
type Server struct {
	cfg config.Config
	log *slog.Logger

	Engine *engine.Engine
	Broker *broker.Broker

	httpSrv *http.Server
	httpLn  net.Listener
	faces   []face // started faces, stopped in reverse

	stopOnce sync.Once
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// face is a started protocol adapter.
type face struct {
	name string
	stop func(ctx context.Context)
}

// New validates cfg and returns a server that is not started.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: log}, nil
}

// HTTPAddr is the bound HTTP address (useful with port 0), or "".
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Start starts the engine, the broker and the faces. On error, everything
// started so far is stopped.
func (s *Server) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.Stop(context.WithoutCancel(ctx))
		}
	}()
	eng, err := engine.New(engine.Config{
		DataDir:       s.cfg.DataDir,
		Fsync:         engine.FsyncPolicy(s.cfg.Fsync),
		SyncInterval:  s.cfg.SyncInterval,
		NodeName:      s.cfg.Cluster.NodeName,
		ClusterName:   s.cfg.Cluster.Name,
		ClusterListen: s.cfg.Cluster.Listen,
		Routes:        s.cfg.Cluster.Routes,
		ExternalURL:   s.cfg.Cluster.NATSURL,
		// A record is the body plus the broker's envelope (properties,
		// headers: bounded by the AMQP frame size, far under 1 MiB).
		MaxRecordBytes: cmp.Or(s.cfg.Limits.MaxMessageBytes, 16<<20) + 1<<20,
		Logger:         s.log.With("room", "engine"),
	})
	if err != nil {
		return fmt.Errorf("configuring engine: %w", err)
	}
	if err := eng.Start(ctx); err != nil {
		return fmt.Errorf("starting engine: %w", err)
	}
	s.Engine = eng
	b, err := broker.New(broker.Config{
		Engine:          eng,
		Logger:          s.log.With("room", "broker"),
		MaxMessageBytes: s.cfg.Limits.MaxMessageBytes,
		MemoryBudget:    s.cfg.Limits.MemoryBudget,
		MaxQueues:       s.cfg.Limits.MaxQueues,
		NodeTimeout:     s.cfg.Cluster.NodeTimeout,
	})
	if err != nil {
		return fmt.Errorf("configuring broker: %w", err)
	}
	if err := b.Start(ctx); err != nil {
		return fmt.Errorf("starting broker: %w", err)
	}
	s.Broker = b
	mux := http.NewServeMux()
	if err := s.startFaces(ctx, mux); err != nil {
		return err
	}
	if s.cfg.HTTPListen != "" {
		ln, err := net.Listen("tcp", s.cfg.HTTPListen)
		if err != nil {
			return fmt.Errorf("listening on http_listen %s: %w", s.cfg.HTTPListen, err)
		}
		s.httpLn = ln
		s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server stopped", "err", err)
			}
		}()
		s.log.Info("http listening", "addr", ln.Addr().String())
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.bgCancel = cancel
	s.bg.Add(1)
	go s.watchdog(wctx)
	return nil
}

// Stop drains the faces (bounded by ctx), then stops the broker and the
// engine. Safe to call twice or before Start.
func (s *Server) Stop(ctx context.Context) {
	s.stopOnce.Do(func() {
		if s.bgCancel != nil {
			s.bgCancel()
		}
		if s.httpSrv != nil {
			if err := s.httpSrv.Shutdown(ctx); err != nil {
				_ = s.httpSrv.Close()
			}
		}
		for i := len(s.faces) - 1; i >= 0; i-- {
			s.faces[i].stop(ctx)
		}
		s.bg.Wait()
		// Acks and state writes during shutdown use their own bound.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if s.Broker != nil {
			s.Broker.Stop(fctx)
		}
		if s.Engine != nil {
			s.Engine.Stop(fctx)
		}
	})
}

// watchdog raises the memory alarm when the Go heap passes the high
// watermark and the disk alarm when free space under DataDir falls below
// the limit; publishers are blocked while either is up.
func (s *Server) watchdog(ctx context.Context) {
	defer s.bg.Done()
	high := s.cfg.Limits.MemoryHighWatermark
	if high == 0 {
		high = physicalMemory() * 4 / 10
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		heap := int64(sample[0].Value.Uint64())
		reason := ""
		if high > 0 && heap > high {
			reason = fmt.Sprintf("memory alarm: heap %d bytes above high watermark %d", heap, high)
		}
		if free := diskFree(s.cfg.DataDir); free >= 0 && free < s.cfg.Limits.DiskFreeLimit {
			reason = fmt.Sprintf("disk alarm: %d bytes free below limit %d", free, s.cfg.Limits.DiskFreeLimit)
		}
		s.Broker.SetAlarm(reason != "", reason)
	}
}

func diskFree(dir string) int64 {
	var st syscall.Statfs_t
	if dir == "" || syscall.Statfs(dir, &st) != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

func physicalMemory() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
