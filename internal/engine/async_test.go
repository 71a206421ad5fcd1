package engine

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type ack struct {
	i   int
	seq uint64
	err error
}

// TestAppendAsyncOrder checks that acks from one goroutine arrive in publish
// order across logs, interleaved with failures (a subject without a log).
func TestAppendAsyncOrder(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, l := range []string{"A", "B", "C"} {
		ensureLog(t, e, l, func(c *LogConfig) { c.Memory = l == "B" })
	}
	const n = 20000
	subjects := []string{"A.x", "B.x", "C.x", "A.y"}
	acks := make(chan ack, n)
	for i := range n {
		subj := subjects[i%len(subjects)]
		if i%1000 == 999 {
			subj = "nolog.x"
		}
		require.NoError(t, e.AppendAsync(subj, []byte("m"), func(seq uint64, err error) {
			acks <- ack{i, seq, err}
		}))
	}
	last := map[string]uint64{}
	for want := range n {
		a := <-acks
		require.Equal(t, want, a.i, "acks out of publish order")
		subj := subjects[a.i%len(subjects)]
		if a.i%1000 == 999 {
			require.ErrorIs(t, a.err, ErrNotFound)
			continue
		}
		require.NoError(t, a.err)
		l := subj[:1]
		require.Greater(t, a.seq, last[l], "sequence order in log %s", l)
		last[l] = a.seq
	}
}

// TestAppendAsyncGoroutines checks per-goroutine ordering with concurrent
// publishers and that every done runs exactly once.
func TestAppendAsyncGoroutines(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.MaxPending = 64 })
	ensureLog(t, e, "G")
	const workers, per = 4, 3000
	var calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mu sync.Mutex
			next, lastSeq := 0, uint64(0)
			var done sync.WaitGroup
			for i := range per {
				done.Add(1)
				err := e.AppendAsync("G.w", []byte{byte(w)}, func(seq uint64, err error) {
					defer done.Done()
					calls.Add(1)
					mu.Lock()
					defer mu.Unlock()
					if err != nil || i != next || seq <= lastSeq {
						select {
						case errs <- "out of order or failed":
						default:
						}
					}
					next, lastSeq = i+1, seq
				})
				if err != nil {
					errs <- err.Error()
					return
				}
			}
			done.Wait()
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
	require.Equal(t, int64(workers*per), calls.Load())
}

// TestAppendAsyncFlowControl checks that AppendAsync blocks while MaxPending
// appends are unacknowledged.
func TestAppendAsyncFlowControl(t *testing.T) {
	t.Parallel()
	const window = 4
	e := setup(t, func(c *Config) { c.MaxPending = window })
	ensureLog(t, e, "W")
	release := make(chan struct{})
	var acked atomic.Int64
	// The first done blocks the dispatcher, so no slot is returned.
	for i := range window {
		require.NoError(t, e.AppendAsync("W.x", nil, func(uint64, error) {
			if i == 0 {
				<-release
			}
			acked.Add(1)
		}))
	}
	returned := make(chan error, 1)
	go func() {
		returned <- e.AppendAsync("W.x", nil, func(uint64, error) { acked.Add(1) })
	}()
	select {
	case <-returned:
		t.Fatal("AppendAsync did not block with a full window")
	case <-time.After(200 * time.Millisecond): // asserting it stays blocked
	}
	close(release)
	require.NoError(t, <-returned)
	require.Eventually(t, func() bool { return acked.Load() == window+1 }, 10*time.Second, time.Millisecond)
}

// TestAppendAsyncStop checks that Stop flushes pending appends: each done runs
// exactly once, and later appends get ErrStopped.
func TestAppendAsyncStop(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e, err := New(Config{DataDir: t.TempDir(), Logger: testLogger(t)})
	require.NoError(t, err)
	require.NoError(t, e.Start(ctx))
	ensureLog(t, e, "X")
	const n = 5000
	var calls, oks atomic.Int64
	for range n {
		require.NoError(t, e.AppendAsync("X.x", []byte("x"), func(_ uint64, err error) {
			calls.Add(1)
			if err == nil {
				oks.Add(1)
			}
		}))
	}
	e.Stop(ctx)
	require.Equal(t, int64(n), calls.Load())
	require.Equal(t, int64(n), oks.Load(), "stop waits for in-flight acks")
	require.ErrorIs(t, e.AppendAsync("X.x", nil, func(uint64, error) { t.Error("done called") }), ErrStopped)

	// The data is there after a restart.
	require.NoError(t, e.Start(ctx))
	defer e.Stop(ctx)
	last, err := e.LastSeq(ctx, "X")
	require.NoError(t, err)
	require.Equal(t, uint64(n), last)
}

