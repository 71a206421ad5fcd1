package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults and internal bounds. Lock order (outermost first):
// impl.mu → run.mu → publisher.mu → deleter.mu, syncer.mu.
const (
	defaultSyncInterval = 2 * time.Minute
	defaultMaxPending   = 4096
	defaultClusterName  = "herald"
	// defaultMaxRecord is NATS's default max_payload; maxRecord its hard limit.
	defaultMaxRecord = 1 << 20
	maxRecord        = 64 << 20

	// stopDrainTimeout bounds how long Stop waits for in-flight appends and
	// deletes when its ctx has no earlier deadline.
	stopDrainTimeout = 10 * time.Second
	// apiTimeout bounds a single JetStream API request when the caller's ctx
	// has no deadline.
	apiTimeout = 10 * time.Second
	// asyncAckTimeout fails an asynchronous append whose acknowledgement never
	// arrives (a lost leader in a cluster); it must exceed the time a full
	// MaxPending window needs to drain with fsync always.
	asyncAckTimeout = 30 * time.Second
	// inProcessReconnectWait is the pause between attempts to reconnect the
	// in-process client; an attempt costs a net.Pipe, not a dial.
	inProcessReconnectWait = 20 * time.Millisecond
	// inProcessConnectTimeout bounds the in-process handshake; an overloaded
	// server took more than nats.go's default 2 s to answer it, failing
	// reconnect attempts over and over.
	inProcessConnectTimeout = 20 * time.Second
	// serverWriteDeadline is the embedded server's client write deadline
	// (nats-server's default is 10 s). The in-process client is a net.Pipe,
	// which has no buffer: while the server's read loop for it is busy
	// (seconds per fsynced delete with fsync always), the client's writes
	// block holding its connection lock, its read loop waits for that lock
	// (to answer a PING or a flow-control request), and the server's writes
	// to it stall. Past the deadline the server drops the engine's
	// connection as a slow consumer ("Slow Consumer Detected: WriteDeadline
	// of 10s exceeded", seen in the 1,000-queue fan-out with fsync always).
	// It also applies to clients of ClientListen, whose memory the server
	// still bounds with its max pending bytes (64 MiB).
	serverWriteDeadline = time.Minute
	// readyPoll is how often Start polls for JetStream readiness.
	readyPoll = 50 * time.Millisecond
)

// impl is the engine behind the public API. cur is the running instance; nil
// before Start and after Stop. Every operation loads cur once and works on that
// run, so Stop can retire a run while operations on it finish or fail.
type impl struct {
	cfg     Config
	log     *slog.Logger
	created bool

	mu  sync.Mutex // serialises Start and Stop
	cur atomic.Pointer[run]
}

// run is one started instance: the embedded server (nil with ExternalURL),
// the client connection and the background workers it owns.
type run struct {
	e     *impl
	log   *slog.Logger
	srv   *server.Server
	token string // client auth token when the client listener is incidental
	nc    *nats.Conn
	js    jetstream.JetStream

	pub  *publisher // set once in start, under mu
	del  *deleter
	sync *syncer // group commit (Fsync always, standalone); nil otherwise

	disconnects atomic.Uint64 // connections lost so far

	mu      sync.Mutex        // guards subs and closing
	subs    map[*sub]struct{} // running tails and watches
	closing bool
	closed  chan struct{}  // closed when shutdown begins
	wg      sync.WaitGroup // tail and watch goroutines
}

// sub is a running tail or watch; signal asks it to end without waiting.
type sub struct{ signal func() }

func newEngine(cfg Config) (*Engine, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	e := &Engine{impl{cfg: cfg, log: cfg.Logger.With("component", "engine"), created: true}}
	return e, nil
}

