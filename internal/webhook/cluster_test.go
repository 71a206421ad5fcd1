package webhook

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/engine/enginetest"
	"github.com/heraldhq/herald/internal/errs"
)

// clusterNode is one node of a test cluster: engine, broker and service.
type clusterNode struct {
	eng *engine.Engine
	b   *broker.Broker
	s   *Service
}

// startCluster starts n clustered nodes in one process, with the topic
// exchange "events" declared, and stops them at the end of the test. mods
// change each service before it starts.
func startCluster(t *testing.T, ctx context.Context, n int, mods ...func(*Service)) []*clusterNode {
	t.Helper()
	engines := enginetest.StartCluster(t, ctx, n, quiet)
	nodes := make([]*clusterNode, n)
	t.Cleanup(func() { // before the engines stop
		var wg sync.WaitGroup
		for _, nd := range nodes {
			if nd != nil {
				wg.Go(func() {
					nd.s.Stop(bg)
					nd.b.Stop(bg)
				})
			}
		}
		wg.Wait()
	})
	for i, eng := range engines { // one after another: the first creates the defaults
		b, err := broker.New(broker.Config{Engine: eng, Logger: quiet})
		require.NoError(t, err)
		require.NoError(t, b.Start(ctx))
		s, err := New(Config{Broker: b, Logger: quiet, AllowPrivate: loopback})
		require.NoError(t, err)
		for _, m := range mods {
			m(s)
		}
		nodes[i] = &clusterNode{eng: eng, b: b, s: s}
		require.NoError(t, s.Start(ctx))
	}
	_, err := nodes[0].b.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "events", Type: broker.Topic, Durable: true}, false)
	require.NoError(t, err)
	return nodes
}

// TestClusterSubscriptionOnAServedEverywhere: a subscription created through
// node A is known to node C without a restart (listing, deliveries,
// update, delete), exactly one node delivers its events, and deleting it
// through C stops A's dispatcher without A re-creating the queues.
func TestClusterSubscriptionOnAServedEverywhere(t *testing.T) {
	// Not parallel: three-node clusters starting side by side on two cores
	// took over a minute to elect their leaders under go test -count=3.
	ctx, cancel := context.WithTimeout(bg, 120*time.Second)
	defer cancel()
	nodes := startCluster(t, ctx, 3)
	a, c := nodes[0], nodes[2]
	sk1, sk2 := newSink(t, always(200)), newSink(t, always(200))
	sub, err := a.s.Create(ctx, Spec{URL: sk1.ts.URL, Exchange: "events", BindingKey: "c.#"})
	require.NoError(t, err)
	eventually(t, func() bool { _, ok := c.s.Get(sub.ID); return ok }, "subscription did not reach node C")

	publish := func(body string) {
		t.Helper()
		res, err := c.b.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "c.x",
			Message: &broker.Message{Properties: broker.Properties{MessageID: body}, Body: []byte(`"` + body + `"`)}})
		require.NoError(t, err)
		require.True(t, res.Routed)
	}
	publish("one")
	sk1.waitReqs(t, 1)
	eventually(t, func() bool {
		att, err := c.s.Deliveries(ctx, sub.ID)
		return err == nil && len(att) == 1 && att[0].Outcome == outcomeDelivered
	}, "node C does not list node A's attempt")

	// Update through C: A's dispatcher follows.
	_, err = c.s.Update(ctx, sub.ID, Spec{URL: sk2.ts.URL, Exchange: "events", BindingKey: "c.#", Secret: sub.Secret})
	require.NoError(t, err)
	eventually(t, func() bool { got, _ := a.s.Get(sub.ID); return got.URL == sk2.ts.URL }, "update did not reach node A")
	publish("two")
	sk2.waitReqs(t, 1)
	quietPeriod(300 * time.Millisecond)
	require.Len(t, sk1.got(), 1, "one delivery per event: a single node serves the queue")
	require.Len(t, sk2.got(), 1, "one delivery per event: a single node serves the queue")

	// Delete through C: A stops, and nobody re-creates the queues.
	require.NoError(t, c.s.Delete(ctx, sub.ID))
	eventually(t, func() bool { _, ok := a.s.Get(sub.ID); return !ok }, "delete did not reach node A")
	quietPeriod(300 * time.Millisecond)
	for _, nd := range nodes {
		_, err := nd.b.Queue("/", queueName(sub.ID))
		require.True(t, errs.Is(err, errs.NotFound), "queue re-created: %v", err)
	}
	att, err := a.b.JournalRead(ctx, deliveriesJournal, sub.ID, 0)
	require.NoError(t, err)
	require.Empty(t, att, "history deleted")
}

