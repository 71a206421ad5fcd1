package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
)

// bundle is what setup returns: the broker under the API and a client
// logged in as guest (from loopback, so guest is accepted).
type bundle struct {
	b     *broker.Broker
	api   *API
	srv   *httptest.Server
	guest *client
}

// setup starts a real embedded engine and broker in a temporary directory and
// serves the API on a loopback httptest server; everything stops at cleanup.
func setup(t *testing.T, opts ...func(*Config)) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := engine.New(engine.Config{DataDir: t.TempDir(), Logger: discard})
	require.NoError(t, err)
	require.NoError(t, eng.Start(ctx))
	t.Cleanup(func() { eng.Stop(context.Background()) })
	br, err := broker.New(broker.Config{Engine: eng, Logger: discard})
	require.NoError(t, err)
	require.NoError(t, br.Start(ctx))
	t.Cleanup(func() { br.Stop(context.Background()) })

	cfg := Config{Broker: br, Logger: discard}
	for _, o := range opts {
		o(&cfg)
	}
	api := New(cfg)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	bd := &bundle{b: br, api: api, srv: srv}
	bd.guest = bd.as(t, "guest", "guest")
	return bd
}

// client is a net/http client with basic auth against the test server.
type client struct {
	t          *testing.T
	srv        *httptest.Server
	user, pass string
}

func (bd *bundle) as(t *testing.T, user, pass string) *client {
	return &client{t: t, srv: bd.srv, user: user, pass: pass}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request; body is sent as is when it is a string or []byte and
// as JSON otherwise. path is used verbatim, so %2F stays escaped.
func (c *client) do(method, path string, body any, header ...string) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(c.t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.srv.URL+path, rd)
	require.NoError(c.t, err)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return response{code: res.StatusCode, header: res.Header, body: data}
}

// ok sends a request and requires the status.
func (c *client) ok(code int, method, path string, body any, header ...string) response {
	c.t.Helper()
	r := c.do(method, path, body, header...)
	require.Equal(c.t, code, r.code, "%s %s: %s", method, path, r.body)
	return r
}

// decode unmarshals the body into v after zeroing it (json.Unmarshal would
// merge into maps left from a previous decode).
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	reflect.ValueOf(v).Elem().SetZero()
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

func (c *client) getJSON(path string, v any) {
	c.t.Helper()
	c.ok(http.StatusOK, http.MethodGet, path, nil).decode(c.t, v)
}

func (c *client) queue(vhostPath, name string) queueJSON {
	c.t.Helper()
	var q queueJSON
	c.getJSON("/api/queues/"+vhostPath+"/"+url.PathEscape(name), &q)
	return q
}

func (c *client) publish(exchange, routingKey, payload string) bool {
	c.t.Helper()
	var res routedJSON
	c.ok(http.StatusOK, http.MethodPost, "/api/exchanges/%2F/"+exchange+"/publish", map[string]any{
		"properties": map[string]any{}, "routing_key": routingKey,
		"payload": payload, "payload_encoding": "string",
	}).decode(c.t, &res)
	return res.Routed
}

func (c *client) get(queue string, count int, ackmode string) []gotMessageJSON {
	c.t.Helper()
	var out []gotMessageJSON
	c.ok(http.StatusOK, http.MethodPost, "/api/queues/%2F/"+url.PathEscape(queue)+"/get", map[string]any{
		"count": count, "ackmode": ackmode, "encoding": "auto",
	}).decode(c.t, &out)
	return out
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		<-tick.C
	}
}

// requireError checks the error envelope and status.
func requireError(t *testing.T, r response, code int) errorBody {
	t.Helper()
	require.Equal(t, code, r.code, string(r.body))
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var e errorBody
	r.decode(t, &e)
	require.NotEmpty(t, e.Error)
	require.NotEmpty(t, e.Reason)
	return e
}

