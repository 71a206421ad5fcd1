// Package broker is Herald's protocol-agnostic core: RabbitMQ semantics
// (vhosts, exchanges, queues, bindings, routing, consumers, acknowledgements,
// dead-lettering, TTL, length limits, delayed delivery, de-duplication, users
// and permissions) on top of the engine's logs and key-value buckets.
//
// Faces (AMQP, HTTP, WebSocket, webhooks) translate their protocol into calls
// on *Broker and map the errors it returns through package errs.
//
// Storage model. All metadata (vhosts, exchanges, queues, bindings, users,
// permissions) lives in one replicated KV bucket that every node watches, so
// every node routes identically. Messages of durable queues live in one file
// log per vhost (subject per queue), of transient queues in one memory log per
// vhost, and delayed messages in a third log until they are due. A queue is
// served by one node at a time (its leader), which keeps the queue's index
// (ready entries, unacknowledged deliveries, consumers) in memory, holds
// bodies in memory up to a global budget and reads the rest back from the log
// on delivery; acknowledging deletes the message from the log. There is no
// per-queue engine object, so 10k queues cost 10k small in-memory indexes.
//
// Failover (cluster). The nodes write heartbeats into a replicated memory
// bucket; when a node stops (at once) or goes silent for Config.NodeTimeout,
// the live nodes share the queues it served (one node per queue, by a
// rendezvous hash and a compare-and-set of the queue's record) and adopt the
// delayed messages it held (each node stores its own under its own subject).
// A taker rebuilds the index from the replicated log and reports the queue
// to WatchServing, so faces that keep queues on standby start consuming.
//
// Faces keep their own state in the broker too. Records (PutRecord, Records,
// WatchRecords) are small JSON documents in the replicated metadata bucket,
// watched by every node: WatchRecords reports each change, local or made on
// another node. Journals (EnsureJournal, JournalAppend, JournalRead,
// JournalDelete) are bounded durable histories: one log per journal, one
// subject per key, at most a fixed number of entries per key (the engine
// drops the oldest); appends are asynchronous and never block the caller,
// and are dropped and counted (JournalStats) when the engine falls behind.
//
// Lock order: Broker.mu (topology) before queue.mu; never take Broker.mu while
// holding a queue.mu. Consumer Deliver callbacks run with no lock held.
package broker
