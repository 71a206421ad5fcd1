// Package amqp is Herald's AMQP 0-9-1 face: any RabbitMQ client connects to
// it and talks to the broker core as it would to RabbitMQ, extensions
// included (publisher confirms, basic.nack, consumer cancel notification,
// connection.blocked, exchange-to-exchange bindings, per-consumer QoS,
// consumer priorities, direct reply-to). README.md says what is supported
// and what is not.
//
// The frame codec lives in the wire subpackage; this package is the
// protocol state machine around it.
//
// # Goroutines
//
// Each connection has two goroutines, both owned by Server and stopped with
// it: a reader that negotiates, reads frames and runs each method in order
// (broker calls included), and a writer that drains the connection's
// outbound queue, writing everything queued with one flush and sending
// heartbeats when idle. Broker goroutines deliver messages (the consumer's
// Deliver callback) and publisher confirms into the outbound queue without
// blocking; the queue is bounded by MaxOutboundBytes, beyond which the
// connection is closed with 506 RESOURCE_ERROR.
//
// # Lock order
//
//	channel.mu -> conn.closeMu -> outbound.mu -> confirmer.mu
//	Server.mu and replyRegistry.mu are leaves.
//
// No lock of this package is held while calling the broker (publishing,
// settling, cancelling), so broker callbacks can always take channel.mu.
//
// # Errors
//
// Broker errors map to AMQP reply codes through package errs. Channel
// exceptions (403, 404, 405, 406) close the channel; connection exceptions
// (501-506, 530, 540, 541, 320) close the connection. A malformed or
// oversized frame closes only its connection.
package amqp
