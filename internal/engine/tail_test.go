package engine

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// collector gathers tailed messages.
type collector struct {
	mu   sync.Mutex
	msgs []Msg
}

func (c *collector) add(m Msg) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

func (c *collector) seqs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return seqsOf(c.msgs)
}

func (c *collector) waitLen(t testing.TB, n int) {
	t.Helper()
	c.waitLenWithin(t, n, 20*time.Second)
}

func (c *collector) waitLenWithin(t testing.TB, n int, d time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return len(c.seqs()) >= n }, d, 5*time.Millisecond, "want %d messages", n)
}

func TestTail(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	ensureLog(t, e, "T")
	appendN(t, e, "T.a", 3) // 1..3
	appendN(t, e, "T.b", 2) // 4..5

	var all, onlyB collector
	tall, err := e.Tail(ctx, "T", "", 2, all.add)
	require.NoError(t, err)
	tb, err := e.Tail(ctx, "T", "T.b", 0, onlyB.add)
	require.NoError(t, err)
	all.waitLen(t, 4)
	onlyB.waitLen(t, 2)

	appendN(t, e, "T.b", 1) // 6
	appendN(t, e, "T.a", 1) // 7
	all.waitLen(t, 6)
	onlyB.waitLen(t, 3)
	require.Equal(t, []uint64{2, 3, 4, 5, 6, 7}, all.seqs())
	require.Equal(t, []uint64{4, 5, 6}, onlyB.seqs())
	m := all.msgs[0]
	require.Equal(t, "T.a", m.Subject)
	require.Equal(t, []byte("1"), m.Data)
	require.False(t, m.Time.IsZero())

	// After Stop nothing more arrives.
	tb.Stop()
	tb.Stop()
	appendN(t, e, "T.b", 1) // 8
	all.waitLen(t, 7)
	require.Equal(t, []uint64{4, 5, 6}, onlyB.seqs())
	tall.Stop()

	_, err = e.Tail(ctx, "Nope", "", 0, func(Msg) {})
	require.ErrorIs(t, err, ErrNotFound)
}

// TestTailStopFromCallback stops a tail from inside fn; the engine's Stop
// ends the others.
func TestTailStopFromCallback(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	ensureLog(t, e, "T")
	appendN(t, e, "T.a", 10)

	var mu sync.Mutex
	var got []uint64
	var tl *Tail
	ready := make(chan struct{})
	tl, err := e.Tail(ctx, "T", "", 0, func(m Msg) {
		<-ready
		mu.Lock()
		got = append(got, m.Seq)
		mu.Unlock()
		if m.Seq == 3 {
			tl.Stop()
		}
	})
	require.NoError(t, err)
	close(ready)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 }, 10*time.Second, time.Millisecond)

	var other collector
	_, err = e.Tail(ctx, "T", "", 0, other.add) // stopped by the engine
	require.NoError(t, err)
	other.waitLen(t, 10)
	e.Stop(ctx)
	mu.Lock()
	require.Equal(t, []uint64{1, 2, 3}, got)
	mu.Unlock()
}