// TestClusterFailover: the node serving a subscription's queue stops while
// events are pending: one in flight, two queued, one waiting in the delay
// log for its retry. Another node takes the queue (and the delayed retry)
// over and delivers them and the events published afterwards: none is lost.
// Duplicates (same webhook-id) are allowed; the test counts them.
func TestClusterFailover(t *testing.T) {
	// Not parallel, like TestClusterSubscriptionOnAServedEverywhere.
	ctx, cancel := context.WithTimeout(bg, 90*time.Second)
	defer cancel()
	nodes := startCluster(t, ctx, 3, func(s *Service) { s.jitter = func(ceil time.Duration) time.Duration { return ceil } })
	a, c := nodes[0], nodes[2]

	var mu sync.Mutex
	ok := map[string]int{}       // event -> 2xx answers
	attempts := map[string]int{} // event -> requests
	var hold atomic.Bool
	inFlight := make(chan struct{}, 100)
	sk := newSink(t, func(_ int, r *http.Request) int {
		ev := r.Header.Get("webhook-id")
		mu.Lock()
		attempts[ev]++
		first := attempts[ev] == 1
		mu.Unlock()
		switch {
		case hold.Load():
			inFlight <- struct{}{}
			<-r.Context().Done() // the attempt is cut when node A stops
			return http.StatusServiceUnavailable
		case ev == idOf("r1") && first:
			return http.StatusServiceUnavailable // retried through the delay log
		}
		mu.Lock()
		ok[ev]++
		mu.Unlock()
		return http.StatusOK
	})
	sub, err := a.s.Create(ctx, Spec{URL: sk.ts.URL, Exchange: "events", BindingKey: "f.#", Concurrency: 1,
		BackoffInitial: 4 * time.Second, BackoffMax: 4 * time.Second})
	require.NoError(t, err)
	for _, nd := range nodes[1:] {
		eventually(t, func() bool { _, ok := nd.s.Get(sub.ID); return ok }, "subscription did not reach every node")
	}
	require.True(t, a.b.ServesQueue("/", queueName(sub.ID)), "node A serves the queue it created")

	publish := func(names ...string) {
		t.Helper()
		for _, n := range names {
			res, err := c.b.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "f.x",
				Message: &broker.Message{Properties: broker.Properties{MessageID: n}, Body: []byte(`"` + n + `"`)}})
			require.NoError(t, err)
			require.True(t, res.Routed)
		}
	}
	publish("b1", "b2", "r1")
	sk.waitReqs(t, 3)
	eventually(t, func() bool { // r1's retry is stored in the delay log
		qi, err := a.b.Queue("/", queueName(sub.ID))
		return err == nil && qi.Messages == 0
	}, "r1 not retried through the delay log")
	hold.Store(true)
	publish("p1", "p2", "p3")
	<-inFlight // p1 is in flight on node A, p2 and p3 wait

	// Stop node A (service, broker, engine) as on SIGTERM: the attempt in
	// flight is cut after a short drain, before r1's retry is due.
	nodes[0] = nil
	stopCtx, stopCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	a.s.Stop(stopCtx)
	stopCancel()
	hold.Store(false)
	a.b.Stop(ctx)
	a.eng.Stop(ctx)
	mu.Lock()
	require.Zero(t, ok[idOf("r1")], "r1's retry was due before node A stopped: the backoff is too short for this test")
	mu.Unlock()
	publish("n1", "n2", "n3")

	want := []string{"b1", "b2", "r1", "p1", "p2", "p3", "n1", "n2", "n3"}
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, n := range want {
			if ok[idOf(n)] == 0 {
				out = append(out, n)
			}
		}
		return out
	}
	deadline := time.Now().Add(45 * time.Second) // a log led by node A elects a new leader first
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling
	}
	require.Empty(t, missing(), "events not delivered after node A stopped")
	quietPeriod(300 * time.Millisecond)
	mu.Lock()
	dups := 0
	for _, n := range want {
		dups += ok[idOf(n)] - 1
	}
	mu.Unlock()
	t.Logf("%d events delivered, %d duplicate deliveries (same webhook-id)", len(want), dups)
	b := nodes[1]
	require.NotEqual(t, b.b.ServesQueue("/", queueName(sub.ID)), c.b.ServesQueue("/", queueName(sub.ID)),
		"exactly one surviving node serves the queue")
	att, err := c.s.Deliveries(ctx, sub.ID)
	require.NoError(t, err)
	require.Equal(t, outcomeDelivered, att[0].Outcome)
}

// idOf is the webhook-id of the test events, published with message-id name
// to the exchange events with routing key f.x.
func idOf(name string) string {
	return webhookID("/", "events", "f.x", &broker.Message{Properties: broker.Properties{MessageID: name}})
}
