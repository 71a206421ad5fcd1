package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// deleter runs DeleteAsync. Deletes accumulate per log while the worker
// applies the previous round; each round sorts a log's sequences and
//
//   - turns a leading run that starts at the log's first message into one
//     purge (everything below the run's end), which is what in-order acks of
//     a FIFO queue produce: one API call instead of thousands; the run is
//     taken across gaps whose sequences were deleted one by one earlier
//     (gone), so a late message's delete frees the run behind it too;
//   - holds the others back for up to deleteHold (a message before them is
//     still live, usually one whose ack is a few milliseconds late), so they
//     can join a later purge;
//   - then sends them as individual delete requests, pipelined with at most
//     deleteWindow in flight (JetStream drops API requests beyond its queue
//     limit of 10,000, so the window stays well below).
//
// Rounds start at most every deletePace while the pending deletes are few, and
// nothing is held back once three quarters of the limit are pending or the
// engine is stopping.
//
// The first sequence is read from the log's state right before the purge, so
// the purge never removes a message that was not asked for (unless the log is
// deleted and re-created in between, which would make the sequences stale for
// individual deletes too).
//
// Deletes whose reply is lost (the connection dropped, or the server stayed
// silent for deleteSilence) are queued again and retried after deleteRetryWait:
// deleting a message that is gone already succeeds, so a retry is harmless.
// Only Stop gives up on them (after its drain bound); those messages stay in
// their log.
type deleter struct {
	r     *run
	limit int
	pace  time.Duration // deletePace, or syncedDeletePace in a cluster with Fsync always

	mu      sync.Mutex
	cond    sync.Cond // signalled when room frees up or on close
	pending map[string][]uint64
	floors  map[subjectOf]uint64 // filtered purges to run: everything of the subject below
	floored map[subjectOf]uint64 // the last floor purged per subject
	n       int                  // queued plus being applied
	closed  bool

	wake  chan struct{} // cap 1: work arrived
	flush chan struct{} // closed by close: apply what is left and exit
	abort chan struct{} // closed when the drain bound passes
	done  chan struct{}

	// purgedTo remembers, per log, the end of the last purge this worker
	// made (everything below it is gone) and when, so a round whose run
	// starts right there can purge without reading the log's state first.
	// Guarded by mu; forget drops a log's entry when the log is deleted.
	purgedTo map[string]purgeMark

	singles atomic.Int64 // single delete requests sent (tests)
	// gone lists, per log, the sequences deleted one by one above the last
	// purge, so a later run can be purged across them.
	gone map[string]goneSpans

	// worker-only state
	heldSince map[string]time.Time // when apply began holding a log's sequences back
	sub       *nats.Subscription
	reply     string
	reqID     uint64
	body      []byte
}

// purgeMark is where a log's last purge ended, and when.
type purgeMark struct {
	upTo uint64
	at   time.Time
}

const (
	deleteWindow = 512
	// minPurgeRun is the shortest leading run worth a purge: a purge plus the
	// state read cost about as much as 8 pipelined single deletes.
	minPurgeRun = 8
	// deleteRetryWait is the pause before deletes whose replies were lost
	// are sent again; it doubles while rounds keep failing, up to
	// deleteRetryMaxWait.
	deleteRetryWait    = 200 * time.Millisecond
	deleteRetryMaxWait = 5 * time.Second
	// deleteReplyPoll is how often a worker waiting for replies checks
	// whether the connection dropped or Stop gave up.
	deleteReplyPoll = 100 * time.Millisecond
	// deleteSilence is how long the worker waits for the next reply while
	// the connection stays up before it sends the unanswered deletes again.
	// An overloaded server (fsync always) takes seconds per delete; resending
	// what it still has queued would only add to its load.
	deleteSilence = time.Minute
	// deletePace is the shortest time between the starts of two rounds
	// while fewer than half the limit are pending. A purge costs about the
	// same whether it removes 50 messages or 500 (JetStream rewrites the
	// log's index state on every purge), so letting acks gather for a few
	// milliseconds makes in-order acks cheaper.
	deletePace = 5 * time.Millisecond
	// syncedDeletePace replaces deletePace in a cluster with Fsync always:
	// there JetStream syncs every purge and tombstone itself, competing with
	// the appends for the disk, and a delete needs no haste (an
	// acknowledged delivery lost by a crash is delivered again, never lost).
	syncedDeletePace = 50 * time.Millisecond
	// purgeMarkTTL bounds how long a purgedTo mark is trusted without
	// reading the log's state: long enough to skip most reads, short
	// enough that a log deleted and re-created on another node of a
	// cluster is noticed before its sequences could reach the mark.
	purgeMarkTTL = time.Second
	// deleteHold is how long sequences after a gap wait for it to close
	// before they are deleted one by one (see apply).
	deleteHold = 50 * time.Millisecond
)

