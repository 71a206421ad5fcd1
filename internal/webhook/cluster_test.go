package webhook

import (
	"context"
	"sync"
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

// startCluster starts n clustered nodes in one process and stops them at
// the end of the test.
func startCluster(t *testing.T, ctx context.Context, n int) []*clusterNode {
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
		nodes[i] = &clusterNode{eng: eng, b: b, s: s}
		require.NoError(t, s.Start(ctx))
	}
	return nodes
}

// TestClusterSubscriptionOnAServedEverywhere: a subscription created through
// node A is known to node C without a restart (listing, deliveries,
// update, delete), exactly one node delivers its events, and deleting it
// through C stops A's dispatcher without A re-creating the queues.
func TestClusterSubscriptionOnAServedEverywhere(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	nodes := startCluster(t, ctx, 3)
	a, c := nodes[0], nodes[2]
	_, err := a.b.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "events", Type: broker.Topic, Durable: true}, false)
	require.NoError(t, err)
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
