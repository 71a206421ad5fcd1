package amqp

import (
	"sync"

	"github.com/heraldhq/herald/internal/broker"
)

// confirmer tracks a confirm-mode channel's publishes (sequence numbers
// from 1) and turns completions into basic.ack / basic.nack frames, one
// frame per run of equal outcomes (multiple=true for runs longer than one).
type confirmer struct {
	mu   sync.Mutex
	base uint64  // sequence number of st[0]
	st   []uint8 // per publish from base: pending, acked or nacked
	hold uint64  // a publish the reader is still handling (0: none)
	dead bool    // the channel closed: emit nothing
}

const (
	confPending uint8 = iota
	confAcked
	confNacked
)

func newConfirmer() *confirmer { return &confirmer{base: 1} }

// begin assigns the next sequence number and holds its confirm back until
// release (the reader may still queue a basic.return for it).
func (c *confirmer) begin() uint64 {
	c.mu.Lock()
	seq := c.base + uint64(len(c.st))
	c.st = append(c.st, confPending)
	c.hold = seq
	c.mu.Unlock()
	return seq
}

// release lets the held publish be confirmed. It reports whether a confirm
// can be emitted now (the oldest publish is complete); otherwise the next
// completion will say so.
func (c *confirmer) release() (ready bool) {
	c.mu.Lock()
	c.hold = 0
	ready = len(c.st) > 0 && c.st[0] != confPending
	c.mu.Unlock()
	return ready
}

// complete records the outcome of publish seq.
func (c *confirmer) complete(seq uint64, ok bool) {
	c.mu.Lock()
	if i := seq - c.base; seq >= c.base && i < uint64(len(c.st)) {
		if ok {
			c.st[i] = confAcked
		} else {
			c.st[i] = confNacked
		}
	}
	c.mu.Unlock()
}

// kill stops all emission (the channel is gone).
func (c *confirmer) kill() {
	c.mu.Lock()
	c.dead = true
	c.st = nil
	c.mu.Unlock()
}

// collect appends the confirms that can be sent now, in order, to q.
func (c *confirmer) collect(ch uint16, q []outFrame) []outFrame {
	if c == nil {
		return q
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return q
	}
	i := 0
	for i < len(c.st) && c.st[i] != confPending && (c.hold == 0 || c.base+uint64(i) < c.hold) {
		j := i + 1
		for j < len(c.st) && c.st[j] == c.st[i] && (c.hold == 0 || c.base+uint64(j) < c.hold) {
			j++
		}
		kind := outAck
		if c.st[i] == confNacked {
			kind = outNack
		}
		q = append(q, outFrame{kind: kind, ch: ch, tag: c.base + uint64(j-1), multiple: j-i > 1})
		i = j
	}
	if i > 0 {
		n := copy(c.st, c.st[i:])
		c.st = c.st[:n]
		c.base += uint64(i)
	}
	return q
}

// txState buffers a transaction's publishes and settlements until commit.
type txState struct {
	pubs    []broker.Publishing
	settles []txSettle
	bytes   int64
}

// txSettle is an ack, nack or reject waiting for tx.commit.
type txSettle struct {
	tag     uint64
	d       *broker.Delivery
	ack     bool
	requeue bool
}

func (t *txState) count() int { return len(t.pubs) + len(t.settles) }
