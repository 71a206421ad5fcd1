package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

// Journals are bounded, durable histories that faces append small entries
// to (the webhook face's delivery attempts, for example), keyed so that
// each key keeps only its newest entries. A journal is one engine log,
// herald-journal-<name>, replicated like the queues' logs; entries of key k
// are stored on subject hj.<name>.<k>, and the log keeps at most perKey of
// them per subject (the oldest are dropped).
//
// Appends are asynchronous and never block: they are framed into a
// per-key buffer in memory (at most journalQueue entries in all) that a
// goroutine of the broker hands to the engine; when the buffer is full (the
// engine is slower than the appenders) the entry is dropped and counted in
// JournalStats.Dropped. A journal is a diagnostic
// history, not a guarantee: an append acknowledged by nothing may be lost by
// a crash, as with the engine's other asynchronous appends.
//
// Batching. The first append into an empty buffer wakes the goroutine,
// which lets appends gather for journalLinger, then stores the entries of
// each key as engine messages of up to journalBatch entries (each entry
// framed as uvarint length + bytes), so a busy key costs one wake-up and one
// engine write per batch instead of one per entry.
// The log bounds messages per key, so a key keeps at least its newest
// perKey entries and at most perKey × journalBatch; JournalRead returns at
// most perKey (the newest). Entries stored together share Seq and Time.

const (
	journalQueue  = 8192                 // appends waiting for the engine
	journalBatch  = 32                   // entries of one key per engine message, at most
	journalLinger = 2 * time.Millisecond // how long a round gathers
)

// JournalEntry is one entry read from a journal.
type JournalEntry struct {
	Seq  uint64 // position in the journal's log, increasing with time
	Time time.Time
	Data []byte
}

// JournalStats counts journal appends since the broker started.
type JournalStats struct {
	Appended uint64 // stored
	Dropped  uint64 // refused at once: the append queue was full, or the broker is not running
	Failed   uint64 // refused by the engine (journal not ensured, log full, engine stopping)
}

// journalKey names one key of one journal.
type journalKey struct{ journal, key string }

// journalPending holds a key's framed entries waiting for the engine.
type journalPending struct {
	buf []byte
	n   int
}

// journals is the broker's journal state.
type journals struct {
	wake chan struct{} // the buffer became non-empty

	mu       sync.Mutex
	pend     map[journalKey]*journalPending
	order    []journalKey // pend's keys by first append
	queued   int          // entries in pend
	free     []*journalPending
	perKey   map[string]int // EnsureJournal's bound by journal name
	issued   uint64         // appends queued
	resolved uint64         // appends stored or failed
	waiters  []journalWaiter

	appended, dropped, failed atomic.Uint64
}

type journalWaiter struct {
	target uint64
	ch     chan struct{}
}

func journalLog(name string) string          { return "herald-journal-" + name }
func journalSubject(name, key string) string { return "hj." + name + "." + key }
func journalAll(name string) string          { return "hj." + name + ".*" }
func validJournalName(kind, s string) error {
	if s == "" || len(s) > 128 {
		return errs.New(errs.BadArgument, "journal %s must be 1 to 128 bytes", kind)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return errs.New(errs.BadArgument, "journal %s must match [A-Za-z0-9_-]+", kind)
		}
	}
	return nil
}

// logReplicas is the replica count of the broker's message logs.
func (b *core) logReplicas() int {
	if b.cfg.QueueReplicas != 0 {
		return b.cfg.QueueReplicas
	}
	if b.eng.Clustered() {
		return 3
	}
	return 1
}

