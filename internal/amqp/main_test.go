package amqp_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/amqp"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

// testLogger discards logs unless HERALD_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("HERALD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// bundle is what setup returns besides the server.
type bundle struct {
	b    *broker.Broker
	eng  *engine.Engine
	addr string // host:port of the AMQP listener
	url  string // amqp://guest:guest@addr/
	stop func() // stops server, broker and engine now (also done when the test ends)
}

// setup starts an embedded engine, a broker and an AMQP server on a random
// loopback port, all stopped when the test ends.
func setup(t testing.TB, mods ...func(*amqp.Config)) (*amqp.Server, *bundle) {
	t.Helper()
	return setupAt(t, t.TempDir(), mods...)
}

// setupAt is setup on the data directory dir: a restart is bundle.stop, then
// setupAt on the same directory.
func setupAt(t testing.TB, dir string, mods ...func(*amqp.Config)) (*amqp.Server, *bundle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	log := testLogger()
	eng, err := engine.New(engine.Config{DataDir: dir, Logger: log})
	require.NoError(t, err)
	require.NoError(t, eng.Start(ctx))
	b, err := broker.New(broker.Config{Engine: eng, Logger: log})
	require.NoError(t, err)
	require.NoError(t, b.Start(ctx))
	cfg := amqp.Config{Broker: b, Logger: log}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := amqp.NewServer(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start(ctx, "127.0.0.1:0"))
	stop := sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		srv.Stop(ctx)
		b.Stop(ctx)
		eng.Stop(ctx)
	})
	t.Cleanup(stop)
	addr := srv.Addrs()[0].String()
	return srv, &bundle{b: b, eng: eng, addr: addr, url: "amqp://guest:guest@" + addr + "/", stop: stop}
}

// dial connects a client and closes it when the test ends.
func dial(t *testing.T, url string) *amqp091.Connection {
	t.Helper()
	conn, err := amqp091.DialConfig(url, amqp091.Config{Heartbeat: 10 * time.Second, Properties: amqp091.Table{"connection_name": t.Name()}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// channel opens a channel on a new connection.
func channel(t *testing.T, url string) (*amqp091.Connection, *amqp091.Channel) {
	t.Helper()
	conn := dial(t, url)
	ch, err := conn.Channel()
	require.NoError(t, err)
	return conn, ch
}

// recv waits for the next delivery.
func recv(t *testing.T, ds <-chan amqp091.Delivery) amqp091.Delivery {
	t.Helper()
	select {
	case d, ok := <-ds:
		require.True(t, ok, "delivery channel closed")
		return d
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no delivery within 10s")
		return amqp091.Delivery{}
	}
}

// noDelivery checks that nothing arrives for a short while.
func noDelivery(t *testing.T, ds <-chan amqp091.Delivery, within time.Duration) {
	t.Helper()
	select {
	case d := <-ds:
		require.FailNow(t, "unexpected delivery", "body %q key %q", d.Body, d.RoutingKey)
	case <-time.After(within):
	}
}

// publish publishes a text body.
func publish(t *testing.T, ch *amqp091.Channel, exchange, key, body string, mods ...func(*amqp091.Publishing)) {
	t.Helper()
	p := amqp091.Publishing{Body: []byte(body)}
	for _, m := range mods {
		m(&p)
	}
	require.NoError(t, ch.PublishWithContext(bg, exchange, key, false, false, p))
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "condition not met within 10s: "+msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// amqpErr extracts the *amqp091.Error of err.
func amqpErr(t *testing.T, err error) *amqp091.Error {
	t.Helper()
	require.Error(t, err)
	var e *amqp091.Error
	require.ErrorAs(t, err, &e)
	return e
}

var _ net.Conn // keep net imported for helpers in other files
