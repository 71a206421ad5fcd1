// Package realtime is Herald's real-time web face: the Pusher Channels
// protocol 7 over WebSocket (so pusher-js works unmodified), the Pusher HTTP
// API (signed triggers and channel queries), Server-Sent Events with history
// and resume, and Pusher-style app webhooks.
//
// # Shape
//
// A Server holds one hub per Pusher app. A hub keeps the app's channels in
// memory: their subscribers, presence members and a bounded history ring of
// recent events with per-app monotonically increasing sequence numbers. Two
// transports deliver to subscribers: wsConn (Pusher protocol frames over
// WebSocket) and sseConn (text/event-stream). Both implement the transport
// interface, and both own a bounded send queue: a subscriber whose queue is
// full is disconnected (WebSocket close code 4110, SSE stream end) and never
// slows the publisher or other subscribers.
//
// Events reach the hub through a bus. Without a broker (Config.Broker nil)
// the bus is in-process: a trigger is dispatched to the local hub at once.
// With a broker, "one event system, many faces": every app has a durable
// topic exchange "pusher.{app_id}"; every trigger (HTTP API, client event) is
// published into it with routing key = channel name and header "event" =
// event name, and each node consumes a transient exclusive auto-delete queue
// bound with "#" to that exchange and dispatches what it receives to its local
// subscribers. A message published to the exchange by any face (AMQP, the
// management API) therefore reaches the channel's browsers. See README.md.
//
// # Lock order
//
// Server.mu (connection registry) and hub.mu (channel map) are never held
// together. Within a hub: hub.mu before channel.mu; channel.mu before
// sendQueue.mu (a subscriber's queue). sendQueue.mu is a leaf. The webhook
// queue is a channel written without blocking, so it may be fed with any lock
// held. Methods whose name ends in Locked expect the named lock held.
package realtime
