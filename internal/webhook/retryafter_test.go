package webhook

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
)

// slack allows for the delay log's due times, which are whole milliseconds.
const slack = 20 * time.Millisecond

// retryAfterSink answers request n with code(n) and, when ra(n) is not "",
// Retry-After: ra(n).
func retryAfterSink(t *testing.T, code func(n int) int, ra func(n int) string) *sink {
	t.Helper()
	sk := newSink(t, func(n int, _ *http.Request) int { return code(n) })
	sk.setHeader(func(n int, h http.Header) {
		if v := ra(n); v != "" {
			h.Set("Retry-After", v)
		}
	})
	return sk
}

// firstThenOK answers the first request with code, then 200.
func firstThenOK(code int) func(int) int {
	return func(n int) int {
		if n == 1 {
			return code
		}
		return http.StatusOK
	}
}

// onFirst is Retry-After: v on the first answer only.
func onFirst(v string) func(int) string {
	return func(n int) string {
		if n == 1 {
			return v
		}
		return ""
	}
}

// gap is the time between the sink's requests i and i+1.
func gap(reqs []sinkReq, i int) time.Duration { return reqs[i+1].at.Sub(reqs[i].at) }

// waitAttempts polls the deliveries list until it holds n attempts (newest
// first).
func waitAttempts(t *testing.T, e *env, id string, n int) []Attempt {
	t.Helper()
	var att []Attempt
	eventually(t, func() bool { att = e.deliveries(t, id); return len(att) >= n }, "fewer than %d attempts listed", n)
	return att
}

// retriedOnce creates a subscription of sk (backoff 10 ms doubling up to
// backoffMaxMs), posts one event and checks that its retry came at least
// minGap after the first attempt and less than 4 s after it. It returns the
// subscription and its two attempts, newest first.
func retriedOnce(t *testing.T, e *env, sk *sink, backoffMaxMs int, minGap time.Duration) (subJSON, []Attempt) {
	t.Helper()
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#",
		"max_attempts": 3, "backoff_initial_ms": 10, "backoff_max_ms": backoffMaxMs})
	code, body := e.postBinary(t, "/v1/events/%2F/events", "ra", "t", "", "{}")
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	reqs := sk.waitReqs(t, 2)
	require.GreaterOrEqual(t, gap(reqs, 0), minGap-slack, "retried before Retry-After")
	require.Less(t, gap(reqs, 0), 4*time.Second, "Retry-After not clamped")
	require.Equal(t, reqs[0].header.Get("webhook-id"), reqs[1].header.Get("webhook-id"))
	att := waitAttempts(t, e, sub.ID, 2)
	require.Equal(t, []int{2, 1}, []int{att[0].Attempt, att[1].Attempt})
	require.Equal(t, []string{outcomeDelivered, outcomeRetry}, []string{att[0].Outcome, att[1].Outcome})
	require.Zero(t, att[0].RetryAfter)
	return sub, att
}

// A 429 with Retry-After: 1 (delta-seconds) schedules the durable retry at
// least a second later although the backoff is 10 ms; the deliveries list
// shows the Retry-After applied.
func TestRetryAfterDeltaSeconds(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	sk := retryAfterSink(t, firstThenOK(http.StatusTooManyRequests), onFirst("1"))
	sub, att := retriedOnce(t, e, sk, 5000, time.Second)
	require.Equal(t, http.StatusTooManyRequests, att[1].Status)
	require.Equal(t, time.Second, att[1].RetryAfter)
	_, raw := e.do(t, "GET", "/v1/webhooks/"+sub.ID+"/deliveries", nil)
	require.Contains(t, string(raw), `"retry_after_ms":1000`)
}

// A 503 with an HTTP-date Retry-After is honoured relative to the
// response's Date header, so the endpoint's clock skew does not matter: the
// sink's clock is an hour behind.
func TestRetryAfterHTTPDate(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	sk := retryAfterSink(t, firstThenOK(http.StatusServiceUnavailable), func(int) string { return "" })
	sk.setHeader(func(n int, h http.Header) {
		if n == 1 {
			skewed := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
			h.Set("Date", skewed.Format(http.TimeFormat))
			h.Set("Retry-After", skewed.Add(time.Second).Format(http.TimeFormat))
		}
	})
	_, att := retriedOnce(t, e, sk, 5000, time.Second)
	require.Equal(t, http.StatusServiceUnavailable, att[1].Status)
	require.Equal(t, time.Second, att[1].RetryAfter)
}

