// Package webhook is Herald's HTTP face in and out: CloudEvents 1.0
// ingestion (binary, structured and batch modes) at
// POST /v1/events/{vhost}/{exchange}, and durable signed webhooks.
//
// A subscription is a durable queue herald.webhook.<id> bound to an exchange,
// drained by a dispatcher that POSTs each event to the endpoint (structured
// CloudEvents JSON signed per Standard Webhooks, or a WebSub distribution),
// at most Spec.Concurrency at a time. A failed attempt is scheduled again
// through the broker's delayed exchange herald.webhook.retry (exponential
// backoff with full jitter, or the endpoint's Retry-After on 429 and 503
// when longer, clamped to BackoffMax), so retries survive restarts; after
// MaxAttempts the event goes to the dead-letter queue herald.webhook.<id>.dead,
// which can be listed and redriven. Subscription records persist in the broker's
// metadata (Broker.PutRecord). Every delivery goes through TargetGuard, which
// refuses loopback, private, link-local and metadata addresses at creation
// and at dial time. Each run posts through its own pool of HTTP/1.1
// keep-alive connections (poster, a fasthttp HostClient: no goroutine hand-off
// per request), closed when the run ends.
//
// At most Spec.Concurrency attempts are in flight; acks are released in
// queue order (acker) so the broker can purge runs of its log instead of
// deleting each message. With Spec.OrderingKey, a router keeps one event per
// key in flight and retries it in place; an event redelivered after its
// dispatcher stopped (restart, failover) goes on with the attempt count the
// journal below recorded for its webhook-id (README: the limits of that).
//
// Every attempt is appended (asynchronously, never blocking a delivery) to
// the broker journal webhook-attempts, keyed by subscription and bounded by
// Config.DeliveryLogSize, which /v1/webhooks/{id}/deliveries reads back: the
// history survives restarts and is shared by the nodes of a cluster.
//
// In a cluster every node follows the subscription records (syncer), and
// one delivers each subscription: the node serving its queue; the others
// hold it on standby. When that node stops or dies, the broker moves the
// queue to a live node and tells it (Broker.WatchServing), whose dispatcher
// then starts.
//
// Delivery is at least once: an endpoint deduplicates on webhook-id, which
// is the same for every attempt of one event.
//
// See README.md for the HTTP API, limits and guarantees.
package webhook
