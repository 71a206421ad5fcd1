package engine

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestKV(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	_, err := e.KV(ctx, KVConfig{Bucket: "bad.name"})
	require.Error(t, err)
	kv, err := e.KV(ctx, KVConfig{Bucket: "meta", History: 3})
	require.NoError(t, err)
	kv2, err := e.KV(ctx, KVConfig{Bucket: "meta", History: 3}) // opening again is fine
	require.NoError(t, err)

	_, err = kv.Get(ctx, "q.a")
	require.ErrorIs(t, err, ErrNotFound)
	r1, err := kv.Create(ctx, "q.a", []byte("1"))
	require.NoError(t, err)
	_, err = kv2.Create(ctx, "q.a", []byte("again"))
	require.ErrorIs(t, err, ErrKeyExists)

	r2, err := kv.Update(ctx, "q.a", []byte("2"), r1)
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = kv.Update(ctx, "q.a", []byte("stale"), r1)
	require.ErrorIs(t, err, ErrWrongRev)

	ent, err := kv.Get(ctx, "q.a")
	require.NoError(t, err)
	require.Equal(t, Entry{Key: "q.a", Value: []byte("2"), Revision: r2}, ent)

	_, err = kv.Put(ctx, "q.b", []byte("b"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "x.c", []byte("c"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "qq", []byte("qq"))
	require.NoError(t, err)

	list, err := kv.List(ctx, "q.")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"q.a", "q.b"}, keysOf(list))
	list, err = kv.List(ctx, "q")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"q.a", "q.b", "qq"}, keysOf(list))
	list, err = kv.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, list, 4)

	require.NoError(t, kv.Delete(ctx, "q.a"))
	require.NoError(t, kv.Delete(ctx, "q.a"))
	require.NoError(t, kv.Delete(ctx, "never"))
	_, err = kv.Get(ctx, "q.a")
	require.ErrorIs(t, err, ErrNotFound)
	list, err = kv.List(ctx, "q.")
	require.NoError(t, err)
	require.Equal(t, []string{"q.b"}, keysOf(list))

	// Create succeeds again on a deleted key.
	_, err = kv.Create(ctx, "q.a", []byte("3"))
	require.NoError(t, err)

	empty, err := e.KV(ctx, KVConfig{Bucket: "empty", Memory: true})
	require.NoError(t, err)
	list, err = empty.List(ctx, "")
	require.NoError(t, err)
	require.Empty(t, list)
}

func keysOf(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

// watcher records entries and ready.
type watcher struct {
	mu      sync.Mutex
	entries []Entry
	ready   int
	atReady int // entries seen when ready was called
}

func (w *watcher) fn(e Entry) {
	w.mu.Lock()
	w.entries = append(w.entries, e)
	w.mu.Unlock()
}

func (w *watcher) onReady() {
	w.mu.Lock()
	w.ready++
	w.atReady = len(w.entries)
	w.mu.Unlock()
}

func (w *watcher) snapshot() ([]Entry, int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Entry(nil), w.entries...), w.ready, w.atReady
}

func (w *watcher) waitLen(t testing.TB, n int) []Entry {
	t.Helper()
	return w.waitLenWithin(t, n, 20*time.Second)
}

func (w *watcher) waitLenWithin(t testing.TB, n int, d time.Duration) []Entry {
	t.Helper()
	var es []Entry
	require.Eventually(t, func() bool { es, _, _ = w.snapshot(); return len(es) >= n }, d, 5*time.Millisecond,
		"want %d entries", n)
	return es
}

func TestKVWatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	kv, err := e.KV(ctx, KVConfig{Bucket: "meta"})
	require.NoError(t, err)

	// Empty bucket: ready at once.
	var w0 watcher
	stop0, err := kv.Watch(ctx, ">", w0.fn, w0.onReady)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, r, _ := w0.snapshot(); return r == 1 }, 10*time.Second, time.Millisecond)

	for _, k := range []string{"q.a", "q.b", "x.c"} {
		_, err := kv.Put(ctx, k, []byte(k))
		require.NoError(t, err)
	}
	_, err = kv.Put(ctx, "q.a", []byte("a2"))
	require.NoError(t, err)

	var w watcher
	stop, err := kv.Watch(ctx, "q.>", w.fn, w.onReady)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, r, _ := w.snapshot(); return r == 1 }, 10*time.Second, time.Millisecond)
	es, _, atReady := w.snapshot()
	require.Equal(t, 2, atReady, "current values come before ready")
	require.ElementsMatch(t, []string{"q.a", "q.b"}, keysOf(es))
	for _, en := range es {
		if en.Key == "q.a" {
			require.Equal(t, []byte("a2"), en.Value)
		}
	}

	// Live updates, including deletes; other keys are filtered out.
	_, err = kv.Put(ctx, "x.d", []byte("x"))
	require.NoError(t, err)
	rev, err := kv.Put(ctx, "q.c", []byte("c"))
	require.NoError(t, err)
	require.NoError(t, kv.Delete(ctx, "q.b"))
	es = w.waitLen(t, 4)
	require.Equal(t, Entry{Key: "q.c", Value: []byte("c"), Revision: rev}, es[2])
	require.Equal(t, "q.b", es[3].Key)
	require.True(t, es[3].Deleted)
	_, ready, _ := w.snapshot()
	require.Equal(t, 1, ready)

	// After stop nothing more arrives; the other watch still sees updates.
	stop()
	stop()
	_, err = kv.Put(ctx, "q.z", []byte("z"))
	require.NoError(t, err)
	w0.waitLen(t, 7)
	es, _, _ = w.snapshot()
	require.Len(t, es, 4)

	// Deleted keys are not replayed as current values.
	var w2 watcher
	stop2, err := kv.Watch(ctx, "q.>", w2.fn, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, r, _ := w2.snapshot(); es, r, _ := w2.snapshot(); return r == 0 && len(es) == 3 }, 10*time.Second, time.Millisecond)
	es, _, _ = w2.snapshot()
	require.ElementsMatch(t, []string{"q.a", "q.c", "q.z"}, keysOf(es))
	stop2()

	// The engine's Stop ends the remaining watch.
	e.Stop(ctx)
	_ = stop0
}
