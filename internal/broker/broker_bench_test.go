package broker_test

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/procstat"
)

// BenchmarkPublishConsume: 128-byte messages published asynchronously into
// a durable queue and consumed with acks (prefetch 200), end to end through
// the broker core. Compare with the engine's raw JetStream benchmarks
// (BenchmarkAppendAsync/raw-jetstream in internal/engine) run in the same
// invocation.
func BenchmarkPublishConsume(b *testing.B) {
	br, eng := start(&testing.T{}, b.TempDir(), nil)
	defer stop(br, eng)
	_, err := br.DeclareQueue(bg, "/", broker.QueueSpec{Name: "bench", Durable: true}, false)
	require.NoError(b, err)
	body := make([]byte, 128)
	var got sync.WaitGroup
	got.Add(b.N)
	c, err := br.Consume(bg, "/", "bench", broker.ConsumeOptions{Prefetch: 200, Deliver: func(d *broker.Delivery) {
		_ = d.Ack()
		got.Done()
	}})
	require.NoError(b, err)
	defer c.Cancel()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		_, err := br.PublishAsync(broker.Publishing{VHost: "/", RoutingKey: "bench", Message: &broker.Message{Body: body}}, func(error) {})
		if err != nil {
			b.Fatal(err)
		}
	}
	got.Wait()
}

// BenchmarkTopicFanout routes one publish to N queues through a topic
// exchange (stored once per queue) with no consumers.
func BenchmarkTopicFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("queues=%d", n), func(b *testing.B) {
			br, eng := start(&testing.T{}, b.TempDir(), func(c *broker.Config) { c.MemoryBudget = 1 << 30 })
			defer stop(br, eng)
			_, err := br.DeclareExchange(bg, "/", broker.ExchangeSpec{Name: "t", Type: broker.Topic}, false)
			require.NoError(b, err)
			for i := range n {
				q := fmt.Sprintf("q%d", i)
				_, err := br.DeclareQueue(bg, "/", broker.QueueSpec{Name: q, Durable: true}, false)
				require.NoError(b, err)
				require.NoError(b, br.Bind(bg, "/", broker.Binding{Source: "t", Destination: q, RoutingKey: "a.*.c"}))
			}
			body := make([]byte, 128)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				wg.Add(1)
				_, err := br.PublishAsync(broker.Publishing{VHost: "/", Exchange: "t", RoutingKey: "a.b.c", Message: &broker.Message{Body: body}}, func(error) { wg.Done() })
				if err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "stored/s")
		})
	}
}

// BenchmarkQueues10k declares 10,000 durable queues holding one message
// each, then measures a graceful shutdown, a restart (metadata load and
// index rebuild), and the Go heap held by the started broker and engine.
// Run with -benchtime 1x.
func BenchmarkQueues10k(b *testing.B) {
	const n = 10_000
	for range b.N {
		dir := b.TempDir()
		br, eng := start(&testing.T{}, dir, nil)
		for i := range n {
			q := fmt.Sprintf("q%05d", i)
			_, err := br.DeclareQueue(bg, "/", broker.QueueSpec{Name: q, Durable: true}, false)
			require.NoError(b, err)
			_, err = br.PublishAsync(broker.Publishing{VHost: "/", RoutingKey: q, Message: &broker.Message{Body: []byte("x")}}, func(error) {})
			require.NoError(b, err)
		}
		eventuallyB(b, func() bool { return br.Overview().Messages == n })
		t0 := time.Now()
		stop(br, eng)
		shutdown := time.Since(t0)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		t0 = time.Now()
		br, eng = start(&testing.T{}, dir, nil)
		restart := time.Since(t0)
		require.Equal(b, n, br.Overview().Queues)
		require.Equal(b, n, br.Overview().Messages)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(shutdown.Milliseconds()), "shutdown-ms")
		b.ReportMetric(float64(restart.Milliseconds()), "restart-ms")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		debug.FreeOSMemory()
		rss, err := procstat.RSSMiB()
		require.NoError(b, err)
		b.ReportMetric(rss, "process-rss-MiB")
		stop(br, eng)
	}
}

func eventuallyB(b *testing.B, cond func() bool) {
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("condition not met")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
