package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/fnv"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/engine"
)

// Failover (cluster mode). A queue is served by the node its record names
// (queueRec.Node); consuming through another node moves it there
// (ensureLeader). A node that stops or dies would leave its queues served
// by nobody, so the nodes watch each other:
//
//   - Every node writes its key into the replicated memory bucket
//     herald_nodes every heartbeat (NodeTimeout/5) and deletes it on Stop.
//   - A node is down when this node has not seen its key written for
//     NodeTimeout, measured on this node's monotonic clock (clocks need not
//     agree), or at once when it deleted its key. The timeout runs from
//     the later of the node's last write and the moment this node's own
//     writes began to arrive without a gap (at start, or after a stall of
//     the bucket, which delays every node's heartbeats alike): so a node
//     named by a queue record or a delay subject but never seen is down
//     NodeTimeout after this node started.
//   - Each queue served by a down node is taken by one live node: the
//     winner of a rendezvous hash of the queue's id over the live nodes, so
//     the queues of a dead node spread over the survivors. The take is a
//     compare-and-set of the queue's record at the revision this node last
//     applied, so nodes with different views cannot both take a queue
//     (the loser's write fails; the record it sees next names the winner).
//     The taker rebuilds the index from the replicated log (becomeLeader)
//     and tells the faces (WatchServing).
//   - The delayed messages a down node held (delay subject per node) are
//     adopted the same way, one survivor per down node (delayer.adopt).
//   - A node acts only while it sees its own heartbeats (the last at most
//     two heartbeats ago), so a node whose watch has stalled, or that is
//     cut off from the others, takes nothing. A node whose heartbeats are
//     written but not seen starts its watch again (rewatch), rather than
//     wait the 10-20 s the client takes to notice the stall.
//
// Delivery stays at least once: a node that is only cut off (not dead)
// keeps serving what it holds in memory until it sees the new records, so
// messages may be delivered by both; nothing is lost, since messages stay
// in the replicated log until acknowledged.

const nodesBucket = "herald_nodes"

// takeParallel bounds the queue takes (one metadata write each) in flight.
const takeParallel = 8

// failoverRetry is the wait before trying again a take or an adoption that
// failed.
const failoverRetry = time.Second

// liveness tracks the other nodes' heartbeats.
type liveness struct {
	kv        *engine.KV
	stopWatch func()          // runLiveness's own once it runs (rewatch replaces it): read after done
	ctx       context.Context // cancelled by stopLiveness: ends a failover under way
	cancel    context.CancelFunc
	done      chan struct{}
	wake      chan struct{} // a node left: sweep now

	mu sync.Mutex
	// since is when this node's own heartbeats began to arrive without a
	// gap: at start, and again after its watch or its writes stalled (a
	// log between leaders stalls every node's heartbeats alike), so the
	// others are given NodeTimeout from then rather than judged on the
	// stall.
	since   time.Time
	seen    map[string]time.Time // node -> when its key was last written (this node's clock)
	rev     map[string]uint64    // node -> revision of its key last seen: a watch started again replays it, which is no new write
	watched time.Time            // when the current watch started
	left    map[string]bool      // node deleted its key (Stop) and was not seen since
	known   map[string]bool      // nodes named by delay subjects at start (made by newBroker: the delayer starts first)
	adopted map[string]bool      // down nodes whose delayed messages this node adopted
}

func (b *core) heartbeatEvery() time.Duration { return b.cfg.NodeTimeout / 5 }

// startLiveness opens the bucket, watches it and starts the heartbeat
// (cluster mode only).
func (b *core) startLiveness(ctx context.Context) error {
	l := &b.live
	kv, err := b.eng.KV(ctx, engine.KVConfig{Bucket: nodesBucket, Replicas: 3, Memory: true})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.kv, l.since, l.watched = kv, time.Now(), time.Now()
	l.seen, l.rev, l.left, l.adopted = map[string]time.Time{}, map[string]uint64{}, map[string]bool{}, map[string]bool{}
	l.mu.Unlock()
	l.done, l.wake = make(chan struct{}), make(chan struct{}, 1)
	stop, err := kv.Watch(ctx, ">", b.onHeartbeat, nil)
	if err != nil {
		return err
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.stopWatch = stop
	b.heartbeat(ctx)
	go b.runLiveness()
	return nil
}

// stopLiveness stops the heartbeat and deletes this node's key, so the
// others take its queues over at once (call after the queues are shut
// down and the delayer stopped). A no-op if startLiveness did not succeed.
func (b *core) stopLiveness(ctx context.Context) {
	l := &b.live
	if l.cancel == nil { // set before runLiveness starts; stopWatch is its own (rewatch) until done
		return
	}
	l.cancel()
	<-l.done
	l.stopWatch()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := l.kv.Delete(ctx, keyName(b.node)); err != nil {
		b.log.Warn("removing this node's heartbeat; the others take its queues after the node timeout", "err", err)
	}
}

// heartbeat writes this node's key; false if the write failed.
func (b *core) heartbeat(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.NodeTimeout)
	defer cancel()
	if _, err := b.live.kv.Put(ctx, keyName(b.node), []byte(b.node)); err != nil {
		b.log.Debug("writing this node's heartbeat", "err", err)
		return false
	}
	return true
}

