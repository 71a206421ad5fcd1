package engine

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// FsyncPolicy says when JetStream syncs its files to disk.
type FsyncPolicy string

const (
	FsyncInterval FsyncPolicy = "interval" // sync every SyncInterval; survives a process crash, not an OS crash
	FsyncAlways   FsyncPolicy = "always"   // sync before acknowledging each write; survives an OS crash
)

// Config configures the engine. The zero value of every field is documented.
type Config struct {
	// DataDir holds JetStream's files. Required unless ExternalURL is set.
	DataDir string
	// Fsync is the sync policy; "" means FsyncInterval (herald serve's
	// default is FsyncAlways).
	Fsync FsyncPolicy
	// SyncInterval applies to FsyncInterval; 0 means 2 minutes (JetStream's default).
	SyncInterval time.Duration
	// NodeName names this node in a cluster; "" means "herald-" + hostname.
	NodeName string
	// ClusterName is the NATS cluster name; "" means "herald".
	ClusterName string
	// ClusterListen is "host:port" for cluster routes; "" means standalone (no cluster).
	// nats-server only routes once it has a client listener, so a cluster node
	// without ClientListen opens one on 127.0.0.1 (random port) guarded by a
	// random token only the engine knows.
	ClusterListen string
	// Routes are the other nodes' ClusterListen addresses ("host:port" or "nats://host:port").
	Routes []string
	// ClientListen is "host:port" for a NATS client listener; "" means none (in-process only).
	ClientListen string
	// ExternalURL, if set, connects to an existing NATS cluster instead of embedding a server.
	ExternalURL string
	// MaxPending bounds in-flight asynchronous appends; 0 means 4096.
	// When the window is full, AppendAsync blocks (producer flow control).
	MaxPending int
	// MaxRecordBytes bounds one appended record (data plus NATS headers) in
	// bytes: the embedded server's max_payload. 0 means 1 MiB (NATS's
	// default); at most 64 MiB (NATS's hard limit). An append above it fails
	// with ErrTooLarge. With ExternalURL the external server's own limit
	// applies and this field is ignored.
	MaxRecordBytes int
	// Logger receives the engine's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Errors returned by the engine.
var (
	ErrNotFound  = errors.New("engine: not found")         // log, message or key does not exist
	ErrKeyExists = errors.New("engine: key exists")        // KV Create on an existing key
	ErrWrongRev  = errors.New("engine: wrong revision")    // KV Update with a stale revision
	ErrStopped   = errors.New("engine: stopped")           // the engine is not running
	ErrLogLimit  = errors.New("engine: log limit reached") // the log refused the append (discard new)
	ErrTooLarge  = errors.New("engine: record too large")  // over MaxRecordBytes (or the external server's max_payload)
)

// LogConfig describes a log: a JetStream stream with limits retention.
// MaxAge and MaxMsgsPerSubject drop the oldest messages; MaxBytes instead
// refuses appends while the log is full (ErrLogLimit), so a byte cap never
// silently drops unconsumed messages. EnsureLog on an existing log updates
// these limits in place (Memory cannot change).
type LogConfig struct {
	Name     string        // stream name: [A-Za-z0-9_-]+
	Subjects []string      // subjects captured by the log, wildcards allowed
	Memory   bool          // memory storage instead of file storage
	Replicas int           // 0 means 1; 3 in a cluster for replicated logs
	MaxBytes int64         // 0 means unlimited
	MaxAge   time.Duration // 0 means unlimited
	// MaxMsgsPerSubject keeps only the newest N messages of each subject; 0 means unlimited.
	MaxMsgsPerSubject int64
}

// Msg is a message read from a log.
type Msg struct {
	Subject string
	Seq     uint64
	Time    time.Time
	Data    []byte
}

// Engine is a running JetStream engine. Methods are safe for concurrent use.
type Engine struct {
	impl
}

// New validates cfg and returns an engine that is not started.
func New(cfg Config) (*Engine, error) { return newEngine(cfg) }

// Start starts the embedded server (or dials ExternalURL) and waits until
// JetStream is ready (in a cluster: until a meta leader is elected), or ctx ends.
func (e *Engine) Start(ctx context.Context) error { return e.start(ctx) }

// Stop flushes pending appends, closes the client and shuts the server down.
// Safe to call twice or before Start.
func (e *Engine) Stop(ctx context.Context) { e.stop(ctx) }

// Stats are the engine's counters since Start.
type Stats struct {
	// SyncRounds counts group-commit rounds (each syncs every log written
	// since the previous one); zero unless Fsync is "always" on a
	// standalone server.
	SyncRounds uint64
	// Fsyncs counts the fsync and fdatasync calls of those rounds (files
	// and directories).
	Fsyncs uint64
	// SyncedAppends counts the writes (appends, KV writes) that waited for
	// a round.
	SyncedAppends uint64
}

// Stats returns the engine's counters (zero before Start).
func (e *Engine) Stats() Stats { return e.stats() }

// Clustered reports whether this engine is part of a multi-node cluster.
func (e *Engine) Clustered() bool { return e.clustered() }

// NodeName is this node's name.
func (e *Engine) NodeName() string { return e.nodeName() }

// EnsureLog creates the log or updates its config if it exists.
func (e *Engine) EnsureLog(ctx context.Context, cfg LogConfig) error { return e.ensureLog(ctx, cfg) }

// DeleteLog deletes a log and all its messages. ErrNotFound if absent.
func (e *Engine) DeleteLog(ctx context.Context, name string) error { return e.deleteLog(ctx, name) }

// Append stores data on subject and waits for the acknowledgement; it returns
// the message's sequence in its log.
func (e *Engine) Append(ctx context.Context, subject string, data []byte) (uint64, error) {
	return e.append(ctx, subject, data)
}

// AppendAsync stores data on subject without waiting; done is called exactly
// once, from an engine goroutine, with the sequence or an error (ErrNotFound
// when no log captures the subject, ErrLogLimit when the log is full). done
// calls follow the order of the appends across all logs, so appends from one
// goroutine are acknowledged in order; a slow log delays the acks queued
// behind it. It blocks while MaxPending appends are in flight. After Stop it
// returns ErrStopped and done is not called; that is its only error. Stop
// waits (bounded by its ctx) for the appends in flight, and fails the rest
// with ErrStopped. done must not block; data may be reused once it returns.
func (e *Engine) AppendAsync(subject string, data []byte, done func(seq uint64, err error)) error {
	return e.appendAsync(subject, data, done)
}

// Get reads one message by sequence (a direct get, answered by any replica; a
// miss is confirmed with the stream leader, so a message just appended is
// found). ErrNotFound if it was deleted, never stored, or the log is missing.
func (e *Engine) Get(ctx context.Context, log string, seq uint64) (Msg, error) {
	return e.get(ctx, log, seq)
}

// Delete removes one message (without overwriting its bytes). Deleting a
// message that is already gone is not an error.
func (e *Engine) Delete(ctx context.Context, log string, seq uint64) error {
	return e.deleteMsg(ctx, log, seq)
}

// DeleteAsync removes one message without waiting; errors are logged. It
// blocks while MaxPending deletes are pending. Deletes are applied in rounds:
// a run of consecutive sequences starting at the log's first message becomes
// one purge (the FIFO-queue case: in-order acks cost almost nothing), other
// sequences are held back up to 50 ms for the gap before them to close, then
// pipelined as single deletes. Rounds start at most every 5 ms while fewer
// than half of MaxPending are queued, so acks gather into fewer, longer
// purges. Until a delete is applied, Get,
// Scan and Tail may still return the message; Stop applies what is queued
// (bounded by its ctx). Deleting a message that is already gone is not an
// error.
func (e *Engine) DeleteAsync(log string, seq uint64) { e.deleteAsync(log, seq) }

// DeleteAsyncMany is DeleteAsync for several sequences of one log, queued
// together (one lock and one wake-up for the batch). It blocks while
// MaxPending deletes are pending, then queues the whole batch.
func (e *Engine) DeleteAsyncMany(log string, seqs []uint64) { e.deleteAsyncMany(log, seqs) }

// DeleteAsyncBelow is DeleteAsyncMany for messages of subject, with a
// floor: the caller needs no message of subject below floor any more (those
// of seqs and any others), so the engine removes them all with one filtered
// purge of subject, and deletes only the seqs at or above floor one by one.
// With Fsync always that is one sync for the lot instead of one per message
// (JetStream writes and syncs a tombstone for each single delete). floor 0,
// and any floor in a cluster (where appends may be retried out of order),
// means none: it is then DeleteAsyncMany.
func (e *Engine) DeleteAsyncBelow(log, subject string, floor uint64, seqs []uint64) {
	e.deleteAsyncBelow(log, subject, floor, seqs)
}

// Purge removes the messages of subject (a literal subject or a wildcard
// filter; "" means all) with sequence < upTo (0 means all). It returns how many
// were removed.
func (e *Engine) Purge(ctx context.Context, log, subject string, upTo uint64) (uint64, error) {
	return e.purge(ctx, log, subject, upTo)
}

// LastSeq is the highest sequence the log has assigned (0 if nothing was ever
// appended). It does not go down when messages are deleted or purged.
func (e *Engine) LastSeq(ctx context.Context, log string) (uint64, error) { return e.lastSeq(ctx, log) }

// Scan reads the messages of log matching filter ("" means all) with sequence
// >= from, in order, calling fn for each, up to the log's last sequence at the
// time of the call; it returns the last sequence it covered (LastSeq at the
// call, or from-1 if that is larger), so Tail(from = returned+1) continues
// without a gap. fn returning an error stops the scan with that error. Scan
// uses batched direct gets and creates no consumer; fn may keep Msg.Data.
// ctx bounds the whole scan; each request in it is bounded by the API
// timeout (10 s) as well, so a log without a leader fails the scan in
// seconds, to be tried again.
func (e *Engine) Scan(ctx context.Context, log, filter string, from uint64, fn func(Msg) error) (uint64, error) {
	return e.scan(ctx, log, filter, from, fn)
}

// Tail delivers every message of log matching filter with sequence >= from
// (0 means 1), in order, and then each new one as it is stored, until the
// returned Tail is stopped or the engine stops. fn runs on one goroutine and
// must not block for long: it holds back the tail's delivery. A tail is an
// ordered consumer on the server (ephemeral, in memory), which recreates
// itself after gaps and leader changes, so each message is seen once.
func (e *Engine) Tail(ctx context.Context, log, filter string, from uint64, fn func(Msg)) (*Tail, error) {
	return e.tail(ctx, log, filter, from, fn)
}

// Tail is a running subscription created by Engine.Tail.
type Tail struct{ tailImpl }

// Stop ends the tail; safe to call twice and from inside fn. Once Stop
// returns fn is not called again; Stop waits for a call in progress, except
// when it is called while fn runs (from fn itself, or concurrently).
func (t *Tail) Stop() { t.stop() }

// KVConfig describes a key-value bucket.
type KVConfig struct {
	Bucket   string // [A-Za-z0-9_-]+
	Replicas int    // 0 means 1
	History  int    // values kept per key; 0 means 1
	Memory   bool
}

// KV is a key-value bucket (JetStream KV). Keys use [-/_=.a-zA-Z0-9]. A KV
// belongs to the run of the engine that opened it: after Stop it returns
// ErrStopped, and after a new Start the bucket must be opened again.
type KV struct{ kvImpl }

// Entry is one KV value. Deleted is true for delete markers seen by Watch.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Deleted  bool
}

