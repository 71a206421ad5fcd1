package engine

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// Run: timeout 900 go test -run x -bench 'Append|Delete|Scan' -benchtime 2s ./internal/engine
// The 10k-streams baseline is separate: -bench Raw10kStreams -benchtime 1x.

const benchMsgSize = 128

func benchEngine(b *testing.B) *Engine {
	b.Helper()
	e := setup(b)
	ensureLog(b, e, "B")
	return e
}

func reportRate(b *testing.B, msgs int, d time.Duration) {
	b.ReportMetric(float64(msgs)/d.Seconds(), "msgs/s")
}

// fill appends n messages to B.x without timing them.
func fill(b *testing.B, e *Engine, n int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	data := make([]byte, benchMsgSize)
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		require.NoError(b, e.AppendAsync("B.x", data, func(_ uint64, err error) {
			if err != nil {
				panic(err)
			}
			wg.Done()
		}))
	}
	wg.Wait()
}

// BenchmarkAppendAsync compares AppendAsync (ordered acks, bounded window)
// with raw jetstream PublishAsync on the same connection.
func BenchmarkAppendAsync(b *testing.B) {
	data := make([]byte, benchMsgSize)
	b.Run("engine", func(b *testing.B) {
		e := benchEngine(b)
		b.ReportAllocs()
		var acked atomic.Int64
		done := make(chan struct{})
		n := int64(b.N)
		start := time.Now()
		b.ResetTimer()
		for range b.N {
			err := e.AppendAsync("B.x", data, func(_ uint64, err error) {
				if err != nil {
					panic(err)
				}
				if acked.Add(1) == n {
					close(done)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		<-done
		b.StopTimer()
		reportRate(b, b.N, time.Since(start))
	})
	b.Run("raw-jetstream", func(b *testing.B) {
		e := benchEngine(b)
		r := e.cur.Load()
		js, err := jetstream.New(r.nc, jetstream.WithPublishAsyncMaxPending(defaultMaxPending))
		require.NoError(b, err)
		b.ReportAllocs()
		start := time.Now()
		b.ResetTimer()
		for range b.N {
			if _, err := js.PublishAsync("B.x", data); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		b.StopTimer()
		reportRate(b, b.N, time.Since(start))
	})
}

func BenchmarkAppend(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	data := make([]byte, benchMsgSize)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		if _, err := e.Append(ctx, "B.x", data); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, b.N, time.Since(start))
}

// waitEmpty polls until log B holds no message.
func waitEmpty(b *testing.B, e *Engine) {
	r := e.cur.Load()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		info, err := r.streamInfo(context.Background(), "B")
		require.NoError(b, err)
		if info.State.Msgs == 0 {
			return
		}
		<-t.C
	}
}

// BenchmarkDelete measures one delete per op: synchronous Delete, and
// DeleteAsync with acks in order (coalesced into purges) and in random order
// (pipelined single deletes).
func BenchmarkDelete(b *testing.B) {
	b.Run("sync", func(b *testing.B) {
		e := benchEngine(b)
		fill(b, e, b.N)
		ctx := context.Background()
		b.ReportAllocs()
		start := time.Now()
		b.ResetTimer()
		for i := range b.N {
			if err := e.Delete(ctx, "B", uint64(i+1)); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportRate(b, b.N, time.Since(start))
	})
	for _, order := range []string{"async-in-order", "async-random"} {
		b.Run(order, func(b *testing.B) {
			e := benchEngine(b)
			fill(b, e, b.N)
			seqs := make([]uint64, b.N)
			for i := range seqs {
				seqs[i] = uint64(i + 1)
			}
			if order == "async-random" {
				rand.Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
			}
			b.ReportAllocs()
			start := time.Now()
			b.ResetTimer()
			for _, s := range seqs {
				e.DeleteAsync("B", s)
			}
			waitEmpty(b, e)
			b.StopTimer()
			reportRate(b, b.N, time.Since(start))
		})
	}
}

// BenchmarkScan reads a 100k-message log per op.
func BenchmarkScan(b *testing.B) {
	const n = 100_000
	e := benchEngine(b)
	fill(b, e, n)
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		count := 0
		if _, err := e.Scan(ctx, "B", "", 0, func(Msg) error { count++; return nil }); err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("scanned %d, want %d", count, n)
		}
	}
	b.StopTimer()
	reportRate(b, n*b.N, time.Since(start))
}
