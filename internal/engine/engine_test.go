package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testWriter sends logs to t.Log until the test ends; server goroutines may
// log a little after that, which t.Log does not allow.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	level := slog.LevelWarn
	if os.Getenv("HERALD_TEST_LOG") == "info" {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setup starts an engine on a fresh data directory; it stops with the test.
func setup(t testing.TB, mods ...func(*Config)) *Engine {
	t.Helper()
	cfg := Config{DataDir: t.TempDir(), NodeName: "test", Logger: testLogger(t)}
	for _, m := range mods {
		m(&cfg)
	}
	return startEngine(t, cfg)
}

func startEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, e.Start(testCtx(t)))
	t.Cleanup(func() { e.Stop(context.Background()) })
	return e
}

// ensureLog creates log name capturing name+".>".
func ensureLog(t testing.TB, e *Engine, name string, mods ...func(*LogConfig)) {
	t.Helper()
	cfg := LogConfig{Name: name, Subjects: []string{name + ".>"}}
	for _, m := range mods {
		m(&cfg)
	}
	require.NoError(t, e.EnsureLog(testCtx(t), cfg))
}

func appendN(t testing.TB, e *Engine, subject string, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		seq, err := e.Append(testCtx(t), subject, []byte(strconv.Itoa(i)))
		require.NoError(t, err)
		seqs[i] = seq
	}
	return seqs
}

// scanAll returns every message of log matching filter.
func scanAll(t testing.TB, e *Engine, log, filter string) []Msg {
	t.Helper()
	var out []Msg
	_, err := e.Scan(testCtx(t), log, filter, 0, func(m Msg) error {
		out = append(out, m)
		return nil
	})
	require.NoError(t, err)
	return out
}

// appendAsyncN appends n messages asynchronously (data is the index) and
// waits for all acknowledgements.
func appendAsyncN(t testing.TB, e *Engine, n int, subject func(i int) string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		require.NoError(t, e.AppendAsync(subject(i), []byte(strconv.Itoa(i)), func(_ uint64, err error) {
			if err != nil {
				errs <- err
			}
			wg.Done()
		}))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func seqsOf(ms []Msg) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no DataDir":            {},
		"bad Fsync":             {DataDir: "x", Fsync: "sometimes"},
		"negative SyncInterval": {DataDir: "x", SyncInterval: -1},
		"negative MaxPending":   {DataDir: "x", MaxPending: -1},
		"bad ClusterListen":     {DataDir: "x", ClusterListen: "nope"},
		"bad ClientListen":      {DataDir: "x", ClientListen: "1.2.3.4:99999"},
		"Routes without listen": {DataDir: "x", Routes: []string{"127.0.0.1:1"}},
		"bad route":             {DataDir: "x", ClusterListen: ":0", Routes: []string{"nats://host"}},
		"ExternalURL and more":  {ExternalURL: "nats://127.0.0.1:4222", ClientListen: ":4222"},
		"NodeName whitespace":   {DataDir: "x", NodeName: "a b"},
	} {
		_, err := New(cfg)
		require.Error(t, err, name)
	}
	e, err := New(Config{DataDir: "x"})
	require.NoError(t, err)
	require.NotEmpty(t, e.NodeName())
	require.False(t, e.Clustered())
	e, err = New(Config{ExternalURL: "nats://127.0.0.1:1", NodeName: "n"})
	require.NoError(t, err)
	require.True(t, e.Clustered())
	require.Equal(t, "n", e.NodeName())
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	e, err := New(Config{DataDir: dir, Logger: testLogger(t)})
	require.NoError(t, err)

	// Stop before Start and twice is fine; calls before Start fail.
	e.Stop(ctx)
	_, err = e.Append(ctx, "x.y", nil)
	require.ErrorIs(t, err, ErrStopped)
	require.ErrorIs(t, e.AppendAsync("x.y", nil, func(uint64, error) {}), ErrStopped)

	require.NoError(t, e.Start(ctx))
	require.Error(t, e.Start(ctx), "second Start")
	ensureLog(t, e, "L")
	appendN(t, e, "L.a", 3)
	e.Stop(ctx)
	e.Stop(ctx)

	_, err = e.LastSeq(ctx, "L")
	require.ErrorIs(t, err, ErrStopped)
	require.ErrorIs(t, e.EnsureLog(ctx, LogConfig{Name: "M", Subjects: []string{"m"}}), ErrStopped)
	_, err = e.KV(ctx, KVConfig{Bucket: "b"})
	require.ErrorIs(t, err, ErrStopped)
	_, err = e.Tail(ctx, "L", "", 0, func(Msg) {})
	require.ErrorIs(t, err, ErrStopped)
	e.DeleteAsync("L", 1) // dropped with a log line, must not block or panic

	// The same engine starts again on its data.
	require.NoError(t, e.Start(ctx))
	defer e.Stop(ctx)
	last, err := e.LastSeq(ctx, "L")
	require.NoError(t, err)
	require.Equal(t, uint64(3), last)

	var zero Engine
	require.Error(t, zero.Start(ctx))
	zero.Stop(ctx)
}