func newDeleter(r *run, limit int) (*deleter, error) {
	d := &deleter{
		r:         r,
		limit:     limit,
		pace:      deletePace,
		pending:   make(map[string][]uint64),
		floors:    make(map[subjectOf]uint64),
		floored:   make(map[subjectOf]uint64),
		purgedTo:  make(map[string]purgeMark),
		heldSince: make(map[string]time.Time),
		gone:      make(map[string]goneSpans),
		wake:      make(chan struct{}, 1),
		flush:     make(chan struct{}),
		abort:     make(chan struct{}),
		done:      make(chan struct{}),
	}
	if r.e.cfg.Fsync == FsyncAlways && r.e.clustered() {
		d.pace = syncedDeletePace
	}
	d.cond.L = &d.mu
	d.reply = r.nc.NewInbox() + "."
	var err error
	d.sub, err = r.nc.SubscribeSync(d.reply + "*")
	if err != nil {
		return nil, fmt.Errorf("engine: delete reply subscription: %w", err)
	}
	if err := d.sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	go d.work()
	return d, nil
}

// add queues deletes of one log, blocking while limit deletes are pending
// (a batch is then queued whole, so n may pass limit by one batch).
func (d *deleter) add(log string, seqs ...uint64) {
	d.mu.Lock()
	for d.n >= d.limit && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		d.mu.Unlock()
		d.r.log.Debug("delete dropped: engine stopping", "log", log, "count", len(seqs))
		return
	}
	d.pending[log] = append(d.pending[log], seqs...)
	d.n += len(seqs)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// applied asks for a sync round of log after deletes: they need no wait
// (an acknowledged message lost by a crash comes back, it is not lost), but
// files JetStream replaced for them (compacted blocks) should get their
// synced shadows soon (syncer.go).
func (d *deleter) applied(log string) {
	if s := d.r.sync; s != nil {
		s.touch(log)
	}
}

// subjectOf names a subject of a log.
type subjectOf struct{ log, subject string }

