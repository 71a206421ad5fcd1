package broker_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

func journalData(entries []broker.JournalEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = string(e.Data)
	}
	return out
}

func TestJournalBoundedPerKeySurvivesRestartAndDeletes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, eng := start(t, dir, nil)
	require.NoError(t, b.EnsureJournal(bg, "attempts", 3))
	for i := range 5 {
		b.JournalAppend("attempts", "sub1", []byte(fmt.Sprint("a", i)))
	}
	b.JournalAppend("attempts", "sub2", []byte("b0"))
	// A read sees every append made before it on this node.
	got, err := b.JournalRead(bg, "attempts", "sub1", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a4", "a3", "a2"}, journalData(got), "newest first, bounded to 3 per key")
	require.GreaterOrEqual(t, got[0].Seq, got[1].Seq, "entries stored together share a Seq")
	require.False(t, got[0].Time.IsZero())
	got, err = b.JournalRead(bg, "attempts", "sub1", 2)
	require.NoError(t, err)
	require.Equal(t, []string{"a4", "a3"}, journalData(got), "limit")
	got, err = b.JournalRead(bg, "attempts", "sub1", 0)
	require.NoError(t, err)
	require.Len(t, got, 3, "limit 0 means perKey")
	got, err = b.JournalRead(bg, "attempts", "none", 10)
	require.NoError(t, err)
	require.Empty(t, got)
	st := b.JournalStats()
	require.Equal(t, uint64(6), st.Appended)
	require.Zero(t, st.Dropped)

	_, err = b.JournalRead(bg, "attempts", "bad.key", 10)
	require.True(t, errs.Is(err, errs.BadArgument), "%v", err)
	_, err = b.JournalRead(bg, "unknown", "k", 10)
	require.True(t, errs.Is(err, errs.NotFound), "%v", err)
	stop(b, eng)

	b, eng = start(t, dir, nil)
	defer stop(b, eng)
	require.NoError(t, b.EnsureJournal(bg, "attempts", 3))
	got, err = b.JournalRead(bg, "attempts", "sub1", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a4", "a3", "a2"}, journalData(got), "after a restart")
	require.NoError(t, b.JournalDelete(bg, "attempts", "sub1"))
	got, err = b.JournalRead(bg, "attempts", "sub1", 10)
	require.NoError(t, err)
	require.Empty(t, got)
	got, err = b.JournalRead(bg, "attempts", "sub2", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"b0"}, journalData(got), "other keys stay")
}

func TestJournalAppendNeverBlocks(t *testing.T) {
	t.Parallel()
	b, _ := setup(t)
	require.NoError(t, b.EnsureJournal(bg, "busy", 10))
	start := time.Now()
	const n = 50_000
	for i := range n {
		b.JournalAppend("busy", fmt.Sprint("k", i%100), []byte(`{"n":1}`))
	}
	require.Less(t, time.Since(start), 5*time.Second)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	_, err := b.JournalRead(ctx, "busy", "k1", 10)
	require.NoError(t, err)
	st := b.JournalStats()
	require.Equal(t, uint64(n), st.Appended+st.Dropped, "every append is stored or counted as dropped")
}

// BenchmarkJournalAppend measures the CPU an append costs the process
// (broker and embedded engine), at 12,000 appends/s to one key (the webhook
// benchmark's attempt rate on one subscription), 200-byte entries; "idle"
// is the same loop without appends, the process's cost of the pacing alone.
func BenchmarkJournalAppend(b *testing.B) {
	for _, append := range []bool{false, true} {
		name := map[bool]string{false: "idle", true: "append"}[append]
		b.Run(name, func(b *testing.B) {
			br, eng := start(&testing.T{}, b.TempDir(), nil)
			defer stop(br, eng)
			require.NoError(b, br.EnsureJournal(bg, "bench", 1000))
			data := make([]byte, 200)
			for i := range data {
				data[i] = 'a'
			}
			const rate = 12_000
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			for i := range b.N {
				if append {
					br.JournalAppend("bench", "sub", data)
				}
				if i%100 == 99 {
					time.Sleep(time.Until(start.Add(time.Duration(i+1) * time.Second / rate)))
				}
			}
			_, err := br.JournalRead(bg, "bench", "sub", 1)
			require.NoError(b, err)
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1000/float64(b.N), "cpu-µs/append")
			b.ReportMetric(float64(br.JournalStats().Dropped), "dropped")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