// A Retry-After beyond the subscription's backoff_max is clamped to it.
func TestRetryAfterClampedToBackoffMax(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	sk := retryAfterSink(t, firstThenOK(http.StatusTooManyRequests), onFirst("86400"))
	_, att := retriedOnce(t, e, sk, 1200, 1200*time.Millisecond)
	require.Equal(t, 1200*time.Millisecond, att[1].RetryAfter)
}

// Unparsable and negative values fall back to the backoff, and so does a
// Retry-After on statuses other than 429 and 503.
func TestRetryAfterIgnored(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	answers := []struct {
		code int
		ra   string
	}{
		{http.StatusTooManyRequests, "-5"},
		{http.StatusServiceUnavailable, "soon"},
		{http.StatusTooManyRequests, "1.5"},
		{http.StatusInternalServerError, "1"},
		{http.StatusBadGateway, "2"},
	}
	sk := retryAfterSink(t, func(n int) int {
		if n <= len(answers) {
			return answers[n-1].code
		}
		return http.StatusOK
	}, func(n int) string {
		if n <= len(answers) {
			return answers[n-1].ra
		}
		return ""
	})
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#",
		"max_attempts": 10, "backoff_initial_ms": 10, "backoff_max_ms": 20})
	code, body := e.postBinary(t, "/v1/events/%2F/events", "ra4", "t", "", "{}")
	require.Equal(t, http.StatusAccepted, code, "%s", body)

	reqs := sk.waitReqs(t, len(answers)+1)
	for i := range len(answers) {
		require.Less(t, gap(reqs, i), 900*time.Millisecond, "answer %d: Retry-After %q honoured", i+1, answers[i].ra)
	}
	att := waitAttempts(t, e, sub.ID, len(answers)+1)
	for _, a := range att {
		require.Zero(t, a.RetryAfter, "attempt %d", a.Attempt)
	}
}

// With an ordering key the event is retried in place, after Retry-After,
// and the key's later event still waits for it.
func TestRetryAfterOrderedInPlace(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	sk := retryAfterSink(t, firstThenOK(http.StatusTooManyRequests), onFirst("1"))
	sub := e.create(t, map[string]any{"url": sk.ts.URL, "exchange": "events", "binding_key": "#",
		"ordering_key": "subject", "concurrency": 4, "backoff_initial_ms": 10, "backoff_max_ms": 5000})
	for _, id := range []string{"O1", "O2"} {
		code, body := e.postBinary(t, "/v1/events/%2F/events", id, "t", "k", "{}")
		require.Equal(t, http.StatusAccepted, code, "%s", body)
	}
	reqs := sk.waitReqs(t, 3)
	var ids []string
	for _, r := range reqs {
		var ev struct{ ID string }
		require.NoError(t, json.Unmarshal(r.body, &ev))
		ids = append(ids, ev.ID)
	}
	require.Equal(t, []string{"O1", "O1", "O2"}, ids)
	require.GreaterOrEqual(t, gap(reqs, 0), time.Second-slack, "retried in place before Retry-After")
	require.Less(t, gap(reqs, 0), 4*time.Second)

	att := waitAttempts(t, e, sub.ID, 3)
	last := att[len(att)-1] // the oldest: O1's first attempt
	require.Equal(t, 1, last.Attempt)
	require.Equal(t, outcomeRetry, last.Outcome)
	require.Equal(t, time.Second, last.RetryAfter)
}

// WebSub distributions share the dispatcher, and Retry-After.
func TestRetryAfterWebSub(t *testing.T) {
	t.Parallel()
	e := setup(t, fastRetries)
	sk := retryAfterSink(t, firstThenOK(http.StatusServiceUnavailable), onFirst("1"))
	sub, err := e.s.Create(bg, Spec{URL: sk.ts.URL, Exchange: "events", BindingKey: "feed", Format: FormatWebSub,
		Topic: "https://example.com/feed", HubURL: "https://hub.example.com/", Owner: "websub",
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 5 * time.Second})
	require.NoError(t, err)
	_, err = e.b.Publish(bg, broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "feed",
		Message: &broker.Message{Properties: broker.Properties{ContentType: "application/atom+xml"}, Body: []byte("<feed/>")}})
	require.NoError(t, err)

	reqs := sk.waitReqs(t, 2)
	require.GreaterOrEqual(t, gap(reqs, 0), time.Second-slack, "retried before Retry-After")
	var att []Attempt
	eventually(t, func() bool {
		att, err = e.s.Deliveries(bg, sub.ID)
		require.NoError(t, err)
		return len(att) == 2
	}, "2 attempts not listed")
	require.Equal(t, time.Second, att[1].RetryAfter)
	require.Equal(t, outcomeDelivered, att[0].Outcome)
}