// rewatch starts the watch of the bucket again when this node's heartbeats
// are written but have not come back for two heartbeats: the watch stalled
// (its consumer was on a node that went away; the client recreates it only
// after missing its idle heartbeats, 10-20 s), and until it runs again this
// node sees no one and takes nothing over.
func (b *core) rewatch(ctx context.Context) {
	l := &b.live
	l.mu.Lock()
	last := maxTime(l.seen[b.node], l.watched)
	l.mu.Unlock()
	if time.Since(last) <= 2*b.heartbeatEvery() {
		return
	}
	b.log.Info("this node's heartbeats are written but not seen: watching the nodes again")
	l.stopWatch()
	l.stopWatch = func() {}
	l.mu.Lock()
	l.watched = time.Now()
	l.mu.Unlock()
	stop, err := l.kv.Watch(ctx, ">", b.onHeartbeat, nil)
	if err != nil {
		b.log.Warn("watching the nodes again; trying at the next heartbeat", "err", err)
		return
	}
	l.stopWatch = stop
}

func (b *core) onHeartbeat(e engine.Entry) {
	raw, err := base64.RawURLEncoding.DecodeString(e.Key)
	if err != nil {
		return
	}
	node := string(raw)
	l := &b.live
	l.mu.Lock()
	if !e.Deleted && e.Revision != 0 && e.Revision <= l.rev[node] {
		l.mu.Unlock()
		return // replayed by a new watch: not a new write
	}
	if !e.Deleted {
		l.rev[node] = e.Revision
	}
	now := time.Now()
	last, seen := l.seen[node]
	if node == b.node && !e.Deleted && (!seen || now.Sub(last) > 2*b.heartbeatEvery()) {
		l.since = now
	}
	back := !e.Deleted && (l.left[node] || seen && now.Sub(last) > b.cfg.NodeTimeout)
	if e.Deleted {
		delete(l.seen, node)
		l.left[node] = true
	} else {
		delete(l.left, node)
		l.seen[node] = now
	}
	if back {
		delete(l.adopted, node) // adopted again if it goes down again
	}
	l.mu.Unlock()
	if back && node != b.node {
		b.delay.disown(node) // it fires its delayed messages again
	}
	if e.Deleted {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

func (b *core) runLiveness() {
	l := &b.live
	defer close(l.done)
	t := time.NewTicker(b.heartbeatEvery())
	defer t.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			if b.heartbeat(l.ctx) {
				b.rewatch(l.ctx)
			}
		case <-l.wake:
		case <-retry.C:
		}
		if !b.failover(l.ctx) {
			// A take or an adoption failed (a log between leaders after
			// a node went away): again soon, not a heartbeat later.
			retry.Reset(min(failoverRetry, b.heartbeatEvery()))
		}
	}
}

// view is one reading of the nodes' liveness.
type view struct {
	self    string
	live    []string // sorted, self included
	timeout time.Duration
	now     time.Time
	since   time.Time
	seen    map[string]time.Time
	left    map[string]bool
}

// view returns the current view, ok false when this node does not see its
// own heartbeats (its watch stalled or it is cut off): then it acts on
// nothing.
func (b *core) view() (view, bool) {
	l := &b.live
	v := view{self: b.node, timeout: b.cfg.NodeTimeout, now: time.Now(), seen: map[string]time.Time{}, left: map[string]bool{}}
	l.mu.Lock()
	v.since = l.since
	for n, t := range l.seen {
		v.seen[n] = t
	}
	for n := range l.left {
		v.left[n] = true
	}
	l.mu.Unlock()
	for n := range v.seen {
		if !v.down(n) {
			v.live = append(v.live, n)
		}
	}
	sort.Strings(v.live)
	return v, v.now.Sub(v.seen[b.node]) <= 2*b.heartbeatEvery()
}

// down reports whether node is down in this view.
func (v view) down(node string) bool {
	if node == v.self || node == "" {
		return false
	}
	if v.left[node] {
		return true
	}
	t := v.seen[node] // zero if never seen since this node started
	return v.now.Sub(maxTime(t, v.since)) > v.timeout
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// successor is the live node that takes over key: the highest rendezvous
// hash of (key, node), the same on every node with the same view.
func (v view) successor(key string) string {
	best, bestH := "", uint64(0)
	for _, n := range v.live {
		h := fnv.New64a()
		_, _ = h.Write([]byte(key))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(n))
		if s := h.Sum64(); best == "" || s > bestH {
			best, bestH = n, s
		}
	}
	return best
}

