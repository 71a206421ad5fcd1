package broker

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/engine"
)

// entryFrom builds an index entry for a message read back from a log.
func (q *queue) entryFrom(m engine.Msg) (*entry, bool) {
	st, err := decodeStored(m.Data)
	if err != nil {
		q.b.log.Warn("skipping corrupt stored message", "queue", q.name, "seq", m.Seq, "err", err)
		return nil, false
	}
	e := &entry{seq: m.Seq, exchange: st.Exchange, key: st.RoutingKey, size: len(st.Msg.Body), prio: st.Msg.Properties.Priority}
	if q.dedup != nil {
		e.dedup = dedupKeyOf(st.Msg)
	}
	ttl := q.args.MessageTTL
	if s := st.Msg.Properties.Expiration; s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && (ttl < 0 || n < ttl) {
			ttl = n
		}
	}
	if ttl >= 0 {
		e.expiresAt = m.Time.UnixMilli() + max(ttl, 1)
	}
	q.b.keepInMemory(e, st.Msg)
	return e, true
}

// addRecoveredLocked indexes a recovered entry unless it is already there.
func (q *queue) addRecoveredLocked(e *entry) {
	if e.seq <= q.maxSeq {
		if e.msg != nil {
			q.b.memBytes.Add(-int64(e.size))
		}
		return
	}
	q.pushLocked(e)
	if q.dedup != nil && e.dedup != "" {
		q.dedup[e.dedup]++
	}
}

