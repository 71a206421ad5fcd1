package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
)

// publisher runs AppendAsync. It speaks JetStream's publish protocol
// directly (a core NATS publish whose reply subject carries the append's id;
// the stream answers with a PubAck) instead of jetstream.PublishAsync, so it
// can keep the acknowledgements in order cheaply:
//
//   - ids are taken, and messages published, in one critical section, so
//     the ids of one goroutine's appends increase in its publish order;
//   - pending appends live in a ring of MaxPending entries indexed by id; a
//     window of MaxPending slots makes AppendAsync block while it is full;
//   - acks arrive on one subscription, possibly out of order (logs store
//     independently); each ack completes its entry and the completed prefix
//     of the ring is popped in id order, calling done. So done calls follow
//     publish order across all logs, at the price of head-of-line waiting
//     behind a slow log.
//
// done runs on the reply subscription's goroutine, or on the publisher's
// maintenance goroutine (timeouts, failed publishes, Stop), never on the
// caller's; popMu serialises the two.
//
// Lock order: popMu → mu.
type publisher struct {
	r          *run
	ackTimeout atomic.Int64 // nanoseconds; asyncAckTimeout, shorter in tests
	window     uint64
	retry      bool // clustered: republish after "no responders" (leader elections)
	prefix     string
	replyBuf   []byte  // prefix + id, rebuilt under mu for each publish
	sync       *syncer // group commit; nil unless Fsync always standalone (syncer.go)
	sub        *nats.Subscription
	slots      chan struct{} // one token per append in flight
	kick       chan struct{} // cap 1: the maintenance goroutine should pop
	stopped    chan struct{} // closed when close begins: blocked appends give up
	abort      chan struct{} // closed when the drain bound passes: fail the rest
	done       chan struct{} // closed when the maintenance goroutine exits

	popMu sync.Mutex // held while popping and calling done

	mu     sync.Mutex // guards the fields below
	ring   []pendingAppend
	head   uint64 // oldest id not yet popped
	next   uint64 // next id to assign
	closed bool
}

type pendingAppend struct {
	id       uint64
	state    uint8 // statePending or stateComplete; zero is free
	attempts uint8
	sent     time.Time
	subject  string
	data     []byte // kept only when retry is on
	done     func(uint64, error)
	seq      uint64
	err      error
	need     uint64 // the sync round that makes it durable; 0 = none (syncer.go)
}

const (
	statePending = 1 + iota
	stateComplete

	pubRetryWait     = 250 * time.Millisecond
	pubRetryAttempts = 2
	pubCheckInterval = time.Second
)

func newPublisher(r *run, window int, retry bool, sync *syncer) (*publisher, error) {
	p := &publisher{
		r:        r,
		window:   uint64(window),
		retry:    retry,
		prefix:   r.nc.NewInbox() + ".",
		slots:    make(chan struct{}, window),
		kick:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		abort:    make(chan struct{}),
		done:     make(chan struct{}),
		ring:     make([]pendingAppend, window),
		replyBuf: make([]byte, 0, 64),
		head:     1,
		next:     1,
	}
	p.replyBuf = append(p.replyBuf, p.prefix...)
	p.sync = sync
	p.ackTimeout.Store(int64(asyncAckTimeout))
	var err error
	p.sub, err = r.nc.Subscribe(p.prefix+"*", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("engine: append reply subscription: %w", err)
	}
	// The window bounds what can be pending; never drop acks.
	if err := p.sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	go p.maintain()
	return p, nil
}

// publish takes a window slot, then an id, and publishes.
func (p *publisher) publish(subject string, data []byte, done func(uint64, error)) error {
	if done == nil {
		return errors.New("engine: AppendAsync: done is nil")
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.stopped:
		return ErrStopped
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return ErrStopped
	}
	id := p.next
	p.next++
	e := &p.ring[id%p.window]
	*e = pendingAppend{id: id, state: statePending, sent: time.Now(), subject: subject, done: done}
	if p.retry {
		e.data = slices.Clone(data)
	}
	err := p.r.nc.PublishRequest(subject, p.replyLocked(id), data)
	if err != nil {
		e.state, e.err = stateComplete, fmt.Errorf("engine: appending to %q: %w", subject, mapNatsErr(err))
	}
	p.mu.Unlock()
	if err != nil {
		p.wake() // done runs on an engine goroutine, not the caller's
	}
	return nil
}