// failover takes the queues and adopts the delayed messages of down nodes
// that fall to this node; false if some of it failed (to be tried again).
func (b *core) failover(ctx context.Context) bool {
	if b.running() != nil {
		return true
	}
	v, ok := b.view()
	if !ok {
		return true
	}
	type take struct {
		q    *queue
		from string
	}
	var takes []take
	var failed atomic.Bool
	b.mu.RLock()
	for _, vh := range b.vhostsM {
		for _, q := range vh.queues {
			if v.down(q.node) && v.successor(q.id) == v.self {
				takes = append(takes, take{q, q.node})
			}
		}
	}
	b.mu.RUnlock()
	if len(takes) > 0 {
		start := time.Now()
		sem := make(chan struct{}, takeParallel)
		var wg sync.WaitGroup
		for _, tk := range takes {
			if ctx.Err() != nil {
				break // stopping
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if !b.takeQueue(ctx, tk.q, tk.from) {
					failed.Store(true)
				}
			})
		}
		wg.Wait()
		b.log.Info("took over queues of down nodes", "queues", len(takes), "took", time.Since(start))
	}
	return b.adoptDelayed(ctx, v) && !failed.Load()
}

// takeQueue makes this node the server of q, which from (down) served,
// unless the record changed since this node applied it; false if the write
// failed.
func (b *core) takeQueue(ctx context.Context, q *queue, from string) bool {
	key := "q." + q.vh.id + "." + keyName(q.name)
	b.mu.RLock()
	rev := b.applied[key]
	b.mu.RUnlock()
	rec := queueRec{Spec: q.spec, ID: q.id, Node: b.node}
	data, err := json.Marshal(rec)
	if err != nil {
		return true // cannot happen: nothing to retry
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nrev, err := b.kv.Update(wctx, key, data, rev)
	switch {
	case errors.Is(err, engine.ErrWrongRev):
		return true // changed meanwhile (taken by another node, deleted): the watch brings it
	case err != nil:
		b.log.Warn("taking over a queue of a down node", "queue", q.name, "from", from, "err", err)
		return false
	}
	b.log.Info("took over a queue of a down node", "vhost", q.vh.name, "queue", q.name, "from", from)
	b.applyEntry(engine.Entry{Key: key, Value: data, Revision: nrev})
	return true
}

// adoptDelayed adopts the delayed messages of each down node that falls to
// this node (once per death); false if an adoption failed.
func (b *core) adoptDelayed(ctx context.Context, v view) bool {
	l := &b.live
	l.mu.Lock()
	cands := map[string]bool{}
	for n := range l.known {
		cands[n] = true
	}
	for n := range v.seen {
		cands[n] = true
	}
	for n := range v.left {
		cands[n] = true
	}
	var adopt []string
	for n := range cands {
		if !l.adopted[n] && v.down(n) && v.successor("delay\x00"+n) == v.self {
			adopt = append(adopt, n)
		}
	}
	l.mu.Unlock()
	ok := true
	for _, n := range adopt {
		if err := b.delay.adopt(ctx, n); err != nil {
			b.log.Warn("adopting the delayed messages of a down node", "node", n, "err", err)
			ok = false
			continue
		}
		l.mu.Lock()
		l.adopted[n] = true
		l.mu.Unlock()
	}
	return ok
}

// noteNode records a node named by a delay subject, so its delayed
// messages are adopted if it never comes back.
func (b *core) noteNode(node string) {
	l := &b.live
	l.mu.Lock()
	l.known[node] = true
	l.mu.Unlock()
}

// WatchServing calls fn(vhost, queue) each time this node starts serving a
// queue it did not serve: in a cluster, when the queue's leadership moves
// here (failover of a down node, or a consumer attached through this
// node), once the queue's index is rebuilt. A face that keeps queues it does
// not serve on standby starts consuming them then. (Losing a queue cancels
// its consumers: ConsumeOptions.Cancelled.) fn runs with no broker lock
// held, possibly on several goroutines at once, and must not block; the
// returned stop removes the watcher.
func (b *Broker) WatchServing(fn func(vhost, queue string)) (stop func()) {
	return b.servw.add(fn)
}

func (b *core) notifyServing(vhost, queue string) {
	for _, fn := range b.servw.list() {
		fn(vhost, queue)
	}
}

// Nodes returns the nodes this node sees live (itself included), sorted;
// nil on a single node.
func (b *Broker) Nodes() []string {
	if !b.eng.Clustered() {
		return nil
	}
	v, _ := b.view()
	if len(v.live) == 0 {
		return []string{b.node}
	}
	return v.live
}
