package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

const metaBucket = "herald_meta"

// core is the Broker's state. Lock order: mu before queue.mu.
type core struct {
	cfg  Config
	eng  *engine.Engine
	log  loggerT
	node string

	state atomic.Int32 // 0 new, 1 running, 2 stopped

	mu      sync.RWMutex
	vhostsM map[string]*vhost
	usersM  map[string]User
	perms   map[string]map[string]*compiledPerm // vhost -> user
	applied map[string]uint64                   // KV key -> last applied revision
	records map[string]map[string][]byte        // face records: kind -> id -> JSON

	kv        *engine.KV
	stopWatch func()
	bg        sync.WaitGroup
	bgCtx     context.Context
	bgCancel  context.CancelFunc

	memBytes atomic.Int64 // message bodies held in memory

	connsMu sync.Mutex
	conns   map[string]Conn

	alarmMu   sync.Mutex
	alarmSubs callbacks[func(bool, string)] // under alarmMu too, so a subscriber sees every change after its first call
	blocked   bool
	blockWhy  string

	delay *delayer
	jan   janitor
	jrn   journals                             // journal.go
	recw  recordWatchers                       // records.go
	live  liveness                             // nodes.go
	servw callbacks[func(vhost, queue string)] // WatchServing (nodes.go)

	stats struct {
		published, delivered, acked, redelivered atomic.Uint64
	}
}

