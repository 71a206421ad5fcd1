package websub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/webhook"
)

// pubSub returns a publisher serving the topic /name and a subscriber
// named name.
func pubSub(t *testing.T, e *env, name, contentType, body string) (*publisher, *subscriber, string) {
	t.Helper()
	pub := newPublisher(t, e.hubURL)
	return pub, newSubscriber(t, name), pub.topic("/"+name, contentType, body)
}

// subscribed runs subscribe + verification and waits until the hub holds
// the subscription.
func subscribed(t *testing.T, e *env, s *subscriber, topic string, extra url.Values) url.Values {
	t.Helper()
	e.subscribe(t, topic, s.callback, extra)
	q := verifySubscription(t, s, "subscribe", topic)
	waitFor(t, "the subscription", func() bool {
		for _, si := range e.subscriptions(topic) {
			if si.Callback == s.callback {
				return true
			}
		}
		return false
	})
	return q
}

func TestWrongChallengeEchoSubscribesNothing(t *testing.T) {
	t.Parallel()
	// One worker: requests are processed in order, so the control
	// subscriber's verification shows the first request is finished.
	e := setup(t, func(c *Config) { c.Workers = 1 })
	sub := newSubscriber(t, "wrong")
	sub.set(func(s *subscriber) { s.echo = func(c string) string { return "not-" + c } })
	status := newSubscriber(t, "status")
	status.set(func(s *subscriber) { s.vcode = http.StatusNotFound }) // echoes, but not with 2xx
	control := newSubscriber(t, "control")
	topic := "http://127.0.0.1:1/topic"

	e.subscribe(t, topic, sub.callback, nil)
	verifySubscription(t, sub, "subscribe", topic)
	e.subscribe(t, topic, status.callback, nil)
	verifySubscription(t, status, "subscribe", topic)
	subscribed(t, e, control, topic, nil)

	subs := e.subscriptions(topic)
	require.Len(t, subs, 1)
	require.Equal(t, control.callback, subs[0].Callback)
	require.Equal(t, 1, e.websubSinks())
}

func TestLeaseExpiryRemovesSubscription(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, sub, topic := pubSub(t, e, "lease", "text/plain", "x")
	q := subscribed(t, e, sub, topic, url.Values{"hub.lease_seconds": {"1"}})
	require.Equal(t, "1", q.Get("hub.lease_seconds"))
	waitFor(t, "the lease to expire and the unused topic exchange to go", func() bool {
		_, err := e.broker.Exchange("/", TopicExchange(topic))
		return len(e.subscriptions(topic)) == 0 && e.websubSinks() == 0 && err != nil
	})
	require.Empty(t, e.broker.Records(recordKind))
}

func TestLeaseBounds(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) {
		c.LeaseMin, c.LeaseDefault, c.LeaseMax = 10*time.Second, time.Minute, time.Hour
	})
	for _, tc := range []struct{ asked, granted string }{
		{"", "60"}, {"5", "10"}, {"600", "600"}, {"99999999999", "3600"},
	} {
		sub := newSubscriber(t, "bounds"+tc.asked)
		extra := url.Values{}
		if tc.asked != "" {
			extra.Set("hub.lease_seconds", tc.asked)
		}
		q := subscribed(t, e, sub, "http://example.com/bounds", extra)
		require.Equal(t, tc.granted, q.Get("hub.lease_seconds"), "asked %q", tc.asked)
	}
	for _, s := range e.subscriptions("http://example.com/bounds") {
		require.WithinDuration(t, time.Now().Add(time.Hour), s.ExpiresAt, time.Hour)
	}
}

func TestGoneEndsSubscription(t *testing.T) {
	t.Parallel()
	e := setup(t)
	pub := newPublisher(t, e.hubURL)
	sub := newSubscriber(t, "gone")
	sub.set(func(s *subscriber) { s.status = http.StatusGone })
	topic := pub.topic("/gone", "text/plain", "bye")
	subscribed(t, e, sub, topic, nil)
	e.publish(t, topic)
	sub.notification(t)
	waitFor(t, "the subscription to end", func() bool { return len(e.subscriptions(topic)) == 0 && e.websubSinks() == 0 })
	require.Empty(t, e.broker.Records(recordKind))
}

func TestRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, sub, topic := pubSub(t, e, "retry", "text/plain", "again")
	subscribed(t, e, sub, topic, nil)
	sub.set(func(s *subscriber) { s.status = http.StatusServiceUnavailable })
	e.publish(t, topic)
	sub.notification(t)
	sub.set(func(s *subscriber) { s.status = http.StatusOK })
	n := sub.notification(t) // retried after a backoff
	require.Equal(t, "again", string(n.body))
}

func TestDenial(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) {
		c.MaxSubscriptionsPerTopic = 1
		c.AllowTopic = func(topic string) error {
			if strings.Contains(topic, "forbidden") {
				return errors.New("topic not served by this hub")
			}
			return nil
		}
	})

	t.Run("callback refused by the SSRF guard", func(t *testing.T) {
		code, body := e.post(t, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {"http://example.com/t"},
			"hub.callback": {"http://169.254.169.254/latest/meta-data/"}})
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, body, "hub.callback is refused")
		require.Empty(t, e.hub.Subscriptions())
	})

	t.Run("topic not allowed", func(t *testing.T) {
		sub := newSubscriber(t, "denied")
		topic := "http://example.com/forbidden"
		e.subscribe(t, topic, sub.callback, nil)
		q := sub.verification(t)
		require.Equal(t, "denied", q.Get("hub.mode"))
		require.Equal(t, topic, q.Get("hub.topic"))
		require.Equal(t, "topic not served by this hub", q.Get("hub.reason"))
		require.Equal(t, "tok/en", q.Get("token"))
		require.Empty(t, e.subscriptions(topic))
	})

	t.Run("per-topic limit", func(t *testing.T) {
		topic := "http://example.com/full"
		first := newSubscriber(t, "first")
		subscribed(t, e, first, topic, nil)
		second := newSubscriber(t, "second")
		e.subscribe(t, topic, second.callback, nil)
		q := second.verification(t)
		require.Equal(t, "denied", q.Get("hub.mode"))
		require.Contains(t, q.Get("hub.reason"), "limit of 1 subscriptions")
		// A re-subscription is not a new subscription.
		subscribed(t, e, first, topic, nil)
		require.Len(t, e.subscriptions(topic), 1)
	})
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.MaxURLBytes = 100 })
	cb := "http://127.0.0.1:9/cb"
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{}, "hub.mode is required"},
		{url.Values{"hub.mode": {"watch"}}, `hub.mode "watch" is not supported`},
		{url.Values{"hub.mode": {"subscribe"}, "hub.topic": {"http://x/t"}}, "hub.callback is required"},
		{url.Values{"hub.mode": {"subscribe"}, "hub.callback": {cb}}, "hub.topic is required"},
		{url.Values{"hub.mode": {"subscribe"}, "hub.callback": {"/relative"}, "hub.topic": {"http://x/t"}}, "hub.callback must be an absolute http or https URL"},
		{url.Values{"hub.mode": {"subscribe"}, "hub.callback": {"ftp://x/cb"}, "hub.topic": {"http://x/t"}}, "hub.callback must be an absolute http or https URL"},
		{url.Values{"hub.mode": {"subscribe"}, "hub.callback": {cb + strings.Repeat("a", 100)}, "hub.topic": {"http://x/t"}}, "longer than the limit of 100"},
		{url.Values{"hub.mode": {"subscribe"}, "hub.callback": {cb}, "hub.topic": {"http://x/t"}, "hub.secret": {strings.Repeat("s", 201)}}, "hub.secret is 201 bytes"},
		{url.Values{"hub.mode": {"subscribe"}, "hub.callback": {cb}, "hub.topic": {"http://x/t"}, "hub.lease_seconds": {"-1"}}, "hub.lease_seconds must be a non-negative integer"},
		{url.Values{"hub.mode": {"subscribe"}, "hub.callback": {cb}, "hub.topic": {"http://x/t"}, "hub.lease_seconds": {"soon"}}, "hub.lease_seconds must be a non-negative integer"},
		{url.Values{"hub.mode": {"publish"}}, "hub.topic (or hub.url) is required"},
		{url.Values{"hub.mode": {"publish"}, "hub.url": {"nope"}}, "hub.url must be an absolute"},
	} {
		code, body := e.post(t, tc.form)
		require.Equal(t, http.StatusBadRequest, code, "form %v: %s", tc.form, body)
		require.Contains(t, body, tc.want, "form %v", tc.form)
	}
	resp, err := http.Post(e.srv.URL+HubPath, "application/x-www-form-urlencoded", strings.NewReader("hub.mode="+strings.Repeat("x", 70<<10)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

func TestPublishNotification(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.MaxContentBytes = 64 })
	pub, sub, topic := pubSub(t, e, "pub", "application/atom+xml", "<feed>1</feed>")
	subscribed(t, e, sub, topic, nil)

	// hub.url is accepted as well as hub.topic.
	code, body := e.post(t, url.Values{"hub.mode": {"publish"}, "hub.url": {topic}})
	require.Equal(t, http.StatusAccepted, code, body)
	checkNotification(t, sub.notification(t), e.hubURL, topic, topicContent{"application/atom+xml", "<feed>1</feed>"}, "")

	// Content over MaxContentBytes is not distributed; the next is.
	pub.topic("/pub", "application/atom+xml", "<feed>"+strings.Repeat("x", 100)+"</feed>")
	e.publish(t, topic)
	pub.topic("/pub", "application/atom+xml", "<feed>3</feed>")
	e.publish(t, topic)
	checkNotification(t, sub.notification(t), e.hubURL, topic, topicContent{"application/atom+xml", "<feed>3</feed>"}, "")
	sub.noNotification(t)
}

