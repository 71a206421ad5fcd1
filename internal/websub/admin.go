package websub

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// The admin API binds topics to exchanges and lists the hub's state. It
// authenticates like the management API: HTTP basic auth against the
// broker's users; "guest" only from loopback.

// TopicBinding feeds a topic from an exchange: every message routed from
// Exchange (in VHost) with a key matching BindingKey is distributed to the
// topic's subscribers.
type TopicBinding struct {
	Topic         string `json:"topic"`
	VHost         string `json:"vhost"`
	Exchange      string `json:"exchange"`
	BindingKey    string `json:"binding_key"`
	TopicExchange string `json:"topic_exchange,omitempty"`
}

type adminError struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, _ := json.Marshal(v) // plain structs only
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func (h *Hub) writeError(w http.ResponseWriter, err error) {
	kind := errs.KindOf(err)
	if kind == errs.Unauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="Herald WebSub"`)
	}
	if kind == errs.Internal {
		h.log.Error("websub admin request failed", "error", err)
	}
	writeJSON(w, kind.HTTPStatus(), adminError{Error: kind.String(), Reason: errs.Message(err)})
}

// admin authenticates a request. monitor requires the monitoring or
// administrator tag (listings show callbacks, which may carry tokens);
// otherwise any management tag will do and resource permissions decide.
func (h *Hub) admin(r *http.Request, monitor bool) (string, error) {
	name, pass, ok := r.BasicAuth()
	if !ok {
		return "", errs.New(errs.Unauthorized, "Not_Authorized")
	}
	if name == "guest" && !h.cfg.AllowRemoteGuest && !loopback(r.RemoteAddr) {
		return "", errs.New(errs.Unauthorized, "User can only log in via localhost")
	}
	u, err := h.b.Authenticate(name, pass)
	if err != nil {
		if errs.Is(err, errs.Unauthorized) {
			return "", errs.New(errs.Unauthorized, "Login failed")
		}
		return "", err
	}
	has := func(tags ...string) bool {
		return slices.ContainsFunc(u.Tags, func(t string) bool { return slices.Contains(tags, t) })
	}
	switch {
	case monitor && !has("administrator", "monitoring"):
		return "", errs.New(errs.AccessRefused, "Not monitoring or administrator user")
	case !has("administrator", "monitoring", "management", "policymaker"):
		return "", errs.New(errs.AccessRefused, "Not management user")
	}
	return name, nil
}

func loopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// checkBinding validates a TopicBinding and the user's right to read from
// its exchange (RabbitMQ's rule for binding from an exchange).
func (h *Hub) checkBinding(user string, tb *TopicBinding) error {
	if tb.VHost == "" {
		tb.VHost = "/"
	}
	if _, err := h.checkURL("topic", tb.Topic); err != nil {
		return errs.New(errs.BadArgument, "%s", err.Error())
	}
	switch {
	case tb.Exchange == "":
		return errs.New(errs.BadArgument, "exchange is required (the default exchange cannot be bound)")
	case len(tb.Exchange) > 255 || len(tb.BindingKey) > 255:
		return errs.New(errs.BadArgument, "exchange and binding_key must be at most 255 bytes")
	}
	return h.b.Authorize(user, tb.VHost, broker.AccessRead, tb.Exchange)
}

// bindTopic: POST /v1/websub/topics {topic, vhost, exchange, binding_key}.
func (h *Hub) bindTopic(w http.ResponseWriter, r *http.Request) {
	user, err := h.admin(r, false)
	if err != nil {
		h.writeError(w, err)
		return
	}
	var tb TopicBinding
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, int64(h.cfg.MaxRequestBytes)))
	if err := dec.Decode(&tb); err != nil {
		h.writeError(w, errs.New(errs.BadArgument, "bad JSON body: %v", err))
		return
	}
	if err := h.checkBinding(user, &tb); err != nil {
		h.writeError(w, err)
		return
	}
	if tb.TopicExchange, err = h.BindTopic(r.Context(), tb.Topic, tb.VHost, tb.Exchange, tb.BindingKey); err != nil {
		h.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, tb)
}

// BindTopic feeds topic from exchange (in vhost) through an
// exchange-to-exchange binding to the topic's fanout exchange, whose name
// it returns. A topic's exchange lives in one vhost: binding it in another
// vhost moves it there if it has no bindings yet (its subscriptions follow),
// and is refused (PreconditionFailed) otherwise.
func (h *Hub) BindTopic(ctx context.Context, topic, vhost, exchange, bindingKey string) (string, error) {
	if h.state.Load() != 1 {
		return "", errs.New(errs.Unavailable, "the hub is not running")
	}
	ctx, cancel := writeCtx(ctx)
	defer cancel()
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	if _, err := h.b.Exchange(vhost, exchange); err != nil {
		return "", err
	}
	h.mu.Lock()
	ts := h.topics[topic]
	h.mu.Unlock()
	switch {
	case ts == nil:
		if err := h.declareTopicExchange(ctx, vhost, topic); err != nil {
			return "", err
		}
		ts = &topicState{topic: topic, vhost: vhost, exchange: TopicExchange(topic)}
		h.mu.Lock()
		h.topics[topic] = ts
		h.mu.Unlock()
	case ts.vhost != vhost:
		if err := h.moveTopicLocked(ctx, ts, vhost); err != nil {
			return "", err
		}
	}
	err := h.b.Bind(ctx, vhost, broker.Binding{Source: exchange, Destination: ts.exchange, DestinationIsExchange: true, RoutingKey: bindingKey})
	if err != nil {
		h.dropTopicIfUnusedLocked(ctx, topic)
		return "", err
	}
	return ts.exchange, nil
}

// moveTopicLocked moves a topic without bindings to another vhost: a new
// exchange there, every subscription's sink re-created there (content
// still queued for it in the old vhost is dropped), the old exchange
// deleted. Caller holds stateMu.
func (h *Hub) moveTopicLocked(ctx context.Context, ts *topicState, vhost string) error {
	if bs := h.topicBindings(ts); len(bs) > 0 {
		return errs.New(errs.PreconditionFailed, "topic %s is bound to exchanges in vhost '%s'; a topic's bindings must share one vhost", ts.topic, ts.vhost)
	}
	if err := h.declareTopicExchange(ctx, vhost, ts.topic); err != nil {
		return err
	}
	sinks := map[string]Sink{}
	for _, s := range h.cfg.Distributor.List() {
		sinks[s.ID] = s
	}
	h.mu.Lock()
	var subs []*subscription
	for _, s := range h.subs {
		if s.topic == ts.topic {
			subs = append(subs, s)
		}
	}
	h.mu.Unlock()
	for _, sub := range subs {
		sink, ok := sinks[sub.sinkID]
		if !ok {
			continue // ended; the next reconcile removes it
		}
		sink.VHost = vhost
		id, err := h.cfg.Distributor.Create(ctx, sink.Target)
		if err != nil {
			return fmt.Errorf("moving a subscription of %s to vhost '%s': %w", ts.topic, vhost, err)
		}
		moved := *sub
		moved.sinkID = id
		if err := h.store(ctx, &moved); err != nil {
			_ = h.cfg.Distributor.Delete(ctx, id)
			return err
		}
		if err := h.cfg.Distributor.Delete(ctx, sub.sinkID); err != nil && !errs.Is(err, errs.NotFound) {
			h.log.Warn("websub: deleting a moved subscription's old distribution", "error", err)
		}
		h.mu.Lock()
		h.subs[sub.key] = &moved
		h.mu.Unlock()
	}
	old := ts.vhost
	h.mu.Lock()
	ts.vhost = vhost
	h.mu.Unlock()
	if err := h.b.DeleteExchange(ctx, old, ts.exchange, false); err != nil && !errs.Is(err, errs.NotFound) {
		h.log.Warn("websub: deleting a moved topic's old exchange", "error", err)
	}
	return nil
}

// unbindTopic: DELETE /v1/websub/topics?topic=&vhost=&exchange=&binding_key=.
func (h *Hub) unbindTopic(w http.ResponseWriter, r *http.Request) {
	user, err := h.admin(r, false)
	if err != nil {
		h.writeError(w, err)
		return
	}
	q := r.URL.Query()
	tb := TopicBinding{Topic: q.Get("topic"), VHost: q.Get("vhost"), Exchange: q.Get("exchange"), BindingKey: q.Get("binding_key")}
	if err := h.checkBinding(user, &tb); err != nil {
		h.writeError(w, err)
		return
	}
	if err := h.UnbindTopic(r.Context(), tb.Topic, tb.VHost, tb.Exchange, tb.BindingKey); err != nil {
		h.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// UnbindTopic removes a binding made by BindTopic (NotFound if the topic or
// the binding does not exist).
func (h *Hub) UnbindTopic(ctx context.Context, topic, vhost, exchange, bindingKey string) error {
	if h.state.Load() != 1 {
		return errs.New(errs.Unavailable, "the hub is not running")
	}
	ctx, cancel := writeCtx(ctx)
	defer cancel()
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	h.mu.Lock()
	ts := h.topics[topic]
	h.mu.Unlock()
	if ts == nil || ts.vhost != vhost {
		return errs.New(errs.NotFound, "topic %s has no bindings in vhost '%s'", topic, vhost)
	}
	bd := broker.Binding{Source: exchange, Destination: ts.exchange, DestinationIsExchange: true, RoutingKey: bindingKey}
	found := false
	for _, b := range h.topicBindings(ts) {
		found = found || (b.Source == bd.Source && b.RoutingKey == bd.RoutingKey)
	}
	if !found {
		return errs.New(errs.NotFound, "no binding from exchange '%s' with key '%s' to topic %s", exchange, bindingKey, topic)
	}
	if err := h.b.Unbind(ctx, vhost, bd); err != nil {
		return err
	}
	h.dropTopicIfUnusedLocked(ctx, topic)
	return nil
}

// TopicInfo describes a topic known to the hub.
type TopicInfo struct {
	Topic         string         `json:"topic"`
	VHost         string         `json:"vhost"`
	TopicExchange string         `json:"topic_exchange"`
	Subscriptions int            `json:"subscriptions"`
	Bindings      []TopicBinding `json:"bindings"`
}

// Topics lists the topics with subscriptions or bindings, sorted.
func (h *Hub) Topics() []TopicInfo {
	h.mu.Lock()
	tss := make([]topicState, 0, len(h.topics))
	for _, ts := range h.topics {
		tss = append(tss, *ts)
	}
	h.mu.Unlock()
	out := make([]TopicInfo, 0, len(tss))
	for _, ts := range tss {
		ti := TopicInfo{Topic: ts.topic, VHost: ts.vhost, TopicExchange: ts.exchange, Subscriptions: ts.subs, Bindings: []TopicBinding{}}
		for _, b := range h.topicBindings(&ts) {
			ti.Bindings = append(ti.Bindings, TopicBinding{Topic: ts.topic, VHost: ts.vhost, Exchange: b.Source, BindingKey: b.RoutingKey})
		}
		out = append(out, ti)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

// listing serves what list returns to monitoring and administrator users.
func (h *Hub) listing(list func() any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := h.admin(r, true); err != nil {
			h.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, list())
	}
}

// SubscriptionInfo describes a verified subscription.
type SubscriptionInfo struct {
	Topic     string    `json:"topic"`
	Callback  string    `json:"callback"`
	ExpiresAt time.Time `json:"expires_at"`
	Signed    bool      `json:"signed"` // a hub.secret was given
	SinkID    string    `json:"webhook_id"`
}

// Subscriptions lists the verified subscriptions, sorted by topic then
// callback.
func (h *Hub) Subscriptions() []SubscriptionInfo {
	h.mu.Lock()
	out := make([]SubscriptionInfo, 0, len(h.subs))
	for _, s := range h.subs {
		if s.sinkID == "" {
			continue
		}
		out = append(out, SubscriptionInfo{Topic: s.topic, Callback: s.callback, ExpiresAt: s.expires.UTC(), Signed: s.secret, SinkID: s.sinkID})
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Callback < out[j].Callback
	})
	return out
}
