package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

func TestSSRFRefusedAtCreation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/",
		"http://10.0.0.1/",
		"http://100.100.100.200/",
		"http://0.0.0.0:80/",
		"http://[::ffff:169.254.169.254]/",
		"ftp://example.com/",
	} {
		code, body := e.do(t, "POST", "/v1/webhooks", map[string]any{"url": u, "exchange": "events"})
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", u, body)
		require.Contains(t, string(body), `"reason":"url: `, u)
	}

	// Loopback is refused unless allowed.
	g := NewTargetGuard(nil)
	err := g.CheckURL(bg, "http://127.0.0.1:8080/hook")
	require.True(t, errs.Is(err, errs.BadArgument), "%v", err)
	require.Contains(t, errs.Message(err), "refused address")
	require.NoError(t, NewTargetGuard(loopback).CheckURL(bg, "http://127.0.0.1:8080/hook"))
	require.False(t, g.Allowed(netip.MustParseAddr("169.254.169.254")))
	require.False(t, NewTargetGuard(loopback).Allowed(netip.MustParseAddr("169.254.169.254")))
	require.True(t, g.Allowed(netip.MustParseAddr("93.184.216.34")))

	// The client refuses at dial time too.
	sk := newSink(t, always(200))
	_, err = g.Client().Get(sk.ts.URL)
	require.ErrorIs(t, err, ErrRefusedTarget)
	require.Empty(t, sk.got())
}

// A name that resolved to a public address when the subscription was
// created and to loopback when delivering is refused at dial time.
func TestSSRFDNSRebindingRefusedAtDelivery(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.AllowPrivate = nil; c.BreakerFailures = -1 })
	e.s.guard.lookup = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil // what DNS said at creation
	}
	sk := newSink(t, always(200))
	port := sk.ts.URL[strings.LastIndex(sk.ts.URL, ":"):]
	sub := e.create(t, map[string]any{"url": "http://localhost" + port + "/", "exchange": "events", "binding_key": "#",
		"max_attempts": 1})
	code, body := e.postBinary(t, "/v1/events/%2F/events", "1", "t", "", "{}")
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var att []Attempt
	eventually(t, func() bool { att = e.deliveries(t, sub.ID); return len(att) == 1 }, "no attempt")
	require.Contains(t, att[0].Error, "refused target")
	require.Equal(t, outcomeDead, att[0].Outcome)
	require.Empty(t, sk.got())
}

// Stopping everything while a retry waits in the delay log, then starting
// again on the same data directory: the event is still delivered, once.
func TestRetrySurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startExact(t, dir)
	var fails atomic.Int32
	sk := newSink(t, func(n int, _ *http.Request) int {
		if n == 1 {
			fails.Add(1)
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#",
		"backoff_initial_ms": 2000, "backoff_max_ms": 2000, "max_attempts": 3})
	code, body := e.postBinary(t, "/v1/events/%2F/events", "r1", "t", "", `{"x":1}`)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	sk.waitReqs(t, 1)
	// The retry is stored once the original is acked (queue empty).
	eventually(t, func() bool {
		qi, err := e.b.Queue("/", queueName(sub.ID))
		return err == nil && qi.Messages == 0
	}, "original not acked")
	e.stop()
	require.Len(t, sk.got(), 1, "delivered before the restart: the backoff was too short for this test")

	e = startEnv(t, dir, fastRetries)
	defer e.stop()
	reqs := sk.waitReqs(t, 2)
	require.Equal(t, reqs[0].header.Get("webhook-id"), reqs[1].header.Get("webhook-id"))
	got, ok := e.s.Get(sub.ID)
	require.True(t, ok)
	verifyStandard(t, got.Secret, reqs[1])
	// The attempt history is a journal in the engine: it survives the restart.
	eventually(t, func() bool { return len(e.deliveries(t, sub.ID)) == 2 }, "attempts not listed after restart")
	att := e.deliveries(t, sub.ID)
	require.Equal(t, []int{2, 1}, []int{att[0].Attempt, att[1].Attempt}, "newest first")
	require.Equal(t, []string{outcomeDelivered, outcomeRetry}, []string{att[0].Outcome, att[1].Outcome})
	require.Equal(t, http.StatusServiceUnavailable, att[1].Status)
	quietPeriod(300 * time.Millisecond)
	require.Len(t, sk.got(), 2, "exactly one successful delivery")
}

