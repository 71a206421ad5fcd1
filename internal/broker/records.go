package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"sync"

	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

// Records are small JSON documents that faces persist in the broker's
// replicated metadata bucket (webhook subscriptions, for example), so they
// live and replicate with the rest of the topology. A record is named by a
// kind and an id, both [A-Za-z0-9_-]+; it is stored under the key
// "r.<kind>.<id>".

func recordKey(kind, id string) (string, error) {
	for _, s := range [2]string{kind, id} {
		if s == "" || len(s) > 128 {
			return "", errs.New(errs.BadArgument, "record kind and id must be 1 to 128 bytes")
		}
		for _, c := range []byte(s) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return "", errs.New(errs.BadArgument, "record kind and id must match [A-Za-z0-9_-]+")
			}
		}
	}
	return "r." + kind + "." + id, nil
}

// PutRecord stores a JSON record (creating or replacing it) and waits until it
// is stored; Records reflects it when PutRecord returns.
func (b *Broker) PutRecord(ctx context.Context, kind, id string, data []byte) error {
	key, err := recordKey(kind, id)
	if err != nil {
		return err
	}
	if !json.Valid(data) {
		return errs.New(errs.BadArgument, "record %s/%s is not valid JSON", kind, id)
	}
	if err := b.running(); err != nil {
		return err
	}
	return b.putMeta(ctx, key, json.RawMessage(data))
}

// DeleteRecord deletes a record; deleting a missing record is not an error.
func (b *Broker) DeleteRecord(ctx context.Context, kind, id string) error {
	key, err := recordKey(kind, id)
	if err != nil {
		return err
	}
	if err := b.running(); err != nil {
		return err
	}
	return b.deleteMeta(ctx, key)
}

// Records returns a copy of the records of kind, by id.
func (b *Broker) Records(kind string) map[string][]byte {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return maps.Clone(b.records[kind])
}

// Record returns one record (ok false if absent).
func (b *Broker) Record(kind, id string) (data []byte, ok bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	data, ok = b.records[kind][id]
	return data, ok
}

// WatchRecords calls fn for every change of a record of kind, whether
// written through this node (before PutRecord or DeleteRecord returns, on
// the writer's goroutine) or by another node (from the metadata watch).
// fn gets the record's state at the time of the call, read after the change
// was applied (deleted true and data nil when it is gone), so the last call
// for an id always carries its current state; a state may be repeated, so fn
// must be idempotent. fn runs with no broker lock held and may call the
// broker, but calls may come from several goroutines at once, and a call
// made for a local write runs inside that PutRecord or DeleteRecord. The
// records existing before WatchRecords are not replayed (see Records). The
// returned stop removes the watcher; it may still be called once after
// stop returns if a call was already under way.
func (b *Broker) WatchRecords(kind string, fn func(id string, data []byte, deleted bool)) (stop func()) {
	w := &b.recw
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fns == nil {
		w.fns = map[string]map[int]func(string, []byte, bool){}
	}
	if w.fns[kind] == nil {
		w.fns[kind] = map[int]func(string, []byte, bool){}
	}
	w.next++
	n := w.next
	w.fns[kind][n] = fn
	return func() {
		w.mu.Lock()
		delete(w.fns[kind], n)
		w.mu.Unlock()
	}
}

// recordWatchers are the WatchRecords callbacks by kind.
type recordWatchers struct {
	mu   sync.Mutex
	fns  map[string]map[int]func(id string, data []byte, deleted bool)
	next int
}

// notify calls the watchers of kind with the current state of id.
func (b *core) notifyRecord(kind, id string) {
	w := &b.recw
	w.mu.Lock()
	fns := make([]func(string, []byte, bool), 0, len(w.fns[kind]))
	for _, fn := range w.fns[kind] {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	if len(fns) == 0 {
		return
	}
	b.mu.RLock()
	data, ok := b.records[kind][id]
	b.mu.RUnlock()
	for _, fn := range fns {
		fn(id, data, !ok)
	}
}

// applyRecordLocked applies a record change and returns the watchers' call
// (nil when nothing changed).
func (b *core) applyRecordLocked(e engine.Entry) []func() {
	_, kind, id, ok := splitKey(e.Key)
	if !ok || kind == "" {
		return nil
	}
	notify := []func(){func() { b.notifyRecord(kind, id) }}
	if e.Deleted {
		if _, had := b.records[kind][id]; !had {
			return nil
		}
		delete(b.records[kind], id)
		return notify
	}
	m := b.records[kind]
	if m == nil {
		m = map[string][]byte{}
		b.records[kind] = m
	}
	if old, had := m[id]; had && bytes.Equal(old, e.Value) {
		return nil
	}
	m[id] = e.Value
	return notify
}

// ServesQueue reports whether this node serves (leads) a queue: on a single
// node every queue; in a cluster the node whose consumers it delivers to
// (consuming through another node moves the queue there). False if the
// queue does not exist.
func (b *Broker) ServesQueue(vhost, name string) bool {
	q, err := b.findQueue(vhost, name, "")
	if err != nil {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.leader
}
