package websub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// Names of the broker objects the hub owns.
const (
	// topicExchangePrefix + hex(sha256(topic))[:32] is a topic's durable
	// fanout exchange; its argument x-websub-topic holds the topic URL.
	topicExchangePrefix = "herald.websub.t."
	argTopic            = "x-websub-topic"
	// recordKind names the hub's subscription records in the broker's
	// replicated metadata (id = subKey).
	recordKind = "websub"
)

// Hub is a W3C WebSub hub. Create with New, mount with Mount, then Start.
type Hub struct {
	cfg Config
	b   *broker.Broker
	log *slog.Logger

	state   atomic.Int32 // 0 new, 1 running, 2 stopped
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	jobs    chan func(ctx context.Context)
	wake    chan struct{} // lease set changed: recompute the next expiry
	quit    chan struct{} // closed by Stop: the lease loop ends
	unwatch func()        // stops the broker record watch

	// Lock order: stateMu before mu. stateMu serializes every change of
	// hub state (broker metadata and distributor writes happen under it);
	// mu guards the maps and is held only briefly.
	stateMu  sync.Mutex
	mu       sync.Mutex
	subs     map[string]*subscription // by subKey(topic, callback)
	topics   map[string]*topicState   // by topic URL
	suspects map[string]bool          // orphans seen by the last reconcile
}

// subscription is one verified (topic, callback) pair.
type subscription struct {
	key      string
	topic    string
	callback string
	expires  time.Time
	sinkID   string // "" until the distributor holds it
	secret   bool   // signed deliveries (for listings only)
}

// subRecord is a subscription as persisted (Broker.PutRecord). The secret
// is kept by the distributor only.
type subRecord struct {
	Topic    string    `json:"topic"`
	Callback string    `json:"callback"`
	Expires  time.Time `json:"expires"`
	SinkID   string    `json:"webhook_id"`
	Signed   bool      `json:"signed"`
}

func (s *subscription) record() subRecord {
	return subRecord{Topic: s.topic, Callback: s.callback, Expires: s.expires, SinkID: s.sinkID, Signed: s.secret}
}

// topicState is a topic that has a fanout exchange.
type topicState struct {
	topic    string
	vhost    string // where its exchange lives
	exchange string
	subs     int
}

// New validates cfg and returns a hub that is not started.
func New(cfg Config) (*Hub, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg, b: cfg.Broker, log: cfg.Logger,
		ctx: ctx, cancel: cancel,
		jobs:   make(chan func(context.Context), cfg.MaxPending),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		subs:   map[string]*subscription{},
		topics: map[string]*topicState{},
	}, nil
}

// subKey identifies a subscription: WebSub subscriptions are keyed by the
// (topic, callback) pair.
func subKey(topic, callback string) string {
	h := sha256.Sum256([]byte(topic + "\n" + callback))
	return hex.EncodeToString(h[:16])
}

// TopicExchange is the fanout exchange carrying a topic's content to its
// subscribers: publish to it (any face) to distribute to them.
func TopicExchange(topic string) string {
	h := sha256.Sum256([]byte(topic))
	return topicExchangePrefix + hex.EncodeToString(h[:16])
}

// Start loads the topics and subscriptions from the broker and starts the
// workers and the lease timer. The distributor must already be started.
func (h *Hub) Start(ctx context.Context) error {
	if !h.state.CompareAndSwap(0, 1) {
		return errors.New("websub: Start called twice or after Stop")
	}
	// Watch before loading, so no change falls in between: subscriptions
	// made, renewed or ended through another node are applied as they come.
	h.unwatch = h.b.WatchRecords(recordKind, h.recordChanged)
	if err := h.load(); err != nil {
		h.unwatch()
		h.state.Store(2)
		h.cancel()
		return err
	}
	for range h.cfg.Workers {
		h.wg.Go(h.worker)
	}
	h.wg.Go(h.leaseLoop)
	return nil
}

// Stop stops accepting requests and lets the running and queued
// verifications, denials and fetches finish until ctx is done; then the
// rest are cancelled (their subscribers and publishers retry). Safe to
// call twice or before Start.
func (h *Hub) Stop(ctx context.Context) {
	prev := h.state.Swap(2)
	if prev != 1 {
		h.cancel()
		return
	}
	h.unwatch()
	h.mu.Lock()
	close(h.jobs)
	h.mu.Unlock()
	close(h.quit)
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.cancel()
		<-done
	}
	h.cancel()
}

// enqueue hands work to the workers; false when the queue is full or the
// hub is stopping.
func (h *Hub) enqueue(job func(ctx context.Context)) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.Load() != 1 {
		return false
	}
	select {
	case h.jobs <- job:
		return true
	default:
		return false
	}
}