// validate checks cfg and fills defaults, naming the bad field.
func validate(cfg *Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ExternalURL == "" && cfg.DataDir == "" {
		return errors.New("engine: Config.DataDir is required unless ExternalURL is set")
	}
	if cfg.ExternalURL != "" && (cfg.ClusterListen != "" || cfg.ClientListen != "" || len(cfg.Routes) > 0) {
		return errors.New("engine: Config.ExternalURL excludes ClusterListen, ClientListen and Routes")
	}
	switch cfg.Fsync {
	case "":
		cfg.Fsync = FsyncInterval
	case FsyncInterval, FsyncAlways:
	default:
		return fmt.Errorf("engine: Config.Fsync %q: want %q or %q", cfg.Fsync, FsyncInterval, FsyncAlways)
	}
	if cfg.SyncInterval < 0 {
		return fmt.Errorf("engine: Config.SyncInterval %v is negative", cfg.SyncInterval)
	}
	cfg.SyncInterval = cmp.Or(cfg.SyncInterval, defaultSyncInterval)
	if cfg.MaxPending < 0 {
		return fmt.Errorf("engine: Config.MaxPending %d is negative", cfg.MaxPending)
	}
	cfg.MaxPending = cmp.Or(cfg.MaxPending, defaultMaxPending)
	if cfg.MaxRecordBytes < 0 || cfg.MaxRecordBytes > maxRecord {
		return fmt.Errorf("engine: Config.MaxRecordBytes %d: want 0..%d", cfg.MaxRecordBytes, maxRecord)
	}
	cfg.MaxRecordBytes = cmp.Or(cfg.MaxRecordBytes, defaultMaxRecord)
	if cfg.NodeName == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("engine: Config.NodeName is empty and the hostname is unknown: %w", err)
		}
		cfg.NodeName = "herald-" + host
	}
	if strings.ContainsAny(cfg.NodeName, " \t\r\n") {
		return fmt.Errorf("engine: Config.NodeName %q contains whitespace", cfg.NodeName)
	}
	cfg.ClusterName = cmp.Or(cfg.ClusterName, defaultClusterName)
	if strings.ContainsAny(cfg.ClusterName, " \t\r\n") {
		return fmt.Errorf("engine: Config.ClusterName %q contains whitespace", cfg.ClusterName)
	}
	if cfg.ClusterListen != "" {
		if _, _, err := splitHostPort(cfg.ClusterListen); err != nil {
			return fmt.Errorf("engine: Config.ClusterListen: %w", err)
		}
	}
	if cfg.ClientListen != "" {
		if _, _, err := splitHostPort(cfg.ClientListen); err != nil {
			return fmt.Errorf("engine: Config.ClientListen: %w", err)
		}
	}
	if len(cfg.Routes) > 0 && cfg.ClusterListen == "" {
		return errors.New("engine: Config.Routes needs ClusterListen")
	}
	for i, r := range cfg.Routes {
		if _, err := routeURL(r); err != nil {
			return fmt.Errorf("engine: Config.Routes[%d]: %w", i, err)
		}
	}
	return nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	return host, port, nil
}

func routeURL(r string) (*url.URL, error) {
	if !strings.Contains(r, "://") {
		r = "nats://" + r
	}
	u, err := url.Parse(r)
	if err != nil {
		return nil, err
	}
	if _, _, err := splitHostPort(u.Host); err != nil {
		return nil, err
	}
	return u, nil
}

func (e *impl) clustered() bool { return e.cfg.ClusterListen != "" || e.cfg.ExternalURL != "" }

// groupCommit reports whether the engine syncs appends itself, many per
// fsync (syncer.go): Fsync always on a standalone embedded server.
func (e *impl) groupCommit() bool { return e.cfg.Fsync == FsyncAlways && !e.clustered() }

func (e *impl) nodeName() string { return e.cfg.NodeName }

// running returns the current run or ErrStopped.
func (e *impl) running() (*run, error) {
	if r := e.cur.Load(); r != nil {
		return r, nil
	}
	return nil, ErrStopped
}

