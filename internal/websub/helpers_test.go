package websub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/webhook"
)

func TestMain(m *testing.M) {
	// The webhook dispatcher's fasthttp idle-connection sweeper ends by
	// itself after the dispatcher's connections are closed.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env is a running Herald slice: engine, broker, webhook service and hub,
// with the hub mounted on a real HTTP server on 127.0.0.1.
type env struct {
	dir    string
	broker *broker.Broker
	wh     *webhook.Service
	hub    *Hub
	srv    *httptest.Server
	hubURL string // the hub's public URL (Link rel="hub")
	stop   func()
}

// testConfig is the hub configuration of the tests: short leases allowed,
// quick reconcile.
func testConfig(c *Config) {
	c.LeaseMin = time.Second
	c.ReconcileInterval = 200 * time.Millisecond
	c.RequestTimeout = 5 * time.Second
}

// start starts everything on dir. mods adjust the hub's Config.
func start(t testing.TB, dir string, mods ...func(*Config)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := testLogger()
	eng, err := engine.New(engine.Config{DataDir: dir, Logger: log})
	require.NoError(t, err)
	require.NoError(t, eng.Start(ctx))
	br, err := broker.New(broker.Config{Engine: eng, Logger: log})
	require.NoError(t, err)
	require.NoError(t, br.Start(ctx))

	var hub *Hub
	var hubMu sync.Mutex
	wh, err := webhook.New(webhook.Config{
		Broker: br, Logger: log,
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		OnGone: func(s webhook.Subscription) {
			hubMu.Lock()
			h := hub
			hubMu.Unlock()
			h.Gone(s.ID)
		},
	})
	require.NoError(t, err)
	require.NoError(t, wh.Start(ctx))

	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	cfg := Config{
		Broker: br, Logger: log,
		Distributor: WebhookDistributor(wh, webhook.Spec{
			MaxAttempts: 5, BackoffInitial: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Timeout: 5 * time.Second,
		}),
		CheckURL: wh.Guard().CheckURL,
		Client:   wh.Guard().Client(),
		HubURL:   "http://hub.example/websub/hub",
	}
	testConfig(&cfg)
	for _, m := range mods {
		m(&cfg)
	}
	h, err := New(cfg)
	require.NoError(t, err)
	hubMu.Lock()
	hub = h
	hubMu.Unlock()
	h.Mount(mux)
	require.NoError(t, h.Start(ctx))

	e := &env{dir: dir, broker: br, wh: wh, hub: h, srv: srv, hubURL: cfg.HubURL}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv.Close()
			h.Stop(ctx)
			wh.Stop(ctx)
			br.Stop(ctx)
			eng.Stop(ctx)
		})
	}
	t.Cleanup(e.stop)
	return e
}

// setup starts a fresh env in a temporary directory.
func setup(t testing.TB, mods ...func(*Config)) *env {
	t.Helper()
	return start(t, t.TempDir(), mods...)
}

// post sends a form to the hub and returns the status and body.
func (e *env) post(t *testing.T, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+HubPath, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// subscribe sends a subscription request and requires 202.
func (e *env) subscribe(t *testing.T, topic, callback string, extra url.Values) {
	t.Helper()
	form := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {callback}}
	for k, v := range extra {
		form[k] = v
	}
	code, body := e.post(t, form)
	require.Equal(t, http.StatusAccepted, code, "subscribe: %s", body)
}

// publish sends a publish notification and requires 202.
func (e *env) publish(t *testing.T, topic string) {
	t.Helper()
	code, body := e.post(t, url.Values{"hub.mode": {"publish"}, "hub.topic": {topic}})
	require.Equal(t, http.StatusAccepted, code, "publish: %s", body)
}

// subscriptions returns the hub's subscriptions of topic.
func (e *env) subscriptions(topic string) []SubscriptionInfo {
	var out []SubscriptionInfo
	for _, s := range e.hub.Subscriptions() {
		if s.Topic == topic {
			out = append(out, s)
		}
	}
	return out
}

