package broker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

func TestRecordsPersistAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, eng := start(t, dir, nil)
	require.NoError(t, b.PutRecord(bg, "webhook", "a1", []byte(`{"url":"x"}`)))
	require.NoError(t, b.PutRecord(bg, "webhook", "b2", []byte(`{"url":"y"}`)))
	require.NoError(t, b.PutRecord(bg, "webhook", "a1", []byte(`{"url":"z"}`)))
	require.NoError(t, b.DeleteRecord(bg, "webhook", "b2"))
	require.NoError(t, b.DeleteRecord(bg, "webhook", "missing"))
	require.Equal(t, map[string][]byte{"a1": []byte(`{"url":"z"}`)}, b.Records("webhook"))
	require.Empty(t, b.Records("other"))

	err := b.PutRecord(bg, "webhook", "bad.id", []byte(`{}`))
	require.True(t, errs.Is(err, errs.BadArgument), "%v", err)
	err = b.PutRecord(bg, "webhook", "ok", []byte(`not json`))
	require.True(t, errs.Is(err, errs.BadArgument), "%v", err)
	stop(b, eng)

	b, eng = start(t, dir, nil)
	defer stop(b, eng)
	require.Equal(t, map[string][]byte{"a1": []byte(`{"url":"z"}`)}, b.Records("webhook"))
}

// recordEvents collects WatchRecords calls.
type recordEvents struct {
	mu sync.Mutex
	m  map[string]string // id -> data, "<deleted>"
	n  int
}

func watchRecords(b *broker.Broker, kind string) (*recordEvents, func()) {
	ev := &recordEvents{m: map[string]string{}}
	stop := b.WatchRecords(kind, func(id string, data []byte, deleted bool) {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		ev.n++
		if deleted {
			ev.m[id] = "<deleted>"
			return
		}
		ev.m[id] = string(data)
	})
	return ev, stop
}

func (ev *recordEvents) get(id string) string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.m[id]
}

func TestWatchRecordsLocal(t *testing.T) {
	t.Parallel()
	b, _ := setup(t)
	ev, stopWatch := watchRecords(b, "webhook")
	require.NoError(t, b.PutRecord(bg, "webhook", "a1", []byte(`{"v":1}`)))
	require.Equal(t, `{"v":1}`, ev.get("a1"), "called before PutRecord returns")
	require.NoError(t, b.PutRecord(bg, "other", "a1", []byte(`{"v":9}`)))
	require.Equal(t, `{"v":1}`, ev.get("a1"), "other kinds are not watched")
	require.NoError(t, b.DeleteRecord(bg, "webhook", "a1"))
	require.Equal(t, "<deleted>", ev.get("a1"))
	data, ok := b.Record("webhook", "a1")
	require.False(t, ok)
	require.Nil(t, data)
	stopWatch()
	require.NoError(t, b.PutRecord(bg, "webhook", "a2", []byte(`{}`)))
	require.Empty(t, ev.get("a2"), "stopped")
}

// TestClusterWatchRecords: a record put and deleted through node A reaches a
// watcher on node C.
func TestClusterWatchRecords(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	brokers := startCluster(t, ctx, 3)
	a, c := brokers[0], brokers[2]
	ev, stopWatch := watchRecords(c, "webhook")
	defer stopWatch()
	require.NoError(t, a.PutRecord(ctx, "webhook", "s1", []byte(`{"url":"x"}`)))
	eventually(t, func() bool { return ev.get("s1") == `{"url":"x"}` }, "put on A reaches C's watcher")
	data, ok := c.Record("webhook", "s1")
	require.True(t, ok)
	require.JSONEq(t, `{"url":"x"}`, string(data))
	require.NoError(t, a.PutRecord(ctx, "webhook", "s1", []byte(`{"url":"y"}`)))
	eventually(t, func() bool { return ev.get("s1") == `{"url":"y"}` }, "change on A reaches C's watcher")
	require.NoError(t, a.DeleteRecord(ctx, "webhook", "s1"))
	eventually(t, func() bool { return ev.get("s1") == "<deleted>" }, "delete on A reaches C's watcher")
}
