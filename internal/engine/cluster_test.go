package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startCluster starts n engines forming one cluster on loopback ports.
func startCluster(t *testing.T, n int) []*Engine {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	engines := make([]*Engine, n)
	for i := range engines {
		cfg := Config{
			DataDir:       t.TempDir(),
			NodeName:      fmt.Sprintf("node-%c", 'a'+i),
			ClusterName:   "herald-test",
			ClusterListen: addrs[i],
			Routes:        slices.Delete(slices.Clone(addrs), i, i+1),
			Logger:        testLogger(t),
		}
		e, err := New(cfg)
		require.NoError(t, err)
		engines[i] = e
	}
	ctx := testCtx(t)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, e := range engines {
		wg.Go(func() { errs[i] = e.Start(ctx) })
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, e := range engines {
			wg.Go(func() { e.Stop(context.Background()) })
		}
		wg.Wait()
	})
	for i, err := range errs {
		require.NoError(t, err, "starting node %d", i)
	}
	return engines
}

func TestCluster(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3)
	a, c := nodes[0], nodes[2]
	ctx := testCtx(t)
	require.True(t, a.Clustered())
	require.Equal(t, "node-c", c.NodeName())

	ensureLog(t, a, "R", func(l *LogConfig) { l.Replicas = 3 })
	var tailed collector
	tl, err := c.Tail(ctx, "R", "", 1, tailed.add)
	require.NoError(t, err)
	defer tl.Stop()

	// Appended through A; each is readable through C at once (a lagging
	// replica's miss is confirmed with the leader).
	for i := range 50 {
		seq, err := a.Append(ctx, "R.x", fmt.Appendf(nil, "m%d", i))
		require.NoError(t, err)
		m, err := c.Get(ctx, "R", seq)
		require.NoError(t, err)
		require.Equal(t, fmt.Appendf(nil, "m%d", i), m.Data)
	}
	appendAsyncN(t, a, 200, func(int) string { return "R.y" })

	msgs := scanAll(t, c, "R", "")
	require.Len(t, msgs, 250)
	require.Len(t, scanAll(t, c, "R", "R.y"), 200)
	tailed.waitLen(t, 250)
	require.Equal(t, seqsOf(msgs), tailed.seqs())

	// Deletes through C are seen through A.
	for s := uint64(1); s <= 100; s++ {
		c.DeleteAsync("R", s)
	}
	require.NoError(t, c.Delete(ctx, "R", 200))
	require.Eventually(t, func() bool { return len(scanAll(t, a, "R", "")) == 149 }, 20*time.Second, 20*time.Millisecond)
	last, err := a.LastSeq(ctx, "R")
	require.NoError(t, err)
	require.Equal(t, uint64(250), last)

	// KV written on A is seen by a watch on C, deletes included.
	kvA, err := a.KV(ctx, KVConfig{Bucket: "meta", Replicas: 3})
	require.NoError(t, err)
	kvC, err := c.KV(ctx, KVConfig{Bucket: "meta", Replicas: 3})
	require.NoError(t, err)
	_, err = kvA.Put(ctx, "q.one", []byte("1"))
	require.NoError(t, err)
	var w watcher
	stop, err := kvC.Watch(ctx, "q.>", w.fn, w.onReady)
	require.NoError(t, err)
	defer stop()
	w.waitLen(t, 1)
	rev, err := kvA.Put(ctx, "q.two", []byte("2"))
	require.NoError(t, err)
	require.NoError(t, kvA.Delete(ctx, "q.one"))
	es := w.waitLen(t, 3)
	require.Equal(t, Entry{Key: "q.two", Value: []byte("2"), Revision: rev}, es[1])
	require.True(t, es[2].Deleted)
	require.Equal(t, "q.one", es[2].Key)

	// Compare-and-set conflicts map the same way on replicated buckets.
	_, err = kvC.Create(ctx, "q.two", []byte("x"))
	require.ErrorIs(t, err, ErrKeyExists)
	_, err = kvC.Update(ctx, "q.two", []byte("x"), rev-1)
	require.ErrorIs(t, err, ErrWrongRev)
}

func TestExternalURL(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	host := setup(t, func(c *Config) { c.ClientListen = fmt.Sprintf("127.0.0.1:%d", port) })
	require.False(t, host.Clustered())
	ext := startEngine(t, Config{ExternalURL: fmt.Sprintf("nats://127.0.0.1:%d", port), NodeName: "ext", Logger: testLogger(t)})
	require.True(t, ext.Clustered())
	ctx := testCtx(t)

	ensureLog(t, ext, "E")
	seq, err := ext.Append(ctx, "E.x", []byte("hello"))
	require.NoError(t, err)
	m, err := host.Get(ctx, "E", seq)
	require.NoError(t, err)
	require.Equal(t, []byte("hello"), m.Data)
	appendAsyncN(t, ext, 100, func(int) string { return "E.y" })
	require.Len(t, scanAll(t, ext, "E", ""), 101)

	var tailed collector
	tl, err := ext.Tail(ctx, "E", "E.x", 0, tailed.add)
	require.NoError(t, err)
	defer tl.Stop()
	_, err = host.Append(ctx, "E.x", []byte("again"))
	require.NoError(t, err)
	tailed.waitLen(t, 2)

	kv, err := ext.KV(ctx, KVConfig{Bucket: "meta"})
	require.NoError(t, err)
	_, err = kv.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	hkv, err := host.KV(ctx, KVConfig{Bucket: "meta"})
	require.NoError(t, err)
	ent, err := hkv.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, []byte("v"), ent.Value)
}
