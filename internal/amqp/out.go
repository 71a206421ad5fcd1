package amqp

import (
	"runtime"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/broker"
)

// outKind says how the writer encodes an outFrame.
type outKind uint8

const (
	outMethod  outKind = iota // m alone
	outContent                // m (basic.return, basic.get-ok) with msg
	outDeliver                // basic.deliver built from the fields below
	outAck                    // publisher confirm: basic.ack tag/multiple
	outNack                   // publisher confirm: basic.nack tag/multiple
)

// outFrame is one unit queued for the socket. Deliveries are queued as
// fields, not as methods, so the writer encodes them without allocating.
type outFrame struct {
	kind        outKind
	ch          uint16
	noAck       bool // settle d once written (the face's no-ack window)
	redelivered bool
	multiple    bool
	tag         uint64
	m           wire.Method
	ctag        string
	exchange    string
	key         string
	msg         *broker.Message
	d           *broker.Delivery
}

// frameCost estimates the queued bytes of a frame for the outbound bound.
func frameCost(f *outFrame) int64 {
	n := int64(64)
	if f.msg != nil {
		n += int64(len(f.msg.Body)) + 64
	}
	return n
}

// outbound is a connection's bounded send queue, drained by one writer
// goroutine that writes everything queued with one flush (one system call
// for many frames).
//
// Lock order: channel.mu before outbound.mu before confirmer.mu.
type outbound struct {
	mu     sync.Mutex
	q      []outFrame
	bytes  int64
	limit  int64
	dirty  []*channel // channels whose publisher confirms can be emitted
	closed bool       // the writer is gone; pushes are refused
	over   bool       // the limit was passed; pushes are refused
	wake   chan struct{}
}

func newOutbound(limit int64) *outbound {
	return &outbound{limit: limit, wake: make(chan struct{}, 1)}
}

func (o *outbound) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// push queues f. It returns false if f was refused: the writer is gone or
// the connection passed its outbound limit (overLimit is then true the first
// time, and the caller closes the connection).
func (o *outbound) push(f outFrame) (ok, overLimit bool) {
	cost := frameCost(&f)
	o.mu.Lock()
	if o.closed || o.over {
		o.mu.Unlock()
		return false, false
	}
	if o.bytes+cost > o.limit && f.kind == outDeliver {
		o.over = true
		o.mu.Unlock()
		return false, true
	}
	o.q = append(o.q, f)
	o.bytes += cost
	o.mu.Unlock()
	o.signal()
	return true, false
}

// pushControl queues a method even past the limit (replies, closes).
func (o *outbound) pushControl(ch uint16, m wire.Method) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.q = append(o.q, outFrame{kind: outMethod, ch: ch, m: m})
	o.bytes += 64
	o.mu.Unlock()
	o.signal()
}

// confirmsReady marks ch as having publisher confirms to emit.
func (o *outbound) confirmsReady(ch *channel) {
	o.mu.Lock()
	if !o.closed && !ch.confirmDirty {
		ch.confirmDirty = true
		o.dirty = append(o.dirty, ch)
	}
	o.mu.Unlock()
	o.signal()
}

// take swaps the queue with buf (emptied) and appends the confirms that are
// ready, in the same critical section so that a basic.return queued before a
// confirm is released is always written before that confirm.
func (o *outbound) take(buf []outFrame) []outFrame {
	o.mu.Lock()
	q := o.q
	o.q = buf[:0]
	o.bytes = 0
	q = o.collectLocked(q)
	o.mu.Unlock()
	return q
}

// takeMore appends what was queued since take to batch, under the same
// ordering rule as take.
func (o *outbound) takeMore(batch []outFrame) []outFrame {
	o.mu.Lock()
	batch = append(batch, o.q...)
	clear(o.q)
	o.q = o.q[:0]
	o.bytes = 0
	batch = o.collectLocked(batch)
	o.mu.Unlock()
	return batch
}

// collectLocked appends the ready publisher confirms to q.
func (o *outbound) collectLocked(q []outFrame) []outFrame {
	for _, ch := range o.dirty {
		ch.confirmDirty = false
		q = ch.conf.collect(ch.id, q)
	}
	clear(o.dirty)
	o.dirty = o.dirty[:0]
	return q
}

