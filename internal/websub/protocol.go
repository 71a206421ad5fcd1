package websub

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/broker"
)

// HubPath is where the hub answers WebSub requests.
const HubPath = "/websub/hub"

// maxSecretBytes is the WebSub limit on hub.secret (§5.1).
const maxSecretBytes = 200

// maxPublishTopics bounds the topics of one publish notification.
const maxPublishTopics = 100

// request is a validated subscribe or unsubscribe request.
type request struct {
	mode     string
	callback string
	topic    string
	secret   string
	lease    time.Duration // granted (clamped) lease, subscribe only
	hubURL   string
}

// denial is a refusal reported to the subscriber with hub.mode=denied.
type denial struct{ reason string }

func (d *denial) Error() string { return "denied: " + d.reason }

// Mount registers the hub (POST /websub/hub) and its admin API
// (/v1/websub/...) on mux.
func (h *Hub) Mount(mux *http.ServeMux) {
	mux.HandleFunc("POST "+HubPath, h.serveHub)
	mux.HandleFunc("GET "+HubPath, func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "Herald WebSub hub: POST hub.mode=subscribe|unsubscribe|publish (application/x-www-form-urlencoded)")
	})
	mux.HandleFunc("GET /v1/websub/topics", h.listing(func() any { return h.Topics() }))
	mux.HandleFunc("POST /v1/websub/topics", h.bindTopic)
	mux.HandleFunc("DELETE /v1/websub/topics", h.unbindTopic)
	mux.HandleFunc("GET /v1/websub/subscriptions", h.listing(func() any { return h.Subscriptions() }))
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// serveHub answers a WebSub hub request: 202 once a subscribe, unsubscribe
// or publish is accepted for asynchronous processing, 400 with the reason
// in plain text for a bad request.
func (h *Hub) serveHub(w http.ResponseWriter, r *http.Request) {
	if h.state.Load() != 1 {
		writeText(w, http.StatusServiceUnavailable, "the hub is not running")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, int64(h.cfg.MaxRequestBytes))
	if err := r.ParseForm(); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeText(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
			return
		}
		writeText(w, http.StatusBadRequest, "bad form body: "+err.Error())
		return
	}
	form := r.PostForm
	mode := form.Get("hub.mode")
	switch mode {
	case "subscribe", "unsubscribe":
		req, err := h.parseSubscription(r.Context(), mode, form)
		if err != nil {
			writeText(w, http.StatusBadRequest, err.Error())
			return
		}
		req.hubURL = h.hubURL(r)
		if !h.enqueue(func(ctx context.Context) { h.process(ctx, req) }) {
			h.busy(w)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case "publish":
		topics, err := h.parsePublish(form)
		if err != nil {
			writeText(w, http.StatusBadRequest, err.Error())
			return
		}
		if !h.enqueue(func(ctx context.Context) {
			for _, t := range topics {
				h.fetchAndPublish(ctx, t)
			}
		}) {
			h.busy(w)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case "":
		writeText(w, http.StatusBadRequest, "hub.mode is required (subscribe, unsubscribe or publish)")
	default:
		writeText(w, http.StatusBadRequest, fmt.Sprintf("hub.mode %q is not supported (subscribe, unsubscribe or publish)", truncate(mode)))
	}
}

func (h *Hub) busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("too many pending hub requests (limit %d); retry later", h.cfg.MaxPending))
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// checkURL validates a callback or topic URL: absolute http(s), bounded,
// no fragment.
func (h *Hub) checkURL(param, raw string) (*url.URL, error) {
	switch {
	case raw == "":
		return nil, fmt.Errorf("%s is required", param)
	case len(raw) > h.cfg.MaxURLBytes:
		return nil, fmt.Errorf("%s is %d bytes, longer than the limit of %d", param, len(raw), h.cfg.MaxURLBytes)
	case !utf8.ValidString(raw):
		return nil, fmt.Errorf("%s is not valid UTF-8", param)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s is not a URL: %v", param, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s must be an absolute http or https URL", param)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("%s must not have a fragment", param)
	}
	return u, nil
}

