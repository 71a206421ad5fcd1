package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
)

func bindQueue(t *testing.T, e *env, name, key string) {
	t.Helper()
	_, err := e.b.DeclareQueue(bg, "/", broker.QueueSpec{Name: name, Durable: true}, false)
	require.NoError(t, err)
	require.NoError(t, e.b.Bind(bg, "/", broker.Binding{Source: "events", Destination: name, RoutingKey: key}))
}

// getMsg polls basic.get on queue until a message arrives.
func getMsg(t *testing.T, e *env, queue string, noAck bool) *broker.Delivery {
	t.Helper()
	var d *broker.Delivery
	eventually(t, func() bool {
		var err error
		d, err = e.b.Get(bg, "/", queue, noAck, "")
		require.NoError(t, err)
		return d != nil
	}, "no message on %s", queue)
	return d
}

// A binary-mode CloudEvent reaches a queue bound to its type, and a
// webhook endpoint that fails twice gets it on the third attempt with the
// same webhook-id and a signature the standardwebhooks package accepts.
func TestBinaryEventRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	bindQueue(t, e, "orders", "order.created")
	sk := newSink(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	sub := e.create(t, map[string]any{
		"url": sk.ts.URL + "/hook", "exchange": "events", "binding_key": "order.#",
		"max_attempts": 5, "backoff_initial_ms": 10, "backoff_max_ms": 40,
	})
	require.True(t, strings.HasPrefix(sub.Secret, "whsec_"), sub.Secret)
	require.Equal(t, "herald.webhook."+sub.ID, sub.Queue)

	code, body := e.postBinary(t, "/v1/events/%2F/events", "ev-1", "order.created", "order/42", `{"total":42}`)
	require.Equal(t, http.StatusAccepted, code, "%s", body)

	m := getMsg(t, e, "orders", true)
	h := m.Message.Properties.Headers
	require.Equal(t, "ev-1", h["cloudEvents_id"])
	require.Equal(t, "/test", h["cloudEvents_source"])
	require.Equal(t, "order.created", h["cloudEvents_type"])
	require.Equal(t, "1.0", h["cloudEvents_specversion"])
	require.Equal(t, "order/42", h["cloudEvents_subject"])
	require.Equal(t, "application/json", m.Message.Properties.ContentType)
	require.Equal(t, "order.created", m.RoutingKey)
	require.JSONEq(t, `{"total":42}`, string(m.Message.Body))

	sk.waitReqs(t, 3)
	eventually(t, func() bool { return len(e.deliveries(t, sub.ID)) == 3 }, "3 attempts not listed")
	quietPeriod(300 * time.Millisecond)
	reqs := sk.got()
	require.Len(t, reqs, 3, "no fourth attempt")
	id := reqs[0].header.Get("webhook-id")
	require.NotEmpty(t, id)
	for _, r := range reqs {
		require.Equal(t, id, r.header.Get("webhook-id"))
		require.Equal(t, "application/cloudevents+json; charset=utf-8", r.header.Get("Content-Type"))
	}
	verifyStandard(t, sub.Secret, reqs[2])
	var ev map[string]any
	require.NoError(t, json.Unmarshal(reqs[2].body, &ev))
	require.Equal(t, map[string]any{
		"specversion": "1.0", "id": "ev-1", "source": "/test", "type": "order.created", "subject": "order/42",
		"datacontenttype": "application/json", "data": map[string]any{"total": float64(42)},
	}, ev)

	att := e.deliveries(t, sub.ID) // newest first
	require.Equal(t, []int{3, 2, 1}, []int{att[0].Attempt, att[1].Attempt, att[2].Attempt})
	require.Equal(t, []int{200, 500, 500}, []int{att[0].Status, att[1].Status, att[2].Status})
	require.Equal(t, []string{outcomeDelivered, outcomeRetry, outcomeRetry}, []string{att[0].Outcome, att[1].Outcome, att[2].Outcome})
	require.Equal(t, "Internal Server Error", att[1].Response)
	for _, a := range att {
		require.Equal(t, id, a.WebhookID)
	}
	eventually(t, func() bool { return e.sub(t, sub.ID).Pending == 0 }, "queue not drained")
}

func TestStructuredBatchAndRoutingKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	bindQueue(t, e, "q-structured", "thing.made")
	bindQueue(t, e, "q-override", "custom.key")

	code, body := e.do(t, "POST", "/v1/events/%2F/events",
		`{"specversion":"1.0","id":"s1","source":"urn:x","type":"thing.made","time":"2026-01-02T03:04:05Z","datacontenttype":"text/plain","data":"hello","traceparent":"00-abc","count":7}`,
		"Content-Type", "application/cloudevents+json")
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	m := getMsg(t, e, "q-structured", true)
	h := m.Message.Properties.Headers
	require.Equal(t, "s1", h["cloudEvents_id"])
	require.Equal(t, "2026-01-02T03:04:05Z", h["cloudEvents_time"])
	require.Equal(t, "00-abc", h["cloudEvents_traceparent"])
	require.Equal(t, "text/plain", m.Message.Properties.ContentType)
	require.Equal(t, "hello", string(m.Message.Body))

	code, body = e.do(t, "POST", "/v1/events/%2F/events",
		`[{"specversion":"1.0","id":"b1","source":"urn:x","type":"thing.made","data":{"n":1}},
		  {"specversion":"1.0","id":"b2","source":"urn:x","type":"thing.made","data_base64":"AAEC"}]`,
		"Content-Type", "application/cloudevents-batch+json")
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	require.JSONEq(t, `{"accepted":2,"routed":2}`, string(body))
	require.Equal(t, "b1", getMsg(t, e, "q-structured", true).Message.Properties.Headers["cloudEvents_id"])
	m = getMsg(t, e, "q-structured", true)
	require.Equal(t, "b2", m.Message.Properties.Headers["cloudEvents_id"])
	require.Equal(t, []byte{0, 1, 2}, m.Message.Body)

	code, body = e.postBinary(t, "/v1/events/%2F/events?routing_key=custom.key", "o1", "thing.made", "", `{}`)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	m = getMsg(t, e, "q-override", true)
	require.Equal(t, "custom.key", m.RoutingKey)
	require.Equal(t, "thing.made", m.Message.Properties.Headers["cloudEvents_type"])
}

func TestInvalidEvents(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.MaxBodyBytes = 4096; c.MaxBatchEvents = 2 })
	for _, tc := range []struct {
		name, body, reason string
		hdr                []string
		code               int
	}{
		{"not a cloudevent", `{}`, "not a CloudEvent", []string{"Content-Type", "application/json"}, 400},
		{"binary without id", `{}`, "id", []string{"ce-specversion", "1.0", "ce-source", "/s", "ce-type", "t"}, 400},
		{"structured without source", `{"specversion":"1.0","id":"1","type":"t"}`, "source", []string{"Content-Type", "application/cloudevents+json"}, 400},
		{"wrong specversion", `{"specversion":"0.2","id":"1","type":"t","source":"/s"}`, "specversion", []string{"Content-Type", "application/cloudevents+json"}, 400},
		{"bad json", `{"specversion":`, "invalid CloudEvent", []string{"Content-Type", "application/cloudevents+json"}, 400},
		{"bad batch", `{"a":1}`, "batch", []string{"Content-Type", "application/cloudevents-batch+json"}, 400},
		{"empty batch", `[]`, "empty", []string{"Content-Type", "application/cloudevents-batch+json"}, 400},
		{"batch too large", `[{"specversion":"1.0","id":"1","type":"t","source":"/s"},{"specversion":"1.0","id":"2","type":"t","source":"/s"},{"specversion":"1.0","id":"3","type":"t","source":"/s"}]`,
			"limit of 2", []string{"Content-Type", "application/cloudevents-batch+json"}, 413},
		{"too many extensions", `{"specversion":"1.0","id":"1","type":"t","source":"/s"` + manyExtensions(65) + `}`,
			"more than 64", []string{"Content-Type", "application/cloudevents+json"}, 400},
		{"body too large", `{"specversion":"1.0","id":"1","type":"t","source":"/s","data":"` + strings.Repeat("x", 5000) + `"}`,
			"larger than 4096", []string{"Content-Type", "application/cloudevents+json"}, 413},
	} {
		code, body := e.do(t, "POST", "/v1/events/%2F/events", tc.body, tc.hdr...)
		require.Equal(t, tc.code, code, "%s: %s", tc.name, body)
		var env struct{ Error, Reason string }
		require.NoError(t, json.Unmarshal(body, &env), tc.name)
		require.NotEmpty(t, env.Error, tc.name)
		require.Contains(t, env.Reason, tc.reason, tc.name)
	}
	code, body := e.postBinary(t, "/v1/events/%2F/missing", "1", "t", "", "{}")
	require.Equal(t, http.StatusNotFound, code, "%s", body)

	req, _ := http.NewRequest("POST", e.base+"/v1/events/%2F/events", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func manyExtensions(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `,"x%d":"v"`, i)
	}
	return b.String()
}