// shut refuses further pushes and returns what was still queued.
func (o *outbound) shut() []outFrame {
	o.mu.Lock()
	o.closed = true
	q := o.q
	o.q = nil
	o.dirty = nil
	o.mu.Unlock()
	return q
}

// coalesceFrames is the batch size below which the writer yields once
// before writing, to pick up frames being produced.
const coalesceFrames = 16

// writeLoop is the connection's writer goroutine. It stops when stop is
// closed (after writing what is queued) or when a write fails.
func (c *conn) writeLoop(stop <-chan struct{}) {
	defer close(c.writerDone)
	w := c.w
	var (
		batch     []outFrame
		acks      []*broker.Delivery // no-ack deliveries to settle once written
		deliver   wire.BasicDeliver
		ack       wire.BasicAck
		nack      wire.BasicNack
		props     wire.Properties
		lastWrite = time.Now()
		tick      <-chan time.Time
	)
	if c.heartbeat > 0 {
		t := time.NewTicker(c.heartbeat / 2)
		defer t.Stop()
		tick = t.C
	}
	failed := false
	for {
		stopping := false
		select {
		case <-c.out.wake:
		case <-stop:
			stopping = true
		case now := <-tick:
			if now.Sub(lastWrite) >= c.heartbeat/2 {
				_ = w.WriteHeartbeat()
			}
		}
		batch = c.out.take(batch)
		if len(batch) < coalesceFrames && !stopping {
			// A few frames only: let the goroutines producing more
			// (deliveries, confirms) run first, so that one write carries
			// them all. Fewer system calls here and wake-ups at the client.
			runtime.Gosched()
			batch = c.out.takeMore(batch)
		}
		if stopping {
			// Whatever was queued after take goes out too.
			batch = append(batch, c.out.shut()...)
		}
		for i := range batch {
			f := &batch[i]
			if failed {
				if f.noAck && f.d != nil {
					_ = f.d.Nack(true)
				}
				continue
			}
			var err error
			switch f.kind {
			case outMethod:
				err = w.WriteMethod(f.ch, f.m)
			case outContent:
				setWireProps(&props, &f.msg.Properties)
				err = w.WriteContent(f.ch, f.m, &props, f.msg.Body)
			case outDeliver:
				deliver = wire.BasicDeliver{ConsumerTag: f.ctag, DeliveryTag: f.tag, Redelivered: f.redelivered, Exchange: f.exchange, RoutingKey: f.key}
				setWireProps(&props, &f.msg.Properties)
				err = w.WriteContent(f.ch, &deliver, &props, f.msg.Body)
				if err == nil && f.noAck && f.d != nil {
					acks = append(acks, f.d)
				}
			case outAck:
				ack = wire.BasicAck{DeliveryTag: f.tag, Multiple: f.multiple}
				err = w.WriteMethod(f.ch, &ack)
			case outNack:
				nack = wire.BasicNack{DeliveryTag: f.tag, Multiple: f.multiple}
				err = w.WriteMethod(f.ch, &nack)
			}
			if err != nil {
				if w.Err() != nil {
					failed = true
					continue
				}
				// The frame could not be encoded (a header value of an
				// unsupported type, a header over frame-max): the client
				// never sees it.
				c.log.Error("dropping a frame that cannot be encoded", "conn", c.name, "channel", f.ch, "kind", f.kind, "err", err)
				if f.d != nil {
					_ = f.d.Nack(false)
				}
			}
		}
		if !failed && w.Buffered() > 0 {
			if err := w.Flush(); err != nil {
				failed = true
			} else {
				lastWrite = time.Now()
			}
		}
		if failed {
			for _, d := range acks {
				_ = d.Nack(true)
			}
			c.abort()
		} else {
			for _, d := range acks {
				_ = d.Ack()
			}
		}
		clear(acks)
		acks = acks[:0]
		clear(batch)
		batch = batch[:0]
		if stopping {
			return
		}
		if failed {
			// Refuse new frames and settle what is queued until told to stop.
			for _, f := range c.out.shut() {
				if f.noAck && f.d != nil {
					_ = f.d.Nack(true)
				}
			}
			<-stop
			return
		}
	}
}
