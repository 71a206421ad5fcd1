package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// buildHerald compiles the binary once per test binary run.
func buildHerald(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

type node struct {
	t       *testing.T
	cmd     *exec.Cmd
	http    string
	amqp    string
	dataDir string
	logs    *bytes.Buffer
}

// startNode runs `herald serve` with extra flags appended and waits until
// it is ready.
func startNode(t *testing.T, bin, dataDir, httpAddr, amqpAddr string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, http: httpAddr, amqp: amqpAddr, dataDir: dataDir, logs: &bytes.Buffer{}}
	args := append([]string{"serve", "--data-dir", dataDir, "--http-listen", httpAddr, "--amqp-listen", amqpAddr}, extra...)
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	require.NoError(t, n.cmd.Start())
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			_ = n.cmd.Process.Kill()
			_ = n.cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := n.do("GET", "/api/overview", nil)
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			return n
		}
		if err == nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald did not become ready; logs:\n%s", n.logs)
		}
		time.Sleep(50 * time.Millisecond) // readiness poll
	}
}

func (n *node) do(method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+n.http+path, r)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

func (n *node) call(method, path string, body any, wantStatus int) []byte {
	n.t.Helper()
	resp, err := n.do(method, path, body)
	require.NoError(n.t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	require.Equal(n.t, wantStatus, resp.StatusCode, "%s %s: %s", method, path, data)
	return data
}

func (n *node) sigterm() {
	n.t.Helper()
	require.NoError(n.t, n.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(n.t, err, "graceful stop; logs:\n%s", n.logs)
	case <-time.After(30 * time.Second):
		n.t.Fatalf("herald did not stop within 30s of SIGTERM; logs:\n%s", n.logs)
	}
}

func (n *node) kill9() {
	n.t.Helper()
	require.NoError(n.t, n.cmd.Process.Signal(syscall.SIGKILL))
	_ = n.cmd.Wait()
}

func (n *node) queueMessages(q string) int {
	var info struct {
		Messages int `json:"messages"`
	}
	require.NoError(n.t, json.Unmarshal(n.call("GET", "/api/queues/%2F/"+q, nil, 200), &info))
	return info.Messages
}

func TestNewUserTopicScenarioSurvivesRestartAndKill9(t *testing.T) {
	t.Parallel()
	bin := buildHerald(t)
	dir := t.TempDir()
	httpAddr, amqpAddr := freePort(t), freePort(t)
	n := startNode(t, bin, dir, httpAddr, amqpAddr)

	n.call("PUT", "/api/exchanges/%2F/feeds", map[string]any{"type": "topic", "durable": true}, 201)
	for q, key := range map[string]string{"fetchers": "*.feed_fetcher", "everything": "#", "parsers": "*.parser"} {
		n.call("PUT", "/api/queues/%2F/"+q, map[string]any{"durable": true}, 201)
		n.call("POST", "/api/bindings/%2F/e/feeds/q/"+q, map[string]any{"routing_key": key}, 201)
	}
	publish := func(body string) {
		var res struct {
			Routed bool `json:"routed"`
		}
		data := n.call("POST", "/api/exchanges/%2F/feeds/publish", map[string]any{
			"routing_key": "domU-12-31-39-07.feed_fetcher", "payload": body, "payload_encoding": "string",
			"properties": map[string]any{"delivery_mode": 2},
		}, 200)
		require.NoError(t, json.Unmarshal(data, &res))
		require.True(t, res.Routed)
	}
	for i := range 5 {
		publish(fmt.Sprintf("event-%d", i))
	}
	require.Equal(t, 5, n.queueMessages("fetchers"))
	require.Equal(t, 5, n.queueMessages("everything"))
	require.Equal(t, 0, n.queueMessages("parsers"))

	n.sigterm()
	n = startNode(t, bin, dir, httpAddr, amqpAddr)
	require.Equal(t, 5, n.queueMessages("fetchers"), "after graceful restart")
	publish("event-5")

	n.kill9()
	n = startNode(t, bin, dir, httpAddr, amqpAddr)
	require.Equal(t, 6, n.queueMessages("fetchers"), "after kill -9")
	require.Equal(t, 6, n.queueMessages("everything"))
	var msgs []struct {
		Payload string `json:"payload"`
	}
	data := n.call("POST", "/api/queues/%2F/fetchers/get", map[string]any{"count": 10, "ackmode": "ack_requeue_false", "encoding": "auto"}, 200)
	require.NoError(t, json.Unmarshal(data, &msgs))
	require.Len(t, msgs, 6)
	for i, m := range msgs {
		require.Equal(t, fmt.Sprintf("event-%d", i), m.Payload, "in order")
	}
	n.sigterm()
}