func TestAppendGetDelete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	ensureLog(t, e, "L")

	before := time.Now().Add(-time.Second)
	s1, err := e.Append(ctx, "L.a", []byte("one"))
	require.NoError(t, err)
	s2, err := e.Append(ctx, "L.b", []byte("two"))
	require.NoError(t, err)
	require.Equal(t, s1+1, s2)

	m, err := e.Get(ctx, "L", s2)
	require.NoError(t, err)
	require.Equal(t, "L.b", m.Subject)
	require.Equal(t, s2, m.Seq)
	require.Equal(t, []byte("two"), m.Data)
	require.True(t, m.Time.After(before))

	require.NoError(t, e.Delete(ctx, "L", s1))
	_, err = e.Get(ctx, "L", s1)
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, e.Delete(ctx, "L", s1), "deleting a deleted message")
	require.NoError(t, e.Delete(ctx, "L", 1000), "deleting past the end")

	_, err = e.Get(ctx, "L", 0)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = e.Get(ctx, "L", 99)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = e.Get(ctx, "Nope", 1)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, e.Delete(ctx, "Nope", 1), ErrNotFound)
	_, err = e.Get(ctx, "bad.name", 1)
	require.Error(t, err)

	// A subject no log captures fails at once with ErrNotFound.
	start := time.Now()
	_, err = e.Append(ctx, "nolog.x", []byte("x"))
	require.ErrorIs(t, err, ErrNotFound)
	require.Less(t, time.Since(start), 200*time.Millisecond)

	require.NoError(t, e.DeleteLog(ctx, "L"))
	require.ErrorIs(t, e.DeleteLog(ctx, "L"), ErrNotFound)
	_, err = e.LastSeq(ctx, "L")
	require.ErrorIs(t, err, ErrNotFound)
}

func TestEnsureLog(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	for name, cfg := range map[string]LogConfig{
		"bad name":        {Name: "a.b", Subjects: []string{"x"}},
		"no subjects":     {Name: "A"},
		"replicas":        {Name: "A", Subjects: []string{"x"}, Replicas: 7},
		"negative bytes":  {Name: "A", Subjects: []string{"x"}, MaxBytes: -1},
		"negative age":    {Name: "A", Subjects: []string{"x"}, MaxAge: -1},
		"negative persub": {Name: "A", Subjects: []string{"x"}, MaxMsgsPerSubject: -1},
	} {
		require.Error(t, e.EnsureLog(ctx, cfg), name)
	}

	// Create, then update in place: MaxMsgsPerSubject keeps the newest N.
	ensureLog(t, e, "H")
	appendN(t, e, "H.a", 5)
	ensureLog(t, e, "H", func(c *LogConfig) { c.MaxMsgsPerSubject = 2 })
	require.Equal(t, []uint64{4, 5}, seqsOf(scanAll(t, e, "H", "")))
	appendN(t, e, "H.a", 1)
	appendN(t, e, "H.b", 1)
	require.Equal(t, []uint64{5, 6, 7}, seqsOf(scanAll(t, e, "H", "")))

	// A second log may not capture the same subjects.
	require.Error(t, e.EnsureLog(ctx, LogConfig{Name: "H2", Subjects: []string{"H.>"}}))

	// Memory logs work the same way.
	ensureLog(t, e, "Mem", func(c *LogConfig) { c.Memory = true })
	appendN(t, e, "Mem.x", 3)
	require.Len(t, scanAll(t, e, "Mem", ""), 3)
}

func TestLogLimit(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	ensureLog(t, e, "Cap", func(c *LogConfig) { c.MaxBytes = 4096 })
	data := make([]byte, 256)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = e.Append(ctx, "Cap.x", data)
	}
	require.ErrorIs(t, err, ErrLogLimit)
	msgs := scanAll(t, e, "Cap", "")
	require.Equal(t, uint64(1), msgs[0].Seq, "a full log refuses new messages, it keeps the old")

	done := make(chan error, 1)
	require.NoError(t, e.AppendAsync("Cap.x", data, func(_ uint64, err error) { done <- err }))
	require.ErrorIs(t, <-done, ErrLogLimit)
}

