package broker_test

import (
	"context"
	"fmt"
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
