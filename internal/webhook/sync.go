package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// syncer applies subscription record changes, whether written through this
// node or another node of a cluster, to the dispatchers: a new record starts
// one, a changed record reconfigures it, a deleted record stops it. The
// broker reports changes (WatchRecords) from inside PutRecord and from its
// metadata watch; recordChanged only marks the id, and one goroutine
// compares each marked id's current record with its dispatcher, so a change
// this node made itself is found already applied (idempotent).
//
// It also starts a dispatcher held on standby when its queue comes to be
// served by this node (Broker.WatchServing: in a cluster, the node serving
// it went down and the broker moved the queue here), the same way: the id
// is marked and syncOne starts the dispatcher if it serves the queue now.
type syncer struct {
	mu      sync.Mutex
	dirty   map[string]struct{}
	wake    chan struct{}
	quit    chan struct{}
	stop    func() // stops the broker's record watch
	stopSrv func() // stops the broker's serving watch
}

func (y *syncer) init() {
	y.dirty = map[string]struct{}{}
	y.wake = make(chan struct{}, 1)
	y.quit = make(chan struct{})
}

// startSync watches the records; call before loading them, so no change
// falls between the load and the watch.
func (s *Service) startSync() {
	s.sync.stop = s.b.WatchRecords(recordKind, s.recordChanged)
	s.sync.stopSrv = s.b.WatchServing(s.queueServed)
	s.bg.Add(1)
	go s.runSync()
}

// stopSync stops the watch and the goroutine (Stop; once).
func (s *Service) stopSync() {
	if s.sync.stop != nil {
		s.sync.stop()
		s.sync.stopSrv()
		close(s.sync.quit)
	}
}

// queueServed marks the subscription whose queue this node now serves.
func (s *Service) queueServed(_, queue string) {
	id, ok := strings.CutPrefix(queue, queueName(""))
	if ok && !strings.Contains(id, ".") { // not a dead-letter queue
		s.recordChanged(id, nil, false)
	}
}

func (s *Service) recordChanged(id string, _ []byte, _ bool) {
	s.sync.mu.Lock()
	s.sync.dirty[id] = struct{}{}
	s.sync.mu.Unlock()
	select {
	case s.sync.wake <- struct{}{}:
	default:
	}
}

func (s *Service) runSync() {
	defer s.bg.Done()
	for {
		select {
		case <-s.sync.quit:
			return
		case <-s.sync.wake:
		}
		s.sync.mu.Lock()
		ids := s.sync.dirty
		s.sync.dirty = map[string]struct{}{}
		s.sync.mu.Unlock()
		for id := range ids {
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			s.syncOne(ctx, id)
			cancel()
		}
	}
}

// syncOne brings id's dispatcher in line with its current record.
func (s *Service) syncOne(ctx context.Context, id string) {
	data, ok := s.b.Record(recordKind, id)
	var rec record
	if ok {
		if err := json.Unmarshal(data, &rec); err != nil {
			s.log.Error("decoding a webhook subscription", "id", id, "error", err)
			return
		}
	}
	s.mu.Lock()
	if s.state != 1 || s.removing[id] {
		s.mu.Unlock()
		return
	}
	d := s.subs[id]
	switch {
	case !ok && d == nil:
		s.mu.Unlock()
	case !ok: // deleted through another node, which dropped the queues
		delete(s.subs, id)
		s.mu.Unlock()
		d.remove(ctx)
		s.log.Info("webhook subscription deleted elsewhere", "id", id)
	case d == nil: // created through another node
		d = newDispatcher(s, rec)
		s.subs[id] = d
		s.mu.Unlock()
		if err := d.start(); err != nil {
			s.log.Error("starting webhook dispatcher", "id", id, "error", err)
		}
	default:
		s.mu.Unlock()
		d.refresh(ctx)
	}
}

// refresh applies a record changed elsewhere: the dispatcher restarts with
// it. A record equal to the dispatcher's own (its own write) changes
// nothing, except that a dispatcher on standby starts if this node serves
// its queue now. The record is read again under opMu: one read before it
// could predate a modify that held opMu meanwhile, and would roll the
// dispatcher back.
func (d *dispatcher) refresh(ctx context.Context) {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if d.gone {
		return
	}
	data, ok := d.s.b.Record(recordKind, d.id)
	if !ok {
		return // deleted: the watch marks the id again and syncOne removes it
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		d.s.log.Error("decoding a webhook subscription", "id", d.id, "error", err)
		return
	}
	if cur, err := json.Marshal(d.record()); err == nil && bytes.Equal(cur, data) {
		if err := d.startLocked(); err != nil { // a no-op unless on standby and now serving
			d.s.log.Error("starting webhook dispatcher", "id", d.id, "error", err)
		}
		return
	}
	d.haltLocked(ctx)
	d.mu.Lock()
	d.rec = rec
	d.mu.Unlock()
	if err := d.startLocked(); err != nil {
		d.s.log.Error("restarting webhook dispatcher", "id", d.id, "error", err)
	}
}
