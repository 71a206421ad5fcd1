package engine

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/procstat"
)

// BenchmarkRaw10kStreams is the baseline Herald must beat: raw JetStream
// (no Herald code) with one file-stored stream plus one durable consumer per
// queue, 10,000 queues (HERALD_BENCH_STREAMS overrides), one message each.
// It measures setup, memory, shutdown and restart (recovery) of the embedded
// server. It runs once whatever b.N is:
//
//	timeout 1800 go test -run x -bench Raw10kStreams -benchtime 1x ./internal/engine
func BenchmarkRaw10kStreams(b *testing.B) {
	n := 10_000
	if v := os.Getenv("HERALD_BENCH_STREAMS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err, "HERALD_BENCH_STREAMS")
	}
	dir := b.TempDir()
	ctx := context.Background()
	b.ResetTimer()

	t0 := time.Now()
	srv, nc := rawServer(b, dir)
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 { // a few API requests in flight
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				name := fmt.Sprintf("q%05d", i)
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"q." + name}}); err != nil {
					errs <- err
					return
				}
				if _, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
					errs <- err
					return
				}
				if _, err := js.Publish(ctx, "q."+name, make([]byte, benchMsgSize)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	create := time.Since(t0)
	rss1, goroutines1 := rssMiB(b), runtime.NumGoroutine()

	nc.Close()
	t0 = time.Now()
	srv.Shutdown()
	srv.WaitForShutdown()
	shutdown1 := time.Since(t0)

	t0 = time.Now()
	srv, nc = rawServer(b, dir)
	restart := time.Since(t0)
	js, err = jetstream.New(nc)
	require.NoError(b, err)
	info, err := js.AccountInfo(ctx)
	require.NoError(b, err)
	require.Equal(b, n, info.Streams, "streams recovered")
	require.Equal(b, n, info.Consumers, "consumers recovered")
	rss2, goroutines2 := rssMiB(b), runtime.NumGoroutine()

	nc.Close()
	t0 = time.Now()
	srv.Shutdown()
	srv.WaitForShutdown()
	shutdown2 := time.Since(t0)
	b.StopTimer()

	b.ReportMetric(float64(n), "streams")
	b.ReportMetric(create.Seconds(), "create-s")
	b.ReportMetric(rss1, "rss-MiB")
	b.ReportMetric(float64(goroutines1), "goroutines")
	b.ReportMetric(shutdown1.Seconds(), "shutdown-s")
	b.ReportMetric(restart.Seconds(), "restart-s")
	b.ReportMetric(rss2, "rss-after-restart-MiB")
	b.ReportMetric(float64(goroutines2), "goroutines-after-restart")
	b.ReportMetric(shutdown2.Seconds(), "shutdown-after-restart-s")
}

// rawServer starts a plain embedded JetStream server on dir and connects.
func rawServer(b *testing.B, dir string) (*server.Server, *nats.Conn) {
	b.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "raw", JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true,
	})
	require.NoError(b, err)
	srv.SetLoggerV2(serverLogger{testLogger(b)}, false, false, false)
	srv.Start()
	require.True(b, srv.ReadyForConnections(5*time.Minute), "server ready")
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	require.NoError(b, err)
	return srv, nc
}

// rssMiB is this process's resident set size.
func rssMiB(b *testing.B) float64 {
	b.Helper()
	v, err := procstat.RSSMiB()
	require.NoError(b, err)
	return v
}
