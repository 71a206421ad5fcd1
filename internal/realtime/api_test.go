package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHTTPAPISignature(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte(`{"name":"e","channel":"c","data":"1"}`)
	path := "/apps/" + b.app.ID + "/events"
	post := func(q string, body []byte) (int, string) {
		resp, err := http.Post(b.base+path+"?"+q, "application/json", strings.NewReader(string(body)))
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	code, out := post(SignAPIRequest(b.app, "POST", path, nil, body, time.Now()), body)
	require.Equal(t, 200, code, out)
	require.JSONEq(t, `{}`, out)

	evil := b.app
	evil.Secret = "wrong"
	code, out = post(SignAPIRequest(evil, "POST", path, nil, body, time.Now()), body)
	require.Equal(t, 401, code)
	require.Contains(t, out, "invalid signature: you should have sent HmacSHA256Hex(\"POST\\n/apps/123/events\\nauth_key=app-key")

	code, out = post(SignAPIRequest(b.app, "POST", path, nil, body, time.Now()), []byte(`{"name":"e","channel":"c","data":"2"}`))
	require.Equal(t, 401, code)
	require.Contains(t, out, "body_md5")

	code, out = post(SignAPIRequest(b.app, "POST", path, nil, body, time.Now().Add(-time.Hour)), body)
	require.Equal(t, 401, code)
	require.Contains(t, out, "timestamp expired")

	other := b.app
	other.Key = "other"
	code, out = post(SignAPIRequest(other, "POST", path, nil, body, time.Now()), body)
	require.Equal(t, 401, code)
	require.Contains(t, out, "auth_key")

	resp, err := http.Post(b.base+"/apps/999/events", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode)
}

func TestHTTPAPIValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxMessageBytes = 50 })
	for _, tc := range []struct {
		body any
		code int
		msg  string
	}{
		{map[string]any{"channel": "c", "data": "x"}, 400, "missing event name"},
		{map[string]any{"name": "e", "data": "x"}, 400, "missing channels"},
		{map[string]any{"name": "e", "channel": "bad name", "data": "x"}, 400, "invalid channel name"},
		{map[string]any{"name": "e", "channel": "c", "data": strings.Repeat("x", 51)}, 413, "over the 50 byte limit"},
		{map[string]any{"name": "e", "channel": "c", "data": "x", "socket_id": "abc"}, 400, "invalid socket_id"},
		{map[string]any{"name": strings.Repeat("n", 201), "channel": "c", "data": "x"}, 400, "over 200"},
	} {
		code, out := b.api(t, "POST", "/events", nil, tc.body)
		require.Equal(t, tc.code, code, out)
		require.Contains(t, out, tc.msg)
	}
	chans := make([]string, 101)
	for i := range chans {
		chans[i] = fmt.Sprint("c", i)
	}
	code, out := b.api(t, "POST", "/events", nil, map[string]any{"name": "e", "channels": chans, "data": "x"})
	require.Equal(t, 400, code, out)
}

func TestTriggerManyChannelsAndInfo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := dial(t, b)
	c.subscribe("a", nil)
	c.subscribe("b", nil)
	code, out := b.api(t, "POST", "/events", nil, map[string]any{"name": "e", "channels": []string{"a", "b"}, "data": "d", "info": "subscription_count"})
	require.Equal(t, 200, code, out)
	require.JSONEq(t, `{"channels":{"a":{"subscription_count":1},"b":{"subscription_count":1}}}`, out)
	require.Equal(t, "a", c.expect("e", "").Channel)
	require.Equal(t, "b", c.expect("e", "").Channel)
}

func TestBatchEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := dial(t, b)
	c.subscribe("x", nil)
	code, out := b.api(t, "POST", "/batch_events", nil, map[string]any{"batch": []map[string]any{
		{"channel": "x", "name": "one", "data": "1"},
		{"channel": "x", "name": "two", "data": "2", "info": "subscription_count"},
	}})
	require.Equal(t, 200, code, out)
	require.JSONEq(t, `{"batch":[{},{"subscription_count":1}]}`, out)
	require.Equal(t, "1", c.expect("one", "x").str())
	require.Equal(t, "2", c.expect("two", "x").str())

	batch := make([]map[string]any, 11)
	for i := range batch {
		batch[i] = map[string]any{"channel": "x", "name": "n", "data": "d"}
	}
	code, out = b.api(t, "POST", "/batch_events", nil, map[string]any{"batch": batch})
	require.Equal(t, 400, code, out)
	// A bad event refuses the whole batch before anything is published.
	code, out = b.api(t, "POST", "/batch_events", nil, map[string]any{"batch": []map[string]any{
		{"channel": "x", "name": "ok", "data": "1"}, {"channel": "bad name", "name": "e", "data": "1"},
	}})
	require.Equal(t, 400, code, out)
	require.Contains(t, out, "batch[1]")
	c.quiet(50 * time.Millisecond)
}

