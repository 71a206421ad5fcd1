package broker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

// entry is one message in a queue's index.
type entry struct {
	seq        uint64
	msg        *Message // nil when the body is paged out to the log
	exchange   string
	key        string
	size       int   // body bytes
	expiresAt  int64 // unix ms, 0 = never
	deliveries uint32
	prio       uint8
	recovered  bool // read back from the log at start or failover: it may have been delivered before
	dedup      string
}

// queue is the in-memory index of one queue on the node that leads it.
type queue struct {
	b       *core
	vh      *vhost
	name    string
	id      string
	spec    QueueSpec
	args    queueArgs
	logName string
	subject string
	node    string // serving node, as its record names it; written holding Broker.mu and mu, read holding either

	mu          sync.Mutex
	leader      bool
	deleted     bool
	ready       []deque // one per priority level
	nready      int
	readyBytes  int64
	unacked     int
	unackBytes  int64
	pending     int // admitted, not yet stored
	pendBytes   int64
	consumers   []*consumerState
	rr          int
	dispatching bool
	dedup       map[string]int
	ttlTimer    *time.Timer
	ttlAt       int64
	expTimer    *time.Timer
	lastUse     time.Time
	hadConsumer bool
	maxSeq      uint64
	scanning    bool         // cluster: rebuilding the index after taking leadership
	tailBuf     []engine.Msg // cluster: messages tailed while scanning
	outbox      []func()     // work to run after unlocking (dead-letters)
	deletes     []uint64     // log sequences to delete after unlocking
	held        held         // sequences out of the index still needed (held.go)
}

func newQueue(b *core, vh *vhost, rec queueRec, args queueArgs) *queue {
	q := &queue{
		b: b, vh: vh, name: rec.Spec.Name, id: rec.ID, spec: rec.Spec, args: args,
		logName: vh.log(rec.Spec.Durable), subject: vh.subject(rec.Spec.Durable, rec.ID),
		leader:  !b.eng.Clustered() || rec.Node == b.node || rec.Node == "",
		node:    cmp.Or(rec.Node, b.node),
		ready:   make([]deque, int(args.MaxPriority)+1),
		lastUse: b.cfg.Now(),
	}
	if args.Dedup {
		q.dedup = map[string]int{}
	}
	return q
}

func (q *queue) counts() QueueInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueInfo{
		Messages: q.nready + q.unacked, MessagesReady: q.nready, MessagesUnacked: q.unacked,
		MessageBytes: q.readyBytes + q.unackBytes, Consumers: len(q.consumers), IdleSince: q.lastUse,
	}
}

func (q *queue) info() QueueInfo {
	qi := q.counts()
	qi.VHost = q.vh.name
	qi.QueueSpec = q.spec
	qi.Owner = q.spec.Owner
	q.mu.Lock()
	qi.Node = q.node
	q.mu.Unlock()
	return qi
}

// flush runs the work queued under the lock. Call without q.mu held.
func (q *queue) flush() {
	for {
		q.mu.Lock()
		work, dels := q.outbox, q.deletes
		q.outbox, q.deletes = nil, nil
		floor := uint64(0)
		if len(dels) > 0 {
			floor = q.floorLocked(dels)
		}
		q.mu.Unlock()
		if len(work) == 0 && len(dels) == 0 {
			return
		}
		if len(dels) > 0 {
			q.b.eng.DeleteAsyncBelow(q.logName, q.subject, floor, dels)
			q.mu.Lock()
			if q.deletes == nil { // reuse the buffer: the engine copied dels
				q.deletes = dels[:0]
			}
			q.mu.Unlock()
		}
		for _, f := range work {
			f()
		}
	}
}

// flushPendingLocked reports whether flush has work.
func (q *queue) flushPendingLocked() bool { return len(q.outbox) > 0 || len(q.deletes) > 0 }

