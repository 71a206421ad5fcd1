package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGroupCommit appends concurrently from several goroutines to two file
// logs with Fsync always: appends share sync rounds, every done reports the
// sequence its own data was stored at, each goroutine's appends are stored
// in its order, and a restart finds them all.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir(), NodeName: "gc", Fsync: FsyncAlways, Logger: testLogger(t)}
	e := startEngine(t, cfg)
	ensureLog(t, e, "G")
	ensureLog(t, e, "H")
	before := e.Stats()

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
					if err != nil {
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

	st := e.Stats()
	rounds, appends := st.SyncRounds-before.SyncRounds, st.SyncedAppends-before.SyncedAppends
	t.Logf("%d appends in %d sync rounds, %d fsyncs", appends, rounds, st.Fsyncs-before.Fsyncs)
	require.Equal(t, uint64(writers*per), appends)
	require.NotZero(t, rounds)
	require.Less(t, rounds, appends/4, "concurrent appends should share sync rounds")

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

// TestGroupCommitMemoryAndKV: appends to memory logs wait for no sync; KV
// writes and synchronous appends to file logs do.
func TestGroupCommitMemoryAndKV(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.Fsync = FsyncAlways })
	ensureLog(t, e, "M", func(c *LogConfig) { c.Memory = true })
	before := e.Stats()
	appendAsyncN(t, e, 500, func(i int) string { return "M." + strconv.Itoa(i%3) })
	require.Equal(t, before.SyncedAppends, e.Stats().SyncedAppends)
	require.Len(t, scanAll(t, e, "M", ""), 500)

	ensureLog(t, e, "F")
	before = e.Stats()
	appendN(t, e, "F.x", 3)
	kv, err := e.KV(testCtx(t), KVConfig{Bucket: "meta"})
	require.NoError(t, err)
	_, err = kv.Put(testCtx(t), "k", []byte("v"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, e.Stats().SyncedAppends-before.SyncedAppends, uint64(4))
}

// TestShadowRestore: a block file replaced after the last sync round (as a
// JetStream compaction does: a new file renamed over the old one) whose
// data never reached the disk is put back from its shadow at start, with
// every acknowledged message.
func TestShadowRestore(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir(), NodeName: "sr", Fsync: FsyncAlways, Logger: testLogger(t)}
	e := startEngine(t, cfg)
	ensureLog(t, e, "R")
	appendAsyncN(t, e, 100, func(i int) string { return "R.x" })
	e.Stop(testCtx(t))
	restored, err := restoreShadows(cfg.DataDir, t.Logf)
	require.NoError(t, err)
	require.Empty(t, restored, "after a clean stop the shadows are the files JetStream left")

	msgs := filepath.Join(cfg.DataDir, "jetstream", "$G", "streams", "R", "msgs")
	blk := filepath.Join(msgs, "1.blk")
	shadow := filepath.Join(cfg.DataDir, shadowDir, "R", "msgs", "1.blk")
	var a, b os.FileInfo
	a, err = os.Stat(blk)
	require.NoError(t, err)
	b, err = os.Stat(shadow)
	require.NoError(t, err)
	require.True(t, os.SameFile(a, b), "the shadow is the synced block")
	// The power cut: the replacement's rename reached the disk, its data
	// did not.
	require.NoError(t, os.WriteFile(blk+".tmp", nil, 0o640))
	require.NoError(t, os.Rename(blk+".tmp", blk))

	e2 := startEngine(t, cfg)
	require.Len(t, scanAll(t, e2, "R", ""), 100)
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