// EnsureJournal creates journal name (or updates its per-key bound),
// keeping at most perKey entries (>= 1) per key.
func (b *Broker) EnsureJournal(ctx context.Context, name string, perKey int) error {
	if err := validJournalName("name", name); err != nil {
		return err
	}
	if perKey < 1 {
		return errs.New(errs.BadArgument, "journal %s: perKey must be at least 1", name)
	}
	if err := b.running(); err != nil {
		return err
	}
	err := b.eng.EnsureLog(ctx, engine.LogConfig{
		Name: journalLog(name), Subjects: []string{journalAll(name)},
		Replicas: b.logReplicas(), MaxMsgsPerSubject: int64(perKey),
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "creating journal %s", name)
	}
	j := &b.jrn
	j.mu.Lock()
	if j.perKey == nil {
		j.perKey = map[string]int{}
	}
	j.perKey[name] = perKey
	j.mu.Unlock()
	return nil
}

// JournalAppend appends data (copied) to key's history in journal, without
// waiting and without ever blocking: when the append queue is full the entry
// is dropped and counted (JournalStats). Invalid names count as failed.
func (b *Broker) JournalAppend(journal, key string, data []byte) {
	j := &b.jrn
	if validJournalName("name", journal) != nil || validJournalName("key", key) != nil {
		j.failed.Add(1)
		return
	}
	if b.state.Load() != 1 {
		j.dropped.Add(1)
		return
	}
	k := journalKey{journal, key}
	j.mu.Lock()
	if j.queued >= journalQueue {
		j.mu.Unlock()
		j.dropped.Add(1)
		return
	}
	p := j.pend[k]
	if p == nil {
		if n := len(j.free); n > 0 {
			p, j.free = j.free[n-1], j.free[:n-1]
		} else {
			p = &journalPending{}
		}
		if j.pend == nil {
			j.pend = map[journalKey]*journalPending{}
		}
		j.pend[k] = p
		j.order = append(j.order, k)
	}
	p.buf = binary.AppendUvarint(p.buf, uint64(len(data)))
	p.buf = append(p.buf, data...)
	p.n++
	j.queued++
	j.issued++
	first := j.queued == 1
	j.mu.Unlock()
	if first {
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
}

// JournalRead returns the newest limit entries of key, newest first; limit
// <= 0 or above the journal's perKey (as ensured on this node) means perKey. It first waits (bounded by ctx) until the
// appends this node queued before the call are stored, so a reader sees its
// node's own appends. NotFound if the journal was never ensured.
func (b *Broker) JournalRead(ctx context.Context, journal, key string, limit int) ([]JournalEntry, error) {
	if err := validJournalName("name", journal); err != nil {
		return nil, err
	}
	if err := validJournalName("key", key); err != nil {
		return nil, err
	}
	if err := b.running(); err != nil {
		return nil, err
	}
	if err := b.jrn.flush(ctx); err != nil {
		return nil, err
	}
	b.jrn.mu.Lock()
	if pk := b.jrn.perKey[journal]; pk > 0 && (limit <= 0 || limit > pk) {
		limit = pk
	}
	b.jrn.mu.Unlock()
	var ring []JournalEntry
	n := 0
	_, err := b.eng.Scan(ctx, journalLog(journal), journalSubject(journal, key), 1, func(m engine.Msg) error {
		for data := m.Data; len(data) > 0; {
			size, k := binary.Uvarint(data)
			if k <= 0 || uint64(len(data)-k) < size {
				b.log.Warn("skipping a corrupt journal message", "journal", journal, "seq", m.Seq)
				return nil
			}
			e := JournalEntry{Seq: m.Seq, Time: m.Time, Data: data[k : k+int(size) : k+int(size)]}
			data = data[k+int(size):]
			if limit <= 0 || len(ring) < limit {
				ring = append(ring, e)
			} else {
				ring[n%limit] = e
			}
			n++
		}
		return nil
	})
	if err != nil {
		return nil, journalErr(journal, err)
	}
	out := make([]JournalEntry, len(ring))
	for i := range out { // newest first: the ring's last written slot first
		out[i] = ring[(n-1-i)%len(ring)]
	}
	return out, nil
}

// JournalDelete removes every entry of key, after the appends this node
// queued before the call are stored.
func (b *Broker) JournalDelete(ctx context.Context, journal, key string) error {
	if err := validJournalName("name", journal); err != nil {
		return err
	}
	if err := validJournalName("key", key); err != nil {
		return err
	}
	if err := b.running(); err != nil {
		return err
	}
	if err := b.jrn.flush(ctx); err != nil {
		return err
	}
	if _, err := b.eng.Purge(ctx, journalLog(journal), journalSubject(journal, key), 0); err != nil {
		return journalErr(journal, err)
	}
	return nil
}

// JournalStats returns the journal counters.
func (b *Broker) JournalStats() JournalStats {
	j := &b.jrn
	return JournalStats{Appended: j.appended.Load(), Dropped: j.dropped.Load(), Failed: j.failed.Load()}
}

func journalErr(name string, err error) error {
	if errors.Is(err, engine.ErrNotFound) {
		return errs.New(errs.NotFound, "no journal %q", name)
	}
	return errs.Wrap(errs.Unavailable, err, "journal %s", name)
}

// runJournal hands buffered appends to the engine, a round journalLinger
// after the first append into the empty buffer, until the broker stops; then
// it hands over what is left (the engine is stopped after the broker).
func (b *core) runJournal() {
	defer b.bg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-b.jrn.wake:
		case <-b.bgCtx.Done():
			b.journalRound()
			return
		}
		timer.Reset(journalLinger)
		select {
		case <-timer.C:
		case <-b.bgCtx.Done():
			timer.Stop()
		}
		b.journalRound()
	}
}

