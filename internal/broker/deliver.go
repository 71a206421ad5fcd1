package broker

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/errs"
)

type consumerState struct {
	tag       string
	q         *queue
	opts      ConsumeOptions
	prio      int64
	limit     int
	unacked   int // guarded by q.mu
	cancelled atomic.Bool
	seq       uint64 // arrival order, for stable priority sorting
}

var consumerSeq atomic.Uint64

func (c *consumerState) cancel() {
	if c.q == nil || !c.cancelled.CompareAndSwap(false, true) {
		return
	}
	c.q.removeConsumer(c)
}

func (c *consumerState) notifyCancelled(reason string) {
	if c.cancelled.CompareAndSwap(false, true) && c.opts.Cancelled != nil {
		c.opts.Cancelled(reason)
	}
}

// ---- limiter (basic.qos global)

type limiterState struct {
	mu      sync.Mutex
	limit   int
	used    int
	waiting map[*queue]struct{}
}

func newLimiter(n int) *Limiter {
	return &Limiter{limiterState{limit: n, waiting: map[*queue]struct{}{}}}
}

func (l *limiterState) setLimit(n int) {
	l.mu.Lock()
	l.limit = n
	l.mu.Unlock()
	l.wake()
}

func (l *limiterState) tryAcquire(q *queue) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit > 0 && l.used >= l.limit {
		l.waiting[q] = struct{}{}
		return false
	}
	l.used++
	return true
}

func (l *limiterState) release() { l.releaseN(1) }

func (l *limiterState) releaseN(n int) {
	l.mu.Lock()
	l.used -= n
	l.mu.Unlock()
	l.wake()
}

func (l *limiterState) wake() {
	l.mu.Lock()
	qs := l.waiting
	l.waiting = map[*queue]struct{}{}
	l.mu.Unlock()
	for q := range qs {
		q.mu.Lock()
		q.kickLocked()
		q.mu.Unlock()
	}
}

// ---- tickets: one per outstanding delivery

type ticket struct {
	q    *queue
	e    *entry
	c    *consumerState // nil for Get
	lim  *Limiter
	done atomic.Bool
}

var errUnknownTag = errs.New(errs.PreconditionFailed, "unknown delivery tag")

func (t *ticket) ack() error {
	if !t.done.CompareAndSwap(false, true) {
		return errUnknownTag
	}
	t.q.settle(t, true, false)
	return nil
}

func (t *ticket) nack(requeue bool) error {
	if !t.done.CompareAndSwap(false, true) {
		return errUnknownTag
	}
	t.q.settle(t, false, requeue)
	return nil
}

type settled struct{}

func (settled) ack() error      { return errUnknownTag }
func (settled) nack(bool) error { return errUnknownTag }

func (q *queue) settle(t *ticket, ack, requeue bool) {
	q.mu.Lock()
	e := t.e
	q.unacked--
	q.unackBytes -= int64(e.size)
	q.held.remove(e.seq)
	if t.c != nil {
		t.c.unacked--
	}
	switch {
	case ack:
		q.b.stats.acked.Add(1)
		q.releaseLocked(e, true)
	case q.deleted || !q.leader:
		q.releaseLocked(e, false)
	case requeue && q.args.DeliveryLimit >= 0 && int64(e.deliveries) > q.args.DeliveryLimit:
		q.deadLetterLocked(e, "delivery_limit")
	case requeue:
		q.requeueLocked(e)
	default:
		q.deadLetterLocked(e, "rejected")
	}
	q.kickLocked()
	q.mu.Unlock()
	if t.lim != nil {
		t.lim.release()
	}
	q.flush()
}

// AckAll acknowledges ds in order, as if Ack were called on each (AMQP
// basic.ack with multiple=true), except that each run of deliveries from
// one queue takes that queue's lock once and queues its log deletes as one
// batch. Deliveries already settled are skipped.
func AckAll(ds []*Delivery) {
	for i := 0; i < len(ds); {
		t, ok := ds[i].settle.(*ticket)
		if !ok {
			_ = ds[i].Ack()
			i++
			continue
		}
		j := i + 1
		for j < len(ds) {
			if u, ok := ds[j].settle.(*ticket); !ok || u.q != t.q {
				break
			}
			j++
		}
		t.q.ackRun(ds[i:j])
		i = j
	}
}

// ackRun acknowledges deliveries of q (each settled by a *ticket of q).
func (q *queue) ackRun(ds []*Delivery) {
	var lim *Limiter
	limN := 0
	q.mu.Lock()
	for _, d := range ds {
		t := d.settle.(*ticket)
		if !t.done.CompareAndSwap(false, true) {
			continue
		}
		e := t.e
		q.unacked--
		q.unackBytes -= int64(e.size)
		q.held.remove(e.seq)
		if t.c != nil {
			t.c.unacked--
		}
		q.b.stats.acked.Add(1)
		q.releaseLocked(e, true)
		if t.lim != nil {
			if lim != nil && t.lim != lim {
				// Deliveries of one channel share its limiter; release a
				// different one at once rather than keep a set.
				q.mu.Unlock()
				t.lim.release()
				q.mu.Lock()
				continue
			}
			lim = t.lim
			limN++
		}
	}
	q.kickLocked()
	q.mu.Unlock()
	if lim != nil {
		lim.releaseN(limN)
	}
	q.flush()
}

