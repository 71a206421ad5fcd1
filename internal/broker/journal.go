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
// Appends are asynchronous and never block: they go through one in-memory
// queue of journalQueue entries drained by a goroutine of the broker; when
// that queue is full (the engine is slower than the appenders) the entry is
// dropped and counted in JournalStats.Dropped. A journal is a diagnostic
// history, not a guarantee: an append acknowledged by nothing may be lost by
// a crash, as with the engine's other asynchronous appends.
//
// Batching. The goroutine gathers appends for up to journalLinger and
// stores the entries of one key gathered together as one engine message of
// up to journalBatch entries (each entry framed as uvarint length + bytes),
// so a busy key costs one engine write per batch instead of one per entry.
// The log bounds messages per key, so a key keeps at least its newest
// perKey entries and at most perKey × journalBatch; JournalRead returns at
// most perKey (the newest). Entries stored together share Seq and Time.

const (
	journalQueue  = 8192                 // appends waiting for the engine
	journalBatch  = 32                   // entries of one key per engine message, at most
	journalGather = 1024                 // appends gathered per round, at most
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

type journalAppend struct {
	subject string
	data    []byte
}

// journals is the broker's journal state.
type journals struct {
	in chan journalAppend

	mu       sync.Mutex
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
	a := journalAppend{subject: journalSubject(journal, key), data: append([]byte(nil), data...)}
	j.mu.Lock()
	select {
	case j.in <- a:
		j.issued++
	default:
		j.dropped.Add(1)
	}
	j.mu.Unlock()
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

// runJournal hands queued appends to the engine, in rounds that gather for
// journalLinger, until the broker stops; then it hands over what is still
// queued (the engine is stopped after the broker).
func (b *core) runJournal() {
	defer b.bg.Done()
	j := &b.jrn
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var round []journalAppend
	for {
		select {
		case a := <-j.in:
			round = append(round[:0], a)
		case <-b.bgCtx.Done():
			for {
				select {
				case a := <-j.in:
					b.journalStore([]journalAppend{a})
				default:
					return
				}
			}
		}
		timer.Reset(journalLinger)
	gather:
		for len(round) < journalGather {
			select {
			case a := <-j.in:
				round = append(round, a)
			case <-timer.C:
				break gather
			case <-b.bgCtx.Done():
				break gather
			}
		}
		timer.Stop()
		b.journalRound(round)
		clear(round)
	}
}

// journalRound stores a round's entries, one message per key and batch, in
// the order of each key's first entry.
func (b *core) journalRound(round []journalAppend) {
	if len(round) == 1 {
		b.journalStore(round)
		return
	}
	var order []string
	bySubject := map[string][]journalAppend{}
	for _, a := range round {
		l, ok := bySubject[a.subject]
		if !ok {
			order = append(order, a.subject)
		}
		bySubject[a.subject] = append(l, a)
	}
	for _, subj := range order {
		l := bySubject[subj]
		for len(l) > 0 {
			n := min(len(l), journalBatch)
			b.journalStore(l[:n])
			l = l[n:]
		}
	}
}

// journalStore appends entries of one subject as one framed message.
func (b *core) journalStore(entries []journalAppend) {
	j := &b.jrn
	size := 0
	for _, a := range entries {
		size += binary.MaxVarintLen32 + len(a.data)
	}
	buf := make([]byte, 0, size)
	for _, a := range entries {
		buf = binary.AppendUvarint(buf, uint64(len(a.data)))
		buf = append(buf, a.data...)
	}
	n := uint64(len(entries))
	subject := entries[0].subject
	err := b.eng.AppendAsync(subject, buf, func(_ uint64, err error) {
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