// TestTopicScenario is the scenario: a topic exchange, queues bound
// with "*.feed_fetcher" and "#", one publish reaching both.
func TestTopicScenario(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest

	g.ok(http.StatusCreated, http.MethodPut, "/api/exchanges/%2F/logs", map[string]any{"type": "topic", "durable": true})
	g.ok(http.StatusNoContent, http.MethodPut, "/api/exchanges/%2F/logs", map[string]any{"type": "topic", "durable": true})
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/feeds", map[string]any{"durable": true})
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/everything", map[string]any{"durable": true})
	g.ok(http.StatusCreated, http.MethodPost, "/api/bindings/%2F/e/logs/q/feeds", map[string]any{"routing_key": "*.feed_fetcher"})
	g.ok(http.StatusCreated, http.MethodPost, "/api/bindings/%2F/e/logs/q/everything", map[string]any{"routing_key": "#"})

	var ex exchangeJSON
	g.getJSON("/api/exchanges/%2F/logs", &ex)
	require.Equal(t, exchangeJSON{Name: "logs", VHost: "/", Type: "topic", Durable: true, Arguments: map[string]any{}}, ex)

	require.True(t, g.publish("logs", "domU-12-31-39-07.feed_fetcher", "fetched"))

	// Counts are fresh: no waiting for a stats interval.
	for _, name := range []string{"feeds", "everything"} {
		q := g.queue("%2F", name)
		require.Equal(t, 1, q.Messages, name)
		require.Equal(t, 1, q.MessagesReady, name)
		require.Equal(t, 0, q.MessagesUnacked, name)
		require.Equal(t, int64(len("fetched")), q.MessageBytes, name)
		require.Equal(t, "running", q.State)
		require.True(t, q.Durable)
	}
	for _, name := range []string{"feeds", "everything"} {
		msgs := g.get(name, 10, ackRequeueFalse)
		require.Len(t, msgs, 1, name)
		require.Equal(t, "fetched", msgs[0].Payload)
		require.Equal(t, encodingString, msgs[0].PayloadEncoding)
		require.Equal(t, "logs", msgs[0].Exchange)
		require.Equal(t, "domU-12-31-39-07.feed_fetcher", msgs[0].RoutingKey)
		require.Equal(t, 0, msgs[0].MessageCount)
		require.Equal(t, 0, g.queue("%2F", name).Messages)
	}

	// Only "#" matches a key without the feed_fetcher word.
	require.True(t, g.publish("logs", "other.thing", "x"))
	require.Equal(t, 0, g.queue("%2F", "feeds").Messages)
	require.Equal(t, 1, g.queue("%2F", "everything").Messages)

	// Nothing bound: routed false.
	g.ok(http.StatusCreated, http.MethodPut, "/api/exchanges/%2F/lonely", map[string]any{"type": "direct"})
	require.False(t, g.publish("lonely", "k", "x"))
}

// idleSince matches the idle_since field, which a failed redeclare may
// refresh (a declare counts as use of the queue).
var idleSince = regexp.MustCompile(`"idle_since":"[^"]*"`)