// recoverVHost rebuilds the indexes of the queues this node leads from the
// vhost's durable log, purges messages of queues that no longer exist, and
// in a cluster starts tailing the logs for messages published elsewhere.
func (b *core) recoverVHost(ctx context.Context, vh *vhost) error {
	b.mu.RLock()
	byID := make(map[string]*queue, len(vh.queues))
	for _, q := range vh.queues {
		byID[q.id] = q
	}
	b.mu.RUnlock()
	prefix := "hq." + vh.id + "."
	orphans := map[string]bool{}
	start := time.Now()
	n := 0
	_, err := b.eng.Scan(ctx, vh.log(true), "", 1, func(m engine.Msg) error {
		qid := strings.TrimPrefix(m.Subject, prefix)
		q := byID[qid]
		if q == nil {
			orphans[m.Subject] = true
			return nil
		}
		if !q.leader {
			return nil
		}
		if e, ok := q.entryFrom(m); ok {
			e.recovered = true
			q.mu.Lock()
			q.addRecoveredLocked(e)
			q.mu.Unlock()
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, q := range byID {
		q.mu.Lock()
		q.enforceLengthLocked()
		q.armTTLLocked()
		q.mu.Unlock()
		q.flush()
	}
	for subj := range orphans {
		if _, err := b.eng.Purge(ctx, vh.log(true), subj, 0); err != nil {
			b.log.Warn("purging messages of a deleted queue", "subject", subj, "err", err)
		}
	}
	if n > 0 {
		b.log.Info("recovered messages", "vhost", vh.name, "messages", n, "queues", len(byID), "took", time.Since(start))
	}
	if b.eng.Clustered() {
		return b.startTails(ctx, vh)
	}
	return nil
}

// ---- cluster: queue leadership and tailing

// Scans after a node went away (index rebuilds, adopted delayed messages):
// the probe's bound, the scan's, and the pause between attempts.
const (
	settleProbe = 5 * time.Second
	settleScan  = 2 * time.Minute
	settlePause = 500 * time.Millisecond
)

// scanSettled scans log (filter as in engine.Scan) once the log answers.
// Right after a node went away the log may be between leaders, and a
// request the old leader took is never answered: a short probe comes first,
// so such a request costs settleProbe, not the 10 s the engine gives each
// request of a scan (the probe repeats the scan's first request, a state
// read: a small price on a queue move for failing over 5 s sooner).
func (b *core) scanSettled(ctx context.Context, log, filter string, fn func(engine.Msg) error) error {
	pctx, cancel := context.WithTimeout(ctx, settleProbe)
	_, err := b.eng.LastSeq(pctx, log)
	cancel()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, settleScan)
	defer cancel()
	_, err = b.eng.Scan(sctx, log, filter, 1, fn)
	return err
}

func (b *core) startTails(ctx context.Context, vh *vhost) error {
	for _, durable := range []bool{true, false} {
		log := vh.log(durable)
		last, err := b.eng.LastSeq(ctx, log)
		if err != nil {
			return err
		}
		prefix := vh.subject(durable, "")
		t, err := b.eng.Tail(ctx, log, "", last+1, func(m engine.Msg) { b.onTail(vh, prefix, m) })
		if err != nil {
			return err
		}
		b.mu.Lock()
		vh.tails = append(vh.tails, t)
		b.mu.Unlock()
	}
	return nil
}

func (b *core) onTail(vh *vhost, prefix string, m engine.Msg) {
	qid := strings.TrimPrefix(m.Subject, prefix)
	b.mu.RLock()
	var q *queue
	for _, c := range vh.queues {
		if c.id == qid {
			q = c
			break
		}
	}
	b.mu.RUnlock()
	if q == nil {
		return
	}
	q.mu.Lock()
	if !q.leader || q.deleted {
		q.mu.Unlock()
		return
	}
	if q.scanning {
		q.tailBuf = append(q.tailBuf, m)
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	e, ok := q.entryFrom(m)
	if !ok {
		return
	}
	q.mu.Lock()
	q.addRecoveredLocked(e)
	q.enforceLengthLocked()
	q.armTTLLocked()
	q.kickLocked()
	pending := q.flushPendingLocked()
	q.mu.Unlock()
	if pending {
		b.later(q.flush)
	}
}

// ensureLeader makes this node the queue's leader (cluster mode) before it
// serves consumers: the queue's record is updated in the metadata bucket, the
// previous leader cancels its consumers, and this node rebuilds the index
// from the replicated log.
func (b *core) ensureLeader(ctx context.Context, q *queue) error {
	q.mu.Lock()
	leader := q.leader
	q.mu.Unlock()
	if leader {
		return nil
	}
	return b.putMeta(ctx, "q."+q.vh.id+"."+keyName(q.name), queueRec{Spec: q.spec, ID: q.id, Node: b.node})
}

func (b *core) moveLeaderLocked(q *queue, rec queueRec) []func() {
	if rec.ID != q.id {
		return nil
	}
	lead := !b.eng.Clustered() || rec.Node == b.node
	q.mu.Lock()
	if rec.Node != "" {
		q.node = rec.Node
	}
	was := q.leader
	q.mu.Unlock()
	switch {
	case lead == was:
		return nil
	case lead:
		// Lead at once, under the metadata lock: a message tailed from now
		// on is buffered for the rebuild rather than dropped, even if the
		// caller that wrote this record returns before the rebuild starts.
		q.mu.Lock()
		q.leader, q.scanning = true, true
		q.mu.Unlock()
		return []func(){func() { b.becomeLeader(q) }}
	default:
		return []func(){func() { q.loseLeadership(rec.Node) }}
	}
}

// becomeLeader rebuilds the index of a queue this node now leads
// (moveLeaderLocked set leader and scanning).
func (b *core) becomeLeader(q *queue) {
	entries := b.scanQueue(q)
	q.mu.Lock()
	for _, e := range entries {
		q.addRecoveredLocked(e)
	}
	buf := q.tailBuf
	q.tailBuf, q.scanning = nil, false
	q.mu.Unlock()
	for _, m := range buf {
		if e, ok := q.entryFrom(m); ok {
			q.mu.Lock()
			q.addRecoveredLocked(e)
			q.mu.Unlock()
		}
	}
	q.mu.Lock()
	q.enforceLengthLocked()
	q.armTTLLocked()
	q.kickLocked()
	lead := q.leader && !q.deleted
	q.mu.Unlock()
	q.flush()
	if lead {
		b.notifyServing(q.vh.name, q.name)
	}
}

// scanQueue reads the entries of q from its log for becomeLeader, trying
// again until it succeeds, the broker stops, q is no longer led here (then
// the entries do not matter), or settleScan has passed: becomeLeader runs
// on the goroutine that moved the queue (a consume or get through this node
// waits for it), so it gives up then, as it did before (with what it read;
// the rest waits in the log for the next move or restart).
func (b *core) scanQueue(q *queue) []*entry {
	giveUp := time.Now().Add(settleScan)
	for attempt := 1; ; attempt++ {
		var entries []*entry
		err := b.scanSettled(b.bgCtx, q.logName, q.subject, func(m engine.Msg) error {
			if e, ok := q.entryFrom(m); ok {
				e.recovered = true // the previous leader may have delivered it
				entries = append(entries, e)
			}
			return nil
		})
		if err == nil {
			return entries
		}
		q.mu.Lock()
		led := q.leader && !q.deleted
		q.mu.Unlock()
		if !led || b.bgCtx.Err() != nil {
			return nil
		}
		if time.Now().After(giveUp) {
			b.log.Error("rebuilding queue index: giving up; messages not read stay in the log until the queue moves or the node restarts",
				"queue", q.name, "attempts", attempt, "read", len(entries), "err", err)
			return entries
		}
		b.log.Warn("rebuilding queue index; trying again", "queue", q.name, "attempt", attempt, "err", err)
		select {
		case <-time.After(settlePause):
		case <-b.bgCtx.Done():
			return nil
		}
	}
}

func (q *queue) loseLeadership(node string) {
	q.mu.Lock()
	q.leader = false
	for l := range q.ready {
		for _, e := range q.ready[l].drain() {
			q.releaseLocked(e, false)
		}
	}
	q.nready, q.readyBytes, q.maxSeq = 0, 0, 0
	cs := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	for _, c := range cs {
		c.notifyCancelled("queue is now served by node " + node)
	}
}