// admin sends an admin API request as guest (from loopback).
func (e *env) admin(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	require.NoError(t, err)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}

func TestExchangeBoundTopic(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	_, err := e.broker.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "orders", Type: broker.Topic, Durable: true}, false)
	require.NoError(t, err)
	topic := "https://shop.example/orders/eu"

	code, body := e.admin(t, http.MethodPost, "/v1/websub/topics", TopicBinding{Topic: topic, Exchange: "orders", BindingKey: "order.eu.*"})
	require.Equal(t, http.StatusCreated, code, string(body))
	var tb TopicBinding
	require.NoError(t, json.Unmarshal(body, &tb))
	require.Equal(t, TopicExchange(topic), tb.TopicExchange)
	require.Equal(t, "/", tb.VHost)

	sub := newSubscriber(t, "bound")
	subscribed(t, e, sub, topic, url.Values{"hub.secret": {"k"}})

	publish := func(key, body string) {
		_, err := e.broker.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "orders", RoutingKey: key,
			Message: &broker.Message{Properties: broker.Properties{ContentType: "application/json"}, Body: []byte(body)}})
		require.NoError(t, err)
	}
	publish("order.us.created", `{"id":1}`) // not bound
	publish("order.eu.created", `{"id":2}`)
	checkNotification(t, sub.notification(t), e.hubURL, topic, topicContent{"application/json", `{"id":2}`}, "k")
	sub.noNotification(t)

	code, body = e.admin(t, http.MethodGet, "/v1/websub/topics", nil)
	require.Equal(t, http.StatusOK, code)
	var topics []TopicInfo
	require.NoError(t, json.Unmarshal(body, &topics))
	require.Len(t, topics, 1)
	require.Equal(t, 1, topics[0].Subscriptions)
	require.Equal(t, []TopicBinding{{Topic: topic, VHost: "/", Exchange: "orders", BindingKey: "order.eu.*"}}, topics[0].Bindings)

	q := url.Values{"topic": {topic}, "exchange": {"orders"}, "binding_key": {"order.eu.*"}}
	code, body = e.admin(t, http.MethodDelete, "/v1/websub/topics?"+q.Encode(), nil)
	require.Equal(t, http.StatusNoContent, code, string(body))
	code, _ = e.admin(t, http.MethodDelete, "/v1/websub/topics?"+q.Encode(), nil)
	require.Equal(t, http.StatusNotFound, code)
	res, err := e.broker.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "orders", RoutingKey: "order.eu.created", Message: &broker.Message{Body: []byte("x")}})
	require.NoError(t, err)
	require.False(t, res.Routed)
}