// snapshot is everything the API can show; bad input must leave it equal.
func snapshot(c *client) map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for _, p := range []string{"/api/vhosts", "/api/exchanges", "/api/queues", "/api/bindings", "/api/users", "/api/permissions"} {
		out[p] = idleSince.ReplaceAllString(string(c.ok(http.StatusOK, http.MethodGet, p, nil).body), "")
	}
	return out
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	bd := setup(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	g := bd.guest
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/q", map[string]any{"durable": true})
	g.ok(http.StatusCreated, http.MethodPut, "/api/exchanges/%2F/x", map[string]any{"type": "direct"})
	require.True(t, g.publish("amq.default", "q", "keep me"))
	before := snapshot(g)

	long := strings.Repeat("n", 256)
	big := `{"arguments":{"pad":"` + strings.Repeat("p", 5000) + `"}}`
	cases := []struct {
		name         string
		method, path string
		body         any
		code         int
	}{
		{"unknown exchange type", "PUT", "/api/exchanges/%2F/new", `{"type":"nope"}`, 400},
		{"empty exchange type", "PUT", "/api/exchanges/%2F/new", `{"type":""}`, 400},
		{"non-boolean durable", "PUT", "/api/exchanges/%2F/new", `{"type":"topic","durable":"maybe"}`, 400},
		{"bad delayed type", "PUT", "/api/exchanges/%2F/new", `{"type":"x-delayed-message","arguments":{"x-delayed-type":"nope"}}`, 400},
		{"reserved exchange name", "PUT", "/api/exchanges/%2F/amq.mine", `{"type":"direct"}`, 403},
		{"redeclare default exchange", "PUT", "/api/exchanges/%2F/amq.default", `{"type":"direct"}`, 403},
		{"x-max-length abc", "PUT", "/api/queues/%2F/new", `{"arguments":{"x-max-length":"abc"}}`, 400},
		{"x-max-length negative", "PUT", "/api/queues/%2F/new", `{"arguments":{"x-max-length":-1}}`, 400},
		{"bad x-overflow", "PUT", "/api/queues/%2F/new", `{"arguments":{"x-overflow":"explode"}}`, 400},
		{"queue name too long", "PUT", "/api/queues/%2F/" + long, `{}`, 400},
		{"queue name not UTF-8", "PUT", "/api/queues/%2F/bad%FFname", `{}`, 400},
		{"queue name control char", "PUT", "/api/queues/%2F/bad%01name", `{}`, 400},
		{"reserved queue name", "PUT", "/api/queues/%2F/amq.mine", `{}`, 403},
		{"malformed JSON", "PUT", "/api/queues/%2F/new", `{"durable":`, 400},
		{"JSON array body", "PUT", "/api/queues/%2F/new", `[]`, 400},
		{"trailing garbage", "PUT", "/api/queues/%2F/new", `{} x`, 400},
		{"oversized body", "PUT", "/api/queues/%2F/new", big, 413},
		{"exclusive over HTTP", "PUT", "/api/queues/%2F/new", `{"exclusive":true}`, 400},
		{"inequivalent redeclare", "PUT", "/api/queues/%2F/q", `{"durable":false}`, 400},
		{"vhost name too long", "PUT", "/api/vhosts/" + long, `{}`, 400},
		{"queue in missing vhost", "PUT", "/api/queues/nope/new", `{}`, 404},
		{"publish bad encoding", "POST", "/api/exchanges/%2F/amq.default/publish", `{"routing_key":"q","payload":"x","payload_encoding":"hex"}`, 400},
		{"publish bad base64", "POST", "/api/exchanges/%2F/amq.default/publish", `{"routing_key":"q","payload":"!!","payload_encoding":"base64"}`, 400},
		{"publish no routing key", "POST", "/api/exchanges/%2F/amq.default/publish", `{"payload":"x"}`, 400},
		{"publish bad delivery mode", "POST", "/api/exchanges/%2F/amq.default/publish", `{"routing_key":"q","payload":"x","properties":{"delivery_mode":7}}`, 400},
		{"publish bad expiration", "POST", "/api/exchanges/%2F/amq.default/publish", `{"routing_key":"q","payload":"x","properties":{"expiration":"soon"}}`, 400},
		{"publish wrong user_id", "POST", "/api/exchanges/%2F/amq.default/publish", `{"routing_key":"q","payload":"x","properties":{"user_id":"mallory"}}`, 400},
		{"publish oversized", "POST", "/api/exchanges/%2F/amq.default/publish", `{"routing_key":"q","payload":"` + strings.Repeat("p", 5000) + `"}`, 413},
		{"publish missing exchange", "POST", "/api/exchanges/%2F/nope/publish", `{"routing_key":"q","payload":"x"}`, 404},
		{"get bad ackmode", "POST", "/api/queues/%2F/q/get", `{"count":1,"ackmode":"keep"}`, 400},
		{"get negative count", "POST", "/api/queues/%2F/q/get", `{"count":-1,"ackmode":"ack_requeue_false"}`, 400},
		{"get huge count", "POST", "/api/queues/%2F/q/get", `{"count":1000000,"ackmode":"ack_requeue_false"}`, 400},
		{"get missing queue", "POST", "/api/queues/%2F/nope/get", `{"count":1,"ackmode":"ack_requeue_false"}`, 404},
		{"bind missing queue", "POST", "/api/bindings/%2F/e/x/q/nope", `{"routing_key":"k"}`, 404},
		{"bind missing exchange", "POST", "/api/bindings/%2F/e/nope/q/q", `{"routing_key":"k"}`, 404},
		{"bind default exchange", "POST", "/api/bindings/%2F/e/amq.default/q/q", `{"routing_key":"k"}`, 403},
		{"bind bad JSON", "POST", "/api/bindings/%2F/e/x/q/q", `{"routing_key":1}`, 400},
		{"unbind unknown props", "DELETE", "/api/bindings/%2F/e/x/q/q/nope", nil, 404},
		{"delete non-empty queue if-empty", "DELETE", "/api/queues/%2F/q?if-empty=true", nil, 400},
		{"delete missing queue", "DELETE", "/api/queues/%2F/nope", nil, 404},
		{"delete amq.direct", "DELETE", "/api/exchanges/%2F/amq.direct", nil, 403},
		{"purge missing queue", "DELETE", "/api/queues/%2F/nope/contents", nil, 404},
		{"user without password", "PUT", "/api/users/newbie", `{"tags":"management"}`, 400},
		{"user bad hash", "PUT", "/api/users/newbie", `{"password_hash":"abc"}`, 400},
		{"user both secrets", "PUT", "/api/users/newbie", `{"password":"a","password_hash":"abc"}`, 400},
		{"user bad tags", "PUT", "/api/users/newbie", `{"password":"a","tags":7}`, 400},
		{"user bad algorithm", "PUT", "/api/users/newbie", `{"password":"a","hashing_algorithm":"md5"}`, 400},
		{"permission bad regex", "PUT", "/api/permissions/%2F/guest", `{"configure":"(","write":".*","read":".*"}`, 400},
		{"permission missing field", "PUT", "/api/permissions/%2F/guest", `{"configure":".*","write":".*"}`, 400},
		{"permission unknown user", "PUT", "/api/permissions/%2F/ghost", `{"configure":".*","write":".*","read":".*"}`, 400},
		{"method not allowed", "PATCH", "/api/queues/%2F/q", `{}`, 405},
	}
	for _, tc := range cases {
		r := g.do(tc.method, tc.path, tc.body)
		e := requireError(t, r, tc.code)
		t.Logf("%s: %d %+v", tc.name, r.code, e)
		require.Equal(t, before, snapshot(g), "%s changed something", tc.name)
	}

	r := g.do(http.MethodGet, "/api/queues/%2F/nope", nil)
	require.Equal(t, errorBody{Error: "Object Not Found", Reason: "Not Found"}, requireError(t, r, http.StatusNotFound))

	// The message survived all of it.
	msgs := g.get("q", 1, ackRequeueFalse)
	require.Len(t, msgs, 1)
	require.Equal(t, "keep me", msgs[0].Payload)
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest

	r := bd.as(t, "", "").do(http.MethodGet, "/api/overview", nil)
	requireError(t, r, http.StatusUnauthorized)
	require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic")
	requireError(t, bd.as(t, "guest", "wrong").do(http.MethodGet, "/api/overview", nil), http.StatusUnauthorized)
	requireError(t, bd.as(t, "ghost", "guest").do(http.MethodGet, "/api/overview", nil), http.StatusUnauthorized)

	var who whoamiJSON
	g.getJSON("/api/whoami", &who)
	require.Equal(t, whoamiJSON{Name: "guest", Tags: []string{"administrator"}}, who)

	// A user without a management tag may not use the API at all.
	g.ok(http.StatusCreated, http.MethodPut, "/api/users/app", map[string]any{"password": "pw"})
	requireError(t, bd.as(t, "app", "pw").do(http.MethodGet, "/api/overview", nil), http.StatusForbidden)

	// A management user sees and touches only what its permissions allow.
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/shared", map[string]any{})
	g.ok(http.StatusCreated, http.MethodPut, "/api/users/alice", map[string]any{"password": "pw", "tags": "management"})
	alice := bd.as(t, "alice", "pw")
	alice.getJSON("/api/whoami", &who)
	require.Equal(t, whoamiJSON{Name: "alice", Tags: []string{"management"}}, who)
	var qs []queueJSON
	alice.getJSON("/api/queues", &qs)
	require.Empty(t, qs, "no permissions on any vhost")
	requireError(t, alice.do(http.MethodGet, "/api/queues/%2F", nil), http.StatusForbidden)
	requireError(t, alice.do(http.MethodPut, "/api/queues/%2F/alice.q", map[string]any{}), http.StatusForbidden)
	requireError(t, alice.do(http.MethodGet, "/api/users", nil), http.StatusForbidden)
	requireError(t, alice.do(http.MethodPut, "/api/vhosts/mine", nil), http.StatusForbidden)

	g.ok(http.StatusCreated, http.MethodPut, "/api/permissions/%2F/alice",
		map[string]any{"configure": `^alice\.`, "write": ".*", "read": "^alice\\."})
	alice.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/alice.q", map[string]any{})
	requireError(t, alice.do(http.MethodPut, "/api/queues/%2F/other", map[string]any{}), http.StatusForbidden)
	requireError(t, alice.do(http.MethodDelete, "/api/queues/%2F/shared", nil), http.StatusForbidden)
	requireError(t, alice.do(http.MethodPost, "/api/queues/%2F/shared/get", map[string]any{"ackmode": ackRequeueFalse}), http.StatusForbidden)
	alice.getJSON("/api/queues/%2F", &qs)
	require.Len(t, qs, 2, "vhost access shows the vhost's queues")
	alice.ok(http.StatusOK, http.MethodPost, "/api/exchanges/%2F/amq.default/publish",
		map[string]any{"routing_key": "alice.q", "payload": "hi"})
	require.Len(t, alice.get("alice.q", 1, ackRequeueFalse), 1)

	// Monitoring users read everything and change nothing.
	g.ok(http.StatusCreated, http.MethodPut, "/api/users/mon", map[string]any{"password": "pw", "tags": []string{"monitoring"}})
	mon := bd.as(t, "mon", "pw")
	mon.getJSON("/api/queues", &qs)
	require.Len(t, qs, 2)
	mon.ok(http.StatusOK, http.MethodGet, "/api/queues/%2F/shared", nil)
	requireError(t, mon.do(http.MethodPut, "/api/queues/%2F/mon.q", map[string]any{}), http.StatusForbidden)
	requireError(t, mon.do(http.MethodGet, "/api/permissions", nil), http.StatusForbidden)
}