func (q *queue) level(prio uint8) int {
	if int(prio) >= len(q.ready) {
		return len(q.ready) - 1
	}
	return int(prio)
}

// frontLocked returns the next ready entry (highest priority first).
func (q *queue) frontLocked() (*entry, int) {
	for l := len(q.ready) - 1; l >= 0; l-- {
		if e := q.ready[l].front(); e != nil {
			return e, l
		}
	}
	return nil, -1
}

func (q *queue) pushLocked(e *entry) {
	q.ready[q.level(e.prio)].pushBack(e)
	q.nready++
	q.readyBytes += int64(e.size)
	if e.seq > q.maxSeq {
		q.maxSeq = e.seq
	}
}

func (q *queue) requeueLocked(e *entry) {
	q.ready[q.level(e.prio)].insert(e)
	q.nready++
	q.readyBytes += int64(e.size)
}

func (q *queue) popLocked(level int) *entry {
	e := q.ready[level].popFront()
	q.nready--
	q.readyBytes -= int64(e.size)
	return e
}

// admit reserves room for a message about to be stored: de-duplication and
// overflow are decided here, before the log write. It returns false (and
// the reason) when the message must not be stored.
func (q *queue) admit(size int, dedupKey string) (ok bool, rejected bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return false, false
	}
	if q.dedup != nil && dedupKey != "" {
		if q.dedup[dedupKey] > 0 {
			return false, false // duplicate: dropped, confirmed to the publisher
		}
	}
	if q.args.Overflow != overflowDropHead && q.leader {
		full := (q.args.MaxLength >= 0 && int64(q.nready+q.pending) >= q.args.MaxLength) ||
			(q.args.MaxLengthBytes >= 0 && q.readyBytes+q.pendBytes+int64(size) > q.args.MaxLengthBytes)
		if full {
			return false, true
		}
	}
	if q.dedup != nil && dedupKey != "" {
		q.dedup[dedupKey]++
	}
	q.pending++
	q.pendBytes += int64(size)
	return true, false
}

// unadmit releases a reservation whose store failed.
func (q *queue) unadmit(size int, dedupKey string) {
	q.mu.Lock()
	q.pending--
	q.pendBytes -= int64(size)
	q.dropDedupLocked(dedupKey)
	q.mu.Unlock()
}

func (q *queue) dropDedupLocked(key string) {
	if q.dedup == nil || key == "" {
		return
	}
	if q.dedup[key] <= 1 {
		delete(q.dedup, key)
	} else {
		q.dedup[key]--
	}
}

// stored adds an entry whose message is now durable in the log.
func (q *queue) stored(e *entry, admitted bool) {
	q.mu.Lock()
	if admitted {
		q.pending--
		q.pendBytes -= int64(e.size)
	}
	if q.deleted || !q.leader {
		q.releaseLocked(e, false)
		q.mu.Unlock()
		return
	}
	q.pushLocked(e)
	q.enforceLengthLocked()
	q.armTTLLocked()
	q.kickLocked()
	pending := q.flushPendingLocked()
	q.mu.Unlock()
	if pending {
		q.b.later(q.flush) // never block the engine's acknowledgement goroutine
	}
}

// enforceLengthLocked drops (dead-letters) from the head while the queue is
// over x-max-length / x-max-length-bytes with the drop-head policy.
func (q *queue) enforceLengthLocked() {
	if q.args.Overflow != overflowDropHead {
		return
	}
	for q.nready > 0 && ((q.args.MaxLength >= 0 && int64(q.nready) > q.args.MaxLength) ||
		(q.args.MaxLengthBytes >= 0 && q.readyBytes > q.args.MaxLengthBytes)) {
		_, l := q.frontLocked()
		e := q.popLocked(l)
		q.deadLetterLocked(e, "maxlen")
	}
}