func (e *impl) start(ctx context.Context) error {
	if !e.created {
		return errors.New("engine: Engine must be created with New")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur.Load() != nil {
		return errors.New("engine: already started")
	}
	r := &run{e: e, log: e.log, subs: make(map[*sub]struct{}), closed: make(chan struct{})}
	if err := r.start(ctx); err != nil {
		r.abortStart()
		return err
	}
	e.cur.Store(r)
	return nil
}

func (e *impl) stop(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.cur.Swap(nil)
	if r == nil {
		return
	}
	r.shutdown(ctx)
}

func (r *run) start(ctx context.Context) error {
	cfg := r.e.cfg
	var err error
	if cfg.ExternalURL != "" {
		r.nc, err = nats.Connect(cfg.ExternalURL, append(r.connHandlers(cfg.ExternalURL),
			nats.Name("herald-engine "+cfg.NodeName),
			nats.MaxReconnects(-1),
		)...)
		if err != nil {
			return fmt.Errorf("engine: connecting to %s: %w", cfg.ExternalURL, err)
		}
	} else {
		if cfg.ClusterListen != "" && cfg.ClientListen == "" {
			r.token = rand.Text()
		}
		if err := r.startServer(ctx); err != nil {
			return err
		}
		// The server may close the in-process connection like any other
		// (a slow consumer, a stale connection); nats.go then asks the
		// server for a new one on every reconnect attempt, so the engine
		// reconnects at once and for as long as the server runs. closeConn
		// closes the client before the server so it never spins.
		opts := append(r.connHandlers("in-process"),
			nats.InProcessServer(r.srv),
			nats.Name("herald-engine "+cfg.NodeName),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(inProcessReconnectWait),
			nats.ReconnectJitter(0, 0),
			nats.Timeout(inProcessConnectTimeout),
		)
		if r.token != "" {
			opts = append(opts, nats.Token(r.token))
		}
		r.nc, err = nats.Connect("", opts...)
		if err != nil {
			return fmt.Errorf("engine: connecting in-process: %w", err)
		}
	}
	r.js, err = jetstream.New(r.nc)
	if err != nil {
		return fmt.Errorf("engine: jetstream: %w", err)
	}
	if err := r.waitReady(ctx); err != nil {
		return err
	}
	// Standalone there are no leader elections, so "no responders" means no
	// log captures the subject and appends fail at once; clustered they are
	// retried for a moment.
	if r.e.groupCommit() {
		r.sync = newSyncer(r, cfg.DataDir)
	}
	pub, err := newPublisher(r, cfg.MaxPending, r.e.clustered(), r.sync)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.pub = pub
	r.mu.Unlock()
	r.del, err = newDeleter(r, cfg.MaxPending)
	if err != nil {
		return err
	}
	return nil
}

// connHandlers are the options that report and handle a lost connection to
// the server at where.
func (r *run) connHandlers(where string) []nats.Option {
	return []nats.Option{
		nats.ErrorHandler(r.natsErr),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				r.log.Warn("engine connection to NATS lost; reconnecting", "server", where, "err", err)
			}
			r.disconnected()
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			r.log.Warn("engine connection to NATS re-established", "server", where)
		}),
	}
}

// disconnected fails the appends in flight (their acks are lost with the
// connection; the client reconnects on its own) and tells the delete worker
// that the replies it waits for will not come.
func (r *run) disconnected() {
	r.disconnects.Add(1)
	r.mu.Lock()
	p := r.pub
	r.mu.Unlock()
	if p != nil {
		p.failAll(nats.ErrDisconnected)
	}
}