// TestGuestLoopbackOnly drives the handler directly with a remote address:
// guest is refused unless AllowRemoteGuest is set; other users are not
// affected.
func TestGuestLoopbackOnly(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	bd.guest.ok(http.StatusCreated, http.MethodPut, "/api/users/ops", map[string]any{"password": "pw", "tags": "administrator"})

	serve := func(api *API, user, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/overview", nil)
		req.RemoteAddr = remote
		req.SetBasicAuth(user, map[string]string{"guest": "guest", "ops": "pw"}[user])
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		return rec
	}
	rec := serve(bd.api, "guest", "203.0.113.9:5000")
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Body.String(), "localhost")
	require.Equal(t, http.StatusOK, serve(bd.api, "guest", "127.0.0.1:5000").Code)
	require.Equal(t, http.StatusOK, serve(bd.api, "guest", "[::1]:5000").Code)
	require.Equal(t, http.StatusOK, serve(bd.api, "ops", "203.0.113.9:5000").Code)

	open := New(Config{Broker: bd.b, Logger: discard, AllowRemoteGuest: true})
	require.Equal(t, http.StatusOK, serve(open, "guest", "203.0.113.9:5000").Code)
}

func TestPurge(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/work", map[string]any{})
	for range 3 {
		require.True(t, g.publish("amq.default", "work", "job"))
	}
	require.Equal(t, 3, g.queue("%2F", "work").MessagesReady)
	g.ok(http.StatusNoContent, http.MethodDelete, "/api/queues/%2F/work/contents", nil)
	q := g.queue("%2F", "work")
	require.Equal(t, 0, q.Messages)
	require.Equal(t, int64(0), q.MessageBytes)
	require.Empty(t, g.get("work", 5, ackRequeueFalse))
}