func TestTopicMovesToBoundVHost(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	require.NoError(t, e.broker.AddVHost(ctx, "shop"))
	require.NoError(t, e.broker.SetPermission(ctx, broker.Permission{User: "guest", VHost: "shop", Configure: ".*", Write: ".*", Read: ".*"}))
	_, err := e.broker.DeclareExchange(ctx, "shop", broker.ExchangeSpec{Name: "events", Type: broker.Fanout, Durable: true}, false)
	require.NoError(t, err)
	topic := "https://shop.example/feed"
	sub := newSubscriber(t, "moved")
	subscribed(t, e, sub, topic, nil)

	code, body := e.admin(t, http.MethodPost, "/v1/websub/topics", TopicBinding{Topic: topic, VHost: "shop", Exchange: "events"})
	require.Equal(t, http.StatusCreated, code, string(body))
	_, err = e.broker.Exchange("/", TopicExchange(topic))
	require.Error(t, err, "the old topic exchange is gone")
	_, err = e.broker.Publish(ctx, broker.Publishing{VHost: "shop", Exchange: "events",
		Message: &broker.Message{Properties: broker.Properties{ContentType: "text/plain"}, Body: []byte("moved")}})
	require.NoError(t, err)
	checkNotification(t, sub.notification(t), e.hubURL, topic, topicContent{"text/plain", "moved"}, "")
	require.Len(t, e.subscriptions(topic), 1)

	// Bindings of one topic share a vhost.
	_, err = e.broker.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "other", Type: broker.Fanout}, false)
	require.NoError(t, err)
	code, body = e.admin(t, http.MethodPost, "/v1/websub/topics", TopicBinding{Topic: topic, VHost: "/", Exchange: "other"})
	require.Equal(t, http.StatusBadRequest, code, string(body))
	require.Contains(t, string(body), "must share one vhost")
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	e := setup(t)
	resp, err := http.Get(e.srv.URL + "/v1/websub/topics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	code, body := e.admin(t, http.MethodPost, "/v1/websub/topics", TopicBinding{Topic: "https://x.example/t", Exchange: "missing"})
	require.Equal(t, http.StatusNotFound, code, string(body))
	code, body = e.admin(t, http.MethodPost, "/v1/websub/topics", TopicBinding{Topic: "not a url", Exchange: "amq.topic"})
	require.Equal(t, http.StatusBadRequest, code)
	var eb adminError
	require.NoError(t, json.Unmarshal(body, &eb))
	require.Equal(t, "bad_request", eb.Error)
	require.Contains(t, eb.Reason, "topic must be an absolute")
	code, _ = e.admin(t, http.MethodGet, "/v1/websub/subscriptions", nil)
	require.Equal(t, http.StatusOK, code)
}

func TestReconcileRemovesSubscriptionsEndedElsewhere(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sub := newSubscriber(t, "reconcile")
	topic := "http://example.com/reconcile"
	subscribed(t, e, sub, topic, nil)
	id := e.subscriptions(topic)[0].SinkID
	require.NoError(t, e.wh.Delete(context.Background(), id))
	waitFor(t, "the reconcile", func() bool { return len(e.subscriptions(topic)) == 0 })
	require.Empty(t, e.broker.Records(recordKind))
}

// State survives a restart: subscriptions (lease, secret, callback), topic
// bindings; distribution works after it, by publish notification and from
// the bound exchange.
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := start(t, dir)
	ctx := context.Background()
	_, err := e.broker.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "news", Type: broker.Direct, Durable: true}, false)
	require.NoError(t, err)
	pub, sub, topic := pubSub(t, e, "restart", "text/plain", "before")
	code, body := e.admin(t, http.MethodPost, "/v1/websub/topics", TopicBinding{Topic: topic, Exchange: "news", BindingKey: "n"})
	require.Equal(t, http.StatusCreated, code, string(body))
	q := subscribed(t, e, sub, topic, url.Values{"hub.secret": {"persisted"}, "hub.lease_seconds": {"120"}})
	require.Equal(t, "120", q.Get("hub.lease_seconds"))
	before := e.subscriptions(topic)
	e.stop()

	e = start(t, dir)
	require.Equal(t, before, e.subscriptions(topic))
	pub.topic("/restart", "text/plain", "after")
	e.publish(t, topic)
	checkNotification(t, sub.notification(t), e.hubURL, topic, topicContent{"text/plain", "after"}, "persisted")
	_, err = e.broker.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "news", RoutingKey: "n",
		Message: &broker.Message{Properties: broker.Properties{ContentType: "text/plain"}, Body: []byte("via exchange")}})
	require.NoError(t, err)
	checkNotification(t, sub.notification(t), e.hubURL, topic, topicContent{"text/plain", "via exchange"}, "persisted")

	// The lease is still timed after the restart.
	e.unsubscribeVerified(t, sub, topic)
	require.Empty(t, e.broker.Records(recordKind))
	require.Equal(t, strconv.Itoa(0), strconv.Itoa(e.websubSinks()))
}