func TestDeadLettersListAndRedrive(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	sk := newSink(t, always(http.StatusBadGateway))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "dead.#",
		"max_attempts": 2, "backoff_initial_ms": 5, "backoff_max_ms": 5})
	for _, id := range []string{"d1", "d2"} {
		code, body := e.postBinary(t, "/v1/events/%2F/events", id, "dead.letter", "", `{"id":"`+id+`"}`)
		require.Equal(t, http.StatusAccepted, code, "%s", body)
	}
	eventually(t, func() bool { return e.sub(t, sub.ID).DeadLetters == 2 }, "no dead letters")
	require.Len(t, sk.got(), 4)

	code, body := e.do(t, "GET", "/v1/webhooks/"+sub.ID+"/dead-letters", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var dead []DeadLetter
	require.NoError(t, json.Unmarshal(body, &dead))
	require.Len(t, dead, 2)
	for _, d := range dead {
		require.Equal(t, 2, d.Attempts)
		require.Equal(t, "HTTP 502", d.LastError)
		require.Equal(t, "events", d.Exchange)
		require.Equal(t, "dead.letter", d.RoutingKey)
		require.True(t, strings.HasPrefix(d.WebhookID, "msg_"), d.WebhookID)
	}
	var evIDs []string
	for _, d := range dead {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(d.Event, &ev))
		evIDs = append(evIDs, ev["id"].(string))
	}
	require.ElementsMatch(t, []string{"d1", "d2"}, evIDs)
	require.Equal(t, 2, e.sub(t, sub.ID).DeadLetters, "listing leaves them in place")

	sk.setStatus(always(http.StatusNoContent))
	code, body = e.do(t, "POST", "/v1/webhooks/"+sub.ID+"/dead-letters/redrive", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.JSONEq(t, `{"redriven":2}`, string(body))
	reqs := sk.waitReqs(t, 6)
	ids := map[string]bool{}
	for _, r := range reqs[:4] {
		ids[r.header.Get("webhook-id")] = true
	}
	require.Len(t, ids, 2)
	require.True(t, ids[reqs[4].header.Get("webhook-id")] && ids[reqs[5].header.Get("webhook-id")], "redrive keeps the webhook-id")
	eventually(t, func() bool { j := e.sub(t, sub.ID); return j.DeadLetters == 0 && j.Pending == 0 }, "not drained")
	require.Equal(t, 1, e.deliveries(t, sub.ID)[0].Attempt, "redriven events start again at attempt 1")
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sk := newSink(t, always(200))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#"})
	code, body := e.do(t, "PATCH", "/v1/webhooks/"+sub.ID, map[string]any{"paused": true})
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.Contains(t, string(body), `"paused":true`)
	require.NotContains(t, string(body), `"secret"`)
	code, _ = e.postBinary(t, "/v1/events/%2F/events", "p1", "t", "", "{}")
	require.Equal(t, http.StatusAccepted, code)
	eventually(t, func() bool { return e.sub(t, sub.ID).Pending == 1 }, "not queued")
	quietPeriod(100 * time.Millisecond)
	require.Empty(t, sk.got(), "paused subscriptions deliver nothing")

	code, body = e.do(t, "PATCH", "/v1/webhooks/"+sub.ID, map[string]any{"paused": false})
	require.Equal(t, http.StatusOK, code, "%s", body)
	sk.waitReqs(t, 1)
}

func TestCircuitBreakerDisablesAndReenable(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.BreakerFailures = 3; c.BreakerPeriod = time.Nanosecond })
	sk := newSink(t, always(500))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#",
		"max_attempts": 50, "backoff_initial_ms": 5, "backoff_max_ms": 10})
	code, _ := e.postBinary(t, "/v1/events/%2F/events", "c1", "t", "", "{}")
	require.Equal(t, http.StatusAccepted, code)
	eventually(t, func() bool { return e.sub(t, sub.ID).Disabled }, "not disabled")
	j := e.sub(t, sub.ID)
	require.Contains(t, j.DisabledReason, "3 consecutive failed attempts")
	n := len(sk.got())
	quietPeriod(200 * time.Millisecond)
	require.Len(t, sk.got(), n, "a disabled subscription delivers nothing")

	sk.setStatus(always(200))
	code, body := e.do(t, "PATCH", "/v1/webhooks/"+sub.ID, map[string]any{"enabled": true})
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.Contains(t, string(body), `"disabled":false`)
	eventually(t, func() bool { a := e.deliveries(t, sub.ID); return len(a) > 0 && a[0].Outcome == outcomeDelivered }, "not delivered after re-enable")
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sk := newSink(t, always(200))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#"})
	code, body := e.do(t, "PATCH", "/v1/webhooks/"+sub.ID, map[string]any{"rotate_secret": true})
	require.Equal(t, http.StatusOK, code, "%s", body)
	var j subJSON
	require.NoError(t, json.Unmarshal(body, &j))
	require.True(t, strings.HasPrefix(j.Secret, "whsec_"))
	require.NotEqual(t, sub.Secret, j.Secret)

	code, _ = e.postBinary(t, "/v1/events/%2F/events", "k1", "t", "", "{}")
	require.Equal(t, http.StatusAccepted, code)
	r := sk.waitReqs(t, 1)[0]
	require.Len(t, strings.Fields(r.header.Get("webhook-signature")), 2, "new and old signatures during the grace period")
	verifyStandard(t, j.Secret, r)
	verifyStandard(t, sub.Secret, r)

	// An explicit secret replaces it too; a bad one is refused.
	code, body = e.do(t, "PATCH", "/v1/webhooks/"+sub.ID, map[string]any{"secret": "nope"})
	require.Equal(t, http.StatusBadRequest, code, "%s", body)
	require.Contains(t, string(body), "secret")
}

