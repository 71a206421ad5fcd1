package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// kickClient makes the embedded server close the engine's in-process client
// connection, as it does to a slow consumer, and waits until the client has
// noticed.
func kickClient(t *testing.T, e *Engine) {
	t.Helper()
	r := e.cur.Load()
	require.NotNil(t, r)
	cid, err := r.nc.GetClientID()
	require.NoError(t, err)
	before := r.nc.Stats().Reconnects
	require.NoError(t, r.srv.DisconnectClientByID(cid))
	require.Eventually(t, func() bool {
		return r.nc.Stats().Reconnects > before && r.nc.IsConnected()
	}, 5*time.Second, 5*time.Millisecond, "the in-process client reconnects")
}

// TestInProcessReconnect: after the server drops the in-process connection,
// appends, deletes, scans, tails and KV watches work again by themselves.
func TestInProcessReconnect(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	ensureLog(t, e, "L")
	appendN(t, e, "L.x", 3) // 1..3

	var tailed collector
	tl, err := e.Tail(ctx, "L", "", 1, tailed.add)
	require.NoError(t, err)
	defer tl.Stop()
	tailed.waitLen(t, 3)

	kv, err := e.KV(ctx, KVConfig{Bucket: "rc"})
	require.NoError(t, err)
	var w watcher
	stopW, err := kv.Watch(ctx, ">", w.fn, w.onReady)
	require.NoError(t, err)
	defer stopW()
	require.Eventually(t, func() bool { _, r, _ := w.snapshot(); return r == 1 }, 5*time.Second, time.Millisecond)

	kickClient(t, e)

	// Appends: synchronous and asynchronous.
	_, err = e.Append(ctx, "L.x", []byte("4"))
	require.NoError(t, err)
	acks := make(chan error, 1)
	require.NoError(t, e.AppendAsync("L.x", []byte("5"), func(_ uint64, err error) { acks <- err }))
	select {
	case err := <-acks:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("no ack for an append after the reconnect")
	}

	// Tail and watch deliver again.
	tailed.waitLenWithin(t, 5, 8*time.Second)
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, tailed.seqs())
	_, err = kv.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	es := w.waitLenWithin(t, 1, 8*time.Second)
	require.Equal(t, "k", es[0].Key)

	// Deletes and scans.
	e.DeleteAsync("L", 2)
	e.DeleteAsync("L", 4)
	require.Eventually(t, func() bool { return len(scanAll(t, e, "L", "")) == 3 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []uint64{1, 3, 5}, seqsOf(scanAll(t, e, "L", "")))
}

// TestInProcessReconnectInFlight: appends and deletes in flight when the
// connection drops are not lost silently: appends complete (acknowledged, or
// failed so the publisher can retry) within a bound, and deletes are retried.
func TestInProcessReconnectInFlight(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ensureLog(t, e, "F")
	const n = 2000
	appendAsyncN(t, e, n, func(int) string { return "F.x" })

	r := e.cur.Load()
	cid, err := r.nc.GetClientID()
	require.NoError(t, err)
	errs := make(chan error, n)
	for i := range n {
		require.NoError(t, e.AppendAsync("F.x", nil, func(_ uint64, err error) { errs <- err }))
		if i == n/2 {
			require.NoError(t, r.srv.DisconnectClientByID(cid))
		}
	}
	for s := uint64(1); s <= n; s++ {
		if s%2 == 0 {
			e.DeleteAsync("F", s)
		}
	}
	deadline := time.After(8 * time.Second)
	for range n {
		select {
		case <-errs:
		case <-deadline:
			t.Fatal("appends in flight at the disconnect never completed")
		}
	}
	// Every even sequence of the first n is deleted, whatever was in flight.
	require.Eventually(t, func() bool {
		for _, m := range scanAll(t, e, "F", "") {
			if m.Seq <= n && m.Seq%2 == 0 {
				return false
			}
		}
		return true
	}, 8*time.Second, 20*time.Millisecond)
}
