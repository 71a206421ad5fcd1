// Package engine is Herald's storage and replication engine: NATS JetStream,
// embedded in-process by default, clustered over NATS routes, or an external
// NATS cluster. It is the ONLY package that imports nats-server and nats.go;
// everything else sees Herald-typed logs (append-only streams addressed by
// subject and sequence) and key-value buckets.
//
// Lifecycle: New validates Config; Start starts the embedded server (or dials
// the external URL) and connects an in-process client; Stop drains and shuts
// down, and is safe to call twice or before Start.
//
// Lost connection: if the server closes the engine's client connection (the
// embedded server treats its in-process client like any other: a write to it
// stalled past the server's write deadline, 1 minute here, makes it a slow
// consumer), the client reconnects by itself, at once in-process and forever
// in both modes, logging a warning. Asynchronous appends in flight then fail
// (done gets an error; the message may still have been stored, so a retry can
// duplicate it); synchronous calls in flight fail or time out; asynchronous
// deletes whose replies were lost are sent again; tails and KV watches resume
// where they were. Deletes still queued when Stop gives up are not applied,
// and those messages stay in their logs.
//
// Durability: with Fsync "interval" JetStream syncs its files every
// SyncInterval (default 2 minutes), so an acknowledged append survives a
// crash of the process (the OS page cache holds it) but not of the machine.
// With Fsync "always" every append is on stable storage before it is
// acknowledged, and JetStream syncs every other change it makes to its files
// (block rewrites, state, metadata) as well. Appends that arrive while a log
// is busy share one sync (group commit, batch.go): standalone, concurrent
// AppendAsync calls to a file log become JetStream atomic batches, which the
// file store writes with their syncs deferred and syncs once before the
// batch's acknowledgement. In a cluster the Raft log is synced on flush and
// replication to a quorum is the batch.
package engine