func TestChannelQueries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := dial(t, b)
	c.subscribe("pub", nil)
	c.subscribePresence(b.app, "presence-p", "u1", nil)
	code, out := b.api(t, "GET", "/channels", nil, nil)
	require.Equal(t, 200, code, out)
	require.JSONEq(t, `{"channels":{"pub":{},"presence-p":{}}}`, out)
	code, out = b.api(t, "GET", "/channels", url.Values{"filter_by_prefix": {"presence-"}, "info": {"user_count"}}, nil)
	require.Equal(t, 200, code, out)
	require.JSONEq(t, `{"channels":{"presence-p":{"user_count":1}}}`, out)
	code, out = b.api(t, "GET", "/channels", url.Values{"info": {"user_count"}}, nil)
	require.Equal(t, 400, code, out)
	code, out = b.api(t, "GET", "/channels/pub", url.Values{"info": {"subscription_count"}}, nil)
	require.Equal(t, 200, code, out)
	require.JSONEq(t, `{"occupied":true,"subscription_count":1}`, out)
	code, out = b.api(t, "GET", "/channels/empty", nil, nil)
	require.Equal(t, 200, code, out)
	require.JSONEq(t, `{"occupied":false}`, out)
	code, out = b.api(t, "GET", "/channels/pub/users", nil, nil)
	require.Equal(t, 400, code, out)
}

func TestSSE(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.SSEKeepAlive = 50 * time.Millisecond })
	path := "/v1/apps/" + b.app.ID + "/channels/ticker/events"
	s, _ := openSSE(t, b, path, nil)
	waitFor(t, "SSE subscribed", func() bool { return b.srv.hubs[0].channelInfo("ticker").subscriptions == 1 })
	b.trigger(t, "ticker", "price", "line1\nline2")
	ev := s.next()
	require.Equal(t, "price", ev.Event)
	require.Equal(t, "line1\nline2", ev.Data)
	require.NotEmpty(t, ev.ID)
	first := ev.ID
	for {
		if s.nextAny().Comment == "keep-alive" {
			break
		}
	}

	// Resume: events published while disconnected are replayed in order.
	b.trigger(t, "ticker", "price", "2")
	b.trigger(t, "ticker", "price", "3")
	r, _ := openSSE(t, b, path, http.Header{"Last-Event-ID": {first}})
	require.Equal(t, "2", r.next().Data)
	require.Equal(t, "3", r.next().Data)
	b.trigger(t, "ticker", "price", "4")
	require.Equal(t, "4", r.next().Data)
	// The query parameter works for first connections (browsers cannot set the header).
	q, _ := openSSE(t, b, path+"?last_event_id="+url.QueryEscape(first), nil)
	require.Equal(t, "2", q.next().Data)

	bad, _ := openSSE(t, b, path, http.Header{"Last-Event-ID": {"bogus"}})
	require.Equal(t, "herald:resume_failed", bad.next().Event)
}

