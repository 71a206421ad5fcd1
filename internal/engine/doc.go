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
// Durability: with Fsync "interval" (the default) JetStream syncs its files
// every SyncInterval (default 2 minutes), so an acknowledged append survives a
// crash of the process (the OS page cache holds it) but not of the machine.
// With Fsync "always" every append is synced before it is acknowledged.
package engine