func TestDeleteAsync(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	cfg := Config{DataDir: t.TempDir(), Logger: testLogger(t), MaxPending: 256}
	e := startEngine(t, cfg)
	ensureLog(t, e, "Q")
	ensureLog(t, e, "R")
	const n = 3000
	appendAsyncN(t, e, n, func(i int) string { return "Q.x" })
	appendAsyncN(t, e, n, func(i int) string { return "R.x" })

	// Q: in order (purge path) except seq 500 (must survive) and a
	// tail region acked out of order.
	for s := uint64(1); s <= 2000; s++ {
		if s != 500 {
			e.DeleteAsync("Q", s)
		}
	}
	perm := rand.Perm(1000)
	for _, i := range perm[:900] {
		e.DeleteAsync("Q", 2001+uint64(i))
	}
	// R: random order over everything but the odd seqs in 1..20.
	for _, i := range rand.Perm(n) {
		s := uint64(i + 1)
		if s <= 20 && s%2 == 1 {
			continue
		}
		e.DeleteAsync("R", s)
	}

	wantQ := []uint64{500}
	for _, i := range perm[900:] {
		wantQ = append(wantQ, 2001+uint64(i))
	}
	require.Eventually(t, func() bool {
		return len(scanAll(t, e, "Q", "")) == len(wantQ) && len(scanAll(t, e, "R", "")) == 10
	}, 30*time.Second, 20*time.Millisecond)
	require.ElementsMatch(t, wantQ, seqsOf(scanAll(t, e, "Q", "")))
	require.Equal(t, []uint64{1, 3, 5, 7, 9, 11, 13, 15, 17, 19}, seqsOf(scanAll(t, e, "R", "")))

	// Deleting what is gone, on a missing log, is logged, not fatal.
	e.DeleteAsync("Q", 1)
	e.DeleteAsync("Nope", 1)

	// Stop applies what is queued.
	appendAsyncN(t, e, 100, func(int) string { return "Q.x" })
	for s := uint64(n + 1); s <= n+100; s++ {
		e.DeleteAsync("Q", s)
	}
	e.Stop(ctx)
	e2 := startEngine(t, cfg)
	require.ElementsMatch(t, wantQ, seqsOf(scanAll(t, e2, "Q", "")))
}

// TestDeleteAsyncPurgeMark: the worker purges a run that starts where its
// last purge ended without reading the log's state, and forgets that mark
// when the log is deleted, so a re-created log's live messages below the
// old mark survive a run of deletes above them.
func TestDeleteAsyncPurgeMark(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	ensureLog(t, e, "Q")
	appendAsyncN(t, e, 90, func(int) string { return "Q.x" })
	deleteRange := func(from, to uint64, skip ...uint64) {
		for s := from; s <= to; s++ {
			if !slices.Contains(skip, s) {
				e.DeleteAsync("Q", s)
			}
		}
	}
	waitSeqs := func(want []uint64) {
		t.Helper()
		require.Eventually(t, func() bool { return slices.Equal(want, seqsOf(scanAll(t, e, "Q", ""))) },
			10*time.Second, 5*time.Millisecond, "want %v", want)
	}
	deleteRange(1, 30)
	waitSeqs(seqRange(31, 90))
	deleteRange(31, 60) // starts at the mark: purged without a state read
	waitSeqs(seqRange(61, 90))
	deleteRange(61, 89, 70) // 70 stays: the run before it is purged, the rest deleted one by one
	waitSeqs([]uint64{70, 90})

	require.NoError(t, e.DeleteLog(ctx, "Q"))
	ensureLog(t, e, "Q")
	appendAsyncN(t, e, 100, func(int) string { return "Q.x" })
	deleteRange(70, 100) // starts at the old mark (70): purging from there would take 1..69 too
	waitSeqs(seqRange(1, 69))
}