func TestSSEPrivate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path := "/v1/apps/" + b.app.ID + "/channels/private-inbox/events"
	_, code := openSSE(t, b, path, nil)
	require.Equal(t, 401, code)
	evil := b.app
	evil.Secret = "x"
	_, code = openSSE(t, b, path+"?auth="+url.QueryEscape(SignSSEToken(evil, "private-inbox", time.Now().Add(time.Minute))), nil)
	require.Equal(t, 401, code)
	_, code = openSSE(t, b, path+"?auth="+url.QueryEscape(SignSSEToken(b.app, "private-inbox", time.Now().Add(-time.Minute))), nil)
	require.Equal(t, 401, code)
	_, code = openSSE(t, b, path+"?auth="+url.QueryEscape(SignSSEToken(b.app, "private-other", time.Now().Add(time.Minute))), nil)
	require.Equal(t, 401, code)
	s, code := openSSE(t, b, path+"?auth="+url.QueryEscape(SignSSEToken(b.app, "private-inbox", time.Now().Add(time.Minute))), nil)
	require.Equal(t, 200, code)
	waitFor(t, "SSE subscribed", func() bool { return b.srv.hubs[0].channelInfo("private-inbox").subscriptions == 1 })
	b.trigger(t, "private-inbox", "mail", "hi")
	require.Equal(t, "hi", s.next().Data)

	_, code = openSSE(t, b, "/v1/apps/nope/channels/x/events", nil)
	require.Equal(t, 404, code)

	// Refusals carry Herald's JSON error envelope, as its other /v1 APIs do.
	for path, want := range map[string]int{
		path:                              401,
		"/v1/apps/nope/channels/x/events": 404,
		"/v1/apps/" + b.app.ID + "/channels/a:b/events": 400,
	} {
		resp, err := http.Get(b.base + path)
		require.NoError(t, err)
		var body struct{ Error, Reason string }
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), path)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body), path)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
		require.NotEmpty(t, body.Error, path)
		require.NotEmpty(t, body.Reason, path)
		require.Empty(t, resp.Header.Get("WWW-Authenticate"), "a browser would prompt for a password")
	}
}

// hookRecorder is a webhook receiver that verifies signatures.
type hookRecorder struct {
	t      *testing.T
	app    App
	mu     sync.Mutex
	events []hookEvent
	ts     *httptest.Server
}

