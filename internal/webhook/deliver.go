package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/route"
)

// signer signs deliveries with the current secret and, during the grace
// period of a rotation, the previous one. Its HMAC states are pooled.
type signer struct {
	format    Format
	key, prev []byte // Standard Webhooks keys
	prevUntil time.Time
	raw       []byte // WebSub secret
	macs      [2]sync.Pool
}

func newSigner(rec record) (*signer, error) {
	sg := &signer{format: rec.Sub.Format}
	if rec.Sub.Format == FormatWebSub {
		sg.raw = []byte(rec.Sub.Secret)
		return sg, nil
	}
	k, err := signingKey(rec.Sub.Secret)
	if err != nil {
		return nil, err
	}
	sg.key = k
	if rec.PrevSecret != "" {
		if p, err := signingKey(rec.PrevSecret); err == nil {
			sg.prev, sg.prevUntil = p, rec.PrevUntil
		}
	}
	return sg, nil
}

// sum appends hmac-sha256(key, parts...) to dst, with a pooled HMAC state.
func (sg *signer) sum(dst []byte, i int, key []byte, parts ...[]byte) []byte {
	m, ok := sg.macs[i].Get().(hash.Hash)
	if ok {
		m.Reset()
	} else {
		m = hmac.New(sha256.New, key)
	}
	for _, p := range parts {
		m.Write(p)
	}
	dst = m.Sum(dst)
	sg.macs[i].Put(m)
	return dst
}

var dot = []byte{'.'}

// standardSignature returns the webhook-signature header value:
// "v1,<base64 hmac-sha256(key, id.timestamp.body)>", space separated when
// a previous secret is still valid.
func (sg *signer) standardSignature(id, ts string, body []byte, now time.Time) string {
	var buf [128]byte
	var sum [sha256.Size]byte
	out := append(buf[:0], "v1,"...)
	out = base64.StdEncoding.AppendEncode(out, sg.sum(sum[:0], 0, sg.key, []byte(id), dot, []byte(ts), dot, body))
	if sg.prev != nil && now.Before(sg.prevUntil) {
		out = append(out, " v1,"...)
		out = base64.StdEncoding.AppendEncode(out, sg.sum(sum[:0], 1, sg.prev, []byte(id), dot, []byte(ts), dot, body))
	}
	return string(out)
}

// hubSignature returns X-Hub-Signature's value: sha256=<hex hmac(secret, body)>.
func (sg *signer) hubSignature(body []byte) string {
	var sum [sha256.Size]byte
	return "sha256=" + hex.EncodeToString(sg.sum(sum[:0], 0, sg.raw, body))
}

// prepared is an event ready to be posted.
type prepared struct {
	webhookID            string
	attempt              int
	exchange, routingKey string
	body                 []byte
	contentType          string
}

func (r *run) prepare(dl *broker.Delivery) *prepared {
	m := dl.Message
	h := m.Properties.Headers
	ev := &prepared{attempt: 1, exchange: dl.Exchange, routingKey: dl.RoutingKey}
	if s, ok := h[hdrExchange].(string); ok {
		ev.exchange = s
	}
	if s, ok := h[hdrRoutingKey].(string); ok {
		ev.routingKey = s
	}
	if n, ok := route.Int(h[hdrAttempt]); ok && n > 1 {
		ev.attempt = int(n)
	}
	if s, ok := h[hdrWebhookID].(string); ok && s != "" {
		ev.webhookID = s
	} else {
		ev.webhookID = webhookID(r.sub.VHost, ev.exchange, ev.routingKey, m)
	}
	if r.sub.Format == FormatWebSub {
		ev.body = m.Body
		ev.contentType = m.Properties.ContentType
		return ev
	}
	ev.body = structuredEvent(m, ev, r.sub.VHost)
	ev.contentType = "application/cloudevents+json; charset=utf-8"
	return ev
}