// ---- consumers

func (b *core) consume(ctx context.Context, vhostName, queueName string, opts ConsumeOptions) (*Consumer, error) {
	if err := b.running(); err != nil {
		return nil, err
	}
	if opts.Deliver == nil {
		return nil, errs.New(errs.BadArgument, "consumer needs a Deliver callback")
	}
	q, err := b.findQueue(vhostName, queueName, opts.Owner)
	if err != nil {
		return nil, err
	}
	if opts.Tag == "" {
		opts.Tag = "amq.ctag-" + genQueueName()[len("amq.gen-"):]
	}
	c := &Consumer{consumerState{tag: opts.Tag, q: q, opts: opts, seq: consumerSeq.Add(1)}}
	c.limit = opts.Prefetch
	if c.limit <= 0 || c.limit > b.cfg.MaxUnacked {
		c.limit = b.cfg.MaxUnacked
	}
	if p, ok := asInt(opts.Args["x-priority"]); ok {
		c.prio = p
	}
	if err := b.ensureLeader(ctx, q); err != nil {
		return nil, err
	}
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return nil, errs.New(errs.NotFound, "no queue '%s' in vhost '%s'", queueName, vhostName)
	}
	for _, o := range q.consumers {
		if o.opts.Exclusive {
			q.mu.Unlock()
			return nil, errs.New(errs.AccessRefused, "queue '%s' in vhost '%s' in exclusive use", queueName, vhostName)
		}
	}
	if opts.Exclusive && len(q.consumers) > 0 {
		q.mu.Unlock()
		return nil, errs.New(errs.AccessRefused, "queue '%s' in vhost '%s' in exclusive use", queueName, vhostName)
	}
	q.consumers = append(q.consumers, &c.consumerState)
	if !q.args.SingleActive {
		sort.SliceStable(q.consumers, func(i, j int) bool { return q.consumers[i].prio > q.consumers[j].prio })
	}
	q.hadConsumer = true
	q.touchLocked()
	q.kickLocked()
	q.mu.Unlock()
	return c, nil
}

func (q *queue) removeConsumer(c *consumerState) {
	q.mu.Lock()
	for i, o := range q.consumers {
		if o == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			break
		}
	}
	autoDelete := q.spec.AutoDelete && q.hadConsumer && len(q.consumers) == 0 && !q.deleted
	q.touchLocked()
	q.kickLocked() // single-active-consumer: the next one takes over
	q.mu.Unlock()
	if autoDelete {
		q.b.bgDelete(q.vh.name, q.name, q.spec.Owner)
	}
}

// pickLocked chooses the consumer for the next delivery: highest priority
// first, round-robin among equals; only the first with single-active-consumer.
func (q *queue) pickLocked() (*consumerState, *Limiter) {
	n := len(q.consumers)
	if n == 0 {
		return nil, nil
	}
	if q.args.SingleActive {
		n = 1
	}
	top := q.consumers[0].prio
	span := 0
	for span < n && q.consumers[span].prio == top {
		span++
	}
	for pass := 0; pass < 2; pass++ {
		lo, hi := 0, span
		if pass == 1 {
			lo, hi = span, n
		}
		for i := 0; i < hi-lo; i++ {
			idx := lo + (q.rr+i)%(hi-lo)
			c := q.consumers[idx]
			if c.unacked >= c.limit || c.cancelled.Load() {
				continue
			}
			if l := c.opts.Limiter; l != nil && !c.opts.NoAck && !l.tryAcquire(q) {
				continue
			}
			q.rr = (idx - lo + 1) % (hi - lo)
			return c, c.opts.Limiter
		}
	}
	return nil, nil
}

// kickLocked starts the queue's dispatcher if there is work and none runs.
func (q *queue) kickLocked() {
	if q.dispatching || q.nready == 0 || len(q.consumers) == 0 || q.deleted || !q.leader {
		return
	}
	q.dispatching = true
	go q.dispatch()
}

const dispatchBatch = 128

type handout struct {
	c *consumerState
	d *Delivery
	e *entry
}