func newHookRecorder(t *testing.T, app App) *hookRecorder {
	r := &hookRecorder{t: t, app: app}
	r.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := VerifyWebhook(r.app, req.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p struct {
			TimeMS int64       `json:"time_ms"`
			Events []hookEvent `json:"events"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.TimeMS == 0 {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.events = append(r.events, p.Events...)
		r.mu.Unlock()
	}))
	t.Cleanup(r.ts.Close)
	return r
}

func (r *hookRecorder) has(name, channel string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Name == name && e.Channel == channel {
			return true
		}
	}
	return false
}

func TestWebhooks(t *testing.T) {
	t.Parallel()
	app := testApp
	rec := newHookRecorder(t, app)
	app.Webhooks = []Webhook{{URL: rec.ts.URL}}
	b := setup(t, func(c *Config) { c.Apps = []App{app} })
	a, o := dial(t, b), dial(t, b)
	a.subscribePresence(b.app, "presence-w", "ann", nil)
	o.subscribePresence(b.app, "presence-w", "otto", nil)
	a.expect("pusher_internal:member_added", "presence-w")
	a.send("client-wave", map[string]any{"x": 1}, "presence-w")
	o.expect("client-wave", "presence-w")
	_ = o.ws.CloseNow()
	a.expect("pusher_internal:member_removed", "presence-w")
	_ = a.ws.CloseNow()
	for _, name := range []string{hookOccupied, hookMemberAdded, hookClientEvent, hookMemberRemoved, hookVacated} {
		waitFor(t, "webhook "+name, func() bool { return rec.has(name, "presence-w") })
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.events {
		if e.Name == hookClientEvent {
			require.Equal(t, "client-wave", e.Event)
			require.JSONEq(t, `{"x":1}`, e.Data)
			require.Equal(t, "ann", e.UserID)
			require.NotEmpty(t, e.SocketID)
		}
	}
}

func TestWebhookFilter(t *testing.T) {
	t.Parallel()
	app := testApp
	rec := newHookRecorder(t, app)
	app.Webhooks = []Webhook{{URL: rec.ts.URL, Events: []string{hookVacated}}}
	b := setup(t, func(c *Config) { c.Apps = []App{app} })
	c := dial(t, b)
	c.subscribe("f", nil)
	_ = c.ws.CloseNow()
	waitFor(t, "vacated", func() bool { return rec.has(hookVacated, "f") })
	require.False(t, rec.has(hookOccupied, "f"))
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Apps: []App{testApp}, Logger: testLogger(t)})
	require.NoError(t, err)
	mux := http.NewServeMux()
	s.Mount(mux)
	rw := httptest.NewRecorder()
	mux.ServeHTTP(rw, httptest.NewRequest("GET", "/v1/apps/123/channels/x/events", nil))
	require.Equal(t, 503, rw.Code, "not usable before Start")
	s.Stop(context.Background()) // before Start
	s.Stop(context.Background()) // twice
	require.Error(t, s.Start(context.Background()), "no Start after Stop")

	s2, err := New(Config{Apps: []App{testApp}, Logger: testLogger(t)})
	require.NoError(t, err)
	require.NoError(t, s2.Start(context.Background()))
	require.Error(t, s2.Start(context.Background()))
	s2.Stop(context.Background())
	s2.Stop(context.Background())
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Apps: at least one"},
		{Config{Apps: []App{{ID: "a b", Key: "k", Secret: "s"}}}, "Config.Apps[0]: ID"},
		{Config{Apps: []App{{ID: "a", Key: "", Secret: "s"}}}, "Config.Apps[0]: Key"},
		{Config{Apps: []App{{ID: "a", Key: "k"}}}, "Config.Apps[0]: Secret"},
		{Config{Apps: []App{testApp, testApp}}, "Config.Apps[1].ID: duplicate"},
		{Config{Apps: []App{testApp}, SendQueue: -1}, "Config.SendQueue"},
		{Config{Apps: []App{testApp}, ActivityTimeout: time.Millisecond}, "Config.ActivityTimeout"},
		{Config{Apps: []App{{ID: "a", Key: "k", Secret: "s", Webhooks: []Webhook{{URL: "ftp://x"}}}}}, "Webhooks[0].URL"},
		{Config{Apps: []App{{ID: "a", Key: "k", Secret: "s", Webhooks: []Webhook{{URL: "http://x", Events: []string{"nope"}}}}}}, "Webhooks[0].Events"},
	} {
		_, err := New(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestParseApp(t *testing.T) {
	t.Parallel()
	a, err := ParseApp("42:key:se:cret")
	require.NoError(t, err)
	require.Equal(t, App{ID: "42", Key: "key", Secret: "se:cret"}, a)
	for _, bad := range []string{"", "42", "42:key", "4 2:key:s", "42::s", "42:key:"} {
		_, err := ParseApp(bad)
		require.Error(t, err, bad)
	}
	_, err = ParseApp("42:key:topsecret")
	require.NoError(t, err)
	_, err = ParseApp("4 2:key:topsecret")
	require.NotContains(t, err.Error(), "topsecret", "the secret is not echoed")
}

func TestHistoryExpiry(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := setup(t, func(c *Config) { c.Now = clock; c.HistoryTTL = time.Minute; c.HistoryChannels = 2 })
	h := b.srv.hubs[0]
	h.dispatch(inbound{channel: "a", name: "e", data: "1"})
	h.dispatch(inbound{channel: "b", name: "e", data: "1"})
	h.dispatch(inbound{channel: "c", name: "e", data: "1"}) // over HistoryChannels: not kept
	h.mu.RLock()
	require.Len(t, h.channels, 2)
	h.mu.RUnlock()
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	h.sweep(clock())
	h.mu.RLock()
	defer h.mu.RUnlock()
	require.Empty(t, h.channels, "expired history and empty channels are removed")
	require.Zero(t, h.histChannels)
	require.Zero(t, h.histBytes.Load())
}

func TestHistoryBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.HistoryBytes = 3000 })
	h := b.srv.hubs[0]
	big := strings.Repeat("x", 500) // cost ~1.3 KB: two fit in 3000 bytes
	c := dial(t, b)
	c.subscribe("a", nil)
	h.dispatch(inbound{channel: "a", name: "e", data: big})
	first := c.expect("e", "a")
	h.dispatch(inbound{channel: "a", name: "e", data: big})
	h.dispatch(inbound{channel: "a", name: "e", data: big}) // evicts a's oldest
	require.LessOrEqual(t, h.histBytes.Load(), int64(3000))
	h.dispatch(inbound{channel: "b", name: "e", data: big}) // a holds the budget: b's event is not kept
	b2 := dial(t, b)
	b2.subscribe("b", map[string]any{"resume_from": first.ID})
	b2.expect("herald:resume_failed", "b")
	// a kept its two newest events, exactly those after first.
	a2 := dial(t, b)
	a2.subscribe("a", map[string]any{"resume_from": first.ID})
	a2.expect("e", "a")
	a2.expect("e", "a")
	a2.quiet(20 * time.Millisecond)
}

func TestJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "quote\" back\\ nl\n tab\t ctl\x01", "é ü 日本", "\u2028\u2029", "bad\xffutf8", `<script>&`} {
		got := appendJSONString(nil, s)
		var back string
		require.NoError(t, json.Unmarshal(got, &back), "%q -> %s", s, got)
		want := strings.ToValidUTF8(s, "\ufffd")
		require.Equal(t, want, back)
	}
}