// replyLocked returns the reply subject for id without allocating: a view
// of replyBuf, valid until the next call. PublishRequest copies the subject
// into the connection's buffer before it returns, so the view never outlives
// the critical section. Caller holds mu.
func (p *publisher) replyLocked(id uint64) string {
	p.replyBuf = strconv.AppendUint(p.replyBuf[:len(p.prefix)], id, 10)
	return unsafe.String(unsafe.SliceData(p.replyBuf), len(p.replyBuf))
}

func (p *publisher) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// onAck completes the entry an ack belongs to and pops what it can.
func (p *publisher) onAck(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(p.prefix):], 10, 64)
	if err != nil {
		return
	}
	if len(m.Data) == 0 && m.Header.Get(hdrStatus) == "503" {
		p.noResponders(id)
		return
	}
	p.mu.Lock()
	e := &p.ring[id%p.window]
	if e.id != id || e.state != statePending {
		p.mu.Unlock()
		return // timed out or failed already
	}
	e.seq, e.err = parseAck(e.subject, m.Data)
	e.state = stateComplete
	if e.err == nil && p.sync != nil {
		e.need = p.sync.mark(ackStream(m.Data))
	}
	ready := id == p.head
	p.mu.Unlock()
	if ready {
		p.pop()
	}
}

// noResponders handles a publish no stream received: standalone, no log
// captures the subject; in a cluster the stream may be between leaders, so
// it is republished a few times first, like jetstream.PublishAsync does.
func (p *publisher) noResponders(id uint64) {
	p.mu.Lock()
	e := &p.ring[id%p.window]
	if e.id != id || e.state != statePending {
		p.mu.Unlock()
		return
	}
	if p.retry && e.attempts < pubRetryAttempts {
		e.attempts++
		p.mu.Unlock()
		time.AfterFunc(pubRetryWait, func() { p.republish(id) })
		return
	}
	e.state = stateComplete
	e.err = fmt.Errorf("engine: appending to %q: no log captures the subject: %w", e.subject, ErrNotFound)
	ready := id == p.head
	p.mu.Unlock()
	if ready {
		p.pop()
	}
}

func (p *publisher) republish(id uint64) {
	p.mu.Lock()
	e := &p.ring[id%p.window]
	if e.id != id || e.state != statePending || p.closed {
		p.mu.Unlock()
		return
	}
	if err := p.r.nc.PublishRequest(e.subject, p.replyLocked(id), e.data); err != nil {
		e.state, e.err = stateComplete, fmt.Errorf("engine: appending to %q: %w", e.subject, mapNatsErr(err))
	}
	p.mu.Unlock()
	p.wake()
}

// parseAck reads a PubAck: {"stream":"L","seq":N,...} or {"error":{...}}.
func parseAck(subject string, data []byte) (uint64, error) {
	if !bytes.Contains(data, []byte(`"error"`)) {
		if i := bytes.Index(data, []byte(`"seq":`)); i >= 0 {
			rest := data[i+len(`"seq":`):]
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if seq, err := strconv.ParseUint(string(rest[:j]), 10, 64); err == nil && seq > 0 {
				return seq, nil
			}
		}
	}
	var resp struct {
		apiResponse
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return 0, fmt.Errorf("engine: appending to %q: bad acknowledgement %q: %w", subject, data, err)
	}
	if resp.Error == nil {
		if resp.Seq == 0 {
			return 0, fmt.Errorf("engine: appending to %q: bad acknowledgement %q", subject, data)
		}
		return resp.Seq, nil
	}
	return 0, appendErr(subject, resp.Error)
}