func TestPurgeAndLastSeq(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	ensureLog(t, e, "P")
	last, err := e.LastSeq(ctx, "P")
	require.NoError(t, err)
	require.Zero(t, last)
	for range 5 {
		appendN(t, e, "P.a", 1)
		appendN(t, e, "P.b", 1)
	}
	last, err = e.LastSeq(ctx, "P")
	require.NoError(t, err)
	require.Equal(t, uint64(10), last)

	// P.a below 6: seqs 1, 3, 5.
	n, err := e.Purge(ctx, "P", "P.a", 6)
	require.NoError(t, err)
	require.Equal(t, uint64(3), n)
	require.Equal(t, []uint64{2, 4, 6, 7, 8, 9, 10}, seqsOf(scanAll(t, e, "P", "")))

	// Wildcard filter, no bound.
	n, err = e.Purge(ctx, "P", "P.*", 0)
	require.NoError(t, err)
	require.Equal(t, uint64(7), n)
	require.Empty(t, scanAll(t, e, "P", ""))

	// LastSeq does not go down when messages are removed.
	last, err = e.LastSeq(ctx, "P")
	require.NoError(t, err)
	require.Equal(t, uint64(10), last)

	appendN(t, e, "P.c", 4)
	n, err = e.Purge(ctx, "P", "", 13)
	require.NoError(t, err)
	require.Equal(t, uint64(2), n)
	require.Equal(t, []uint64{13, 14}, seqsOf(scanAll(t, e, "P", "")))

	_, err = e.Purge(ctx, "Nope", "", 0)
	require.ErrorIs(t, err, ErrNotFound)
}

func TestScan(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := testCtx(t)
	ensureLog(t, e, "S")
	const n = 5000 // more than one batch
	appendAsyncN(t, e, n, func(i int) string {
		if i%2 == 1 {
			return "S.odd"
		}
		return "S.even"
	})

	all := scanAll(t, e, "S", "")
	require.Len(t, all, n)
	for i, m := range all {
		require.Equal(t, uint64(i+1), m.Seq)
		require.Equal(t, strconv.Itoa(i), string(m.Data))
	}
	odd := scanAll(t, e, "S", "S.odd")
	require.Len(t, odd, n/2)
	require.Equal(t, "S.odd", odd[0].Subject)
	require.Equal(t, uint64(2), odd[0].Seq)

	// from, and deleted messages are skipped.
	require.NoError(t, e.Delete(ctx, "S", 4001))
	var got []uint64
	last, err := e.Scan(ctx, "S", "", 4000, func(m Msg) error { got = append(got, m.Seq); return nil })
	require.NoError(t, err)
	require.Equal(t, uint64(n), last)
	require.Len(t, got, n-4000)
	require.Equal(t, []uint64{4000, 4002}, got[:2])

	// Messages appended during the scan are not included.
	var count int
	last, err = e.Scan(ctx, "S", "", 4990, func(m Msg) error {
		if count == 0 {
			_, err := e.Append(ctx, "S.even", []byte("late"))
			require.NoError(t, err)
		}
		count++
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, uint64(n), last)
	require.Equal(t, 11, count)

	// fn's error stops the scan.
	stopErr := fmt.Errorf("enough")
	count = 0
	_, err = e.Scan(ctx, "S", "", 0, func(m Msg) error {
		count++
		if count == 3 {
			return stopErr
		}
		return nil
	})
	require.ErrorIs(t, err, stopErr)
	require.Equal(t, 3, count)

	// From past the end covers nothing; a filter matching nothing ends.
	last, err = e.Scan(ctx, "S", "", n+100, func(Msg) error { t.Fatal("called"); return nil })
	require.NoError(t, err)
	require.Equal(t, uint64(n+99), last)
	last, err = e.Scan(ctx, "S", "S.none", 0, func(Msg) error { t.Fatal("called"); return nil })
	require.NoError(t, err)
	require.Equal(t, uint64(n+1), last)

	_, err = e.Scan(ctx, "Nope", "", 0, func(Msg) error { return nil })
	require.ErrorIs(t, err, ErrNotFound)
}

func TestFsyncAlways(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.Fsync = FsyncAlways })
	ensureLog(t, e, "F")
	require.Equal(t, []uint64{1, 2}, appendN(t, e, "F.x", 2))
}

func TestPersistence(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	cfg := Config{DataDir: t.TempDir(), NodeName: "p", Logger: testLogger(t)}
	e, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, e.Start(ctx))
	ensureLog(t, e, "D")
	appendN(t, e, "D.x", 3)
	require.NoError(t, e.Delete(ctx, "D", 2))
	kv, err := e.KV(ctx, KVConfig{Bucket: "meta"})
	require.NoError(t, err)
	_, err = kv.Put(ctx, "q.one", []byte("v1"))
	require.NoError(t, err)
	e.Stop(ctx)

	e2 := startEngine(t, cfg)
	require.Equal(t, []uint64{1, 3}, seqsOf(scanAll(t, e2, "D", "")))
	kv2, err := e2.KV(ctx, KVConfig{Bucket: "meta"})
	require.NoError(t, err)
	ent, err := kv2.Get(ctx, "q.one")
	require.NoError(t, err)
	require.Equal(t, []byte("v1"), ent.Value)

	// The old bucket handle belongs to the stopped run.
	_, err = kv.Get(ctx, "q.one")
	require.ErrorIs(t, err, ErrStopped)
}