// parseSubscription validates a subscribe or unsubscribe request. Unknown
// parameters are ignored (WebSub §5.1).
func (h *Hub) parseSubscription(ctx context.Context, mode string, form url.Values) (request, error) {
	req := request{mode: mode, callback: form.Get("hub.callback"), topic: form.Get("hub.topic")}
	if _, err := h.checkURL("hub.callback", req.callback); err != nil {
		return req, err
	}
	if _, err := h.checkURL("hub.topic", req.topic); err != nil {
		return req, err
	}
	if mode == "unsubscribe" {
		return req, nil
	}
	// The guard is asked now: a denial notification to a refused callback
	// would be the very request the guard exists to prevent.
	if err := h.cfg.CheckURL(ctx, req.callback); err != nil {
		return req, fmt.Errorf("hub.callback is refused by this hub: %v", err)
	}
	req.secret = form.Get("hub.secret")
	if len(req.secret) > maxSecretBytes {
		return req, fmt.Errorf("hub.secret is %d bytes, longer than the limit of %d", len(req.secret), maxSecretBytes)
	}
	req.lease = h.cfg.LeaseDefault
	if v := form.Get("hub.lease_seconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return req, fmt.Errorf("hub.lease_seconds must be a non-negative integer, got %q", truncate(v))
		}
		req.lease = h.cfg.LeaseMax
		if n < int64(h.cfg.LeaseMax/time.Second) {
			req.lease = time.Duration(n) * time.Second
		}
		req.lease = min(max(req.lease, h.cfg.LeaseMin), h.cfg.LeaseMax)
	}
	return req, nil
}

// parsePublish returns the topics of a publish notification: hub.topic
// and hub.url (several allowed), deduplicated.
func (h *Hub) parsePublish(form url.Values) ([]string, error) {
	var topics []string
	seen := map[string]bool{}
	for _, param := range []string{"hub.topic", "hub.url"} {
		for _, t := range form[param] {
			if _, err := h.checkURL(param, t); err != nil {
				return nil, err
			}
			if !seen[t] {
				seen[t] = true
				topics = append(topics, t)
			}
		}
	}
	switch {
	case len(topics) == 0:
		return nil, errors.New("hub.topic (or hub.url) is required for hub.mode=publish")
	case len(topics) > maxPublishTopics:
		return nil, fmt.Errorf("%d topics in one publish request, more than the limit of %d", len(topics), maxPublishTopics)
	}
	return topics, nil
}

// process runs a subscribe or unsubscribe: policy, verification of intent,
// then the state change.
func (h *Hub) process(ctx context.Context, req request) {
	log := h.log.With("mode", req.mode, "topic", req.topic)
	if req.mode == "subscribe" && h.cfg.AllowTopic != nil {
		if err := h.cfg.AllowTopic(req.topic); err != nil {
			h.deny(ctx, req, err.Error())
			return
		}
	}
	if req.mode == "subscribe" {
		h.mu.Lock()
		_, exists := h.subs[subKey(req.topic, req.callback)]
		h.mu.Unlock()
		if !exists {
			if reason := h.overLimit(req.topic); reason != "" {
				h.deny(ctx, req, reason)
				return
			}
		}
	}
	if err := h.verify(ctx, req); err != nil {
		log.Info("websub verification of intent failed", "error", err)
		return
	}
	var err error
	if req.mode == "subscribe" {
		err = h.subscribe(ctx, req)
	} else {
		err = h.unsubscribe(ctx, req.topic, req.callback)
	}
	var d *denial
	switch {
	case errors.As(err, &d):
		h.deny(ctx, req, d.reason)
	case err != nil:
		log.Error("websub: applying a verified request", "error", err)
	default:
		log.Info("websub "+req.mode+" verified", "lease", req.lease)
	}
}

