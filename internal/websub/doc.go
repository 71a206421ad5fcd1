// Package websub is Herald's W3C WebSub hub (https://www.w3.org/TR/websub/):
// subscribers subscribe and unsubscribe at POST /websub/hub, the hub
// verifies their intent, keeps their leases, and distributes each topic's
// content to them; publishers ping it with hub.mode=publish, or any face
// publishes to an exchange bound to the topic.
//
// # Shape
//
// The hub does no delivery itself. Each verified subscription is a
// subscription of the webhook service (Format websub, Owner "websub")
// through the Distributor interface: a durable queue bound to the topic's
// exchange, drained with retries, X-Hub-Signature, Link headers and the
// SSRF guard, ended by HTTP 410. The hub adds the WebSub protocol around
// it: request validation, verification of intent and denial requests (a
// bounded worker pool), leases (one timer for the earliest expiry), topic
// fetches after publish notifications, and the topic-to-exchange bindings.
//
// Every topic has a durable fanout exchange herald.websub.t.<hash> (hex of
// the first 16 bytes of sha256(topic URL); the exchange's argument
// x-websub-topic holds the URL). Subscriptions' queues are bound to it;
// fetched content is published to it; a topic bound to a user exchange is
// an exchange-to-exchange binding from that exchange to it. A fanout
// exchange ignores routing keys, so whatever key an event was published
// with, it reaches every subscriber of the topic.
//
// # State
//
// Subscriptions (topic, callback, lease expiry, webhook id) are broker
// records of kind "websub" keyed by a hash of (topic, callback); the secret
// lives only in the webhook subscription. Topics are their exchanges and
// their bindings are broker bindings. All of it is replicated metadata, so
// a restart (or another node) rebuilds the hub from the broker, and a
// running hub follows the records (Broker.WatchRecords): subscriptions made,
// renewed or ended through another node of a cluster are applied, and their
// leases timed, without a restart.
//
// # Lock order
//
// Hub.stateMu (serializes every state change: broker and distributor
// writes happen under it) before Hub.mu (guards the in-memory maps, held
// briefly, never across I/O other than reading the broker's in-memory
// metadata), before the broker's own locks.
package websub