// TestDeleteAsyncLateHead: the late head message that held a run back, and
// the run behind it, are purged when the head's delete comes, even with
// the sequences between them deleted one by one meanwhile (the log's first
// message then moves past them).
func TestDeleteAsyncLateHead(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ensureLog(t, e, "Q")
	appendAsyncN(t, e, 200, func(int) string { return "Q.x" })
	d := e.cur.Load().del
	e.DeleteAsyncMany("Q", seqRange(2, 100)) // 1 is live: held, then one by one
	require.Eventually(t, func() bool { return slices.Equal(seqRange(101, 200), seqsOf(scanAll(t, e, "Q", ""))[1:]) },
		10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 99, d.singles.Load())
	e.DeleteAsyncMany("Q", append([]uint64{1}, seqRange(101, 199)...))
	require.Eventually(t, func() bool { return slices.Equal([]uint64{200}, seqsOf(scanAll(t, e, "Q", ""))) },
		10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 99, d.singles.Load(), "1 and 101-199 purged, not deleted one by one")
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestAppendAsyncAckTimeout publishes to a subject that a plain subscriber
// (not a log) receives, so no ack ever comes: done reports the timeout, and
// acks behind it wait for it, keeping the order.
func TestAppendAsyncAckTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ensureLog(t, e, "A")
	r := e.cur.Load()
	r.pub.ackTimeout.Store(int64(50 * time.Millisecond))
	sub, err := r.nc.SubscribeSync("hole.x")
	require.NoError(t, err)
	defer sub.Unsubscribe()

	acks := make(chan ack, 3)
	for i, subj := range []string{"A.x", "hole.x", "A.x"} {
		require.NoError(t, e.AppendAsync(subj, nil, func(seq uint64, err error) { acks <- ack{i, seq, err} }))
	}
	a := <-acks
	require.Equal(t, 0, a.i)
	require.NoError(t, a.err)
	a = <-acks
	require.Equal(t, 1, a.i)
	require.ErrorContains(t, a.err, "no acknowledgement")
	a = <-acks
	require.Equal(t, 2, a.i)
	require.NoError(t, a.err)
	require.Equal(t, uint64(2), a.seq)
}

// TestDeleterGoneSpans: single deletes are remembered as merged spans, a run
// is taken across gaps they cover only, the list is bounded, and it expires.
func TestDeleterGoneSpans(t *testing.T) {
	d := &deleter{gone: map[string]goneSpans{}}
	d.noteGone("L", []uint64{5, 6, 7, 20})
	d.noteGone("L", []uint64{8, 9, 21, 30})
	require.Equal(t, []seqSpan{{5, 9}, {20, 21}, {30, 30}}, d.gone["L"].spans)
	require.True(t, d.goneBetween("L", 6, 9))
	require.True(t, d.goneBetween("L", 10, 9), "an empty gap")
	require.False(t, d.goneBetween("L", 9, 20), "10-19 are not gone")
	require.False(t, d.goneBetween("M", 1, 1))
	require.Equal(t, 5, d.purgeableRun("L", []uint64{3, 4, 10, 11, 12, 40}), "3-4, across 5-9, 10-12; not across 13-39")
	require.Equal(t, 1, d.purgeableRun("L", []uint64{1, 3}))

	for i := range uint64(maxGoneRanges + 10) {
		d.noteGone("B", []uint64{100 + 2*i})
	}
	require.Len(t, d.gone["B"].spans, maxGoneRanges)
	require.Equal(t, uint64(120), d.gone["B"].spans[0].lo, "the lowest are dropped first")

	g := d.gone["L"]
	g.at = time.Now().Add(-goneTTL - time.Second)
	d.gone["L"] = g
	require.False(t, d.goneBetween("L", 6, 9), "expired")
	require.Empty(t, d.gone["L"].spans)
}