func TestGetAckModes(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest
	for _, tc := range []struct {
		mode            string
		left, deadLeft  int
		redeliveredNext bool
	}{
		{ackRequeueTrue, 2, 0, true},
		{rejectRequeueTrue, 2, 0, true},
		{ackRequeueFalse, 0, 0, false},
		{rejectRequeueFalse, 0, 2, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			g := bd.as(t, g.user, g.pass)
			q, dead := "q-"+tc.mode, "dead-"+tc.mode
			g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/"+dead, map[string]any{})
			g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/"+q, map[string]any{"arguments": map[string]any{
				"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead,
			}})
			require.True(t, g.publish("amq.default", q, "m1"))
			require.True(t, g.publish("amq.default", q, "m2"))

			msgs := g.get(q, 5, tc.mode)
			require.Len(t, msgs, 2, "requeued messages are not seen twice in one get")
			require.Equal(t, []string{"m1", "m2"}, []string{msgs[0].Payload, msgs[1].Payload})
			require.Equal(t, []int{1, 0}, []int{msgs[0].MessageCount, msgs[1].MessageCount})
			require.False(t, msgs[0].Redelivered)

			waitFor(t, func() bool {
				qi, di := g.queue("%2F", q), g.queue("%2F", dead)
				return qi.Messages == tc.left && qi.MessagesUnacked == 0 && di.Messages == tc.deadLeft
			})
			if tc.left > 0 {
				next := g.get(q, 1, ackRequeueFalse)
				require.Len(t, next, 1)
				require.Equal(t, "m1", next[0].Payload, "requeued in place")
				require.Equal(t, tc.redeliveredNext, next[0].Redelivered)
			}
		})
	}
}

func TestGetEncodingAndProperties(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/bin", map[string]any{})
	g.ok(http.StatusOK, http.MethodPost, "/api/exchanges/%2F/amq.default/publish", map[string]any{
		"routing_key": "bin", "payload": "AP8BAg==", "payload_encoding": "base64",
		"properties": map[string]any{
			"delivery_mode": 2, "content_type": "application/octet-stream", "message_id": "m-1",
			"headers":   map[string]any{"n": 7, "s": "v", "nested": map[string]any{"b": true}},
			"timestamp": 1700000000, "priority": 3, "app_id": "test", "user_id": "guest",
		},
	})
	g.ok(http.StatusOK, http.MethodPost, "/api/exchanges/%2F/amq.default/publish", map[string]any{
		"routing_key": "bin", "payload": "a long text payload", "payload_encoding": "string",
	})
	var msgs []gotMessageJSON
	g.ok(http.StatusOK, http.MethodPost, "/api/queues/%2F/bin/get",
		map[string]any{"count": 2, "ackmode": ackRequeueFalse, "encoding": "auto", "truncate": 6}).decode(t, &msgs)
	require.Len(t, msgs, 2)
	require.Equal(t, encodingBase64, msgs[0].PayloadEncoding)
	require.Equal(t, "AP8BAg==", msgs[0].Payload)
	require.Equal(t, 4, msgs[0].PayloadBytes)
	p := msgs[0].Properties
	require.Equal(t, uint8(2), p.DeliveryMode)
	require.Equal(t, "application/octet-stream", p.ContentType)
	require.Equal(t, "m-1", p.MessageID)
	require.Equal(t, int64(1700000000), p.Timestamp)
	require.Equal(t, uint8(3), p.Priority)
	require.Equal(t, "guest", p.UserID)
	require.Equal(t, map[string]any{"n": float64(7), "s": "v", "nested": map[string]any{"b": true}}, p.Headers)

	require.Equal(t, encodingString, msgs[1].PayloadEncoding)
	require.Equal(t, "a long", msgs[1].Payload, "truncated")
	require.Equal(t, len("a long text payload"), msgs[1].PayloadBytes)
}