// With an ordering key, a key's later event waits while an earlier one is
// retried; other keys flow.
func TestOrderingKeyHoldsLaterEvents(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	var fails atomic.Int32
	sk := newSink(t, nil)
	sk.setStatus(func(n int, _ *http.Request) int {
		// Called with sk.mu unlocked; the body is the n-th request's.
		if strings.Contains(string(sk.got()[n-1].body), `"id":"A1"`) && fails.Add(1) <= 2 {
			return 500
		}
		return 200
	})
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#",
		"ordering_key": "subject", "concurrency": 4, "backoff_initial_ms": 30, "backoff_max_ms": 30})
	for _, ev := range [][2]string{{"A1", "a"}, {"A2", "a"}, {"B1", "b"}, {"U1", ""}} {
		code, body := e.postBinary(t, "/v1/events/%2F/events", ev[0], "t", ev[1], "{}")
		require.Equal(t, http.StatusAccepted, code, "%s", body)
	}
	reqs := sk.waitReqs(t, 6)
	var orderA []string
	for _, r := range reqs {
		var ev struct{ ID string }
		require.NoError(t, json.Unmarshal(r.body, &ev))
		if ev.ID != "B1" && ev.ID != "U1" { // other key, no key
			orderA = append(orderA, ev.ID)
		}
	}
	require.Equal(t, []string{"A1", "A1", "A1", "A2"}, orderA)
	eventually(t, func() bool { return e.sub(t, sub.ID).Pending == 0 }, "not drained")
}

// An ordered event retried in place keeps its attempt count across a
// restart of Herald (restored from the deliveries journal): max_attempts 4,
// two attempts before the restart, two after, then the dead letters.
func TestOrderedAttemptsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startExact(t, dir)
	sk := newSink(t, always(http.StatusInternalServerError))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#", "ordering_key": "subject",
		"max_attempts": 4, "backoff_initial_ms": 1500, "backoff_max_ms": 1500})
	code, body := e.postBinary(t, "/v1/events/%2F/events", "o1", "t", "k", "{}")
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	sk.waitReqs(t, 2)
	e.stop() // the event is held in place, waiting for its third attempt
	require.Len(t, sk.got(), 2, "a third attempt before the restart: the backoff was too short for this test")

	e = startEnv(t, dir, fastRetries)
	defer e.stop()
	eventually(t, func() bool { return e.sub(t, sub.ID).DeadLetters == 1 }, "not dead-lettered after the restart")
	quietPeriod(300 * time.Millisecond)
	reqs := sk.got()
	require.Equal(t, 4, len(reqs), "attempts over both runs: max_attempts")
	for _, r := range reqs {
		require.Equal(t, reqs[0].header.Get("webhook-id"), r.header.Get("webhook-id"))
	}
	att := e.deliveries(t, sub.ID)
	require.Len(t, att, 4)
	var nums []int
	for _, a := range att {
		nums = append(nums, a.Attempt)
	}
	require.Equal(t, []int{4, 3, 2, 1}, nums, "newest first")
	require.Equal(t, outcomeDead, att[0].Outcome)
	code, body = e.do(t, "GET", "/v1/webhooks/"+sub.ID+"/dead-letters", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var dead []DeadLetter
	require.NoError(t, json.Unmarshal(body, &dead))
	require.Len(t, dead, 1)
	require.Equal(t, 4, dead[0].Attempts)
	require.Zero(t, e.sub(t, sub.ID).Pending)
}

