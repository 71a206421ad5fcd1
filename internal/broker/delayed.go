package broker

import (
	"container/heap"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
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
//
// In a cluster each node stores its delayed messages on its own subject,
// hd.<vhost id>.d.<node key>, and fires only those (and those of the
// subject hd.<vhost id>.d of earlier versions, which every node fires, as
// before); when a node goes down, one live node adopts its subject (see
// nodes.go) and fires its messages, until the node is back.

func delayLog(vh *vhost) string { return "HD_" + vh.id }

// delaySubject is where this node stores vh's delayed messages.
func (b *core) delaySubject(vh *vhost) string {
	if !b.eng.Clustered() {
		return sharedDelaySubject(vh)
	}
	return nodeDelaySubject(vh, b.node)
}

// sharedDelaySubject is the subject of a single node, and of clusters of
// earlier versions (every node fires its messages).
func sharedDelaySubject(vh *vhost) string { return "hd." + vh.id + ".d" }

func nodeDelaySubject(vh *vhost, node string) string {
	return sharedDelaySubject(vh) + "." + keyName(node)
}

// delayItemOf reads the due time of a delay log message; false if it is
// too short to hold one.
func delayItemOf(vh *vhost, log string, m engine.Msg, owner string) (delayItem, bool) {
	if len(m.Data) < 8 {
		return delayItem{}, false
	}
	return delayItem{due: int64(binary.BigEndian.Uint64(m.Data)), vhost: vh.name, log: log, seq: m.Seq, owner: owner}, true
}

type delayItem struct {
	due   int64
	vhost string
	log   string
	seq   uint64
	owner string // the down node it was adopted from; "" for this node's own
}

type delayRef struct {
	log string
	seq uint64
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
	held    map[delayRef]bool // in h: an adopted message is not added twice
	timer   *time.Timer
	at      int64
	stopped bool
	firing  bool
	// inflight counts the fired messages not yet stored and deleted: stop
	// waits for them, so a node going away does not leave a stored
	// message's delay copy for the node adopting its delays to fire again.
	inflight sync.WaitGroup
}

func newDelayer(b *core) *delayer { return &delayer{b: b, held: map[delayRef]bool{}} }

// vhosts returns the broker's vhosts.
func (d *delayer) vhosts() []*vhost {
	d.b.mu.RLock()
	defer d.b.mu.RUnlock()
	vhs := make([]*vhost, 0, len(d.b.vhostsM))
	for _, vh := range d.b.vhostsM {
		vhs = append(vhs, vh)
	}
	return vhs
}

func (d *delayer) start(ctx context.Context) error {
	clustered := d.b.eng.Clustered()
	for _, vh := range d.vhosts() {
		log, mine, shared := delayLog(vh), d.b.delaySubject(vh), sharedDelaySubject(vh)
		_, err := d.b.eng.Scan(ctx, log, "", 1, func(m engine.Msg) error {
			if clustered && m.Subject != mine && m.Subject != shared {
				// Another node's: it fires them, or whoever adopts them
				// if it is down (nodes.go).
				if raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(m.Subject, shared+".")); err == nil {
					d.b.noteNode(string(raw))
				}
				return nil
			}
			if it, ok := delayItemOf(vh, log, m, ""); ok {
				d.add(it)
			}
			return nil
		})
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
	}
	return nil
}

// adopt adds the delayed messages a down node stored (cluster mode).
func (d *delayer) adopt(ctx context.Context, node string) error {
	n := 0
	for _, vh := range d.vhosts() {
		log := delayLog(vh)
		err := d.b.scanSettled(ctx, log, nodeDelaySubject(vh, node), func(m engine.Msg) error {
			if it, ok := delayItemOf(vh, log, m, node); ok {
				d.add(it)
				n++
			}
			return nil
		})
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
	}
	if n > 0 {
		d.b.log.Info("adopted the delayed messages of a down node", "node", node, "messages", n)
	}
	return nil
}

// disown drops the adopted messages of node, which is back and fires them
// itself.
func (d *delayer) disown(node string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept := d.h[:0]
	for _, it := range d.h {
		if it.owner == node {
			delete(d.held, delayRef{it.log, it.seq})
			continue
		}
		kept = append(kept, it)
	}
	if len(kept) == len(d.h) {
		return
	}
	clear(d.h[len(kept):])
	d.h = kept
	heap.Init(&d.h)
	d.armLocked()
}

// stopWait bounds how long stop waits for fired messages.
const stopWait = 10 * time.Second

// stop stops firing and waits (bounded by ctx and stopWait) for the messages being
// fired to be stored and their delay copies deleted.
func (d *delayer) stop(ctx context.Context) {
	d.mu.Lock()
	d.stopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		d.inflight.Wait()
		close(done)
	}()
	t := time.NewTimer(stopWait)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-t.C:
	}
}

func (d *delayer) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

func (d *delayer) add(it delayItem) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ref := delayRef{it.log, it.seq}
	if d.held[ref] {
		return
	}
	d.held[ref] = true
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
	err := d.b.eng.AppendAsync(d.b.delaySubject(vh), data, func(seq uint64, err error) {
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
		it := heap.Pop(&d.h).(delayItem)
		delete(d.held, delayRef{it.log, it.seq})
		due = append(due, it)
	}
	d.inflight.Add(len(due))
	d.mu.Unlock()
	for _, it := range due {
		d.deliver(it)
	}
	d.mu.Lock()
	d.firing = false
	d.armLocked()
	d.mu.Unlock()
}

// deliver routes and stores one due message, then deletes its delay copy
// (marking it done in d.inflight).
func (d *delayer) deliver(it delayItem) {
	b := d.b
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m, err := b.eng.Get(ctx, it.log, it.seq)
	cancel()
	if errors.Is(err, engine.ErrNotFound) {
		d.inflight.Done()
		return // already delivered and deleted
	}
	if err != nil {
		d.failed(it, err)
		return
	}
	st, err := decodeStored(m.Data[8:])
	if err != nil {
		d.remove(it)
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
		if err != nil {
			// Routed again on the retry: a queue that did store it gets
			// a second copy (at least once), none is lost.
			d.failed(it, err)
			return
		}
		d.remove(it)
	})
}

// failed handles a fired message whose read or store failed: it stays in
// the log, so it is tried again (the log may be between leaders after a
// node went away) rather than forgotten until the next start; when the
// engine is stopping it is left for the next start or for the node
// adopting this one's delays. It marks it done in d.inflight.
func (d *delayer) failed(it delayItem, err error) {
	defer d.inflight.Done()
	if errors.Is(err, engine.ErrStopped) {
		return
	}
	d.b.log.Warn("firing a delayed message failed; retrying", "vhost", it.vhost, "seq", it.seq, "err", err)
	it.due = d.b.cfg.Now().Add(delayRetry).UnixMilli()
	d.add(it)
}

// delayRetry is the wait before firing again a delayed message whose
// read or store failed.
const delayRetry = time.Second

// remove deletes the delay copy of a fired message and marks it done in
// d.inflight. While the delayer stops, the delete is applied before stop
// returns (synchronously, off the engine goroutine this may be called on),
// so a node adopting this node's delays cannot find it.
func (d *delayer) remove(it delayItem) {
	if !d.isStopped() {
		d.b.eng.DeleteAsync(it.log, it.seq)
		d.inflight.Done()
		return
	}
	go func() {
		defer d.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.b.eng.Delete(ctx, it.log, it.seq); err != nil {
			d.b.log.Warn("deleting a fired delayed message while stopping; it may be delivered again", "seq", it.seq, "err", err)
		}
	}()
}
