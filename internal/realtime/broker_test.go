package realtime

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
)

// withBroker starts a real embedded engine and broker for one test and
// returns a setup option that makes the realtime server use it. The broker
// is stopped after the realtime server (cleanups run last-in first-out).
func withBroker(t *testing.T) (func(*Config), *broker.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := testLogger(t)
	eng, err := engine.New(engine.Config{DataDir: t.TempDir(), Logger: log})
	require.NoError(t, err)
	require.NoError(t, eng.Start(ctx))
	br, err := broker.New(broker.Config{Engine: eng, Logger: log})
	require.NoError(t, err)
	require.NoError(t, br.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		br.Stop(ctx)
		eng.Stop(ctx)
	})
	return func(c *Config) { c.Broker = br }, br
}

func publishAMQP(t *testing.T, br *broker.Broker, channel, event, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := br.Publish(ctx, broker.Publishing{
		VHost: "/", Exchange: ExchangeName(testApp.ID), RoutingKey: channel,
		Message: &broker.Message{Properties: broker.Properties{Headers: broker.Table{"event": event}}, Body: []byte(body)},
	})
	require.NoError(t, err)
	require.True(t, res.Routed)
}

// bindQueue declares a queue bound to the app's exchange, as an AMQP
// consumer would.
func bindQueue(t *testing.T, br *broker.Broker, name, pattern string) {
	t.Helper()
	ctx := context.Background()
	_, err := br.DeclareQueue(ctx, "/", broker.QueueSpec{Name: name}, false)
	require.NoError(t, err)
	require.NoError(t, br.Bind(ctx, "/", broker.Binding{Source: ExchangeName(testApp.ID), Destination: name, RoutingKey: pattern}))
}

func getOne(t *testing.T, br *broker.Broker, queue string) *broker.Delivery {
	t.Helper()
	var d *broker.Delivery
	waitFor(t, "a message in "+queue, func() bool {
		var err error
		d, err = br.Get(context.Background(), "/", queue, true, "")
		require.NoError(t, err)
		return d != nil
	})
	return d
}

func TestBrokerPublishReachesClients(t *testing.T) {
	t.Parallel()
	opt, br := withBroker(t)
	b := setup(t, opt)
	c := dial(t, b)
	c.subscribe("orders.eu", nil)
	publishAMQP(t, br, "orders.eu", "order_created", `{"id":42}`)
	m := c.expect("order_created", "orders.eu")
	require.JSONEq(t, `{"id":42}`, m.str())

	// Without an event header the message is dropped (counted), not delivered.
	ctx := context.Background()
	_, err := br.Publish(ctx, broker.Publishing{VHost: "/", Exchange: ExchangeName(testApp.ID), RoutingKey: "orders.eu",
		Message: &broker.Message{Body: []byte("x")}})
	require.NoError(t, err)
	waitFor(t, "drop counted", func() bool { return b.srv.Stats().Dropped == 1 })
	c.quiet(20 * time.Millisecond)
}

func TestBrokerTriggersReachAMQPConsumers(t *testing.T) {
	t.Parallel()
	opt, br := withBroker(t)
	b := setup(t, opt)
	bindQueue(t, br, "audit", "orders.#")
	a, o := dial(t, b), dial(t, b)
	a.subscribe("orders.eu", nil)
	b.trigger(t, "orders.eu", "shipped", `{"id":1}`)
	require.JSONEq(t, `{"id":1}`, a.expect("shipped", "orders.eu").str())
	d := getOne(t, br, "audit")
	require.Equal(t, "orders.eu", d.RoutingKey)
	require.Equal(t, "shipped", d.Message.Properties.Headers["event"])
	require.JSONEq(t, `{"id":1}`, string(d.Message.Body))

	// Client events go through the exchange too, with the sender's socket id.
	bindQueue(t, br, "chat-log", "private-chat")
	a.subscribePrivate(b.app, "private-chat")
	o.subscribePrivate(b.app, "private-chat")
	a.send("client-msg", map[string]any{"t": "hi"}, "private-chat")
	require.JSONEq(t, `{"t":"hi"}`, o.expect("client-msg", "private-chat").str())
	d = getOne(t, br, "chat-log")
	require.Equal(t, "client-msg", d.Message.Properties.Headers["event"])
	require.Equal(t, a.socketID, d.Message.Properties.Headers[headerSocketID])
	a.send("pusher:ping", nil, "")
	a.expect("pusher:pong", "") // the sender did not get its own event back
}

func TestBrokerNodeQueueReleasedOnStop(t *testing.T) {
	t.Parallel()
	opt, br := withBroker(t)
	b := setup(t, opt)
	nodeQueues := func() int {
		n := 0
		for _, q := range br.Queues("/") {
			if strings.HasPrefix(q.Name, ExchangeName(testApp.ID)+".node.") {
				n++
				require.True(t, q.Exclusive)
				require.False(t, q.Durable)
			}
		}
		return n
	}
	require.Equal(t, 1, nodeQueues())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.srv.Stop(ctx)
	waitFor(t, "node queue deleted", func() bool { return nodeQueues() == 0 })
	_, err := br.Exchange("/", ExchangeName(testApp.ID))
	require.NoError(t, err, "the app exchange stays (durable), with the AMQP side's bindings")
}

func TestBrokerListsConnections(t *testing.T) {
	t.Parallel()
	opt, br := withBroker(t)
	b := setup(t, opt)
	c := dial(t, b)
	c.subscribe("x", nil)
	var name string
	waitFor(t, "connection listed", func() bool {
		for _, ci := range br.Connections() {
			if ci.Protocol == "Pusher 7" && ci.ClientProperties["socket_id"] == c.socketID && ci.Channels == 1 {
				name = ci.Name
				return true
			}
		}
		return false
	})
	require.NoError(t, br.CloseConnection(name, "closed by test"))
	require.Equal(t, websocket.StatusCode(codeClosedByAdmin), c.closeStatus())
	waitFor(t, "connection unlisted", func() bool {
		for _, ci := range br.Connections() {
			if ci.Name == name {
				return false
			}
		}
		return true
	})
}

// TestNodeClientsThroughBroker: an AMQP-side publish reaches pusher-js.
func TestNodeClientsThroughBroker(t *testing.T) {
	t.Parallel()
	requireNode(t)
	opt, br := withBroker(t)
	b := setup(t, opt)
	b.mux.HandleFunc("GET /test/publish", func(w http.ResponseWriter, r *http.Request) {
		publishAMQP(t, br, "orders.eu", "order_created", `{"id":42}`)
	})
	runNode(t, b, "broker", "HERALD_HOOK="+b.base+"/test/publish")
	// And every Node scenario works unchanged when events go through the broker.
	for _, sc := range []string{"private", "clientEvents", "trigger", "sse"} {
		t.Run(sc, func(t *testing.T) {
			t.Parallel()
			opt, _ := withBroker(t)
			runNode(t, setup(t, opt), sc)
		})
	}
}