// Messages published over AMQP (no cloudEvents_* headers) are delivered as
// synthesized CloudEvents.
func TestSynthesizedCloudEvent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sk := newSink(t, always(200))
	e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "amqp.#"})
	ts := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	_, err := e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "amqp.thing",
		Message: &broker.Message{Properties: broker.Properties{ContentType: "application/octet-stream", MessageID: "m-1", Timestamp: ts}, Body: []byte{0xff, 0}}})
	require.NoError(t, err)
	_, err = e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "amqp.plain",
		Message: &broker.Message{Properties: broker.Properties{ContentType: "text/plain"}, Body: []byte("hi")}})
	require.NoError(t, err)
	reqs := sk.waitReqs(t, 2)
	byType := map[string]map[string]any{}
	for _, r := range reqs {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(r.body, &ev))
		byType[ev["type"].(string)] = ev
	}
	require.Equal(t, map[string]any{"specversion": "1.0", "id": "m-1", "source": "/herald/%2F/events", "type": "amqp.thing",
		"time": "2026-05-06T07:08:09Z", "datacontenttype": "application/octet-stream", "data_base64": "/wA="}, byType["amqp.thing"])
	plain := byType["amqp.plain"]
	require.Equal(t, "hi", plain["data"])
	require.True(t, strings.HasPrefix(plain["id"].(string), "msg_"), plain["id"])
}

func TestWebSubFormatAndGone(t *testing.T) {
	t.Parallel()
	gone := make(chan Subscription, 1)
	e := setup(t, func(c *Config) { c.OnGone = func(s Subscription) { gone <- s } })
	sk := newSink(t, func(n int, _ *http.Request) int {
		if n == 1 {
			return 200
		}
		return http.StatusGone
	})
	sub, err := e.s.Create(bg, Spec{URL: sk.ts.URL, Exchange: "events", BindingKey: "feed", Format: FormatWebSub,
		Secret: "s3cret", Topic: "https://example.com/feed", HubURL: "https://hub.example.com/", Owner: "websub"})
	require.NoError(t, err)
	// Hidden from /v1/webhooks.
	code, body := e.do(t, "GET", "/v1/webhooks", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "[]", string(body))
	code, _ = e.do(t, "GET", "/v1/webhooks/"+sub.ID, nil)
	require.Equal(t, http.StatusNotFound, code)

	for range 2 {
		_, err = e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "feed",
			Message: &broker.Message{Properties: broker.Properties{ContentType: "application/atom+xml"}, Body: []byte("<feed/>")}})
		require.NoError(t, err)
	}
	r := sk.waitReqs(t, 1)[0]
	require.Equal(t, "<feed/>", string(r.body))
	require.Equal(t, "application/atom+xml", r.header.Get("Content-Type"))
	require.Equal(t, `<https://hub.example.com/>; rel="hub", <https://example.com/feed>; rel="self"`, r.header.Get("Link"))
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write(r.body)
	require.Equal(t, "sha256="+hex.EncodeToString(m.Sum(nil)), r.header.Get("X-Hub-Signature"))
	require.Empty(t, r.header.Get("webhook-signature"))

	select {
	case s := <-gone:
		require.Equal(t, sub.ID, s.ID)
	case <-time.After(10 * time.Second):
		t.Fatal("OnGone not called")
	}
	_, ok := e.s.Get(sub.ID)
	require.False(t, ok)
	_, err = e.b.Queue("/", queueName(sub.ID))
	require.True(t, errs.Is(err, errs.NotFound), "%v", err)
}

