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
// With Fsync "always" every append, KV write and log creation is on stable
// storage before it is acknowledged. Standalone, the engine does the group
// commit itself (syncer.go): JetStream writes each message before its ack,
// and a sync round fdatasyncs every log file written since the previous
// round, so the appends that arrive during a round share the next fsync;
// files JetStream replaces without a sync (compacted blocks, config) are
// protected by hard links to their last synced version, restored at start
// after a crash. In a cluster JetStream's own sync_always applies (the Raft
// log is synced on flush).
package engine