func (h *Hub) worker() {
	for job := range h.jobs {
		if h.ctx.Err() != nil {
			continue // stopping: drain without running
		}
		job(h.ctx)
	}
}

// load rebuilds the in-memory state from the broker: topics from their
// exchanges, subscriptions from their records.
func (h *Hub) load() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.b.Exchanges("") {
		if !strings.HasPrefix(x.Name, topicExchangePrefix) {
			continue
		}
		topic, _ := x.Arguments[argTopic].(string)
		if topic == "" || TopicExchange(topic) != x.Name || h.topics[topic] != nil {
			continue
		}
		h.topics[topic] = &topicState{topic: topic, vhost: x.VHost, exchange: x.Name}
	}
	for key, data := range h.b.Records(recordKind) {
		if err := h.applyRecordLocked(key, data, true); err != nil {
			return err
		}
	}
	return nil
}

// recordChanged applies a subscription record changed through this node or
// another one (Broker.WatchRecords): the subscription's lease is timed here
// whichever node made it. It reads the record's current state under mu, so
// concurrent calls leave the latest state.
func (h *Hub) recordChanged(key string, _ []byte, _ bool) {
	h.mu.Lock()
	data, ok := h.b.Record(recordKind, key)
	err := h.applyRecordLocked(key, data, ok)
	h.mu.Unlock()
	if err != nil {
		h.log.Warn("websub: applying a subscription record", "error", err)
	}
	h.poke()
}

// applyRecordLocked makes h.subs[key] match its record (absent when !ok),
// counting the topic's subscriptions. Idempotent. Caller holds mu.
func (h *Hub) applyRecordLocked(key string, data []byte, ok bool) error {
	prev := h.subs[key]
	if !ok {
		if prev != nil {
			delete(h.subs, key)
			if ts := h.topics[prev.topic]; ts != nil {
				ts.subs--
			}
		}
		return nil
	}
	var rec subRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("decoding websub subscription %s: %w", key, err)
	}
	if prev == nil {
		ts := h.topics[rec.Topic]
		if ts == nil { // a topic made through another node
			ts = h.topicFromBroker(rec.Topic)
		}
		if ts != nil {
			ts.subs++
		}
	}
	h.subs[key] = &subscription{key: key, topic: rec.Topic, callback: rec.Callback, expires: rec.Expires, sinkID: rec.SinkID, secret: rec.Signed}
	return nil
}

// topicFromBroker finds a topic's exchange among the broker's and records
// it in h.topics; nil if it has none. Caller holds mu.
func (h *Hub) topicFromBroker(topic string) *topicState {
	name := TopicExchange(topic)
	for _, x := range h.b.Exchanges("") {
		if x.Name == name {
			ts := &topicState{topic: topic, vhost: x.VHost, exchange: name}
			h.topics[topic] = ts
			return ts
		}
	}
	return nil
}

// store persists a subscription's record.
func (h *Hub) store(ctx context.Context, s *subscription) error {
	data, err := json.Marshal(s.record())
	if err != nil {
		return fmt.Errorf("encoding a websub subscription: %w", err)
	}
	if err := h.b.PutRecord(ctx, recordKind, s.key, data); err != nil {
		return fmt.Errorf("storing a websub subscription: %w", err)
	}
	return nil
}

// writeCtx bounds a state write that must finish even when the request or
// the hub is being cancelled.
func writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// ensureTopicLocked returns the topic's state, declaring its exchange in
// the hub's vhost when the topic is new. Caller holds stateMu.
func (h *Hub) ensureTopicLocked(ctx context.Context, topic string) (*topicState, error) {
	h.mu.Lock()
	ts := h.topics[topic]
	h.mu.Unlock()
	if ts != nil {
		return ts, nil
	}
	ts = &topicState{topic: topic, vhost: h.cfg.VHost, exchange: TopicExchange(topic)}
	if err := h.declareTopicExchange(ctx, ts.vhost, topic); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.topics[topic] = ts
	h.mu.Unlock()
	return ts, nil
}

func (h *Hub) declareTopicExchange(ctx context.Context, vhost, topic string) error {
	_, err := h.b.DeclareExchange(ctx, vhost, broker.ExchangeSpec{
		Name: TopicExchange(topic), Type: broker.Fanout, Durable: true,
		Arguments: broker.Table{argTopic: topic},
	}, false)
	if err != nil {
		return fmt.Errorf("declaring the topic exchange of %q: %w", topic, err)
	}
	return nil
}

// topicBindings returns the exchange bindings feeding a topic.
func (h *Hub) topicBindings(ts *topicState) []broker.Binding {
	var out []broker.Binding
	for _, bd := range h.b.Bindings(ts.vhost) {
		if bd.DestinationIsExchange && bd.Destination == ts.exchange {
			out = append(out, bd.Binding)
		}
	}
	return out
}

