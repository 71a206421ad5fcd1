package broker

import (
	"container/heap"
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/engine"
)

// Delayed delivery (exchange type x-delayed-message, header x-delay in ms).
// A delayed publish is stored in the vhost's delay log as
// due(8 bytes, unix ms) + the stored message, and kept in an in-memory heap
// of (due, log, seq). When due, it is read back, routed by the exchange's
// x-delayed-type and stored in the queues; then the delay copy is deleted.
// At start the heap is rebuilt by scanning the delay logs, so delays survive
// restarts and crashes (a message is delivered late, never lost).

func delayLog(vh *vhost) string { return "HD_" + vh.id }

type delayItem struct {
	due   int64
	vhost string
	log   string
	seq   uint64
}

type delayHeap []delayItem

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayItem)) }
func (h *delayHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

type delayer struct {
	b       *core
	mu      sync.Mutex
	h       delayHeap
	timer   *time.Timer
	at      int64
	stopped bool
	firing  bool
}

func newDelayer(b *core) *delayer { return &delayer{b: b} }

func (d *delayer) start(ctx context.Context) error {
	d.b.mu.RLock()
	var vhs []*vhost
	for _, vh := range d.b.vhostsM {
		vhs = append(vhs, vh)
	}
	d.b.mu.RUnlock()
	for _, vh := range vhs {
		log := delayLog(vh)
		_, err := d.b.eng.Scan(ctx, log, "", 1, func(m engine.Msg) error {
			if len(m.Data) >= 8 {
				d.add(delayItem{due: int64(binary.BigEndian.Uint64(m.Data)), vhost: vh.name, log: log, seq: m.Seq})
			}
			return nil
		})
		if err != nil && err != engine.ErrNotFound {
			return err
		}
	}
	return nil
}

func (d *delayer) stop() {
	d.mu.Lock()
	d.stopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
}

func (d *delayer) add(it delayItem) {
	d.mu.Lock()
	defer d.mu.Unlock()
	heap.Push(&d.h, it)
	d.armLocked()
}

func (d *delayer) armLocked() {
	if d.stopped || len(d.h) == 0 || d.firing {
		return
	}
	next := d.h[0].due
	if d.timer != nil && d.at != 0 && d.at <= next {
		return
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	d.at = next
	wait := time.Duration(next-d.b.cfg.Now().UnixMilli()) * time.Millisecond
	d.timer = time.AfterFunc(max(wait, 0), d.fire)
}

func (d *delayer) schedule(vh *vhost, p Publishing, delay time.Duration, done func(error)) (PublishResult, error) {
	due := d.b.cfg.Now().Add(delay).UnixMilli()
	data := binary.BigEndian.AppendUint64(nil, uint64(due))
	data = append(data, encodeStored(p.Exchange, p.RoutingKey, p.Message)...)
	log := delayLog(vh)
	err := d.b.eng.AppendAsync("hd."+vh.id+".d", data, func(seq uint64, err error) {
		if err == nil {
			d.add(delayItem{due: due, vhost: vh.name, log: log, seq: seq})
		}
		if done != nil {
			done(err)
		}
	})
	if err != nil {
		return PublishResult{}, err
	}
	return PublishResult{Routed: true}, nil
}

func (d *delayer) fire() {
	d.mu.Lock()
	d.at = 0
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.firing = true
	now := d.b.cfg.Now().UnixMilli()
	var due []delayItem
	for len(d.h) > 0 && d.h[0].due <= now {
		due = append(due, heap.Pop(&d.h).(delayItem))
	}
	d.mu.Unlock()
	for _, it := range due {
		d.deliver(it)
	}
	d.mu.Lock()
	d.firing = false
	d.armLocked()
	d.mu.Unlock()
}

func (d *delayer) deliver(it delayItem) {
	b := d.b
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m, err := b.eng.Get(ctx, it.log, it.seq)
	cancel()
	if err != nil {
		return // already delivered and deleted
	}
	st, err := decodeStored(m.Data[8:])
	if err != nil {
		b.eng.DeleteAsync(it.log, it.seq)
		return
	}
	b.mu.RLock()
	var qs []*queue
	if vh := b.vhostsM[it.vhost]; vh != nil {
		if x := vh.exchanges[st.Exchange]; x != nil {
			qs = b.routeLocked(nil, vh, x, st.RoutingKey, st.Msg.Properties.Headers)
		}
	}
	b.mu.RUnlock()
	b.store(qs, st.Exchange, st.RoutingKey, st.Msg, func(err error) {
		if err == nil {
			b.eng.DeleteAsync(it.log, it.seq)
		}
	})
}
