package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
)

// fasthttp's idle-connection sweeper (one per run that connected) sleeps
// until the next expiry and ends by itself once its client has no
// connections left, which a stopped run's poster has not (TestPosterClose).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

var (
	bg       = context.Background()
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
	loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
)

// env is a running engine, broker and service on a data directory, with the
// service's HTTP API on a real listener.
type env struct {
	dir  string
	eng  *engine.Engine
	b    *broker.Broker
	s    *Service
	ts   *httptest.Server
	base string
}

// fastRetries makes retries quick: backoff 10..40 ms, breaker off.
func fastRetries(c *Config) { c.BreakerFailures = -1 }

func startEnv(t testing.TB, dir string, mods ...func(*Config)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	eng, err := engine.New(engine.Config{DataDir: dir, Logger: quiet})
	require.NoError(t, err)
	require.NoError(t, eng.Start(ctx))
	b, err := broker.New(broker.Config{Engine: eng, Logger: quiet})
	require.NoError(t, err)
	require.NoError(t, b.Start(ctx))
	_, err = b.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "events", Type: broker.Topic, Durable: true}, false)
	require.NoError(t, err)
	cfg := Config{Broker: b, Logger: quiet, AllowPrivate: loopback}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, s.Start(ctx))
	mux := http.NewServeMux()
	s.Mount(mux)
	ts := httptest.NewServer(mux)
	return &env{dir: dir, eng: eng, b: b, s: s, ts: ts, base: ts.URL}
}

func (e *env) stop() {
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	e.ts.Close()
	e.s.Stop(ctx)
	e.b.Stop(ctx)
	e.eng.Stop(ctx)
}

// startExact is startEnv on a fresh dir with the circuit breaker off and
// no jitter (each backoff is its ceiling), for tests that time retries.
func startExact(t testing.TB, dir string) *env {
	t.Helper()
	e := startEnv(t, dir, fastRetries)
	e.s.jitter = func(ceil time.Duration) time.Duration { return ceil }
	return e
}

func setup(t testing.TB, mods ...func(*Config)) *env {
	t.Helper()
	e := startEnv(t, t.TempDir(), mods...)
	t.Cleanup(e.stop)
	return e
}

// do sends an API request as guest and returns the status and body.
func (e *env) do(t testing.TB, method, path string, body any, hdr ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		data, err := json.Marshal(v)
		require.NoError(t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	require.NoError(t, err)
	req.SetBasicAuth("guest", "guest")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}

// create makes a subscription through the API and returns its JSON.
func (e *env) create(t testing.TB, spec map[string]any) subJSON {
	t.Helper()
	code, body := e.do(t, "POST", "/v1/webhooks", spec)
	require.Equal(t, http.StatusCreated, code, "%s", body)
	var j subJSON
	require.NoError(t, json.Unmarshal(body, &j))
	return j
}

// postBinary posts a binary-mode CloudEvent.
func (e *env) postBinary(t testing.TB, path, id, typ, subject, data string) (int, []byte) {
	t.Helper()
	hdr := []string{"ce-specversion", "1.0", "ce-id", id, "ce-source", "/test", "ce-type", typ, "Content-Type", "application/json"}
	if subject != "" {
		hdr = append(hdr, "ce-subject", subject)
	}
	return e.do(t, "POST", path, data, hdr...)
}

func (e *env) deliveries(t testing.TB, id string) []Attempt {
	t.Helper()
	code, body := e.do(t, "GET", "/v1/webhooks/"+id+"/deliveries", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var out []Attempt
	require.NoError(t, json.Unmarshal(body, &out))
	return out
}

func (e *env) sub(t testing.TB, id string) subJSON {
	t.Helper()
	code, body := e.do(t, "GET", "/v1/webhooks/"+id, nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var j subJSON
	require.NoError(t, json.Unmarshal(body, &j))
	return j
}

// sinkReq is one request a sink received.
type sinkReq struct {
	header http.Header
	body   []byte
	at     time.Time // when it arrived
}

// sink is a webhook endpoint on 127.0.0.1; status decides each answer from
// the request number (1-based) and the request, and header (if set) adds
// response headers.
type sink struct {
	ts     *httptest.Server
	mu     sync.Mutex
	reqs   []sinkReq
	status func(n int, r *http.Request) int
	header func(n int, h http.Header)
}

func newSink(t testing.TB, status func(n int, r *http.Request) int) *sink {
	t.Helper()
	s := &sink{status: status}
	s.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, sinkReq{header: r.Header.Clone(), body: body, at: at})
		n, fn, hfn := len(s.reqs), s.status, s.header
		s.mu.Unlock()
		code := http.StatusOK
		if fn != nil {
			code = fn(n, r)
		}
		if hfn != nil {
			hfn(n, w.Header())
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}))
	t.Cleanup(s.ts.Close)
	return s
}

func (s *sink) setStatus(fn func(n int, r *http.Request) int) {
	s.mu.Lock()
	s.status = fn
	s.mu.Unlock()
}

func (s *sink) setHeader(fn func(n int, h http.Header)) {
	s.mu.Lock()
	s.header = fn
	s.mu.Unlock()
}

func (s *sink) got() []sinkReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkReq(nil), s.reqs...)
}

// waitReqs polls until the sink has at least n requests.
func (s *sink) waitReqs(t testing.TB, n int) []sinkReq {
	t.Helper()
	eventually(t, func() bool { return len(s.got()) >= n }, "sink did not get %d requests (got %d)", n, len(s.got()))
	return s.got()
}

func always(code int) func(int, *http.Request) int {
	return func(int, *http.Request) int { return code }
}

func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(5 * time.Millisecond) // polling, not waiting for a fixed time
	}
}

// quietPeriod proves a negative (no further request): it waits d.
func quietPeriod(d time.Duration) { time.Sleep(d) }

// verifyStandard checks a delivery with the standardwebhooks npm package.
// It fails the test (never skips) when node or the package is missing.
func verifyStandard(t testing.TB, secret string, r sinkReq) {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is required for the Standard Webhooks verification; run .ci/setup.d/webhook.sh")
	dir, err := filepath.Abs("testdata/node")
	require.NoError(t, err)
	check := exec.Command(node, "-e", "require.resolve('standardwebhooks')")
	check.Dir = dir
	out, err := check.CombinedOutput()
	require.NoError(t, err, "npm package standardwebhooks is missing in %s (run .ci/setup.d/webhook.sh): %s", dir, out)
	in, err := json.Marshal(map[string]any{
		"secret":  secret,
		"payload": string(r.body),
		"headers": map[string]string{
			"webhook-id":        r.header.Get("webhook-id"),
			"webhook-timestamp": r.header.Get("webhook-timestamp"),
			"webhook-signature": r.header.Get("webhook-signature"),
		},
	})
	require.NoError(t, err)
	cmd := exec.Command(node, "verify.js")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "standardwebhooks rejected the delivery: %s", out)
	require.Equal(t, "ok", strings.TrimSpace(string(out)))
}