type loggerT = interface {
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

func newBroker(cfg Config) (*Broker, error) {
	if cfg.Engine == nil {
		return nil, errors.New("broker: Config.Engine is required")
	}
	if cfg.NodeTimeout < 0 {
		return nil, errors.New("broker: Config.NodeTimeout must not be negative")
	}
	cfg = cfg.withDefaults()
	b := &Broker{core{
		cfg:     cfg,
		eng:     cfg.Engine,
		log:     cfg.Logger,
		vhostsM: map[string]*vhost{},
		usersM:  map[string]User{},
		perms:   map[string]map[string]*compiledPerm{},
		applied: map[string]uint64{},
		records: map[string]map[string][]byte{},
		conns:   map[string]Conn{},
	}}
	b.live.known = map[string]bool{}
	b.delay = newDelayer(&b.core)
	b.jan.wake = make(chan struct{}, 1)
	b.jrn.wake = make(chan struct{}, 1)
	return b, nil
}

func (b *core) running() error {
	if b.state.Load() != 1 {
		return errs.New(errs.Unavailable, "broker is not running")
	}
	return nil
}

func (b *core) start(ctx context.Context) error {
	if !b.state.CompareAndSwap(0, 1) {
		return errors.New("broker: already started")
	}
	b.node = b.eng.NodeName()
	b.bgCtx, b.bgCancel = context.WithCancel(context.Background())
	b.bg.Add(1)
	go b.runJanitor()
	replicas := 1
	if b.eng.Clustered() {
		replicas = 3
	}
	kv, err := b.eng.KV(ctx, engine.KVConfig{Bucket: metaBucket, Replicas: replicas})
	if err != nil {
		b.state.Store(2)
		return fmt.Errorf("opening metadata bucket: %w", err)
	}
	b.kv = kv
	ready := make(chan struct{})
	var once sync.Once
	stop, err := kv.Watch(ctx, ">", b.applyEntry, func() { once.Do(func() { close(ready) }) })
	if err != nil {
		b.state.Store(2)
		return fmt.Errorf("watching metadata: %w", err)
	}
	b.stopWatch = stop
	select {
	case <-ready:
	case <-ctx.Done():
		b.state.Store(2)
		stop()
		return ctx.Err()
	}
	if err := b.bootstrap(ctx); err != nil {
		b.state.Store(2)
		stop()
		return err
	}
	if err := b.delay.start(ctx); err != nil {
		b.state.Store(2)
		stop()
		return err
	}
	if b.eng.Clustered() {
		if err := b.startLiveness(ctx); err != nil {
			b.state.Store(2)
			b.delay.stop(ctx)
			stop()
			return fmt.Errorf("watching the other nodes: %w", err)
		}
	}
	b.bg.Add(1)
	go b.runJournal()
	return nil
}

// bootstrap creates the default vhost and user on first start, drops
// non-durable objects left by a previous run (single node), and rebuilds
// queue indexes from the logs.
func (b *core) bootstrap(ctx context.Context) error {
	b.mu.RLock()
	_, haveDefault := b.vhostsM["/"]
	noUsers := len(b.usersM) == 0
	b.mu.RUnlock()
	if !haveDefault {
		if err := b.addVHost(ctx, "/"); err != nil && !errs.Is(err, errs.PreconditionFailed) {
			return fmt.Errorf("creating default vhost: %w", err)
		}
	}
	if noUsers {
		u := User{Name: b.cfg.DefaultUser, Password: b.cfg.DefaultPass, Tags: []string{"administrator"}}
		if err := b.putUser(ctx, u); err != nil {
			return fmt.Errorf("creating default user: %w", err)
		}
		if err := b.setPermission(ctx, Permission{User: u.Name, VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
			return fmt.Errorf("granting default user: %w", err)
		}
	}
	if !b.eng.Clustered() {
		b.dropTransient(ctx)
	}
	b.mu.RLock()
	vhs := make([]*vhost, 0, len(b.vhostsM))
	for _, vh := range b.vhostsM {
		vhs = append(vhs, vh)
	}
	b.mu.RUnlock()
	for _, vh := range vhs {
		if err := b.ensureLogs(ctx, vh); err != nil {
			return err
		}
		if err := b.recoverVHost(ctx, vh); err != nil {
			return err
		}
	}
	return nil
}

func (b *core) stop(ctx context.Context) {
	if !b.state.CompareAndSwap(1, 2) {
		b.state.CompareAndSwap(0, 2)
		return
	}
	b.delay.stop(ctx)
	if b.stopWatch != nil {
		b.stopWatch()
	}
	b.mu.RLock()
	var qs []*queue
	for _, vh := range b.vhostsM {
		for _, q := range vh.queues {
			qs = append(qs, q)
		}
		for _, t := range vh.tails {
			t.Stop()
		}
	}
	b.mu.RUnlock()
	for _, q := range qs {
		q.shutdown()
	}
	b.stopLiveness(ctx)
	b.bgCancel()
	b.bg.Wait()
}

// ---- metadata records

type vhostRec struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

type queueRec struct {
	Spec QueueSpec `json:"spec"`
	ID   string    `json:"id"`
	Node string    `json:"node"`
}

type bindingRec struct {
	VHost string  `json:"vhost"`
	B     Binding `json:"binding"`
}

func keyName(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func metaWriteCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// putMeta writes a record and applies it locally at once, so the caller
// sees its own write; the watch later skips the same revision.
func (b *core) putMeta(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	wctx, cancel := metaWriteCtx(ctx)
	defer cancel()
	rev, err := b.kv.Put(wctx, key, data)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "storing metadata")
	}
	b.applyEntry(engine.Entry{Key: key, Value: data, Revision: rev})
	return nil
}

func (b *core) deleteMeta(ctx context.Context, key string) error {
	wctx, cancel := metaWriteCtx(ctx)
	defer cancel()
	if err := b.kv.Delete(wctx, key); err != nil {
		return errs.Wrap(errs.Unavailable, err, "deleting metadata")
	}
	b.applyEntry(engine.Entry{Key: key, Deleted: true})
	return nil
}

// applyEntry applies one metadata record (from the watch or a local write).
func (b *core) applyEntry(e engine.Entry) {
	b.mu.Lock()
	if e.Revision != 0 && b.applied[e.Key] >= e.Revision {
		b.mu.Unlock()
		return
	}
	if e.Revision != 0 {
		b.applied[e.Key] = e.Revision
	}
	var after []func()
	switch {
	case len(e.Key) > 2 && e.Key[:2] == "v.":
		after = b.applyVHostLocked(e)
	case len(e.Key) > 2 && e.Key[:2] == "x.":
		b.applyExchangeLocked(e)
	case len(e.Key) > 2 && e.Key[:2] == "q.":
		after = b.applyQueueLocked(e)
	case len(e.Key) > 2 && e.Key[:2] == "b.":
		after = b.applyBindingLocked(e)
	case len(e.Key) > 2 && e.Key[:2] == "u.":
		b.applyUserLocked(e)
	case len(e.Key) > 2 && e.Key[:2] == "p.":
		b.applyPermLocked(e)
	case len(e.Key) > 2 && e.Key[:2] == "r.":
		after = b.applyRecordLocked(e)
	}
	b.mu.Unlock()
	for _, f := range after {
		f()
	}
}

func splitKey(key string) (kind, vid, name string, ok bool) {
	// kind.vid.name  or kind.name
	parts := [3]string{}
	n := 0
	start := 0
	for i := 0; i < len(key) && n < 2; i++ {
		if key[i] == '.' {
			parts[n] = key[start:i]
			n++
			start = i + 1
		}
	}
	parts[n] = key[start:]
	if n == 2 {
		return parts[0], parts[1], parts[2], true
	}
	return parts[0], "", parts[1], n == 1
}

func (b *core) vhostByID(id string) *vhost {
	for _, vh := range b.vhostsM {
		if vh.id == id {
			return vh
		}
	}
	return nil
}