// releaseLocked forgets an entry for good: memory, dedup, and (when
// deleteFromLog) its message in the log.
func (q *queue) releaseLocked(e *entry, deleteFromLog bool) {
	if e.msg != nil {
		q.b.memBytes.Add(-int64(e.size))
		e.msg = nil
	}
	q.dropDedupLocked(e.dedup)
	if deleteFromLog {
		q.deletes = append(q.deletes, e.seq)
	}
}

// ---- TTL

func (q *queue) nowMs() int64 { return q.b.cfg.Now().UnixMilli() }

// expireLocked dead-letters expired entries at the head of each level.
func (q *queue) expireLocked(now int64) {
	for l := range q.ready {
		for {
			e := q.ready[l].front()
			if e == nil || e.expiresAt == 0 || e.expiresAt > now {
				break
			}
			q.popLocked(l)
			q.deadLetterLocked(e, "expired")
		}
	}
}

// armTTLLocked schedules the next expiry check for the earliest head.
func (q *queue) armTTLLocked() {
	var next int64
	for l := range q.ready {
		if e := q.ready[l].front(); e != nil && e.expiresAt != 0 && (next == 0 || e.expiresAt < next) {
			next = e.expiresAt
		}
	}
	if next == 0 || (q.ttlTimer != nil && q.ttlAt != 0 && q.ttlAt <= next) {
		return
	}
	if q.ttlTimer != nil {
		q.ttlTimer.Stop()
	}
	q.ttlAt = next
	d := time.Duration(next-q.nowMs()) * time.Millisecond
	q.ttlTimer = time.AfterFunc(max(d, 0), q.onTTL)
}

func (q *queue) onTTL() {
	q.mu.Lock()
	q.ttlAt = 0
	if !q.deleted && q.leader {
		q.expireLocked(q.nowMs())
		q.armTTLLocked()
	}
	q.mu.Unlock()
	q.flush()
}

// ---- x-expires

func (q *queue) touchLocked() {
	q.lastUse = q.b.cfg.Now()
	if q.args.Expires <= 0 || q.deleted {
		return
	}
	if q.expTimer != nil {
		q.expTimer.Stop()
	}
	if len(q.consumers) > 0 {
		return
	}
	q.expTimer = time.AfterFunc(time.Duration(q.args.Expires)*time.Millisecond, q.onExpires)
}

func (q *queue) onExpires() {
	q.mu.Lock()
	idle := !q.deleted && len(q.consumers) == 0 &&
		q.b.cfg.Now().Sub(q.lastUse) >= time.Duration(q.args.Expires)*time.Millisecond
	q.mu.Unlock()
	if idle && q.b.running() == nil {
		q.b.bgDelete(q.vh.name, q.name, q.spec.Owner)
	}
}

// bgDelete deletes a queue from a timer or callback, owned by the broker;
// owner is the queue's own (an exclusive queue refuses anyone else).
func (b *core) bgDelete(vhost, name, owner string) {
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		ctx, cancel := context.WithTimeout(b.bgCtx, 10*time.Second)
		defer cancel()
		if _, err := b.deleteQueue(ctx, vhost, name, false, false, owner); err != nil && !errs.Is(err, errs.NotFound) {
			b.log.Warn("auto-deleting queue", "vhost", vhost, "queue", name, "err", err)
		}
	}()
}

// shutdown stops timers and cancels consumers (broker stop).
func (q *queue) shutdown() {
	q.mu.Lock()
	if q.ttlTimer != nil {
		q.ttlTimer.Stop()
	}
	if q.expTimer != nil {
		q.expTimer.Stop()
	}
	cs := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	for _, c := range cs {
		c.notifyCancelled("broker shutting down")
	}
}

// ---- declare, delete, purge

func genQueueName() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "amq.gen-" + base64.RawURLEncoding.EncodeToString(b[:])
}