func TestUpdateAndDelete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sk1, sk2 := newSink(t, always(200)), newSink(t, always(200))
	sub, err := e.s.Create(bg, Spec{URL: sk1.ts.URL, Exchange: "events", BindingKey: "one"})
	require.NoError(t, err)
	require.Equal(t, 10, sub.Concurrency)
	require.Equal(t, 8, sub.MaxAttempts)
	up, err := e.s.Update(bg, sub.ID, Spec{URL: sk2.ts.URL, Exchange: "events", BindingKey: "two", Secret: sub.Secret})
	require.NoError(t, err)
	require.Equal(t, sk2.ts.URL, up.URL)
	_, err = e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "one", Message: &broker.Message{Body: []byte("1")}})
	require.NoError(t, err)
	_, err = e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "two", Message: &broker.Message{Body: []byte("2")}})
	require.NoError(t, err)
	r := sk2.waitReqs(t, 1)[0]
	require.Contains(t, string(r.body), `"type":"two"`)
	require.Empty(t, sk1.got())
	require.Len(t, e.s.List(), 1)

	code, _ := e.do(t, "DELETE", "/v1/webhooks/"+sub.ID, nil)
	require.Equal(t, http.StatusNoContent, code)
	require.Empty(t, e.s.List())
	require.Empty(t, e.b.Records(recordKind))
	_, err = e.b.Queue("/", deadName(sub.ID))
	require.True(t, errs.Is(err, errs.NotFound), "%v", err)
	code, _ = e.do(t, "DELETE", "/v1/webhooks/"+sub.ID, nil)
	require.Equal(t, http.StatusNotFound, code)
}

func TestAPIValidationAndPermissions(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.MaxSubscriptions = 1 })
	sk := newSink(t, always(200))
	for _, tc := range []struct {
		body   map[string]any
		reason string
	}{
		{map[string]any{"exchange": "events"}, "url: required"},
		{map[string]any{"url": sk.ts.URL}, "exchange: required"},
		{map[string]any{"url": sk.ts.URL, "exchange": "events", "max_attempts": 1000}, "max_attempts"},
		{map[string]any{"url": sk.ts.URL, "exchange": "events", "concurrency": 100000}, "concurrency"},
		{map[string]any{"url": sk.ts.URL, "exchange": "events", "secret": "plain"}, "secret"},
		{map[string]any{"url": sk.ts.URL, "exchange": "events", "bogus": 1}, "unknown field"},
	} {
		code, body := e.do(t, "POST", "/v1/webhooks", tc.body)
		require.Equal(t, http.StatusBadRequest, code, "%v: %s", tc.body, body)
		require.Contains(t, string(body), tc.reason)
	}
	code, body := e.do(t, "POST", "/v1/webhooks", map[string]any{"url": sk.ts.URL, "exchange": "nope"})
	require.Equal(t, http.StatusNotFound, code, "%s", body)
	require.Empty(t, e.b.Queues("/"), "a failed create leaves no queues")

	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events"})
	code, body = e.do(t, "POST", "/v1/webhooks", map[string]any{"url": sk.ts.URL, "exchange": "events"})
	require.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
	require.Contains(t, string(body), "too many")

	// A user without permissions on the vhost sees nothing and may not write.
	require.NoError(t, e.b.PutUser(bg, broker.User{Name: "bob", Password: "pw", Tags: []string{"management"}}))
	asBob := func(method, path string, body string) int {
		req, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
		req.SetBasicAuth("bob", "pw")
		req.Header.Set("ce-specversion", "1.0")
		req.Header.Set("ce-id", "1")
		req.Header.Set("ce-source", "/s")
		req.Header.Set("ce-type", "t")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusForbidden, asBob("POST", "/v1/events/%2F/events", "{}"))
	require.Equal(t, http.StatusForbidden, asBob("GET", "/v1/webhooks/"+sub.ID, ""))
	require.Equal(t, http.StatusForbidden, asBob("POST", "/v1/webhooks", `{"url":"`+sk.ts.URL+`","exchange":"events"}`))
	req, _ := http.NewRequest("GET", e.base+"/v1/webhooks", nil)
	req.SetBasicAuth("bob", "pw")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var list []subJSON
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Empty(t, list)
}

func TestLimitsOverflowTimeoutRedirect(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.MaxPending = 2; c.BreakerFailures = -1 })

	// Beyond MaxPending, the oldest pending events move to the dead letters.
	sk := newSink(t, always(200))
	paused := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "over"})
	code, body := e.do(t, "PATCH", "/v1/webhooks/"+paused.ID, map[string]any{"paused": true})
	require.Equal(t, http.StatusOK, code, "%s", body)
	for i := range 4 {
		_, err := e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "over",
			Message: &broker.Message{Properties: broker.Properties{MessageID: fmt.Sprint(i)}, Body: []byte("{}")}})
		require.NoError(t, err)
	}
	eventually(t, func() bool { j := e.sub(t, paused.ID); return j.Pending == 2 && j.DeadLetters == 2 }, "overflow not dead-lettered")
	require.Empty(t, sk.got())

	// A slow endpoint times out; a redirect is a failure and is not followed.
	slow := newSink(t, func(int, *http.Request) int { time.Sleep(300 * time.Millisecond); return 200 })
	target := newSink(t, always(200))
	redirect := httptest.NewServer(http.RedirectHandler(target.ts.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	for _, tc := range []struct{ url, key, want string }{
		{slow.ts.URL, "slow", "timeout after 50ms"},
		{redirect.URL, "redirect", ""},
	} {
		sub := e.create(t, map[string]any{"url": tc.url, "exchange": "events", "binding_key": tc.key, "timeout_ms": 50, "max_attempts": 1})
		_, err := e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: tc.key, Message: &broker.Message{Body: []byte("{}")}})
		require.NoError(t, err)
		var att []Attempt
		eventually(t, func() bool { att = e.deliveries(t, sub.ID); return len(att) == 1 }, "no attempt for %s", tc.key)
		require.Equal(t, outcomeDead, att[0].Outcome, tc.key)
		if tc.want != "" {
			require.Equal(t, tc.want, att[0].Error)
		} else {
			require.Equal(t, http.StatusFound, att[0].Status)
		}
	}
	require.Empty(t, target.got(), "redirects are not followed")
}