// A 429 is neutral for the circuit breaker: it neither counts as a failed
// attempt nor resets the count. An endpoint answering only 429 is never
// disabled (its events are dead-lettered after max_attempts); hard failures
// with 429s between them still trip the breaker.
func TestTooManyRequestsNeutralForBreaker(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.BreakerFailures = 3; c.BreakerPeriod = time.Nanosecond })

	limited := newSink(t, always(http.StatusTooManyRequests))
	subA := e.create(t, map[string]any{"url": limited.ts.URL, "exchange": "events", "binding_key": "a.#",
		"max_attempts": 5, "backoff_initial_ms": 5, "backoff_max_ms": 10})
	failing := newSink(t, func(n int, _ *http.Request) int {
		if n%2 == 0 {
			return http.StatusTooManyRequests
		}
		return http.StatusInternalServerError
	})
	subB := e.create(t, map[string]any{"url": failing.ts.URL, "exchange": "events", "binding_key": "b.#",
		"max_attempts": 50, "backoff_initial_ms": 5, "backoff_max_ms": 10})

	for _, typ := range []string{"a.x", "b.x"} {
		code, body := e.postBinary(t, "/v1/events/%2F/events", typ, typ, "", "{}")
		require.Equal(t, http.StatusAccepted, code, "%s", body)
	}

	limited.waitReqs(t, 5)
	eventually(t, func() bool { return e.sub(t, subA.ID).DeadLetters == 1 }, "429s not dead-lettered after max_attempts")
	require.False(t, e.sub(t, subA.ID).Disabled, "disabled by 429s alone")

	eventually(t, func() bool { return e.sub(t, subB.ID).Disabled }, "hard failures between 429s did not trip the breaker")
	j := e.sub(t, subB.ID)
	require.Contains(t, j.DisabledReason, "3 consecutive failed attempts")
	require.Contains(t, j.DisabledReason, "HTTP 500")
	// The third hard failure is the fifth request: the 429s between did not count.
	require.GreaterOrEqual(t, len(failing.got()), 5)
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)
	date := func(t time.Time, layout string) string { return t.Format(layout) }
	const rfc850 = "Monday, 02-Jan-06 15:04:05 GMT"
	for _, c := range []struct {
		value, date string
		want        time.Duration
		ok          bool
	}{
		{"1", "", time.Second, true},
		{" 120 ", "", 2 * time.Minute, true},
		{"0", "", 0, false},
		{"-5", "", 0, false},
		{"+5", "", 0, false},
		{"1.5", "", 0, false},
		{"", "", 0, false},
		{"soon", "", 0, false},
		{"99999999999999999999", "", time.Duration(math.MaxInt64), true},
		{"9223372037", "", time.Duration(math.MaxInt64), true}, // seconds overflowing a Duration
		{date(now.Add(30*time.Second), http.TimeFormat), "", 30 * time.Second, true},
		{date(now.Add(30*time.Second), rfc850), "", 30 * time.Second, true},
		{date(now.Add(30*time.Second), time.ANSIC), "", 30 * time.Second, true},
		{date(now.Add(-time.Second), http.TimeFormat), "", 0, false}, // in the past
		{date(now, http.TimeFormat), "", 0, false},
		// Relative to the response's Date (the sender's clock), when valid.
		{date(now.Add(-time.Hour+5*time.Second), http.TimeFormat), date(now.Add(-time.Hour), http.TimeFormat), 5 * time.Second, true},
		{date(now.Add(5*time.Second), http.TimeFormat), "garbage", 5 * time.Second, true},
		{strings.Repeat("9", 300), "", time.Duration(math.MaxInt64), true},
	} {
		got, ok := parseRetryAfter(c.value, c.date, now)
		require.Equal(t, c.ok, ok, "%q (Date %q)", c.value, c.date)
		if ok {
			require.Equal(t, c.want, got, "%q (Date %q)", c.value, c.date)
		}
	}
}