func TestBindingPropertiesKey(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest
	g.ok(http.StatusCreated, http.MethodPut, "/api/exchanges/%2F/t", map[string]any{"type": "topic"})
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/bq", map[string]any{})

	type spec struct {
		key  string
		args map[string]any
	}
	specs := []spec{
		{"", nil},
		{"a b/c~d.#", nil},
		{"k", map[string]any{"x-tag": "one"}},
		{"k", map[string]any{"x-tag": "two"}},
	}
	locations := make([]string, len(specs))
	for i, s := range specs {
		r := g.ok(http.StatusCreated, http.MethodPost, "/api/bindings/%2F/e/t/q/bq",
			map[string]any{"routing_key": s.key, "arguments": s.args})
		locations[i] = r.header.Get("Location")
		require.True(t, strings.HasPrefix(locations[i], "/api/bindings/%2F/e/t/q/bq/"), locations[i])
	}
	require.Equal(t, "/api/bindings/%2F/e/t/q/bq/~", locations[0])

	var list []bindingJSON
	g.getJSON("/api/bindings/%2F/e/t/q/bq", &list)
	require.Len(t, list, 4)
	keys := map[string]bool{}
	for _, b := range list {
		keys[b.PropertiesKey] = true
		require.Equal(t, "queue", b.DestinationType)
		require.Equal(t, "/", b.VHost)
	}
	require.Len(t, keys, 4, "each binding has its own key")
	require.True(t, keys["~"])
	require.True(t, keys["a+b%2Fc%7Ed.%23"])

	// Each Location names its own binding.
	for i, s := range specs {
		var b bindingJSON
		g.getJSON(locations[i], &b)
		require.Equal(t, s.key, b.RoutingKey)
		want := map[string]any{}
		for k, v := range s.args {
			want[k] = v
		}
		require.Equal(t, want, b.Arguments)
		require.Equal(t, locations[i], "/api/bindings/%2F/e/t/q/bq/"+url.PathEscape(b.PropertiesKey))
		// The key pasted without the extra escaping works too.
		g.getJSON("/api/bindings/%2F/e/t/q/bq/"+b.PropertiesKey, &b)
		require.Equal(t, s.key, b.RoutingKey)
	}

	// Deleting one binding with arguments leaves its sibling.
	g.ok(http.StatusNoContent, http.MethodDelete, locations[2], nil)
	requireError(t, g.do(http.MethodGet, locations[2], nil), http.StatusNotFound)
	g.ok(http.StatusOK, http.MethodGet, locations[3], nil)
	g.getJSON("/api/bindings/%2F/e/t/q/bq", &list)
	require.Len(t, list, 3)

	// The queue's bindings include the implicit default-exchange one.
	g.getJSON("/api/queues/%2F/bq/bindings", &list)
	require.Len(t, list, 4)
	require.Equal(t, "", list[0].Source)
	require.Equal(t, "bq", list[0].RoutingKey)

	// Exchange to exchange.
	g.ok(http.StatusCreated, http.MethodPut, "/api/exchanges/%2F/dest", map[string]any{"type": "fanout"})
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/dq", map[string]any{})
	g.ok(http.StatusCreated, http.MethodPost, "/api/bindings/%2F/e/dest/q/dq", map[string]any{})
	loc := g.ok(http.StatusCreated, http.MethodPost, "/api/bindings/%2F/e/t/e/dest",
		map[string]any{"routing_key": "fwd.*"}).header.Get("Location")
	require.Equal(t, "/api/bindings/%2F/e/t/e/dest/fwd.%252A", loc)
	g.getJSON("/api/exchanges/%2F/t/bindings/source", &list)
	require.Contains(t, list, bindingJSON{Source: "t", VHost: "/", Destination: "dest", DestinationType: "exchange",
		RoutingKey: "fwd.*", Arguments: map[string]any{}, PropertiesKey: "fwd.%2A"})
	g.getJSON("/api/exchanges/%2F/dest/bindings/destination", &list)
	require.Len(t, list, 1)
	require.True(t, g.publish("t", "fwd.x", "via e2e"))
	require.Equal(t, 1, g.queue("%2F", "dq").Messages)
	g.ok(http.StatusNoContent, http.MethodDelete, loc, nil)
	g.getJSON("/api/exchanges/%2F/dest/bindings/destination", &list)
	require.Empty(t, list)
}

func TestEncodedVHost(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest

	var vh vhostJSON
	g.getJSON("/api/vhosts/%2F", &vh)
	require.Equal(t, "/", vh.Name)

	g.ok(http.StatusCreated, http.MethodPut, "/api/vhosts/a%2Fb", nil)
	g.ok(http.StatusNoContent, http.MethodPut, "/api/vhosts/a%2Fb", nil)
	g.getJSON("/api/vhosts/a%2Fb", &vh)
	require.Equal(t, "a/b", vh.Name)

	// The creator got full permissions, as in RabbitMQ.
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/a%2Fb/q%2F1", map[string]any{})
	q := g.queue("a%2Fb", "q/1")
	require.Equal(t, "q/1", q.Name)
	require.Equal(t, "a/b", q.VHost)
	var routed routedJSON
	g.ok(http.StatusOK, http.MethodPost, "/api/exchanges/a%2Fb/amq.default/publish",
		map[string]any{"routing_key": "q/1", "payload": "p"}).decode(t, &routed)
	require.True(t, routed.Routed)
	g.getJSON("/api/vhosts/a%2Fb", &vh)
	require.Equal(t, 1, vh.Messages)

	var qs []queueJSON
	g.getJSON("/api/queues/a%2Fb", &qs)
	require.Len(t, qs, 1)
	g.getJSON("/api/queues/%2F", &qs)
	require.Empty(t, qs)

	g.ok(http.StatusNoContent, http.MethodDelete, "/api/vhosts/a%2Fb", nil)
	requireError(t, g.do(http.MethodGet, "/api/vhosts/a%2Fb", nil), http.StatusNotFound)
	requireError(t, g.do(http.MethodGet, "/api/queues/a%2Fb", nil), http.StatusNotFound)
}