func (b *core) declareQueue(ctx context.Context, vhostName string, spec QueueSpec, passive bool) (QueueInfo, error) {
	if err := b.running(); err != nil {
		return QueueInfo{}, err
	}
	if spec.Name == "" && !passive {
		spec.Name = genQueueName()
	}
	b.mu.RLock()
	vh, err := b.lookupVHost(vhostName)
	var existing *queue
	nq := 0
	if err == nil {
		existing = vh.queues[spec.Name]
		for _, v := range b.vhostsM {
			nq += len(v.queues)
		}
	}
	b.mu.RUnlock()
	if err != nil {
		return QueueInfo{}, err
	}
	if existing != nil {
		if err := existing.checkOwner(spec.Owner); err != nil {
			return QueueInfo{}, err
		}
		existing.mu.Lock()
		existing.touchLocked()
		existing.mu.Unlock()
		if !passive {
			if err := equivalentQueue(vhostName, existing, spec); err != nil {
				return QueueInfo{}, err
			}
		}
		return existing.info(), nil
	}
	if passive {
		return QueueInfo{}, errs.New(errs.NotFound, "no queue '%s' in vhost '%s'", spec.Name, vhostName)
	}
	if err := validName("queue", spec.Name); err != nil {
		return QueueInfo{}, err
	}
	if strings.HasPrefix(spec.Name, "amq.") && !strings.HasPrefix(spec.Name, "amq.gen-") {
		return QueueInfo{}, errs.New(errs.AccessRefused, "queue name '%s' contains reserved prefix 'amq.*'", spec.Name)
	}
	if _, err := parseQueueArgs(spec.Name, spec.Arguments); err != nil {
		return QueueInfo{}, err
	}
	if nq >= b.cfg.MaxQueues {
		return QueueInfo{}, errs.New(errs.ResourceError, "queue limit of %d reached", b.cfg.MaxQueues)
	}
	if !spec.Exclusive {
		spec.Owner = ""
	}
	rec := queueRec{Spec: spec, ID: newID(), Node: b.node}
	if err := b.putMeta(ctx, "q."+vh.id+"."+keyName(spec.Name), rec); err != nil {
		return QueueInfo{}, err
	}
	return b.queueInfo(vhostName, spec.Name)
}

func equivalentQueue(vhost string, q *queue, req QueueSpec) error {
	diff := func(arg string, got, have any) error {
		return errs.New(errs.PreconditionFailed, "inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'", arg, req.Name, vhost, got, have)
	}
	switch {
	case q.spec.Durable != req.Durable:
		return diff("durable", req.Durable, q.spec.Durable)
	case q.spec.Exclusive != req.Exclusive:
		return diff("exclusive", req.Exclusive, q.spec.Exclusive)
	case q.spec.AutoDelete != req.AutoDelete:
		return diff("auto_delete", req.AutoDelete, q.spec.AutoDelete)
	}
	args, err := parseQueueArgs(req.Name, req.Arguments)
	if err != nil {
		return err
	}
	if !equalQueueArgs(args, q.args) {
		return errs.New(errs.PreconditionFailed, "inequivalent arguments for queue '%s' in vhost '%s'", req.Name, vhost)
	}
	return nil
}

func (q *queue) checkOwner(owner string) error {
	if q.spec.Exclusive && q.spec.Owner != "" && q.spec.Owner != owner {
		return errs.New(errs.ResourceLocked, "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", q.name, q.vh.name)
	}
	return nil
}

func (b *core) applyQueueLocked(e engine.Entry) []func() {
	_, vid, kn, _ := splitKey(e.Key)
	vh := b.vhostByID(vid)
	if vh == nil {
		return nil
	}
	raw, _ := base64.RawURLEncoding.DecodeString(kn)
	name := string(raw)
	if e.Deleted {
		q := vh.queues[name]
		if q == nil {
			return nil
		}
		delete(vh.queues, name)
		for k, br := range vh.bindings {
			if !br.B.DestinationIsExchange && br.B.Destination == name {
				delete(vh.bindings, k)
				if x := vh.exchanges[br.B.Source]; x != nil {
					x.removeBinding(k, br.B)
				}
			}
		}
		return []func(){q.destroy}
	}
	var rec queueRec
	if json.Unmarshal(e.Value, &rec) != nil {
		return nil
	}
	if q := vh.queues[name]; q != nil {
		return b.moveLeaderLocked(q, rec)
	}
	args, err := parseQueueArgs(rec.Spec.Name, rec.Spec.Arguments)
	if err != nil {
		b.log.Warn("ignoring invalid queue record", "queue", name, "err", err)
		return nil
	}
	q := newQueue(b, vh, rec, args)
	vh.queues[name] = q
	q.mu.Lock()
	q.touchLocked()
	q.mu.Unlock()
	return nil
}