// appendErr maps a refused append: a full log (discard new) is ErrLogLimit.
func appendErr(subject string, e *apiError) error {
	if e.ErrCode == errCodeStoreFailed && strings.HasPrefix(e.Description, "maximum ") &&
		strings.HasSuffix(e.Description, " exceeded") {
		return fmt.Errorf("engine: appending to %q: %s: %w", subject, e.Description, ErrLogLimit)
	}
	return fmt.Errorf("engine: appending to %q: %w", subject, e)
}

// pop calls done for the completed entries at the head of the ring, in id
// order, and frees their slots.
func (p *publisher) pop() {
	p.popMu.Lock()
	defer p.popMu.Unlock()
	for {
		p.mu.Lock()
		if p.head == p.next {
			closed := p.closed
			p.mu.Unlock()
			if closed {
				p.wake() // close waits for the ring to drain
			}
			return
		}
		e := &p.ring[p.head%p.window]
		if e.state != stateComplete {
			p.mu.Unlock()
			return
		}
		if e.need != 0 {
			// Acknowledged by the log; confirmed once synced.
			over, serr := p.sync.result(e.need)
			if !over && !p.aborted() {
				p.mu.Unlock()
				return // the round's end wakes the maintenance goroutine
			}
			if !over {
				serr = fmt.Errorf("engine: appending to %q: stopped before it was synced: %w", e.subject, ErrStopped)
			}
			e.need, e.err = 0, serr
		}
		done, seq, err := e.done, e.seq, e.err
		p.mu.Unlock()
		// The entry stays at the head until done returns, so a drained ring
		// means every done has returned.
		done(seq, err)
		p.mu.Lock()
		*e = pendingAppend{}
		p.head++
		p.mu.Unlock()
		<-p.slots
	}
}

func (p *publisher) aborted() bool {
	select {
	case <-p.abort:
		return true
	default:
		return false
	}
}

// failHead completes the oldest pending append with err if it is older than
// minAge; it reports whether it did.
func (p *publisher) failHead(minAge time.Duration, err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head == p.next {
		return false
	}
	e := &p.ring[p.head%p.window]
	if e.state != statePending || time.Since(e.sent) < minAge {
		return false
	}
	e.state = stateComplete
	e.err = fmt.Errorf("engine: appending to %q: %w", e.subject, err)
	return true
}

// empty reports whether nothing is in flight.
func (p *publisher) empty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.head == p.next
}

// maintain pops after failed publishes, fails appends whose ack is overdue,
// and drains at close.
func (p *publisher) maintain() {
	defer close(p.done)
	t := time.NewTicker(pubCheckInterval)
	defer t.Stop()
	stopped := p.stopped
	for {
		select {
		case <-p.kick:
		case <-t.C:
			for p.failHead(time.Duration(p.ackTimeout.Load()), errAckTimeout) {
				p.pop()
			}
		case <-stopped:
			stopped = nil // closing: keep popping until empty or aborted
		case <-p.abort:
			for p.failHead(0, ErrStopped) {
				p.pop()
			}
			p.pop() // appends acknowledged but not synced fail too
			return
		}
		p.pop()
		if stopped == nil && p.empty() {
			return
		}
	}
}

var errAckTimeout = errors.New("no acknowledgement in time")

// failAll fails every pending append with err (lost connection: the acks of
// what was in flight will not come).
func (p *publisher) failAll(err error) {
	p.mu.Lock()
	for id := p.head; id < p.next; id++ {
		e := &p.ring[id%p.window]
		if e.state == statePending {
			e.state = stateComplete
			e.err = fmt.Errorf("engine: appending to %q: %w", e.subject, err)
		}
	}
	p.mu.Unlock()
	p.wake()
}

// close stops accepting appends and waits until ctx for the in-flight ones
// to be acknowledged; the rest get done(0, ErrStopped).
func (p *publisher) close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	close(p.stopped)
	select {
	case <-p.done:
	case <-ctx.Done():
		p.r.log.Warn("stop: asynchronous appends still unacknowledged; failing them")
		close(p.abort)
		<-p.done
	}
	_ = p.sub.Unsubscribe()
}