// webhookID is the event's stable id: derived from the CloudEvent's source
// and id, else the AMQP message-id, else the message's route, properties and
// body (identical messages without ids share a webhook-id).
func webhookID(vhost, exchange, key string, m *broker.Message) string {
	h := sha256.New()
	write := func(parts ...string) {
		for _, p := range parts {
			_, _ = io.WriteString(h, p)
			h.Write([]byte{0})
		}
	}
	hdr := m.Properties.Headers
	ceID, _ := hdr[ceHeader+"id"].(string)
	ceSource, _ := hdr[ceHeader+"source"].(string)
	switch {
	case ceID != "" && ceSource != "":
		write("ce", ceSource, ceID)
	case m.Properties.MessageID != "":
		write("mid", vhost, exchange, m.Properties.MessageID)
	default:
		write("msg", vhost, exchange, key, m.Properties.ContentType, m.Properties.Timestamp.String())
		writeTable(h, hdr)
		h.Write(m.Body)
	}
	return "msg_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// writeTable hashes the headers that came with the event (not the
// dispatcher's own), in key order.
func writeTable(h hash.Hash, t broker.Table) {
	keys := make([]string, 0, len(t))
	for k := range t {
		if !strings.HasPrefix(k, "x-herald-") && k != hdrDelay && k != "x-death" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%v\x00", k, t[k])
	}
}

// result is the outcome of one HTTP attempt.
type result struct {
	status    int
	latency   time.Duration
	snippet   string
	errText   string
	ok        bool // 2xx
	gone      bool // 410 on a WebSub subscription
	cancelled bool // the service is stopping: not an attempt
	// retryAfter is the answer's Retry-After (429 and 503 only), clamped to
	// the subscription's BackoffMax: the next attempt waits at least this
	// long. 0 when absent, unparsable, not positive, or another status.
	retryAfter time.Duration
}

func (res result) describe() string {
	switch {
	case res.errText != "" && res.status != 0:
		return fmt.Sprintf("HTTP %d: %s", res.status, res.errText)
	case res.errText != "":
		return res.errText
	default:
		return fmt.Sprintf("HTTP %d", res.status)
	}
}

// attempt posts the event once.
func (r *run) attempt(ev *prepared) result {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(r.sub.URL)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetUserAgent(userAgent)
	if ev.contentType != "" {
		req.Header.SetContentType(ev.contentType)
	}
	now := time.Now()
	if r.sub.Format == FormatWebSub {
		req.Header.Set("Link", "<"+r.sub.HubURL+`>; rel="hub", <`+r.sub.Topic+`>; rel="self"`)
		if len(r.signer.raw) > 0 {
			req.Header.Set("X-Hub-Signature", r.signer.hubSignature(ev.body))
		}
	} else {
		ts := strconv.FormatInt(now.Unix(), 10)
		req.Header.Set("Webhook-Id", ev.webhookID)
		req.Header.Set("Webhook-Timestamp", ts)
		req.Header.Set("Webhook-Signature", r.signer.standardSignature(ev.webhookID, ts, ev.body, now))
	}
	req.SetBodyRaw(ev.body)
	err := r.post.send(req, resp, r.sub.Timeout)
	res := result{latency: time.Since(now)}
	if err != nil {
		if r.ctx.Err() != nil {
			return result{cancelled: true}
		}
		res.errText = attemptError(err, r.sub.Timeout)
		return res
	}
	res.status = resp.StatusCode()
	bp := r.d.s.snips.Get().(*[]byte)
	snip := *bp
	n := readAnswer(resp, snip)
	res.latency = time.Since(now)
	if n > 0 {
		res.snippet = strings.ToValidUTF8(string(snip[:n]), "\uFFFD")
	}
	r.d.s.snips.Put(bp)
	res.ok = res.status >= 200 && res.status < 300
	res.gone = r.sub.Format == FormatWebSub && res.status == http.StatusGone
	if honoursRetryAfter(res.status) {
		if d, ok := parseRetryAfter(string(resp.Header.Peek("Retry-After")), string(resp.Header.Peek("Date")), time.Now()); ok {
			res.retryAfter = min(d, r.sub.BackoffMax)
		}
	}
	return res
}

// honoursRetryAfter reports whether an answer's Retry-After delays the next
// attempt: on 429 Too Many Requests (RFC 6585 §4) and 503 Service
// Unavailable (RFC 9110 §15.6.4), the statuses it is defined as back-pressure
// for. On a 3xx it would time a redirect, which is never followed; on other
// statuses it has no defined meaning.
func honoursRetryAfter(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// parseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): delay-seconds,
// or an HTTP-date taken relative to the answer's Date header (the sender's
// clock, so clock skew does not matter; now when Date is absent or invalid).
// ok is false when the value is empty, unparsable (a sign, a fraction), zero
// or in the past. Delays too large for a Duration saturate (callers clamp).
func parseRetryAfter(value, date string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if strings.Trim(value, "0123456789") == "" {
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n > int64(math.MaxInt64/time.Second) { // only digits: err is a range error
			return math.MaxInt64, true
		}
		return time.Duration(n) * time.Second, n > 0
	}
	at, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	if d, err := http.ParseTime(date); err == nil {
		now = d
	}
	d := at.Sub(now) // saturates
	return d, d > 0
}

const userAgent = "Herald-Webhooks/1"

func attemptError(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, fasthttp.ErrTimeout),
		errors.Is(err, fasthttp.ErrDialTimeout), errors.Is(err, fasthttp.ErrTLSHandshakeTimeout):
		return fmt.Sprintf("timeout after %s", timeout)
	case errors.Is(err, ErrRefusedTarget):
		return "refused target: " + err.Error()
	case connEndedEarly(err):
		return "connection closed before an answer"
	}
	return err.Error()
}