// websubSinks counts the webhook service's hub-owned subscriptions.
func (e *env) websubSinks() int {
	n := 0
	for _, s := range e.wh.List() {
		if s.Owner == owner {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// notification is a content distribution request received by a subscriber.
type notification struct {
	body   []byte
	header http.Header
}

// subscriber plays websub.rocks' subscriber: it answers verification
// requests (echoing hub.challenge unless told otherwise) and records
// content distribution requests.
type subscriber struct {
	srv      *httptest.Server
	callback string // srv URL + /callback/<name>?token=... (a query of its own)

	mu     sync.Mutex
	echo   func(challenge string) string // what a verification answers
	vcode  int                           // a verification's status (0: 200)
	status int                           // what a distribution answers
	gets   chan url.Values
	posts  chan notification
}

func newSubscriber(t *testing.T, name string) *subscriber {
	t.Helper()
	s := &subscriber{
		echo:   func(c string) string { return c },
		status: http.StatusOK,
		gets:   make(chan url.Values, 100),
		posts:  make(chan notification, 100),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	s.callback = s.srv.URL + "/callback/" + name + "?token=tok%2Fen&x=1"
	return s
}

func (s *subscriber) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	echo, status, vcode := s.echo, s.status, s.vcode
	s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		s.gets <- q
		if q.Get("hub.mode") == "denied" {
			return
		}
		if vcode != 0 {
			w.WriteHeader(vcode)
		}
		_, _ = io.WriteString(w, echo(q.Get("hub.challenge")))
	case http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		s.posts <- notification{body: body, header: r.Header.Clone()}
		w.WriteHeader(status)
	}
}

func (s *subscriber) set(fn func(s *subscriber)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// receive waits for the next value on ch.
func receive[T any](t *testing.T, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// verification waits for the next GET from the hub.
func (s *subscriber) verification(t *testing.T) url.Values {
	t.Helper()
	return receive(t, s.gets, "a verification request")
}

// notification waits for the next content distribution.
func (s *subscriber) notification(t *testing.T) notification {
	t.Helper()
	return receive(t, s.posts, "a content distribution request")
}

// noNotification requires that nothing arrived so far.
func (s *subscriber) noNotification(t *testing.T) {
	t.Helper()
	select {
	case n := <-s.posts:
		t.Fatalf("unexpected content distribution: %q", n.body)
	default:
	}
}

// publisher plays websub.rocks' publisher: it serves topics whose content
// the test changes, with Link rel="self" and rel="hub" headers.
type publisher struct {
	srv    *httptest.Server
	hubURL string

	mu      sync.Mutex
	content map[string]topicContent // by path
}

type topicContent struct {
	contentType string
	body        string
}

func newPublisher(t *testing.T, hubURL string) *publisher {
	t.Helper()
	p := &publisher{hubURL: hubURL, content: map[string]topicContent{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		c, ok := p.content[r.URL.Path]
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Add("Link", "<"+p.srv.URL+r.URL.Path+`>; rel="self"`)
		w.Header().Add("Link", "<"+p.hubURL+`>; rel="hub"`)
		w.Header().Set("Content-Type", c.contentType)
		_, _ = io.WriteString(w, c.body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// topic sets a topic's content and returns its URL.
func (p *publisher) topic(path, contentType, body string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.content[path] = topicContent{contentType: contentType, body: body}
	return p.srv.URL + path
}

// parseLinks parses Link header values into rel -> URLs, as websub.rocks
// does (several headers or one comma-separated header).
func parseLinks(values []string) map[string][]string {
	out := map[string][]string{}
	for _, v := range values {
		for v != "" {
			v = strings.TrimLeft(v, " ,")
			if !strings.HasPrefix(v, "<") {
				break
			}
			end := strings.Index(v, ">")
			if end < 0 {
				break
			}
			target := v[1:end]
			v = v[end+1:]
			params := v
			if i := strings.Index(v, ","); i >= 0 {
				params, v = v[:i], v[i+1:]
			} else {
				v = ""
			}
			for _, p := range strings.Split(params, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(k, "rel") {
					for _, rel := range strings.Fields(strings.Trim(val, `"`)) {
						out[rel] = append(out[rel], target)
					}
				}
			}
		}
	}
	return out
}

// checkNotification makes websub.rocks' checks of a content distribution
// request: the body is the topic's content, the Content-Type is the
// topic's, Link rel="hub" is the hub and rel="self" the topic, and
// X-Hub-Signature is present and valid exactly when a secret was given.
func checkNotification(t *testing.T, n notification, hubURL, topic string, want topicContent, secret string) {
	t.Helper()
	require.NotEmpty(t, strings.TrimSpace(string(n.body)), "empty payload (not a fat ping)")
	require.Equal(t, want.body, string(n.body), "body must be the topic's content byte for byte")
	require.Equal(t, want.contentType, n.header.Get("Content-Type"), "Content-Type must match the topic's")
	links := parseLinks(n.header.Values("Link"))
	require.Equal(t, []string{hubURL}, links["hub"], "Link rel=hub")
	require.Equal(t, []string{topic}, links["self"], "Link rel=self")
	sig := n.header.Get("X-Hub-Signature")
	if secret == "" {
		require.Empty(t, sig, "the hub sent a signature, but the subscriber gave no secret")
		return
	}
	require.NotEmpty(t, sig, "the subscriber gave a secret but the hub sent no signature")
	algo, hexSig, ok := strings.Cut(sig, "=")
	require.True(t, ok, "X-Hub-Signature %q is not method=signature", sig)
	require.Equal(t, "sha256", algo)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(n.body)
	require.Equal(t, hex.EncodeToString(mac.Sum(nil)), hexSig, "X-Hub-Signature does not verify")
}

// verifySubscription waits for the hub's verification request and makes
// websub.rocks' checks of it (mode, topic, challenge, lease_seconds on
// subscribe), returning the query.
func verifySubscription(t *testing.T, s *subscriber, mode, topic string) url.Values {
	t.Helper()
	q := s.verification(t)
	require.Equal(t, mode, q.Get("hub.mode"))
	require.Equal(t, topic, q.Get("hub.topic"))
	require.NotEmpty(t, q.Get("hub.challenge"))
	if mode == "subscribe" {
		require.NotEmpty(t, q.Get("hub.lease_seconds"), "missing hub.lease_seconds")
	}
	// The callback's own query string is kept.
	require.Equal(t, "tok/en", q.Get("token"))
	require.Equal(t, "1", q.Get("x"))
	return q
}