func TestOverviewCountsAreFresh(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/a", map[string]any{})
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/b", map[string]any{})
	require.True(t, g.publish("amq.default", "a", "1"))
	require.True(t, g.publish("amq.default", "a", "2"))
	require.True(t, g.publish("amq.default", "b", "3"))

	var o overviewJSON
	g.getJSON("/api/overview", &o)
	require.Equal(t, "Herald", o.ProductName)
	require.Equal(t, compatVersion, o.RabbitMQVersion)
	require.NotEmpty(t, o.Node)
	require.Equal(t, queueTotals{Messages: 3, MessagesReady: 3}, o.QueueTotals)
	require.Equal(t, 2, o.ObjectTotals.Queues)
	require.Positive(t, o.ObjectTotals.Exchanges)
	require.Equal(t, uint64(3), o.MessageStats.Publish)

	require.Len(t, g.get("a", 1, ackRequeueFalse), 1)
	g.getJSON("/api/overview", &o)
	require.Equal(t, 2, o.QueueTotals.Messages)

	var st statusJSON
	g.getJSON("/api/healthchecks/node", &st)
	require.Equal(t, "ok", st.Status)
	g.getJSON("/api/aliveness-test/%2F", &st)
	require.Equal(t, "ok", st.Status)
}

func TestDeleteQueueConditions(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/busy", map[string]any{})
	c, err := bd.b.Consume(context.Background(), "/", "busy", broker.ConsumeOptions{Deliver: func(*broker.Delivery) {}})
	require.NoError(t, err)
	t.Cleanup(c.Cancel)
	require.Equal(t, 1, g.queue("%2F", "busy").Consumers)

	requireError(t, g.do(http.MethodDelete, "/api/queues/%2F/busy?if-unused=true", nil), http.StatusBadRequest)
	g.ok(http.StatusOK, http.MethodGet, "/api/queues/%2F/busy", nil)
	g.ok(http.StatusNoContent, http.MethodDelete, "/api/queues/%2F/busy?if-empty=true", nil)
	requireError(t, g.do(http.MethodGet, "/api/queues/%2F/busy", nil), http.StatusNotFound)

	g.ok(http.StatusCreated, http.MethodPut, "/api/exchanges/%2F/src", map[string]any{"type": "fanout"})
	g.ok(http.StatusCreated, http.MethodPut, "/api/queues/%2F/sink", map[string]any{})
	g.ok(http.StatusCreated, http.MethodPost, "/api/bindings/%2F/e/src/q/sink", map[string]any{})
	requireError(t, g.do(http.MethodDelete, "/api/exchanges/%2F/src?if-unused=true", nil), http.StatusBadRequest)
	g.ok(http.StatusNoContent, http.MethodDelete, "/api/exchanges/%2F/src", nil)
	requireError(t, g.do(http.MethodGet, "/api/exchanges/%2F/src", nil), http.StatusNotFound)
}

func TestUsersAndPermissions(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest

	hash := broker.HashPassword("s3cret")
	g.ok(http.StatusCreated, http.MethodPut, "/api/users/carol", map[string]any{"password_hash": hash, "tags": "management"})
	var u userJSON
	g.getJSON("/api/users/carol", &u)
	require.Equal(t, userJSON{Name: "carol", PasswordHash: hash, HashingAlgorithm: hashingAlgorithm,
		Tags: []string{"management"}, Limits: map[string]any{}}, u)
	bd.as(t, "carol", "s3cret").ok(http.StatusOK, http.MethodGet, "/api/whoami", nil)

	// Updating tags alone keeps the password.
	g.ok(http.StatusNoContent, http.MethodPut, "/api/users/carol", map[string]any{"tags": "monitoring"})
	var who whoamiJSON
	bd.as(t, "carol", "s3cret").getJSON("/api/whoami", &who)
	require.Equal(t, []string{"monitoring"}, who.Tags)

	g.ok(http.StatusCreated, http.MethodPut, "/api/permissions/%2F/carol", map[string]any{"configure": "", "write": ".*", "read": ".*"})
	g.ok(http.StatusNoContent, http.MethodPut, "/api/permissions/%2F/carol", map[string]any{"configure": "^c", "write": ".*", "read": ".*"})
	var perm permissionJSON
	g.getJSON("/api/permissions/%2F/carol", &perm)
	require.Equal(t, permissionJSON{User: "carol", VHost: "/", Configure: "^c", Write: ".*", Read: ".*"}, perm)
	var perms []permissionJSON
	g.getJSON("/api/users/carol/permissions", &perms)
	require.Equal(t, []permissionJSON{perm}, perms)
	g.getJSON("/api/vhosts/%2F/permissions", &perms)
	require.Len(t, perms, 2)
	g.getJSON("/api/permissions", &perms)
	require.Len(t, perms, 2)

	g.ok(http.StatusNoContent, http.MethodDelete, "/api/permissions/%2F/carol", nil)
	requireError(t, g.do(http.MethodGet, "/api/permissions/%2F/carol", nil), http.StatusNotFound)
	g.ok(http.StatusNoContent, http.MethodDelete, "/api/users/carol", nil)
	requireError(t, g.do(http.MethodGet, "/api/users/carol", nil), http.StatusNotFound)
	requireError(t, bd.as(t, "carol", "s3cret").do(http.MethodGet, "/api/whoami", nil), http.StatusUnauthorized)

	var users []userJSON
	g.getJSON("/api/users", &users)
	require.Len(t, users, 1)
	require.Equal(t, "guest", users[0].Name)
}

