package webhook

import (
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// ackHold bounds how long a settled delivery's ack waits for the earlier
// deliveries of its run before it is released out of order.
const ackHold = 100 * time.Millisecond

// acker releases a run's acks in delivery order. Attempts finish out of
// order (concurrency), but the broker deletes acked messages from its log
// far more cheaply in order: a run of acks from the head of the log becomes
// one purge instead of one delete per message. An ack waits for the earlier
// deliveries at most ackHold, and at most limit acks wait (held acks count
// against the consumer's prefetch window); nacks are never held.
type acker struct {
	mu      sync.Mutex
	seqOf   map[*broker.Delivery]uint64
	next    uint64                      // sequence of the next delivery
	head    uint64                      // lowest sequence not yet settled
	settled map[uint64]*broker.Delivery // settled, waiting for head; nil = already released
	held    int                         // non-nil entries of settled
	limit   int
	timer   *time.Timer
	stopped bool
}

func newAcker(limit int) *acker {
	return &acker{seqOf: map[*broker.Delivery]uint64{}, settled: map[uint64]*broker.Delivery{}, limit: max(limit, 1)}
}

// track numbers a delivery; call in delivery order.
func (a *acker) track(dl *broker.Delivery) {
	a.mu.Lock()
	a.seqOf[dl] = a.next
	a.next++
	a.mu.Unlock()
}

// ack acknowledges dl once every earlier delivery is settled (or after
// ackHold).
func (a *acker) ack(dl *broker.Delivery) {
	a.settle(dl, dl)
}

// nack requeues dl now.
func (a *acker) nack(dl *broker.Delivery) {
	a.settle(dl, nil)
	_ = dl.Nack(true)
}

func (a *acker) settle(dl, toAck *broker.Delivery) {
	a.mu.Lock()
	seq, ok := a.seqOf[dl]
	if !ok { // not tracked (already settled): let the broker say so
		a.mu.Unlock()
		if toAck != nil {
			_ = toAck.Ack()
		}
		return
	}
	delete(a.seqOf, dl)
	a.settled[seq] = toAck
	if toAck != nil {
		a.held++
	}
	var out []*broker.Delivery
	for {
		d, ok := a.settled[a.head]
		if !ok {
			break
		}
		if d != nil {
			out = append(out, d)
			a.held--
		}
		delete(a.settled, a.head)
		a.head++
	}
	if a.stopped || a.held >= a.limit {
		out = a.releaseLocked(out)
	} else if len(a.settled) > 0 && a.timer == nil {
		a.timer = time.AfterFunc(ackHold, a.expire)
	}
	a.mu.Unlock()
	broker.AckAll(out)
}

// releaseLocked appends every held ack to out (in sequence order) and marks
// them released.
func (a *acker) releaseLocked(out []*broker.Delivery) []*broker.Delivery {
	seqs := make([]uint64, 0, len(a.settled))
	for s, d := range a.settled {
		if d != nil {
			seqs = append(seqs, s)
		}
	}
	slices.Sort(seqs)
	for _, s := range seqs {
		out = append(out, a.settled[s])
		a.settled[s] = nil
	}
	a.held = 0
	return out
}

// expire releases the held acks: the head has been in flight too long.
func (a *acker) expire() {
	a.mu.Lock()
	a.timer = nil
	out := a.releaseLocked(nil)
	a.mu.Unlock()
	broker.AckAll(out)
}

// stop releases what is held; later acks are released at once.
func (a *acker) stop() {
	a.mu.Lock()
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	out := a.releaseLocked(nil)
	a.mu.Unlock()
	broker.AckAll(out)
}
