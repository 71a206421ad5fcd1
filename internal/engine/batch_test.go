package engine

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// batchStats reads the batcher's counters.
func batchStats(t *testing.T, e *Engine) (commits, batched, plain uint64) {
	t.Helper()
	r, err := e.running()
	require.NoError(t, err)
	require.NotNil(t, r.pub.batch, "group commit is off")
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	b := r.pub.batch
	return b.commits, b.batched, b.plainLog
}

// TestGroupCommit appends concurrently from several goroutines to two file
// logs with Fsync always: appends share batches, every done reports the
// sequence its own data was stored at, each goroutine's appends are stored
// in its order, and a restart finds them all.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir(), NodeName: "gc", Fsync: FsyncAlways, Logger: testLogger(t)}
	e := startEngine(t, cfg)
	ensureLog(t, e, "G")
	ensureLog(t, e, "H")

	const writers, per = 8, 500
	type result struct {
		log, data string
		seq       uint64
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := "G"
			if w%2 == 1 {
				log = "H"
			}
			subject := fmt.Sprintf("%s.w%d", log, w)
			var inner sync.WaitGroup
			for i := range per {
				data := fmt.Sprintf("%d-%d", w, i)
				inner.Add(1)
				require.NoError(t, e.AppendAsync(subject, []byte(data), func(seq uint64, err error) {
					defer inner.Done()
					if !(err == nil) {
						t.Errorf("append %s: %v", data, err)
						return
					}
					mu.Lock()
					results = append(results, result{log, data, seq})
					mu.Unlock()
				}))
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	require.Len(t, results, writers*per)

	commits, batched, _ := batchStats(t, e)
	t.Logf("commits %d, batched appends %d of %d", commits, batched, writers*per)
	require.NotZero(t, commits, "no batch was committed")
	require.Greater(t, batched, uint64(writers*per/2), "most concurrent appends should share batches")

	check := func(e *Engine) {
		t.Helper()
		for _, r := range results {
			m, err := e.Get(testCtx(t), r.log, r.seq)
			require.NoError(t, err)
			require.Equal(t, r.data, string(m.Data), "seq %d of %s", r.seq, r.log)
		}
		for _, log := range []string{"G", "H"} {
			last := map[string]int{}
			for _, m := range scanAll(t, e, log, "") {
				var w, i int
				_, err := fmt.Sscanf(string(m.Data), "%d-%d", &w, &i)
				require.NoError(t, err)
				prev, ok := last[m.Subject]
				require.True(t, !ok || i == prev+1, "%s: %d after %d", m.Subject, i, prev)
				last[m.Subject] = i
			}
			for s, i := range last {
				require.Equal(t, per-1, i, s)
			}
		}
	}
	check(e)
	e.Stop(testCtx(t))
	check(startEngine(t, cfg))
}

// TestGroupCommitIdleLog: a lone append to an idle log is plain (one sync,
// no batch), and appends to memory logs are never batched.
func TestGroupCommitIdleLog(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.Fsync = FsyncAlways })
	ensureLog(t, e, "I")
	ensureLog(t, e, "M", func(c *LogConfig) { c.Memory = true })
	for i := range 5 {
		appendAsyncN(t, e, 1, func(int) string { return "I.x" })
		_ = i
	}
	commits, batched, plain := batchStats(t, e)
	require.Zero(t, commits)
	require.Zero(t, batched)
	require.Equal(t, uint64(5), plain, "appends to an idle log are plain")

	appendAsyncN(t, e, 2000, func(i int) string { return "M." + strconv.Itoa(i%3) })
	commits, batched, _ = batchStats(t, e)
	require.Zero(t, commits)
	require.Zero(t, batched)
	require.Len(t, scanAll(t, e, "M", ""), 2000)
}

// TestGroupCommitBatchFails: when a batch's commit is refused (here the log
// is deleted while the batch is open), every append in it fails; none is
// reported stored.
func TestGroupCommitBatchFails(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.Fsync = FsyncAlways })
	ensureLog(t, e, "X")
	appendAsyncN(t, e, 1, func(int) string { return "X.a" }) // learn the route

	r, err := e.running()
	require.NoError(t, err)
	// Hold the log busy with a counted plain append that never completes,
	// so the appends below join an open batch and wait.
	r.pub.mu.Lock()
	lb := r.pub.batch.routes["X.a"]
	require.NotNil(t, lb)
	lb.plain++
	r.pub.mu.Unlock()

	const n = 50
	errs := make(chan error, n)
	for i := range n {
		require.NoError(t, e.AppendAsync("X.a", []byte(strconv.Itoa(i)), func(_ uint64, err error) { errs <- err }))
	}
	require.NoError(t, e.DeleteLog(testCtx(t), "X"))
	r.pub.mu.Lock()
	lb.plain--
	r.pub.settledLocked(lb) // commits the open batch to a log that is gone
	r.pub.mu.Unlock()
	for range n {
		require.Error(t, <-errs)
	}
}

func TestSubjectMatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"a.>", "a.b", true}, {"a.>", "a.b.c", true}, {"a.>", "a", false}, {"a.>", "b.c", false},
		{"a.*", "a.b", true}, {"a.*", "a.b.c", false}, {"a.*.c", "a.b.c", true}, {"a.*.c", "a.b.d", false},
		{"a.b", "a.b", true}, {"a.b", "a.bc", false}, {"a.b", "a.b.c", false}, {"a.b.c", "a.b", false},
		{">", "x", true}, {"*", "x", true}, {"*", "x.y", false},
	} {
		require.Equal(t, c.want, subjectMatch(c.filter, c.subject), "%s ~ %s", c.filter, c.subject)
	}
}

// TestDeleteAsyncBelow: a floor purges every message of its subject below
// it (listed or not) with one filtered purge; other subjects and the listed
// sequences at or above the floor are handled as single deletes; nothing
// else is touched.
func TestDeleteAsyncBelow(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.Fsync = FsyncAlways })
	ensureLog(t, e, "B")
	// Interleaved subjects: a at odd, b at even sequences 1..40.
	appendAsyncN(t, e, 40, func(i int) string {
		if i%2 == 0 {
			return "B.a"
		}
		return "B.b"
	})
	// a: 1,3,...,39. Floor 21: a below 21 goes, plus listed 25 and 31.
	e.DeleteAsyncBelow("B", "B.a", 21, []uint64{3, 7, 25, 31})
	e.DeleteAsync("B", 2) // b's own single delete
	want := map[uint64]bool{}
	for s := uint64(1); s <= 40; s++ {
		gone := (s%2 == 1 && (s < 21 || s == 25 || s == 31)) || s == 2
		want[s] = !gone
	}
	require.Eventually(t, func() bool {
		got := map[uint64]bool{}
		for _, m := range scanAll(t, e, "B", "") {
			got[m.Seq] = true
		}
		for s, keep := range want {
			if got[s] != keep {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)

	// Floor 0 is no floor: only the listed sequence goes.
	e.DeleteAsyncBelow("B", "B.b", 0, []uint64{40})
	require.Eventually(t, func() bool {
		_, err := e.Get(testCtx(t), "B", 40)
		return errors.Is(err, ErrNotFound)
	}, 10*time.Second, 10*time.Millisecond)
	_, err := e.Get(testCtx(t), "B", 38)
	require.NoError(t, err)
}