// addBelow queues a filtered purge of subject below floor and the deletes of
// seqs at or above it (see Engine.DeleteAsyncBelow); it blocks like add.
func (d *deleter) addBelow(log, subject string, floor uint64, seqs []uint64) {
	rest := make([]uint64, 0, len(seqs))
	covered := false
	for _, s := range seqs {
		if s < floor {
			covered = true
		} else {
			rest = append(rest, s)
		}
	}
	if covered {
		k := subjectOf{log, subject}
		d.mu.Lock()
		if !d.closed {
			d.floors[k] = max(d.floors[k], floor)
		}
		d.mu.Unlock()
	}
	if len(rest) > 0 {
		d.add(log, rest...)
		return
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// purgeFloors runs the queued filtered purges; it reports whether some
// failed (they are queued again).
func (d *deleter) purgeFloors() (failed bool) {
	d.mu.Lock()
	floors := d.floors
	if len(floors) == 0 {
		d.mu.Unlock()
		return false
	}
	d.floors = make(map[subjectOf]uint64, len(floors))
	d.mu.Unlock()
	for k, floor := range floors {
		d.mu.Lock()
		done := floor <= d.floored[k]
		d.mu.Unlock()
		if done {
			continue
		}
		select {
		case <-d.abort:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		_, err := d.r.purge(ctx, k.log, k.subject, floor)
		cancel()
		switch {
		case err == nil:
			d.mu.Lock()
			d.floored[k] = floor
			d.mu.Unlock()
			d.applied(k.log)
		case errors.Is(err, ErrNotFound):
			// The log is gone, and its messages with it.
		default:
			d.r.log.Warn("purging acknowledged messages failed; retrying", "log", k.log, "subject", k.subject, "below", floor, "err", err)
			d.mu.Lock()
			d.floors[k] = max(d.floors[k], floor)
			d.mu.Unlock()
			failed = true
		}
	}
	return failed
}

func (d *deleter) work() {
	defer close(d.done)
	defer func() { _ = d.sub.Unsubscribe() }()
	var retry <-chan time.Time
	wait := deleteRetryWait
	var last time.Time // start of the previous round
	drain := func() {
		// Everything queued before close, retried until the drain
		// bound; apply drops what is left once abort is closed.
		for again, _ := d.round(); again; again, _ = d.round() {
			select {
			case <-d.abort:
			case <-time.After(deleteRetryWait):
			}
		}
	}
	var hold <-chan time.Time // deletes were held back: look again
	for {
		wake := d.wake
		if retry != nil {
			wake = nil // new deletes wait for the retry, not to spin on a lost connection
		}
		select {
		case <-wake:
		case <-retry:
		case <-hold:
		case <-d.flush:
			drain()
			return
		}
		if early := d.pace - time.Since(last); retry == nil && early > 0 && !d.pressed() {
			t := time.NewTimer(early)
			select {
			case <-t.C:
			case <-d.flush:
				t.Stop()
				drain()
				return
			}
		}
		last = time.Now()
		retry, hold = nil, nil
		again, held := d.round()
		if again {
			retry = time.After(wait)
			wait = min(2*wait, deleteRetryMaxWait)
		} else {
			wait = deleteRetryWait
		}
		if held && retry == nil {
			hold = time.After(d.pace)
		}
	}
}

// pressed reports whether at least half the limit is pending: rounds then
// run back to back.
func (d *deleter) pressed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return 2*d.n >= d.limit
}

// forget drops what the worker remembers of log (its last purge): the log
// was deleted, and a new log of that name numbers its messages from 1.
func (d *deleter) forget(log string) {
	d.mu.Lock()
	delete(d.purgedTo, log)
	delete(d.gone, log)
	for k := range d.floors {
		if k.log == log {
			delete(d.floors, k)
		}
	}
	for k := range d.floored {
		if k.log == log {
			delete(d.floored, k)
		}
	}
	d.mu.Unlock()
}

// round applies the pending deletes; it reports whether some were queued
// again to be retried (their replies were lost), and whether some were held
// back (see apply).
func (d *deleter) round() (again, held bool) {
	again = d.purgeFloors()
	d.mu.Lock()
	batch := d.pending
	d.pending = make(map[string][]uint64, len(batch))
	mayHold := !d.closed && 4*d.n < 3*d.limit
	d.mu.Unlock()
	if len(batch) == 0 {
		return again, false
	}
	count, back, retried := 0, 0, 0
	for log, seqs := range batch {
		count += len(seqs)
		left, kept := d.apply(log, seqs, mayHold)
		d.applied(log)
		if len(left)+len(kept) > 0 {
			retried += len(left)
			back += len(left) + len(kept)
			d.mu.Lock()
			d.pending[log] = append(append(d.pending[log], left...), kept...)
			d.mu.Unlock()
		}
	}
	d.mu.Lock()
	d.n -= count - back
	d.cond.Broadcast()
	d.mu.Unlock()
	return again || retried > 0, back > retried
}

// apply deletes seqs from log and returns those to retry (left) and those
// held back (kept). A run at the head of the log is purged; the sequences
// after a gap (a message before them is still live, typically one still
// being processed while later ones were acknowledged) are held for up to
// deleteHold while mayHold, as the gap usually closes within milliseconds
// and they then join a purge. Past deleteHold they are deleted one by one.
func (d *deleter) apply(log string, seqs []uint64, mayHold bool) (left, kept []uint64) {
	select {
	case <-d.abort:
		d.r.log.Warn("stop: pending deletes not applied; the messages stay in the log", "log", log, "count", len(seqs))
		return nil, nil
	default:
	}
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	since, holding := d.heldSince[log]
	// A leading run is purged if it is long enough to be worth reading the
	// log's state, or if it starts where the last purge ended and reaches
	// past sequences deleted one by one earlier (typically a late message
	// whose delete frees the run behind it). A lone short run is not: a
	// purge costs JetStream far more than a few single deletes.
	if run := d.purgeableRun(log, seqs); run >= minPurgeRun || run > leadingRun(seqs) && d.atMark(log, seqs[0]) {
		seqs = d.purgeRun(log, seqs, run)
	}
	if len(seqs) == 0 {
		delete(d.heldSince, log)
		return nil, nil
	}
	if mayHold && (!holding || time.Since(since) < deleteHold) {
		if !holding {
			d.heldSince[log] = time.Now()
		}
		return nil, seqs
	}
	delete(d.heldSince, log)
	return d.deleteEach(log, seqs), nil
}

// seqSpan is the sequences lo..hi.
type seqSpan struct{ lo, hi uint64 }

// goneSpans is a log's sequences deleted one by one: sorted, disjoint
// spans, at most maxGoneRanges (the lowest are dropped first), and when
// they last grew. They are dropped goneTTL after that, as a log deleted and
// re-created elsewhere in a cluster numbers its messages again (as for
// purgedTo); a late message's delete comes within milliseconds of the ones
// after it.
type goneSpans struct {
	spans []seqSpan
	at    time.Time
}

const (
	maxGoneRanges = 256
	goneTTL       = 5 * time.Second
)

// noteGone records sorted seqs of log as deleted one by one.
func (d *deleter) noteGone(log string, seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	spans := d.gone[log].spans
	for i := 0; i < len(seqs); {
		n := leadingRun(seqs[i:])
		spans = append(spans, seqSpan{seqs[i], seqs[i+n-1]})
		i += n
	}
	slices.SortFunc(spans, func(a, b seqSpan) int { return cmp.Compare(a.lo, b.lo) })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		last := &merged[len(merged)-1]
		if sp.lo <= last.hi+1 {
			last.hi = max(last.hi, sp.hi)
			continue
		}
		merged = append(merged, sp)
	}
	if len(merged) > maxGoneRanges {
		merged = merged[len(merged)-maxGoneRanges:]
	}
	d.gone[log] = goneSpans{spans: merged, at: time.Now()}
}

// goneBetween reports whether every sequence in lo..hi was deleted one by
// one (true for an empty interval).
func (d *deleter) goneBetween(log string, lo, hi uint64) bool {
	if lo > hi {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g := d.gone[log]
	if time.Since(g.at) > goneTTL {
		delete(d.gone, log)
		return false
	}
	i, _ := slices.BinarySearchFunc(g.spans, hi, func(sp seqSpan, v uint64) int { return cmp.Compare(sp.hi, v) })
	return i < len(g.spans) && g.spans[i].lo <= lo
}

// dropGoneBelowLocked forgets log's sequences below upTo (purged).
func (d *deleter) dropGoneBelowLocked(log string, upTo uint64) {
	g, ok := d.gone[log]
	if !ok {
		return
	}
	i, _ := slices.BinarySearchFunc(g.spans, upTo, func(sp seqSpan, v uint64) int { return cmp.Compare(sp.hi, v) })
	g.spans = g.spans[i:]
	if len(g.spans) == 0 {
		delete(d.gone, log)
		return
	}
	g.spans[0].lo = max(g.spans[0].lo, upTo)
	d.gone[log] = g
}

// purgeableRun is the length of the leading run of sorted seqs, taken
// across gaps whose sequences were all deleted one by one.
func (d *deleter) purgeableRun(log string, seqs []uint64) int {
	n := leadingRun(seqs)
	for n < len(seqs) && d.goneBetween(log, seqs[n-1]+1, seqs[n]-1) {
		n += leadingRun(seqs[n:])
	}
	return n
}

// leadingRun is the length of the run of consecutive sequences at the start
// of sorted seqs.
func leadingRun(seqs []uint64) int {
	n := 1
	for n < len(seqs) && seqs[n] == seqs[n-1]+1 {
		n++
	}
	return n
}

// atMark reports whether seq is where log's last purge ended, within
// purgeMarkTTL: everything below it is gone.
func (d *deleter) atMark(log string, seq uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	mark, ok := d.purgedTo[log]
	return ok && mark.upTo == seq && time.Since(mark.at) <= purgeMarkTTL
}

// purgeRun removes the leading run of seqs with one purge if every message
// below it is already gone; it returns the sequences still to delete.
func (d *deleter) purgeRun(log string, seqs []uint64, run int) []uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	d.mu.Lock()
	mark, marked := d.purgedTo[log]
	d.mu.Unlock()
	// Right where the last purge ended: nothing live can precede the run.
	// The mark keeps the time the log's state was last read, so it expires
	// even while purges keep renewing it.
	checked := mark.at
	if !marked || seqs[0] != mark.upTo || time.Since(mark.at) > purgeMarkTTL {
		checked = time.Now()
		info, err := d.r.streamInfo(ctx, log)
		if err != nil {
			d.r.log.Warn("async delete: reading log state", "log", log, "err", err)
			return seqs
		}
		first := info.State.FirstSeq
		// Sequences below first are gone already.
		i, _ := slices.BinarySearch(seqs, first)
		seqs = seqs[i:]
		if len(seqs) == 0 {
			return nil
		}
		if seqs[0] != first {
			return seqs // a live message precedes the run
		}
		run = d.purgeableRun(log, seqs)
	}
	upTo := seqs[run-1] + 1
	if _, err := d.r.purge(ctx, log, "", upTo); err != nil {
		d.r.log.Warn("async delete: purge", "log", log, "upTo", upTo, "err", err)
		return seqs
	}
	d.mu.Lock()
	d.purgedTo[log] = purgeMark{upTo: upTo, at: checked}
	d.dropGoneBelowLocked(log, upTo)
	d.mu.Unlock()
	return seqs[run:]
}

// deleteEach sends one delete request per sequence, pipelined, and returns
// the sequences whose reply did not come: those not sent and those in flight
// when the connection dropped or the server fell silent for deleteSilence.
func (d *deleter) deleteEach(log string, seqs []uint64) []uint64 {
	if len(seqs) == 0 {
		return nil
	}

	d.singles.Add(int64(len(seqs)))
	subject := apiMsgDelete + log
	first := d.reqID + 1 // replies with smaller ids belong to abandoned rounds
	gen := d.r.disconnects.Load()
	replied := make([]bool, len(seqs)) // by request id - first
	deleted := make([]bool, len(seqs)) // replied without error
	sent, inflight, failed := 0, 0, 0
	var lastErr error
	// noteDeleted records what went, for later purges across it.
	noteDeleted := func() {
		var gone []uint64
		for i, ok := range deleted {
			if ok {
				gone = append(gone, seqs[i])
			}
		}
		d.noteGone(log, gone)
	}
	defer noteDeleted()
	// unanswered lists what to retry once the replies stop.
	unanswered := func(err error) []uint64 {
		var left []uint64
		for i, ok := range replied {
			if !ok {
				left = append(left, seqs[i])
			}
		}
		d.r.log.Warn("async delete: replies lost; retrying", "log", log, "inflight", inflight, "unsent", len(seqs)-sent, "err", err)
		return left
	}
	receive := func() error {
		wait := time.Now().Add(deleteSilence)
		for {
			select {
			case <-d.abort:
				return ErrStopped
			default:
			}
			m, err := d.sub.NextMsg(deleteReplyPoll)
			if errors.Is(err, nats.ErrTimeout) {
				if d.r.disconnects.Load() != gen {
					return nats.ErrDisconnected
				}
				if time.Now().Before(wait) {
					continue
				}
			}
			if err != nil {
				return err
			}
			id, _ := strconv.ParseUint(m.Subject[len(d.reply):], 10, 64)
			if id < first || id >= first+uint64(sent) {
				continue
			}
			if replied[id-first] {
				continue
			}
			replied[id-first] = true
			inflight--
			if err := deleteResult(log, m.Data); err != nil {
				failed++
				lastErr = err
			} else {
				deleted[id-first] = true
			}
			return nil
		}
	}
	for _, seq := range seqs {
		for inflight >= deleteWindow {
			if err := receive(); err != nil {
				return unanswered(err)
			}
		}
		d.reqID++
		d.body = deleteBody(d.body, seq)
		if err := d.r.nc.PublishRequest(subject, d.reply+strconv.FormatUint(d.reqID, 10), d.body); err != nil {
			return unanswered(err)
		}
		sent++
		inflight++
	}
	for inflight > 0 {
		if err := receive(); err != nil {
			return unanswered(err)
		}
	}
	if failed > 0 {
		d.r.log.Warn("async delete failed", "log", log, "failed", failed, "of", len(seqs), "err", lastErr)
	}
	return nil
}

// close stops accepting deletes, applies the queued ones until ctx ends and
// waits for the worker.
func (d *deleter) close(ctx context.Context) {
	d.mu.Lock()
	d.closed = true
	d.cond.Broadcast()
	d.mu.Unlock()
	close(d.flush)
	select {
	case <-d.done:
	case <-ctx.Done():
		close(d.abort)
		select {
		case <-d.done:
		case <-time.After(apiTimeout):
			d.r.log.Warn("stop: async delete worker still busy")
		}
	}
}
