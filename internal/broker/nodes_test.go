package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
)

// syncBuffer collects the log lines of several nodes, to show on failure.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// servers returns the nodes (indexes) that serve queue, and how many
// messages the first of them holds.
func servers(brokers []*broker.Broker, queue string) (idx []int, messages int) {
	for i, b := range brokers {
		if b != nil && b.ServesQueue("/", queue) {
			if len(idx) == 0 {
				q, _ := b.Queue("/", queue)
				messages = q.Messages
			}
			idx = append(idx, i)
		}
	}
	return idx, messages
}

// waitServed waits up to within for queue to be served by exactly one
// node, holding want messages, and returns that node.
func waitServed(t *testing.T, brokers []*broker.Broker, queue string, want int, within time.Duration) []int {
	t.Helper()
	var idx []int
	var n int
	eventuallyDescribed(t, within, func() bool { idx, n = servers(brokers, queue); return len(idx) == 1 && n == want },
		func() string {
			return fmt.Sprintf("queue %s: not served by exactly one node with %d messages after %v: served by %v, %d messages", queue, want, within, idx, n)
		})
	return idx
}

// failoverCluster starts three nodes with NodeTimeout timeout and, through
// node A, six queues of three messages each and a delayed message due in
// 5 s for the first queue. gained lists, per queue, the nodes whose
// WatchServing reported it.
func failoverCluster(t *testing.T, ctx context.Context, timeout time.Duration) (brokers []*broker.Broker, engines []*engine.Engine, queues []string, gained func(q string) []int) {
	t.Helper()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker logs:\n%s", logs.String())
		}
	})
	started := 0 // the nodes start one after another
	brokers, engines = startClusterNodes(t, ctx, 3, func(c *broker.Config) {
		c.NodeTimeout = timeout
		c.Logger = slog.New(slog.NewTextHandler(logs, nil)).With("node", string(rune('A'+started)))
		started++
	})
	a := brokers[0]
	var mu sync.Mutex
	got := map[string][]int{}
	for i, br := range brokers {
		t.Cleanup(br.WatchServing(func(_, queue string) {
			mu.Lock()
			got[queue] = append(got[queue], i)
			mu.Unlock()
		}))
	}
	_, err := a.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "later", Type: broker.Delayed, Durable: true,
		Arguments: broker.Table{"x-delayed-type": broker.Direct}}, false)
	require.NoError(t, err)
	queues = make([]string, 6)
	for i := range queues {
		queues[i] = fmt.Sprintf("fo-%d", i)
		_, err := a.DeclareQueue(ctx, "/", broker.QueueSpec{Name: queues[i], Durable: true}, false)
		require.NoError(t, err)
		require.NoError(t, a.Bind(ctx, "/", broker.Binding{Source: "later", Destination: queues[i], RoutingKey: queues[i]}))
		for j := range 3 {
			_, err := a.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "", RoutingKey: queues[i],
				Message: &broker.Message{Body: []byte(fmt.Sprint(j))}})
			require.NoError(t, err)
		}
	}
	for _, q := range queues {
		require.True(t, a.ServesQueue("/", q), "node A serves %s", q)
		waitServed(t, brokers, q, 3, 30*time.Second)
	}
	eventually(t, func() bool { return len(a.Nodes()) == 3 }, "the nodes do not see each other")
	// Due after the node goes away (the tests stop it at once), so a
	// survivor adopts and fires it.
	_, err = a.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "later", RoutingKey: queues[0],
		Message: &broker.Message{Properties: broker.Properties{Headers: broker.Table{"x-delay": int64(5000)}}, Body: []byte("late")}})
	require.NoError(t, err)
	return brokers, engines, queues, func(q string) []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), got[q]...)
	}
}