// destroy runs after a queue's record is deleted: consumers are cancelled and
// (on the leader) its messages are purged from the log.
func (q *queue) destroy() {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	q.deleted = true
	cs := q.consumers
	q.consumers = nil
	for l := range q.ready {
		for _, e := range q.ready[l].drain() {
			q.releaseLocked(e, false)
		}
	}
	q.nready, q.readyBytes = 0, 0
	if q.ttlTimer != nil {
		q.ttlTimer.Stop()
	}
	if q.expTimer != nil {
		q.expTimer.Stop()
	}
	leader := q.leader
	q.mu.Unlock()
	for _, c := range cs {
		c.notifyCancelled("queue deleted")
	}
	if leader {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := q.b.eng.Purge(ctx, q.logName, q.subject, 0); err != nil {
			q.b.log.Warn("purging deleted queue", "queue", q.name, "err", err)
		}
	}
}

func (b *core) findQueue(vhostName, name, owner string) (*queue, error) {
	q, err := b.lookupQueue(vhostName, name)
	if err != nil {
		return nil, err
	}
	if err := q.checkOwner(owner); err != nil {
		return nil, err
	}
	return q, nil
}

// lookupQueue returns the queue whoever owns it.
func (b *core) lookupQueue(vhostName, name string) (*queue, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	vh, err := b.lookupVHost(vhostName)
	if err != nil {
		return nil, err
	}
	q := vh.queues[name]
	if q == nil {
		return nil, errs.New(errs.NotFound, "no queue '%s' in vhost '%s'", name, vhostName)
	}
	return q, nil
}

func (b *core) deleteQueue(ctx context.Context, vhostName, name string, ifUnused, ifEmpty bool, owner string) (int, error) {
	if err := b.running(); err != nil {
		return 0, err
	}
	q, err := b.findQueue(vhostName, name, owner)
	if err != nil {
		return 0, err
	}
	c := q.counts()
	if ifUnused && c.Consumers > 0 {
		return 0, errs.New(errs.PreconditionFailed, "queue '%s' in vhost '%s' in use", name, vhostName)
	}
	if ifEmpty && c.Messages > 0 {
		return 0, errs.New(errs.PreconditionFailed, "queue '%s' in vhost '%s' is not empty", name, vhostName)
	}
	b.mu.RLock()
	var keys []string
	for k, br := range q.vh.bindings {
		if !br.B.DestinationIsExchange && br.B.Destination == name {
			keys = append(keys, k)
		}
	}
	b.mu.RUnlock()
	for _, k := range keys {
		if err := b.deleteMeta(ctx, k); err != nil {
			return 0, err
		}
	}
	if err := b.deleteMeta(ctx, "q."+q.vh.id+"."+keyName(name)); err != nil {
		return 0, err
	}
	return c.Messages, nil
}

func (b *core) purgeQueue(ctx context.Context, vhostName, name, owner string) (int, error) {
	if err := b.running(); err != nil {
		return 0, err
	}
	q, err := b.findQueue(vhostName, name, owner)
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	var seqs []*entry
	for l := range q.ready {
		seqs = append(seqs, q.ready[l].drain()...)
	}
	n := len(seqs)
	q.nready, q.readyBytes = 0, 0
	for _, e := range seqs {
		q.releaseLocked(e, true)
	}
	q.mu.Unlock()
	q.flush()
	return n, nil
}