// KV opens (creating if needed) a bucket.
func (e *Engine) KV(ctx context.Context, cfg KVConfig) (*KV, error) { return e.kv(ctx, cfg) }

// Get returns the current value of key, or ErrNotFound.
func (kv *KV) Get(ctx context.Context, key string) (Entry, error) { return kv.get(ctx, key) }

// Put sets key and returns the new revision.
func (kv *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return kv.put(ctx, key, value)
}

// Create sets key only if it does not exist (ErrKeyExists otherwise).
func (kv *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	return kv.create(ctx, key, value)
}

// Update sets key only if its revision is rev (ErrWrongRev otherwise).
func (kv *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	return kv.update(ctx, key, value, rev)
}

// Delete removes key; deleting a missing key is not an error.
func (kv *KV) Delete(ctx context.Context, key string) error { return kv.delete(ctx, key) }

// List returns the current entries whose key starts with prefix ("" = all).
func (kv *KV) List(ctx context.Context, prefix string) ([]Entry, error) { return kv.list(ctx, prefix) }

// Watch calls fn for every current entry matching the subject-style pattern
// (e.g. "q.>" or ">"; deleted keys are not replayed), then calls ready once
// (also when there are none; ready may be nil), then calls fn for every
// change (Deleted set for deletes) until the returned stop is called or the
// engine stops. fn and ready run on one goroutine. ctx bounds only the
// setup. stop behaves like Tail.Stop.
func (kv *KV) Watch(ctx context.Context, pattern string, fn func(Entry), ready func()) (stop func(), err error) {
	return kv.watch(ctx, pattern, fn, ready)
}