func (r *run) startServer(ctx context.Context) error {
	cfg := r.e.cfg
	opts := &server.Options{
		ServerName:   cfg.NodeName,
		JetStream:    true,
		StoreDir:     cfg.DataDir,
		DontListen:   cfg.ClientListen == "",
		NoSigs:       true,
		SyncInterval: cfg.SyncInterval,
		// Standalone, the syncer makes writes durable (group commit);
		// in a cluster JetStream syncs its Raft log on flush.
		SyncAlways: cfg.Fsync == FsyncAlways && !r.e.groupCommit(),
		MaxPayload: int32(cfg.MaxRecordBytes),

		WriteDeadline: serverWriteDeadline,
	}
	switch {
	case cfg.ClientListen != "":
		opts.Host, opts.Port, _ = splitHostPort(cfg.ClientListen)
	case cfg.ClusterListen != "":
		// nats-server starts routing only after its client listener is up,
		// so a cluster node needs one: loopback, random port, and a random
		// token that only our in-process connection knows.
		opts.DontListen = false
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
		opts.Authorization = r.token
	default:
		opts.Port = server.RANDOM_PORT // unused with DontListen
	}
	if cfg.ClusterListen != "" {
		opts.Cluster.Name = cfg.ClusterName
		opts.Cluster.Host, opts.Cluster.Port, _ = splitHostPort(cfg.ClusterListen)
		for _, rt := range cfg.Routes {
			u, _ := routeURL(rt)
			opts.Routes = append(opts.Routes, u)
		}
	}
	if r.e.groupCommit() {
		if _, err := restoreShadows(cfg.DataDir, r.log.Warn); err != nil {
			return err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("engine: configuring embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{r.e.cfg.Logger.With("component", "nats-server")}, false, false, false)
	r.srv = srv
	srv.Start()
	for !srv.ReadyForConnections(readyPoll) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("engine: embedded NATS server not ready: %w", err)
		}
	}
	return nil
}

// waitReady polls until JetStream answers account info: at once standalone,
// once a meta leader exists in a cluster.
func (r *run) waitReady(ctx context.Context) error {
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := r.js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("engine: waiting for JetStream to be ready: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (r *run) natsErr(_ *nats.Conn, s *nats.Subscription, err error) {
	subj := ""
	if s != nil {
		subj = s.Subject
	}
	r.log.Warn("NATS client error", "subject", subj, "err", err)
}

// track registers a running tail or watch; it fails once Stop has begun.
func (r *run) track(s *sub) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return ErrStopped
	}
	r.subs[s] = struct{}{}
	return nil
}

func (r *run) untrack(s *sub) {
	r.mu.Lock()
	delete(r.subs, s)
	r.mu.Unlock()
}

func (r *run) isClosing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closing
}

// shutdown drains, then cancels: pending deletes and appends get until ctx
// (at most stopDrainTimeout) to finish; tails and watches end; the client
// closes; the server shuts down.
func (r *run) shutdown(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopDrainTimeout)
	defer cancel()
	if d, ok := ctx.Deadline(); ok {
		dctx, cancel = context.WithDeadline(dctx, d)
		defer cancel()
	}
	r.del.close(dctx)
	r.pub.close(dctx)
	if r.sync != nil {
		r.sync.close()
	}

	r.mu.Lock()
	r.closing = true
	close(r.closed)
	subs := make([]*sub, 0, len(r.subs))
	for s := range r.subs {
		subs = append(subs, s)
	}
	r.mu.Unlock()
	for _, s := range subs {
		s.signal()
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-dctx.Done():
		r.log.Warn("tail or watch callbacks still running at stop")
	}
	r.closeConn()
	if r.sync != nil {
		r.sync.final()
	}
	<-done
}

// abortStart undoes a failed start.
func (r *run) abortStart() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r.del != nil {
		r.del.close(ctx)
	}
	if r.pub != nil {
		r.pub.close(ctx)
	}
	if r.sync != nil {
		r.sync.close()
	}
	r.closeConn()
	if r.sync != nil {
		r.sync.final()
	}
}

func (r *run) closeConn() {
	if r.nc != nil {
		r.nc.Close()
	}
	if r.srv != nil {
		r.srv.Shutdown()
		r.srv.WaitForShutdown()
	}
}

// serverLogger adapts nats-server logging to slog. Debug and trace are
// switched off at the server, so only notices, warnings and errors arrive.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.logf(slog.LevelInfo, format, v) }
func (s serverLogger) Warnf(format string, v ...any)   { s.logf(slog.LevelWarn, format, v) }
func (s serverLogger) Errorf(format string, v ...any)  { s.logf(slog.LevelError, format, v) }
func (s serverLogger) Debugf(format string, v ...any)  { s.logf(slog.LevelDebug, format, v) }
func (s serverLogger) Tracef(format string, v ...any)  { s.logf(slog.LevelDebug-4, format, v) }

// Fatalf is logged as an error; the embedded server never exits the process.
func (s serverLogger) Fatalf(format string, v ...any) { s.logf(slog.LevelError, "FATAL: "+format, v) }

func (s serverLogger) logf(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	s.l.Log(ctx, level, fmt.Sprintf(format, v...))
}
