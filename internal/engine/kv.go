package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// kvImpl is a bucket opened on one run of the engine; after Stop (and a new
// Start) the bucket must be opened again with Engine.KV.
type kvImpl struct {
	r      *run
	kv     jetstream.KeyValue
	bucket string
}

func (e *impl) kv(ctx context.Context, cfg KVConfig) (*KV, error) {
	r, err := e.running()
	if err != nil {
		return nil, err
	}
	if err := checkName("bucket", cfg.Bucket); err != nil {
		return nil, err
	}
	switch {
	case cfg.Replicas < 0 || cfg.Replicas > maxReplicas:
		return nil, fmt.Errorf("engine: bucket %q: KVConfig.Replicas %d: want 0..%d", cfg.Bucket, cfg.Replicas, maxReplicas)
	case cfg.History < 0 || cfg.History > jetstream.KeyValueMaxHistory:
		return nil, fmt.Errorf("engine: bucket %q: KVConfig.History %d: want 0..%d", cfg.Bucket, cfg.History, jetstream.KeyValueMaxHistory)
	}
	kc := jetstream.KeyValueConfig{
		Bucket:   cfg.Bucket,
		History:  uint8(max(cfg.History, 1)),
		Replicas: max(cfg.Replicas, 1),
		Storage:  jetstream.FileStorage,
	}
	if cfg.Memory {
		kc.Storage = jetstream.MemoryStorage
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var kv jetstream.KeyValue
	err = retryPlacement(ctx, func() (err error) {
		kv, err = r.js.CreateOrUpdateKeyValue(ctx, kc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("engine: opening bucket %q: %w", cfg.Bucket, mapJSErr(err))
	}
	k := &KV{kvImpl{r: r, kv: kv, bucket: cfg.Bucket}}
	if r.sync != nil {
		r.sync.setLog(k.stream(), !cfg.Memory)
		if err := r.sync.wait(ctx, k.stream(), true); err != nil {
			return nil, fmt.Errorf("engine: opening bucket %q: %w", cfg.Bucket, err)
		}
	}
	return k, nil
}

// stream is the bucket's stream (JetStream's naming).
func (kv *kvImpl) stream() string { return "KV_" + kv.bucket }

// synced returns err, or with group commit once the write is on disk.
func (kv *kvImpl) synced(ctx context.Context, err error) error {
	if err != nil || kv.r.sync == nil {
		return err
	}
	return kv.r.sync.wait(ctx, kv.stream(), false)
}

// kvErr maps a KV error for key.
func (kv *kvImpl) kvErr(op, key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("engine: %s %s/%s: %w", op, kv.bucket, key, ErrNotFound)
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return fmt.Errorf("engine: %s %s/%s: bucket missing: %w", op, kv.bucket, key, ErrNotFound)
	}
	if m := mapJSErr(err); m == ErrStopped {
		return m
	}
	return fmt.Errorf("engine: %s %s/%s: %w", op, kv.bucket, key, err)
}

func (kv *kvImpl) get(ctx context.Context, key string) (Entry, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	e, err := kv.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, kv.kvErr("get", key, err)
	}
	return toEntry(e), nil
}

func (kv *kvImpl) put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rev, err := kv.kv.Put(ctx, key, value)
	if err != nil {
		return 0, kv.kvErr("put", key, err)
	}
	return rev, kv.synced(ctx, nil)
}

func (kv *kvImpl) create(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rev, err := kv.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("engine: create %s/%s: %w", kv.bucket, key, ErrKeyExists)
	}
	if err != nil {
		return 0, kv.kvErr("create", key, err)
	}
	return rev, kv.synced(ctx, nil)
}

func (kv *kvImpl) update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	nrev, err := kv.kv.Update(ctx, key, value, rev)
	if wrongLastSeq(err) {
		return 0, fmt.Errorf("engine: update %s/%s at revision %d: %w", kv.bucket, key, rev, ErrWrongRev)
	}
	if err != nil {
		return 0, kv.kvErr("update", key, err)
	}
	return nrev, kv.synced(ctx, nil)
}

// wrongLastSeq reports a compare-and-set conflict: 10071 standalone, 10164 on
// replicated streams.
func wrongLastSeq(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) &&
		(ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			ae.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func (kv *kvImpl) delete(ctx context.Context, key string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := kv.kv.Delete(ctx, key); err != nil {
		return kv.kvErr("delete", key, err)
	}
	return kv.synced(ctx, nil)
}

// list reads the current values with a short-lived watcher: one consumer
// instead of a get per key.
func (kv *kvImpl) list(ctx context.Context, prefix string) ([]Entry, error) {
	pattern := ">"
	if strings.HasSuffix(prefix, ".") && jetstreamKeyPatternOK(prefix+">") {
		pattern = prefix + ">"
	}
	// The watcher lives until wctx is cancelled, so never pass ctx itself.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.kv.Watch(wctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, kv.kvErr("list", prefix, err)
	}
	defer drainWatcher(w)
	var out []Entry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("engine: list %s/%s: %w", kv.bucket, prefix, ErrStopped)
			}
			if e == nil {
				return out, nil
			}
			if strings.HasPrefix(e.Key(), prefix) {
				out = append(out, toEntry(e))
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("engine: list %s/%s: %w", kv.bucket, prefix, ctx.Err())
		}
	}
}

// drainWatcher stops w and reads its channel until closed: the watcher's
// callback holds its lock while sending, so an unread channel would block
// the close.
func drainWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	for range w.Updates() {
	}
}

func jetstreamKeyPatternOK(p string) bool {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
	}
	return true
}

// watch runs a watcher on its own goroutine. The watcher (an ordered push
// consumer) lives until its context ends: the engine's stop or the returned
// stop func; ctx only bounds setting it up.
func (kv *kvImpl) watch(ctx context.Context, pattern string, fn func(Entry), ready func()) (func(), error) {
	if fn == nil {
		return nil, errors.New("engine: Watch: fn is nil")
	}
	r := kv.r
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	abandon := context.AfterFunc(ctx, cancel)
	w, err := kv.kv.Watch(wctx, pattern)
	if !abandon() {
		// ctx ended during setup.
		if err == nil {
			drainWatcher(w)
		}
		cancel()
		return nil, fmt.Errorf("engine: watch %s/%s: %w", kv.bucket, pattern, context.Cause(ctx))
	}
	if err != nil {
		cancel()
		return nil, kv.kvErr("watch", pattern, err)
	}
	var gate callGate
	gate.init()
	s := &sub{signal: func() {
		if gate.stop() {
			cancel() // unsubscribes; the watcher then closes its channel
			_ = w.Stop()
		}
	}}
	if err := r.track(s); err != nil {
		cancel()
		drainWatcher(w)
		return nil, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer gate.exit()
		defer r.untrack(s)
		isReady := false
		for e := range w.Updates() { // until closed, see drainWatcher
			if e == nil {
				if !isReady && ready != nil {
					gate.call(ready)
				}
				isReady = true
				continue
			}
			ent := toEntry(e)
			if !isReady && ent.Deleted {
				continue // the replay is of current values only
			}
			gate.call(func() { fn(ent) })
		}
	}()
	stop := func() {
		s.signal()
		gate.wait()
	}
	return stop, nil
}

func toEntry(e jetstream.KeyValueEntry) Entry {
	op := e.Operation()
	return Entry{
		Key:      e.Key(),
		Value:    e.Value(),
		Revision: e.Revision(),
		Deleted:  op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge,
	}
}