// dropTopicIfUnusedLocked deletes a topic's exchange once it has neither
// subscriptions nor bindings. Caller holds stateMu.
func (h *Hub) dropTopicIfUnusedLocked(ctx context.Context, topic string) {
	h.mu.Lock()
	ts := h.topics[topic]
	h.mu.Unlock()
	if ts == nil || ts.subs > 0 || len(h.topicBindings(ts)) > 0 {
		return
	}
	if err := h.b.DeleteExchange(ctx, ts.vhost, ts.exchange, false); err != nil && !errs.Is(err, errs.NotFound) {
		h.log.Warn("websub: deleting an unused topic exchange", "topic", topic, "error", err)
		return
	}
	h.mu.Lock()
	delete(h.topics, topic)
	h.mu.Unlock()
}

// subscribe applies a verified subscription or re-subscription (which
// renews the lease and replaces the secret). The distributor's sink is
// created or updated first, then the record; a crash in between leaves a
// sink without a record, which the next reconcile removes.
func (h *Hub) subscribe(ctx context.Context, req request) error {
	ctx, cancel := writeCtx(ctx)
	defer cancel()
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	key := subKey(req.topic, req.callback)
	h.mu.Lock()
	old := h.subs[key]
	h.mu.Unlock()
	if old == nil {
		if reason := h.overLimit(req.topic); reason != "" {
			return &denial{reason: reason}
		}
	}
	ts, err := h.ensureTopicLocked(ctx, req.topic)
	if err != nil {
		return err
	}
	t := Target{Callback: req.callback, Topic: req.topic, HubURL: req.hubURL, Secret: req.secret, VHost: ts.vhost, Exchange: ts.exchange}
	sub := &subscription{key: key, topic: req.topic, callback: req.callback, expires: h.cfg.Now().Add(req.lease), secret: req.secret != ""}
	created := false
	if old != nil {
		sub.sinkID = old.sinkID
		if err := h.cfg.Distributor.Update(ctx, old.sinkID, t); err != nil {
			if !errs.Is(err, errs.NotFound) {
				return fmt.Errorf("updating distribution: %w", err)
			}
			sub.sinkID = "" // ended meanwhile (410): start again
		}
	}
	if sub.sinkID == "" {
		if sub.sinkID, err = h.cfg.Distributor.Create(ctx, t); err != nil {
			if errs.Is(err, errs.ResourceError) {
				return &denial{reason: errs.Message(err)}
			}
			return fmt.Errorf("starting distribution: %w", err)
		}
		created = true
	}
	if err := h.store(ctx, sub); err != nil {
		if created {
			_ = h.cfg.Distributor.Delete(ctx, sub.sinkID)
		}
		return err
	}
	h.mu.Lock()
	if h.subs[key] == nil { // the record watch may have added it already
		ts.subs++
	}
	h.subs[key] = sub
	h.mu.Unlock()
	h.poke()
	return nil
}

// overLimit says why a new subscription to topic is refused, or "".
func (h *Hub) overLimit(topic string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= h.cfg.MaxSubscriptions {
		return fmt.Sprintf("the hub's limit of %d subscriptions is reached", h.cfg.MaxSubscriptions)
	}
	if ts := h.topics[topic]; ts != nil && ts.subs >= h.cfg.MaxSubscriptionsPerTopic {
		return fmt.Sprintf("the topic's limit of %d subscriptions is reached", h.cfg.MaxSubscriptionsPerTopic)
	}
	return ""
}

// unsubscribe removes the (topic, callback) subscription if it exists.
func (h *Hub) unsubscribe(ctx context.Context, topic, callback string) error {
	ctx, cancel := writeCtx(ctx)
	defer cancel()
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	h.mu.Lock()
	sub := h.subs[subKey(topic, callback)]
	h.mu.Unlock()
	if sub == nil {
		return nil
	}
	return h.removeLocked(ctx, sub, true)
}

// removeLocked ends a subscription: its sink (when deleteSink), its lease,
// and its topic's exchange if nothing else uses it. Caller holds stateMu.
func (h *Hub) removeLocked(ctx context.Context, sub *subscription, deleteSink bool) error {
	if deleteSink && sub.sinkID != "" {
		if err := h.cfg.Distributor.Delete(ctx, sub.sinkID); err != nil && !errs.Is(err, errs.NotFound) {
			return fmt.Errorf("stopping distribution: %w", err)
		}
	}
	if err := h.b.DeleteRecord(ctx, recordKind, sub.key); err != nil {
		return fmt.Errorf("deleting a websub subscription: %w", err)
	}
	h.mu.Lock()
	if _, ok := h.subs[sub.key]; ok { // the record watch may have removed it already
		delete(h.subs, sub.key)
		if ts := h.topics[sub.topic]; ts != nil {
			ts.subs--
		}
	}
	h.mu.Unlock()
	h.dropTopicIfUnusedLocked(ctx, sub.topic)
	return nil
}