// Stop lets attempts in flight finish until its context ends, then cancels
// them; the event stays queued and is delivered after a restart.
func TestStopCancelsAttemptsAfterDrain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startEnv(t, dir)
	release := make(chan struct{})
	sk := newSink(t, func(n int, r *http.Request) int {
		if n == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return 200
	})
	defer close(release)
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#"})
	code, _ := e.postBinary(t, "/v1/events/%2F/events", "s1", "t", "", "{}")
	require.Equal(t, http.StatusAccepted, code)
	sk.waitReqs(t, 1)
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	start := time.Now()
	e.s.Stop(ctx)
	cancel()
	require.Less(t, time.Since(start), 5*time.Second, "Stop waited past its context")
	require.Empty(t, e.deliveries(t, sub.ID), "a cancelled attempt is not an attempt")
	e.stop()

	e = startEnv(t, dir)
	defer e.stop()
	reqs := sk.waitReqs(t, 2)
	require.Equal(t, reqs[0].header.Get("webhook-id"), reqs[1].header.Get("webhook-id"))
	eventually(t, func() bool { a := e.deliveries(t, sub.ID); return len(a) == 1 && a[0].Outcome == outcomeDelivered }, "not delivered after restart")
}

// A subscription whose queue is deleted behind its back (management API)
// declares it again and keeps delivering.
func TestQueueDeletedExternallyIsRecreated(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sk := newSink(t, always(200))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "re.#"})
	_, err := e.b.DeleteQueue(bg, "/", sub.Queue, false, false, "")
	require.NoError(t, err)
	eventually(t, func() bool {
		qi, err := e.b.Queue("/", sub.Queue)
		return err == nil && qi.Consumers == 1
	}, "queue not recreated")
	code, _ := e.postBinary(t, "/v1/events/%2F/events", "r1", "re.x", "", "{}")
	require.Equal(t, http.StatusAccepted, code)
	sk.waitReqs(t, 1)
}

// The deliveries list is a journal bounded by DeliveryLogSize per
// subscription; deleting the subscription deletes its history.
func TestDeliveriesBoundedAndDeletedWithSubscription(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.DeliveryLogSize = 3 })
	sk := newSink(t, always(200))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "b.#", "concurrency": 1})
	for i := range 5 {
		code, body := e.postBinary(t, "/v1/events/%2F/events", fmt.Sprint("b", i), "b.x", "", "{}")
		require.Equal(t, http.StatusAccepted, code, "%s", body)
	}
	sk.waitReqs(t, 5)
	eventually(t, func() bool { return e.sub(t, sub.ID).Pending == 0 }, "queue not drained")
	att := e.deliveries(t, sub.ID)
	require.Len(t, att, 3, "bounded to DeliveryLogSize")
	for _, a := range att {
		require.Equal(t, outcomeDelivered, a.Outcome)
		require.Positive(t, a.Latency, "latency_ms round-trips")
	}
	got, err := e.b.JournalRead(bg, deliveriesJournal, sub.ID, 0)
	require.NoError(t, err)
	require.Len(t, got, 3, "the journal itself keeps only DeliveryLogSize")

	code, _ := e.do(t, "DELETE", "/v1/webhooks/"+sub.ID, nil)
	require.Equal(t, http.StatusNoContent, code)
	got, err = e.b.JournalRead(bg, deliveriesJournal, sub.ID, 0)
	require.NoError(t, err)
	require.Empty(t, got, "history deleted with the subscription")
}