// requireTakenOver checks that each queue is served by exactly one of the
// surviving nodes, which WatchServing reported, with its messages (and the
// delayed one in the first queue, adopted and fired by a survivor).
func requireTakenOver(t *testing.T, brokers []*broker.Broker, queues []string, gained func(string) []int) {
	t.Helper()
	per := map[int]int{}
	for i, q := range queues {
		want := 3
		if i == 0 {
			want = 4
		}
		// Generous: the logs led by the node that went away elect new
		// leaders first (seconds; 10-25 s from the node's death to the last
		// queue measured here on an idle machine), and CI runs every
		// package at once.
		idx := waitServed(t, brokers, q, want, 60*time.Second)
		require.Equal(t, idx, gained(q), "WatchServing reported %s on its new server only", q)
		per[idx[0]]++
	}
	t.Logf("queues taken over per node: %v", per)
}

// TestClusterFailoverOnStop: a node that stops hands its queues and delayed
// messages over at once (well before NodeTimeout, here a minute), each
// queue to exactly one of the other nodes.
func TestClusterFailoverOnStop(t *testing.T) {
	// Not parallel: the failover tests time heartbeats, which a machine
	// starting several clusters at once delays by seconds.
	ctx, cancel := context.WithTimeout(bg, 150*time.Second)
	defer cancel()
	brokers, engines, queues, gained := failoverCluster(t, ctx, time.Minute)
	a := brokers[0]
	brokers[0] = nil
	a.Stop(ctx)
	engines[0].Stop(ctx)
	requireTakenOver(t, brokers, queues, gained)
}

// TestClusterFailoverOnSilence: a node that dies without a word (its engine
// stops: no more heartbeats, nothing deleted) is taken over once
// NodeTimeout has passed, not before.
func TestClusterFailoverOnSilence(t *testing.T) {
	// Not parallel, like TestClusterFailoverOnStop. The timeout leaves room
	// for heartbeats (every timeout/5) delayed by a loaded machine: at 2 s,
	// go test -count=3 ./... saw nodes taken for down during the setup.
	ctx, cancel := context.WithTimeout(bg, 150*time.Second)
	defer cancel()
	const timeout = 4 * time.Second
	brokers, engines, queues, gained := failoverCluster(t, ctx, timeout)
	a := brokers[0]
	died := time.Now()
	engines[0].Stop(ctx)
	brokers[0] = nil
	t.Cleanup(func() { a.Stop(bg) }) // its broker runs on, cut off
	eventuallyWithin(t, 30*time.Second, func() bool { idx, _ := servers(brokers, queues[1]); return len(idx) == 1 }, "not taken over")
	require.GreaterOrEqual(t, time.Since(died), timeout-timeout/5, "taken over before the node timeout (from the last heartbeat, at most NodeTimeout/5 before)")
	requireTakenOver(t, brokers, queues, gained)
	eventually(t, func() bool { return slices.Equal(brokers[1].Nodes(), []string{"node-b", "node-c"}) }, "node B should see B and C live")
}

// A node whose own heartbeats stop coming back restarts its watch and sees
// them again, and stops cleanly right after another restart of it. (Stop
// once read the watch's stop function before the heartbeat loop ended,
// which rewatch replaces: a data race CI's -race run caught once in
// TestClusterFailover; this test exercises the path but does not reliably
// reproduce that interleaving.)
func TestRewatchThenStop(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker logs:\n%s", logs.String())
		}
	})
	brokers, _ := startClusterNodes(t, ctx, 3, func(c *broker.Config) {
		c.NodeTimeout = 2 * time.Second
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	a := brokers[0]
	rewatch := func(n int) {
		require.Eventually(t, func() bool {
			if strings.Count(logs.String(), "watching the nodes again") >= n {
				return true
			}
			a.StaleOwnHeartbeats() // again: a heartbeat already on its way is seen
			return false
		}, 30*time.Second, time.Millisecond, "no rewatch")
	}
	rewatch(1)
	staled := time.Now()
	require.Eventually(t, func() bool { return a.OwnHeartbeatSeen().After(staled) },
		30*time.Second, 10*time.Millisecond, "own heartbeats not seen after the rewatch")
	rewatch(2)
	a.Stop(ctx)
}
