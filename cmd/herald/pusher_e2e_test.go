package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// nodeScenarios is the realtime face's pusher-js scenario script, installed
// by .ci/setup.d/realtime.sh.
const nodeScenarios = "../../internal/realtime/testdata/node"

// TestAMQPPublishReachesPusherJS runs the binary as a new user would, with a
// Pusher app, and checks that an event published by a RabbitMQ client
// (amqp091-go, over the AMQP face) reaches a pusher-js subscriber: routing
// key = channel, header "event" = event name, exchange "pusher.<app id>".
func TestAMQPPublishReachesPusherJS(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: this test runs pusher-js in Node 20; install Node, then run: bash .ci/setup.d/realtime.sh")
	}
	if _, err := os.Stat(filepath.Join(nodeScenarios, "node_modules", "pusher-js", "package.json")); err != nil {
		t.Fatalf("pusher-js is missing from %s/node_modules; run: bash .ci/setup.d/realtime.sh", nodeScenarios)
	}
	bin := buildHerald(t)
	httpAddr, amqpAddr := freePort(t), freePort(t)
	n := startNode(t, bin, t.TempDir(), httpAddr, amqpAddr, "--pusher-app", "e2e:e2e-key:e2e-secret")

	conn, err := amqp.Dial("amqp://guest:guest@" + amqpAddr + "/")
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))

	// The scenario GETs this hook once pusher-js is subscribed.
	published := make(chan error, 1)
	hook := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "pusher.e2e", "orders.eu", true, false, amqp.Publishing{
			Headers:     amqp.Table{"event": "order_created"},
			ContentType: "application/json",
			Body:        []byte(`{"id":42}`),
		})
		if err == nil && !conf.Wait() {
			err = context.DeadlineExceeded
		}
		published <- err
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = hook.Serve(ln) }()
	defer hook.Close()

	host, port, err := net.SplitHostPort(httpAddr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "scenarios.js", "broker")
	cmd.Dir = nodeScenarios
	cmd.Env = append(os.Environ(), "HERALD_HOST="+host, "HERALD_PORT="+port,
		"APP_ID=e2e", "APP_KEY=e2e-key", "APP_SECRET=e2e-secret",
		"HERALD_HOOK=http://"+ln.Addr().String()+"/publish")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "node scenarios.js broker:\n%s\nherald logs:\n%s", out, n.logs)
	require.NoError(t, <-published, "AMQP publish confirmed")
	require.True(t, strings.Contains(string(out), "broker ok"), "%s", out)
	n.sigterm()
}