// unsubscribeVerified unsubscribes and answers the verification.
func (e *env) unsubscribeVerified(t *testing.T, s *subscriber, topic string) {
	t.Helper()
	code, body := e.post(t, url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {topic}, "hub.callback": {s.callback}})
	require.Equal(t, http.StatusAccepted, code, body)
	verifySubscription(t, s, "unsubscribe", topic)
	waitFor(t, "the unsubscription", func() bool { return len(e.subscriptions(topic)) == 0 })
}

func TestResubscribeWithoutSecretStopsSigning(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, sub, topic := pubSub(t, e, "unsigned", "text/plain", "plain")
	subscribed(t, e, sub, topic, url.Values{"hub.secret": {"k"}})
	require.True(t, e.subscriptions(topic)[0].Signed)
	e.subscribe(t, topic, sub.callback, nil)
	verifySubscription(t, sub, "subscribe", topic)
	waitFor(t, "the unsigned re-subscription", func() bool { return !e.subscriptions(topic)[0].Signed })
	e.publish(t, topic)
	checkNotification(t, sub.notification(t), e.hubURL, topic, topicContent{"text/plain", "plain"}, "")
}

func TestTotalSubscriptionLimitAndUnknownUnsubscribe(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *Config) { c.MaxSubscriptions = 1 })
	first := newSubscriber(t, "first")
	subscribed(t, e, first, "http://example.com/a", nil)
	second := newSubscriber(t, "second")
	e.subscribe(t, "http://example.com/b", second.callback, nil)
	q := second.verification(t)
	require.Equal(t, "denied", q.Get("hub.mode"))
	require.Contains(t, q.Get("hub.reason"), "limit of 1 subscriptions")

	// Unsubscribing what does not exist is verified and changes nothing.
	code, body := e.post(t, url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {"http://example.com/b"}, "hub.callback": {second.callback}})
	require.Equal(t, http.StatusAccepted, code, body)
	verifySubscription(t, second, "unsubscribe", "http://example.com/b")
	require.Len(t, e.hub.Subscriptions(), 1)
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	require.Error(t, e.hub.Start(ctx), "Start twice")
	e.hub.Stop(ctx)
	e.hub.Stop(ctx)
	code, _ := e.post(t, url.Values{"hub.mode": {"publish"}, "hub.topic": {"http://example.com/x"}})
	require.Equal(t, http.StatusServiceUnavailable, code)

	h, err := New(Config{Broker: e.broker, Distributor: WebhookDistributor(e.wh, webhook.Spec{}), CheckURL: e.wh.Guard().CheckURL, Client: e.wh.Guard().Client()})
	require.NoError(t, err)
	h.Stop(ctx) // before Start
	require.Error(t, h.Start(ctx), "Start after Stop")

	_, err = New(Config{Broker: e.broker})
	require.ErrorContains(t, err, "Distributor is required")
	_, err = New(Config{Broker: e.broker, Distributor: WebhookDistributor(e.wh, webhook.Spec{}), CheckURL: e.wh.Guard().CheckURL,
		Client: e.wh.Guard().Client(), LeaseMin: time.Hour, LeaseMax: time.Minute})
	require.ErrorContains(t, err, "LeaseMin")
}

// A second hub on the same broker stands for another node of a cluster: it
// shares the records but not the first hub's memory. A subscription made
// through the first hub is known to the second at once (no restart), and the
// second times its lease: with the first hub stopped, the second expires it.
func TestSubscriptionMadeElsewhereIsFollowed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := e.hub.cfg
	other, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, other.Start(context.Background()))
	defer other.Stop(context.Background())
	sub := newSubscriber(t, "elsewhere")
	topic := "http://example.com/elsewhere"
	subscribed(t, e, sub, topic, url.Values{"hub.lease_seconds": {"1"}})
	waitFor(t, "the other hub to know the subscription", func() bool {
		for _, si := range other.Subscriptions() {
			if si.Topic == topic && si.Callback == sub.callback {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.hub.Stop(ctx) // only the other hub's lease timer is left
	waitFor(t, "the other hub to expire the lease", func() bool {
		return len(e.broker.Records(recordKind)) == 0 && e.websubSinks() == 0 && len(other.Subscriptions()) == 0
	})
}
