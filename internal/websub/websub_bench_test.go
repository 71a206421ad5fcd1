package websub

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
)

// BenchmarkDistribution measures the hub's fan-out end to end: one event
// published to a topic's exchange, delivered by HTTP POST to every
// subscriber (each its own webhook subscription and queue). ns/op is per
// published event; deliveries/s counts POSTs. 10,000 subscribers are not
// run: creating them (queues, bindings, records) alone takes minutes here.
func BenchmarkDistribution(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { benchDistribution(b, n) })
	}
}

func benchDistribution(b *testing.B, subscribers int) {
	e := setup(b, func(c *Config) { c.MaxSubscriptionsPerTopic = subscribers })
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	topic := "https://bench.example/feed"
	ctx := context.Background()
	for i := range subscribers {
		err := e.hub.subscribe(ctx, request{mode: "subscribe", topic: topic, callback: srv.URL + "/cb?n=" + strconv.Itoa(i),
			hubURL: e.hubURL, lease: time.Hour})
		require.NoError(b, err)
	}
	msg := &broker.Message{Properties: broker.Properties{ContentType: "application/json"}, Body: []byte(`{"post":"benchmark"}`)}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		_, err := e.broker.Publish(ctx, broker.Publishing{VHost: "/", Exchange: TopicExchange(topic), Message: msg})
		require.NoError(b, err)
	}
	want := int64(b.N * subscribers)
	deadline := time.Now().Add(5 * time.Minute)
	for got.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries after 5 minutes", got.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(want)/time.Since(start).Seconds(), "deliveries/s")
}