// Gone is called when the distributor ended sink id by itself (HTTP 410
// from the callback): the subscription's lease is removed. Wire it to the
// webhook service's OnGone.
func (h *Hub) Gone(id string) {
	if h.state.Load() != 1 {
		return
	}
	ctx, cancel := writeCtx(h.ctx)
	defer cancel()
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	h.mu.Lock()
	var sub *subscription
	for _, s := range h.subs {
		if s.sinkID == id {
			sub = s
			break
		}
	}
	h.mu.Unlock()
	if sub == nil {
		return
	}
	if err := h.removeLocked(ctx, sub, false); err != nil {
		h.log.Warn("websub: removing a gone subscription", "topic", sub.topic, "error", err)
		return
	}
	h.log.Info("websub subscription ended by 410 Gone", "topic", sub.topic)
}

// poke wakes the lease loop.
func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// leaseLoop expires leases on time and reconciles with the distributor
// every ReconcileInterval.
func (h *Hub) leaseLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	reconcile := time.NewTicker(h.cfg.ReconcileInterval)
	defer reconcile.Stop()
	for {
		h.expire()
		timer.Reset(h.nextExpiry())
		select {
		case <-h.quit:
			return
		case <-h.wake:
		case <-timer.C:
		case <-reconcile.C:
			h.reconcile()
		}
	}
}

// nextExpiry is how long until the earliest lease ends (at most an hour).
func (h *Hub) nextExpiry() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.cfg.Now()
	next := time.Hour
	for _, s := range h.subs {
		if d := s.expires.Sub(now); d < next {
			next = max(d, 0)
		}
	}
	return next + time.Millisecond
}

// expire removes the subscriptions whose lease has ended.
func (h *Hub) expire() {
	now := h.cfg.Now()
	h.mu.Lock()
	var due []string
	for k, s := range h.subs {
		if !s.expires.After(now) {
			due = append(due, k)
		}
	}
	h.mu.Unlock()
	if len(due) == 0 {
		return
	}
	ctx, cancel := writeCtx(h.ctx)
	defer cancel()
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	for _, k := range due {
		h.mu.Lock()
		sub := h.subs[k]
		h.mu.Unlock()
		if sub == nil || sub.expires.After(now) {
			continue // renewed meanwhile
		}
		if err := h.removeLocked(ctx, sub, true); err != nil {
			h.log.Warn("websub: expiring a subscription", "topic", sub.topic, "error", err)
			continue
		}
		h.log.Info("websub subscription expired", "topic", sub.topic)
	}
}

// reconcile removes subscriptions whose sink the distributor no longer
// holds (it ended them, e.g. on 410 without Gone being wired) and sinks
// without a subscription (a crash interrupted a subscribe or unsubscribe).
// Only what was already orphaned at the previous pass is removed: in a
// cluster a subscribe made through another node reaches this node's
// distributor and hub one after the other, a moment apart.
func (h *Hub) reconcile() {
	ctx, cancel := writeCtx(h.ctx)
	defer cancel()
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	sinks := map[string]Sink{}
	for _, s := range h.cfg.Distributor.List() {
		sinks[s.ID] = s
	}
	h.mu.Lock()
	var orphans []*subscription
	held := map[string]bool{}
	suspects := map[string]bool{}
	for _, s := range h.subs {
		if _, ok := sinks[s.sinkID]; !ok {
			suspects["s"+s.key] = true
			if h.suspects["s"+s.key] {
				orphans = append(orphans, s)
			}
		}
		held[s.sinkID] = true
	}
	for id := range sinks {
		if !held[id] {
			suspects["d"+id] = true
		}
	}
	prev := h.suspects
	h.suspects = suspects
	h.mu.Unlock()
	for _, s := range orphans {
		if err := h.removeLocked(ctx, s, false); err != nil {
			h.log.Warn("websub: removing a subscription without distribution", "error", err)
		}
	}
	for id, s := range sinks {
		if !held[id] && prev["d"+id] {
			h.log.Warn("websub: ending a distribution without a subscription", "topic", s.Topic)
			if err := h.cfg.Distributor.Delete(ctx, id); err != nil {
				h.log.Warn("websub: ending a distribution without a subscription", "error", err)
			}
		}
	}
}

// hubURL is the Link rel="hub" for subscriptions made through r.
func (h *Hub) hubURL(r *http.Request) string {
	if h.cfg.HubURL != "" {
		return h.cfg.HubURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + HubPath
}