// dispatch hands ready entries to consumers until none can take more. One
// dispatcher per queue at a time keeps deliveries in queue order.
func (q *queue) dispatch() {
	batch := make([]handout, 0, dispatchBatch)
	for {
		batch = batch[:0]
		q.mu.Lock()
		now := q.nowMs()
		for len(batch) < dispatchBatch {
			q.expireLocked(now)
			if q.nready == 0 {
				break
			}
			c, lim := q.pickLocked()
			if c == nil {
				break
			}
			_, l := q.frontLocked()
			e := q.popLocked(l)
			d := q.deliveryLocked(e, c, lim)
			batch = append(batch, handout{c: c, d: d, e: e})
		}
		if len(batch) == 0 {
			q.dispatching = false
			q.armTTLLocked()
			q.mu.Unlock()
			q.flush()
			return
		}
		q.mu.Unlock()
		q.flush()
		for _, h := range batch {
			if h.d.Message == nil && !q.load(h.d) {
				continue
			}
			h.c.opts.Deliver(h.d)
		}
	}
}

// deliveryLocked moves e from ready to unacknowledged for consumer c.
func (q *queue) deliveryLocked(e *entry, c *consumerState, lim *Limiter) *Delivery {
	e.deliveries++
	q.b.stats.delivered.Add(1)
	d := Delivery{Queue: q.name, Exchange: e.exchange, RoutingKey: e.key, Redelivered: e.deliveries > 1 || e.recovered, Message: e.msg}
	if d.Redelivered {
		q.b.stats.redelivered.Add(1)
	}
	if c != nil {
		d.ConsumerTag = c.tag
	}
	if c != nil && c.opts.NoAck {
		nd := new(Delivery)
		*nd = d
		msg := e.msg
		q.releaseLocked(e, true)
		nd.Message = msg
		if msg == nil {
			// Paged out: load it before the log copy is deleted.
			q.deletes = q.deletes[:len(q.deletes)-1]
			q.held.add(e.seq)
			nd.settle = &pagedNoAck{q: q, e: e}
		} else {
			nd.settle = settled{}
		}
		return nd
	}
	q.unacked++
	q.unackBytes += int64(e.size)
	q.held.add(e.seq)
	if c != nil {
		c.unacked++
	}
	// One allocation for the delivery and its ticket.
	dt := &ticketedDelivery{d: d, t: ticket{q: q, e: e, c: c, lim: lim}}
	dt.d.settle = &dt.t
	return &dt.d
}

// ticketedDelivery is a delivery awaiting settlement and its ticket,
// allocated together.
type ticketedDelivery struct {
	d Delivery
	t ticket
}

// pagedNoAck marks a no-ack delivery whose body must be read from the log
// before the log copy is deleted.
type pagedNoAck struct {
	settled
	q *queue
	e *entry
}

// load reads a paged-out body from the log. On failure the delivery is
// dropped (its message is gone) and settled.
func (q *queue) load(d *Delivery) bool {
	var e *entry
	switch s := d.settle.(type) {
	case *ticket:
		e = s.e
	case *pagedNoAck:
		e = s.e
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := q.b.eng.Get(ctx, q.logName, e.seq)
	var st stored
	if err == nil {
		st, err = decodeStored(m.Data)
	}
	if p, ok := d.settle.(*pagedNoAck); ok {
		q.b.eng.DeleteAsync(q.logName, p.e.seq)
		q.mu.Lock()
		q.held.remove(p.e.seq)
		q.mu.Unlock()
		d.settle = settled{}
	}
	if err != nil {
		q.b.log.Warn("reading paged-out message", "queue", q.name, "seq", e.seq, "err", err)
		if t, ok := d.settle.(*ticket); ok {
			_ = t.ack()
		}
		return false
	}
	d.Message = st.Msg
	return true
}

func (b *core) get(ctx context.Context, vhostName, queueName string, noAck bool, owner string) (*Delivery, error) {
	if err := b.running(); err != nil {
		return nil, err
	}
	q, err := b.findQueue(vhostName, queueName, owner)
	if err != nil {
		return nil, err
	}
	if err := b.ensureLeader(ctx, q); err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.touchLocked()
	q.expireLocked(q.nowMs())
	if q.nready == 0 {
		q.mu.Unlock()
		q.flush()
		return nil, nil
	}
	_, l := q.frontLocked()
	e := q.popLocked(l)
	var d *Delivery
	if noAck {
		msg := e.msg
		e.deliveries++
		q.b.stats.delivered.Add(1)
		d = &Delivery{Queue: q.name, Exchange: e.exchange, RoutingKey: e.key, Redelivered: e.deliveries > 1 || e.recovered, Message: msg, settle: settled{}}
		if msg == nil {
			d.settle = &pagedNoAck{q: q, e: e}
			q.held.add(e.seq)
			q.dropDedupLocked(e.dedup)
		} else {
			q.releaseLocked(e, true)
		}
	} else {
		d = q.deliveryLocked(e, nil, nil)
	}
	d.MessageCount = q.nready
	q.mu.Unlock()
	q.flush()
	if d.Message == nil && !q.load(d) {
		return nil, nil
	}
	return d, nil
}

// settler settles a delivery: a ticket for acknowledged deliveries, settled{}
// for deliveries that need no acknowledgement.
type settler interface {
	ack() error
	nack(requeue bool) error
}
