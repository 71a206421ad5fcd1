package websub

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// The websub.rocks hub tests (https://websub.rocks/hub/100 ... 106), played
// locally: the test is websub.rocks' subscriber and publisher. Each test
// subscribes with the parameters websub.rocks sends, answers the
// verification of intent as websub.rocks does (checking hub.mode,
// hub.topic, hub.challenge and, on subscribe, hub.lease_seconds), publishes
// new content with hub.mode=publish&hub.topic, and checks the distribution
// as websub.rocks' subscriber does: non-empty body identical to the topic's
// content, the topic's Content-Type, Link rel=hub and rel=self, and
// X-Hub-Signature present and valid exactly when a secret was given.

// rocks runs the common flow: subscribe (with extra parameters), verify,
// publish twice, check both distributions.
func rocks(t *testing.T, num, contentType string, extra url.Values, secret string) {
	t.Parallel()
	e := setup(t)
	pub := newPublisher(t, e.hubURL)
	sub := newSubscriber(t, num)
	body := func(n string) string {
		switch contentType {
		case "application/json":
			return `{"items":[{"id":"` + n + `","content":"WebSub Rocks post ` + n + `"}]}`
		case "text/plain":
			return "WebSub Rocks! Test " + num + "\npost " + n + "\n"
		}
		return "<html><body><h1>WebSub Rocks! Test " + num + "</h1><p>post " + n + "</p></body></html>"
	}
	path := "/hub/" + num + "/pub/token"
	topic := pub.topic(path, contentType, body("1"))
	if secret != "" {
		extra.Set("hub.secret", secret)
	}

	e.subscribe(t, topic, sub.callback, extra)
	verifySubscription(t, sub, "subscribe", topic)
	waitFor(t, "the subscription", func() bool { return len(e.subscriptions(topic)) == 1 })

	for _, n := range []string{"2", "3"} {
		want := topicContent{contentType: contentType, body: body(n)}
		pub.topic(path, contentType, want.body)
		e.publish(t, topic)
		checkNotification(t, sub.notification(t), e.hubURL, topic, want, secret)
	}
}

// 100: typical subscriber request (hub.mode, hub.topic, hub.callback); no
// signature expected.
func TestRocks100TypicalSubscriber(t *testing.T) {
	rocks(t, "100", "text/html; charset=UTF-8", url.Values{}, "")
}

// 101: subscription with hub.secret; the notification's X-Hub-Signature
// must verify with it.
func TestRocks101SubscriptionWithSecret(t *testing.T) {
	rocks(t, "101", "text/html; charset=UTF-8", url.Values{}, "s3cr3t-WebSub-Rocks")
}

// 102: the subscriber sends additional parameters, which the hub ignores.
func TestRocks102AdditionalParameters(t *testing.T) {
	rocks(t, "102", "text/html; charset=UTF-8", url.Values{"foo": {"bar"}, "hub.foo": {"hub.bar"}}, "")
}

// 103: re-subscription before expiration updates the subscription of the
// topic+callback pair instead of creating a second one: one subscription,
// one distribution per publish, the lease renewed and the secret replaced.
func TestRocks103Resubscribe(t *testing.T) {
	t.Parallel()
	e := setup(t)
	pub := newPublisher(t, e.hubURL)
	sub := newSubscriber(t, "103")
	path := "/hub/103/pub/token"
	topic := pub.topic(path, "text/html", "<p>1</p>")

	e.subscribe(t, topic, sub.callback, url.Values{"hub.lease_seconds": {"600"}, "hub.secret": {"first"}})
	verifySubscription(t, sub, "subscribe", topic)
	waitFor(t, "the subscription", func() bool { return len(e.subscriptions(topic)) == 1 })
	first := e.subscriptions(topic)[0]

	e.subscribe(t, topic, sub.callback, url.Values{"hub.lease_seconds": {"3600"}, "hub.secret": {"second"}})
	q := verifySubscription(t, sub, "subscribe", topic)
	require.Equal(t, "3600", q.Get("hub.lease_seconds"))
	waitFor(t, "the renewed lease", func() bool {
		s := e.subscriptions(topic)
		return len(s) == 1 && s[0].ExpiresAt.After(first.ExpiresAt)
	})
	require.Equal(t, first.SinkID, e.subscriptions(topic)[0].SinkID, "the same subscription is updated")
	require.Equal(t, 1, e.websubSinks(), "one distribution target")

	for _, n := range []string{"2", "3"} {
		want := topicContent{contentType: "text/html", body: "<p>" + n + "</p>"}
		pub.topic(path, want.contentType, want.body)
		e.publish(t, topic)
		checkNotification(t, sub.notification(t), e.hubURL, topic, want, "second")
	}
	sub.noNotification(t)
}

// 104: unsubscription is verified (hub.mode=unsubscribe), after which no
// notification is delivered. A second subscriber of the same topic shows
// when the publish has been distributed.
func TestRocks104Unsubscribe(t *testing.T) {
	t.Parallel()
	e := setup(t)
	pub := newPublisher(t, e.hubURL)
	sub := newSubscriber(t, "104")
	control := newSubscriber(t, "104-control")
	path := "/hub/104/pub/token"
	topic := pub.topic(path, "text/html", "<p>1</p>")

	for _, s := range []*subscriber{sub, control} {
		e.subscribe(t, topic, s.callback, nil)
		verifySubscription(t, s, "subscribe", topic)
	}
	waitFor(t, "two subscriptions", func() bool { return len(e.subscriptions(topic)) == 2 })

	code, body := e.post(t, url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {topic}, "hub.callback": {sub.callback}})
	require.Equal(t, http.StatusAccepted, code, body)
	q := verifySubscription(t, sub, "unsubscribe", topic)
	require.Empty(t, q.Get("hub.lease_seconds"))
	waitFor(t, "the unsubscription", func() bool { return len(e.subscriptions(topic)) == 1 })

	want := topicContent{contentType: "text/html", body: "<p>2</p>"}
	pub.topic(path, want.contentType, want.body)
	e.publish(t, topic)
	checkNotification(t, control.notification(t), e.hubURL, topic, want, "")
	sub.noNotification(t)
	require.Equal(t, 1, e.websubSinks())
}

// 105: plain-text topic content is distributed with its Content-Type.
func TestRocks105PlaintextTopic(t *testing.T) {
	rocks(t, "105", "text/plain", url.Values{}, "")
}

// 106: JSON topic content is distributed with its Content-Type.
func TestRocks106JSONTopic(t *testing.T) {
	rocks(t, "106", "application/json", url.Values{}, "")
}