func (b *core) queueInfo(vhostName, name string) (QueueInfo, error) {
	// Anyone may read an exclusive queue's counts: no owner check.
	q, err := b.lookupQueue(vhostName, name)
	if err != nil {
		return QueueInfo{}, err
	}
	return q.info(), nil
}

// queuesIn returns the queues of vhostName ("" = every vhost), unordered.
func (b *core) queuesIn(vhostName string) []*queue {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var qs []*queue
	for _, vh := range b.vhostsM {
		if vhostName == "" || vh.name == vhostName {
			for _, q := range vh.queues {
				qs = append(qs, q)
			}
		}
	}
	return qs
}

func (b *core) queues(vhostName string) []QueueInfo {
	qs := b.queuesIn(vhostName)
	out := make([]QueueInfo, 0, len(qs))
	for _, q := range qs {
		out = append(out, q.info())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].VHost != out[j].VHost {
			return out[i].VHost < out[j].VHost
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func (b *core) consumers(vhostName string) []ConsumerInfo {
	var out []ConsumerInfo
	for _, q := range b.queuesIn(vhostName) {
		q.mu.Lock()
		for i, c := range q.consumers {
			out = append(out, ConsumerInfo{
				VHost: q.vh.name, Queue: q.name, Tag: c.tag, Owner: c.opts.Owner,
				AckRequired: !c.opts.NoAck, Exclusive: c.opts.Exclusive, Prefetch: c.opts.Prefetch,
				Unacked: c.unacked, Active: !q.args.SingleActive || i == 0, Priority: c.prio, Args: c.opts.Args,
			})
		}
		q.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b ConsumerInfo) int {
		return cmp.Or(strings.Compare(a.VHost, b.VHost), strings.Compare(a.Queue, b.Queue), strings.Compare(a.Tag, b.Tag))
	})
	return out
}

func (b *core) releaseOwner(ctx context.Context, owner string) {
	if owner == "" {
		return
	}
	b.mu.RLock()
	type vq struct{ vh, q string }
	var del []vq
	for _, vh := range b.vhostsM {
		for _, q := range vh.queues {
			if q.spec.Exclusive && q.spec.Owner == owner {
				del = append(del, vq{vh.name, q.name})
			}
		}
	}
	b.mu.RUnlock()
	for _, d := range del {
		if _, err := b.deleteQueue(ctx, d.vh, d.q, false, false, owner); err != nil && !errs.Is(err, errs.NotFound) {
			b.log.Warn("deleting exclusive queue", "queue", d.q, "err", err)
		}
	}
}

// dropTransient removes non-durable exchanges and queues left in the
// metadata by a previous run (RabbitMQ forgets them on restart).
func (b *core) dropTransient(ctx context.Context) {
	b.mu.RLock()
	var keys []string
	for _, vh := range b.vhostsM {
		for _, q := range vh.queues {
			if !q.spec.Durable || q.spec.Exclusive {
				for k, br := range vh.bindings {
					if !br.B.DestinationIsExchange && br.B.Destination == q.name {
						keys = append(keys, k)
					}
				}
				keys = append(keys, "q."+vh.id+"."+keyName(q.name))
			}
		}
		for _, x := range vh.exchanges {
			if !x.spec.Durable && x.spec.Name != "" {
				for k, br := range vh.bindings {
					if br.B.Source == x.spec.Name || (br.B.DestinationIsExchange && br.B.Destination == x.spec.Name) {
						keys = append(keys, k)
					}
				}
				keys = append(keys, "x."+vh.id+"."+keyName(x.spec.Name))
			}
		}
	}
	b.mu.RUnlock()
	for _, k := range keys {
		if err := b.deleteMeta(ctx, k); err != nil {
			b.log.Warn("dropping transient object", "key", k, "err", err)
		}
	}
}
