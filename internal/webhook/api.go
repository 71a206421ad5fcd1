package webhook

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// Format says how a subscription's deliveries are encoded and signed.
type Format string

const (
	// FormatCloudEvents posts the event as structured CloudEvents JSON,
	// signed per Standard Webhooks (webhook-id, webhook-timestamp,
	// webhook-signature).
	FormatCloudEvents Format = "cloudevents"
	// FormatWebSub posts the raw message body with the message's
	// Content-Type, headers Link: <HubURL>; rel="hub", <Topic>; rel="self",
	// and X-Hub-Signature: sha256=<hex hmac-sha256(secret, body)> only when
	// Secret != "". HTTP 410 Gone ends the subscription (it is deleted and
	// Config.OnGone is called).
	FormatWebSub Format = "websub"
)

// Spec is what a subscription delivers, where, and how.
type Spec struct {
	// URL is the http or https endpoint. Its host must not resolve to a
	// refused address (see TargetGuard).
	URL string
	// VHost is the virtual host; "" means "/".
	VHost string
	// Exchange is the exchange the subscription's queue is bound to.
	Exchange string
	// BindingKey is the binding's routing key (a topic pattern on topic
	// exchanges).
	BindingKey string
	// Secret signs deliveries. FormatCloudEvents: "whsec_" + base64 of the
	// key; "" generates one of 24 random bytes. FormatWebSub: any string; ""
	// sends no signature.
	Secret string
	// MaxAttempts bounds delivery attempts of one event (the first one
	// included); 0 means Config.DefaultMaxAttempts (8).
	MaxAttempts int
	// BackoffInitial is the first retry's backoff ceiling; each retry doubles
	// it up to BackoffMax; the actual wait is uniform in [0, ceiling) (full
	// jitter). 0 means 5s and 1h. A Retry-After on a 429 or 503 answer,
	// clamped to BackoffMax, makes the wait at least that long.
	BackoffInitial, BackoffMax time.Duration
	// Timeout bounds one attempt (connect to end of response); 0 means 10s.
	Timeout time.Duration
	// Concurrency bounds the attempts in flight to the endpoint (and the
	// unacknowledged deliveries of the subscription's queue); 0 means 10.
	Concurrency int
	// OrderingKey, if set, delivers events sharing a key one at a time in
	// queue order: "subject", "type", "source", "id", "routing_key", or the
	// name of a message header. A failing event is retried in place, holding
	// back its key's later events.
	OrderingKey string
	// Format is the delivery encoding; "" means FormatCloudEvents.
	Format Format
	// Topic and HubURL fill the Link header (FormatWebSub only).
	Topic, HubURL string
	// Owner is "" for subscriptions created through /v1/webhooks and
	// "websub" for those created by the WebSub hub. /v1/webhooks lists only
	// Owner "" subscriptions and refuses to change the others.
	Owner string
}

// Subscription is a stored subscription.
type Subscription struct {
	ID string
	Spec
	// Paused subscriptions keep queueing events but deliver none.
	Paused bool
	// Disabled is set by the circuit breaker (DisabledReason says why);
	// events keep queueing. Re-enable with PATCH {"enabled": true} or Update.
	Disabled       bool
	DisabledReason string
	CreatedAt      time.Time
}

// Config configures a Service. Zero values mean the documented defaults.
type Config struct {
	// Broker routes, stores and delivers events. Required.
	Broker *broker.Broker
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
	// AllowPrivate lists address ranges that are allowed as webhook targets
	// although they are loopback, private, link-local, ... (see TargetGuard).
	AllowPrivate []netip.Prefix
	// AllowRemoteGuest lets the "guest" user authenticate from non-loopback
	// addresses (as the management API's option).
	AllowRemoteGuest bool

	// MaxBodyBytes bounds a CloudEvents ingestion request body (one event or
	// a batch); 0 means 1 MiB. Larger bodies get 413.
	MaxBodyBytes int64
	// MaxBatchEvents bounds the events of one batch request; 0 means 1,000.
	// Larger batches get 413.
	MaxBatchEvents int
	// MaxSubscriptions bounds subscriptions (all owners); 0 means 10,000.
	// Creating more fails with 503 (errs.ResourceError).
	MaxSubscriptions int
	// MaxConcurrency bounds Spec.Concurrency; 0 means 512.
	MaxConcurrency int
	// MaxAttemptsLimit bounds Spec.MaxAttempts; 0 means 100.
	MaxAttemptsLimit int
	// DefaultMaxAttempts is used when Spec.MaxAttempts is 0; 0 means 8.
	DefaultMaxAttempts int
	// MaxPending bounds the events waiting in one subscription's queue
	// (x-max-length); beyond it the oldest are moved to the dead letters.
	// 0 means 1,000,000.
	MaxPending int
	// MaxDeadLetters bounds one subscription's dead-letter queue; beyond it
	// the oldest dead letters are dropped. 0 means 100,000.
	MaxDeadLetters int
	// DeliveryLogSize is how many attempts per subscription
	// /v1/webhooks/{id}/deliveries keeps (in the broker journal
	// webhook-attempts, which drops the oldest); 0 means 1,000.
	DeliveryLogSize int
	// SnippetBytes bounds the response body kept per attempt; 0 means 1 KiB.
	SnippetBytes int
	// BreakerFailures and BreakerPeriod configure the circuit breaker: a
	// subscription whose last BreakerFailures attempts all failed, the first
	// of them at least BreakerPeriod ago, is disabled. 0 means 100 and 10
	// minutes; BreakerFailures < 0 disables the breaker. A 429 answer is
	// neutral: it neither counts as a failed attempt nor resets the count.
	BreakerFailures int
	BreakerPeriod   time.Duration
	// SecretGrace is how long a rotated-out secret still signs deliveries
	// next to the new one; 0 means 24h.
	SecretGrace time.Duration
	// OnGone is called (from a dispatcher goroutine, after the subscription
	// is deleted) when a FormatWebSub endpoint answers 410 Gone. May be nil.
	OnGone func(sub Subscription)
}