// fakeConn is a connection registered the way a face would.
type fakeConn struct {
	info       broker.ConnInfo
	closed     chan string
	unregister func()
}

func (c *fakeConn) Info() broker.ConnInfo { return c.info }
func (c *fakeConn) Close(reason string) {
	c.unregister()
	c.closed <- reason
}

func TestConnections(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	g := bd.guest

	var conns []connectionJSON
	g.getJSON("/api/connections", &conns)
	require.Empty(t, conns)
	var empty []any
	g.getJSON("/api/channels", &empty)
	require.Empty(t, empty)
	g.getJSON("/api/consumers", &empty)
	require.Empty(t, empty)

	name := "127.0.0.1:5555 -> 127.0.0.1:5672"
	fc := &fakeConn{closed: make(chan string, 1), info: broker.ConnInfo{
		Name: name, Protocol: "AMQP 0-9-1", User: "guest", VHost: "/", Peer: "127.0.0.1:5555",
		ClientProperties: broker.Table{"product": []byte("test")}, Channels: 2,
		ConnectedAt: time.UnixMilli(1700000000123), ID: "conn-7",
	}}
	fc.unregister = bd.b.RegisterConnection(fc)

	// A consumer of that connection is listed with its connection.
	_, err := bd.b.DeclareQueue(context.Background(), "/", broker.QueueSpec{Name: "work"}, false)
	require.NoError(t, err)
	cons, err := bd.b.Consume(context.Background(), "/", "work", broker.ConsumeOptions{Tag: "ctag-1", Prefetch: 10, Owner: "conn-7", Deliver: func(*broker.Delivery) {}})
	require.NoError(t, err)
	var consumers []consumerJSON
	g.getJSON("/api/consumers/%2F", &consumers)
	require.Len(t, consumers, 1)
	require.Equal(t, "ctag-1", consumers[0].ConsumerTag)
	require.Equal(t, queueRef{Name: "work", VHost: "/"}, consumers[0].Queue)
	require.Equal(t, 10, consumers[0].PrefetchCount)
	require.True(t, consumers[0].AckRequired)
	require.Equal(t, "up", consumers[0].ActivityStatus)
	require.NotNil(t, consumers[0].ChannelDetails)
	require.Equal(t, name, consumers[0].ChannelDetails.ConnectionName)
	require.Equal(t, 5555, consumers[0].ChannelDetails.PeerPort)
	requireError(t, g.do(http.MethodGet, "/api/consumers/nope", nil), http.StatusNotFound)
	cons.Cancel()
	g.getJSON("/api/consumers", &consumers)
	require.Empty(t, consumers)

	g.getJSON("/api/connections", &conns)
	require.Len(t, conns, 1)
	c := conns[0]
	require.Equal(t, name, c.Name)
	require.Equal(t, "127.0.0.1", c.PeerHost)
	require.Equal(t, 5555, c.PeerPort)
	require.Equal(t, map[string]any{"product": "test"}, c.ClientProperties)
	require.Equal(t, int64(1700000000123), c.ConnectedAt)
	g.getJSON("/api/vhosts/%2F/connections", &conns)
	require.Len(t, conns, 1)

	path := "/api/connections/" + url.PathEscape(name)
	g.getJSON(path, &c)
	require.Equal(t, "AMQP 0-9-1", c.Protocol)

	// Another management user neither sees nor closes it.
	g.ok(http.StatusCreated, http.MethodPut, "/api/users/dave", map[string]any{"password": "pw", "tags": "management"})
	dave := bd.as(t, "dave", "pw")
	dave.getJSON("/api/connections", &conns)
	require.Empty(t, conns)
	requireError(t, dave.do(http.MethodDelete, path, nil), http.StatusNotFound)

	g.ok(http.StatusNoContent, http.MethodDelete, path, nil, "X-Reason", "maintenance window")
	require.Equal(t, "maintenance window", <-fc.closed)
	requireError(t, g.do(http.MethodGet, path, nil), http.StatusNotFound)
}