// journalRound stores the buffered entries: per key, in the order of the
// keys' first appends, messages of up to journalBatch entries.
func (b *core) journalRound() {
	j := &b.jrn
	j.mu.Lock()
	pend, order := j.pend, j.order
	j.pend, j.order, j.queued = nil, nil, 0
	j.mu.Unlock()
	for _, k := range order {
		p := pend[k]
		subject := journalSubject(k.journal, k.key)
		data, n := p.buf, p.n
		for n > 0 {
			end, m := 0, 0
			for ; m < journalBatch && m < n; m++ {
				size, w := binary.Uvarint(data[end:])
				end += w + int(size)
			}
			b.journalStore(subject, data[:end], uint64(m))
			data, n = data[end:], n-m
		}
	}
	// The engine copied the data (AppendAsync): keep the buffers for reuse.
	j.mu.Lock()
	for _, p := range pend {
		if len(j.free) < 64 && cap(p.buf) <= 64<<10 {
			p.buf, p.n = p.buf[:0], 0
			j.free = append(j.free, p)
		}
	}
	j.mu.Unlock()
}

// journalStore appends n framed entries of one subject as one message.
func (b *core) journalStore(subject string, frames []byte, n uint64) {
	j := &b.jrn
	err := b.eng.AppendAsync(subject, frames, func(_ uint64, err error) {
		if err != nil {
			j.failed.Add(n)
			b.log.Debug("journal append failed", "subject", subject, "err", err)
		} else {
			j.appended.Add(n)
		}
		j.resolve(n)
	})
	if err != nil {
		j.failed.Add(n)
		j.resolve(n)
	}
}

func (j *journals) resolve(n uint64) {
	j.mu.Lock()
	j.resolved += n
	keep := j.waiters[:0]
	for _, w := range j.waiters {
		if w.target <= j.resolved {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	clear(j.waiters[len(keep):])
	j.waiters = keep
	j.mu.Unlock()
}

// flush waits until the appends queued before the call are resolved.
func (j *journals) flush(ctx context.Context) error {
	j.mu.Lock()
	if j.resolved >= j.issued {
		j.mu.Unlock()
		return nil
	}
	w := journalWaiter{target: j.issued, ch: make(chan struct{})}
	j.waiters = append(j.waiters, w)
	j.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		return errs.Wrap(errs.Unavailable, ctx.Err(), "waiting for journal appends")
	}
}