// callbackWith returns the callback URL with params appended to its own
// query string, which is kept byte for byte.
func callbackWith(callback string, params url.Values) string {
	u, err := url.Parse(callback)
	if err != nil {
		return callback // validated before; unreachable
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += params.Encode()
	return u.String()
}

// verify sends the verification of intent (WebSub §5.3): a GET whose 2xx
// answer must echo hub.challenge.
func (h *Hub) verify(ctx context.Context, req request) error {
	var raw [24]byte
	_, _ = rand.Read(raw[:])
	challenge := base64.RawURLEncoding.EncodeToString(raw[:])
	params := url.Values{"hub.mode": {req.mode}, "hub.topic": {req.topic}, "hub.challenge": {challenge}}
	if req.mode == "subscribe" {
		params.Set("hub.lease_seconds", strconv.FormatInt(int64(req.lease/time.Second), 10))
	}
	resp, body, err := h.get(ctx, callbackWith(req.callback, params), len(challenge)+256)
	switch {
	case err != nil:
		return err
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("callback answered %d", resp.StatusCode)
	case !bytes.Equal(bytes.TrimSpace(body), []byte(challenge)):
		return errors.New("callback did not echo hub.challenge")
	}
	return nil
}

// deny tells the subscriber its subscription was refused (WebSub §5.2).
func (h *Hub) deny(ctx context.Context, req request, reason string) {
	h.log.Info("websub subscription denied", "topic", req.topic, "reason", reason)
	params := url.Values{"hub.mode": {"denied"}, "hub.topic": {req.topic}, "hub.reason": {reason}}
	if _, _, err := h.get(ctx, callbackWith(req.callback, params), 0); err != nil {
		h.log.Info("websub: sending a denial", "error", err)
	}
}

// get makes a guarded GET and returns the response (its body closed) and
// at most limit bytes of the body.
func (h *Hub) get(ctx context.Context, rawURL string, limit int) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	if err := h.cfg.CheckURL(ctx, rawURL); err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", "Herald-WebSub-Hub")
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the response: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	return resp, body, nil
}

// fetchAndPublish fetches a topic after a publish notification and
// publishes its content to the topic's exchange, from where the
// distributor delivers it to every subscriber. Topics nobody subscribes to
// are not fetched.
func (h *Hub) fetchAndPublish(ctx context.Context, topic string) {
	h.mu.Lock()
	ts := h.topics[topic]
	var vhost, exchange string
	subs := 0
	if ts != nil {
		vhost, exchange, subs = ts.vhost, ts.exchange, ts.subs
	}
	h.mu.Unlock()
	if subs == 0 {
		h.log.Debug("websub publish for a topic without subscribers", "topic", topic)
		return
	}
	log := h.log.With("topic", topic)
	body, ctype, err := h.fetch(ctx, topic)
	if err != nil {
		log.Warn("websub: fetching a published topic", "error", err)
		return
	}
	_, err = h.b.Publish(ctx, broker.Publishing{
		VHost: vhost, Exchange: exchange,
		Message: &broker.Message{
			Properties: broker.Properties{ContentType: ctype, DeliveryMode: 2, Timestamp: h.cfg.Now()},
			Body:       body,
		},
	})
	if err != nil {
		log.Warn("websub: publishing fetched topic content", "error", err)
	}
}

// fetch GETs a topic's content, bounded by MaxContentBytes.
func (h *Hub) fetch(ctx context.Context, topic string) ([]byte, string, error) {
	limit := h.cfg.MaxContentBytes
	resp, body, err := h.get(ctx, topic, limit+1)
	switch {
	case err != nil:
		return nil, "", err
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, "", fmt.Errorf("topic answered %d", resp.StatusCode)
	case len(body) > limit:
		return nil, "", fmt.Errorf("topic content is larger than the limit of %d bytes; not distributed", limit)
	}
	return body, strings.TrimSpace(resp.Header.Get("Content-Type")), nil
}
