package engine

import (
	"bytes"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Group commit. With Fsync "always" JetStream fsyncs after every message
// (one fsync per confirm: ~5k appends/s on this machine) and has no group
// commit of its own, except one: an atomic batch published to a file log of
// a standalone server is written with its fsyncs deferred and then synced
// once, through the file store's own sync path (blocks, directory, state),
// before the batch's single acknowledgement. The batcher turns concurrent
// AppendAsync calls into such batches, per log:
//
//   - an append to an idle log (nothing in flight for it) is a plain
//     publish, synced on its own: a lone message pays one fsync, no more;
//   - appends that arrive while the log has anything in flight join the
//     log's open batch: each is published at once with the batch headers
//     (the server stages it) and waits;
//   - when the log's last plain append or batch commit is acknowledged, the
//     open batch is committed (an end-of-batch marker carrying the reply
//     subject), so appends that arrive during a sync share the next one —
//     the classic group commit: latency of about one sync, throughput of a
//     batch. A batch is also committed when it reaches maxBatch messages.
//
// Every message of a log is either plain on an idle log or in its log's
// batch, and batches commit in order, so a log stores messages in publish
// order. The log of a subject is learned from the acknowledgement of its
// first (plain) append; appends to a subject not learned yet are plain.
//
// A failed batch (the commit refused, or its acknowledgement overdue) fails
// every append in it with that error: the callers are told, nothing is
// silently dropped. Batching is on only with Fsync "always", the embedded
// server standalone, for file logs; memory logs, clusters (replication is
// their durability: JetStream syncs the Raft log on flush) and ExternalURL
// publish every append plainly.
//
// All batcher state is guarded by publisher.mu.
type batcher struct {
	logs   map[string]*logBatch // by log name; file reports a batchable log
	routes map[string]*logBatch // subject → its log, learned from acks
	next   uint64               // batch id counter
	prefix string               // unique per publisher: batch ids are "<prefix><n>"

	msg    nats.Msg // reused for batch publishes under publisher.mu
	hdrID  []string
	hdrSeq []string
	hdrEnd []string

	commits  uint64 // batches committed so far
	batched  uint64 // appends that went in a batch
	plainLog uint64 // appends published plainly to a batchable log
}

// logBatch is one log's batching state.
type logBatch struct {
	name       string
	subjects   []string // the log's subject filters
	file       bool     // a file log: appends may be batched
	plain      int      // plain appends in flight
	committing int      // batches committed and not acknowledged yet
	open       *openBatch
}

// openBatch is a batch being filled, then committed.
type openBatch struct {
	lb        *logBatch
	id        string
	subject   string   // the last message's subject; the commit marker goes there
	ids       []uint64 // the appends in batch order
	committed bool     // the end marker was sent
	finished  bool     // acknowledged or failed
}

const (
	// maxBatch bounds a batch (JetStream's own limit is 1,000 messages);
	// a full batch is committed even while another one is in flight.
	maxBatch = 512
	// maxRoutes bounds the subject → log map; subjects beyond it are
	// published plainly (correct, unbatched).
	maxRoutes = 1 << 20

	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

func newBatcher(prefix string) *batcher {
	b := &batcher{
		logs:   make(map[string]*logBatch),
		routes: make(map[string]*logBatch),
		prefix: prefix,
		hdrID:  []string{""},
		hdrSeq: []string{""},
		hdrEnd: []string{"eob"},
	}
	b.msg.Header = nats.Header{}
	return b
}

// setLog records whether log may be batched (a file log) and the subjects
// it captures. Caller holds mu.
func (b *batcher) setLog(name string, subjects []string, file bool) {
	lb := b.logs[name]
	if lb == nil {
		lb = &logBatch{name: name}
		b.logs[name] = lb
	}
	lb.file, lb.subjects = file, subjects
}

// maxRouteScan bounds the logs whose filters are matched against a subject
// not learned yet; with more logs, a subject's log is learned only from its
// first acknowledgement.
const maxRouteScan = 64

// route returns the batchable log of subject, or nil. Caller holds mu.
func (b *batcher) route(subject string) *logBatch {
	if lb, ok := b.routes[subject]; ok {
		return lb
	}
	if len(b.logs) > maxRouteScan || len(b.routes) >= maxRoutes {
		return nil
	}
	for _, lb := range b.logs {
		if !lb.file {
			continue
		}
		for _, f := range lb.subjects {
			if subjectMatch(f, subject) {
				b.routes[subject] = lb
				return lb
			}
		}
	}
	return nil
}

// subjectMatch reports whether subject matches filter (NATS rules: "*"
// one token, ">" one or more trailing tokens).
func subjectMatch(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">":
			return st != ""
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

// learn maps subject to the log an acknowledgement named. Caller holds mu.
func (b *batcher) learn(subject string, ack []byte) {
	if _, ok := b.routes[subject]; ok || len(b.routes) >= maxRoutes {
		return
	}
	if lb := b.logs[ackStream(ack)]; lb != nil && lb.file {
		b.routes[subject] = lb
	}
}

// ackStream returns the stream named in a PubAck ({"stream":"L",...}).
func ackStream(ack []byte) string {
	const key = `"stream":"`
	i := bytes.Index(ack, []byte(key))
	if i < 0 {
		return ""
	}
	rest := ack[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// msgLocked fills the reused message for ob's next batch sequence. Caller
// holds mu; the message is valid until the next call.
func (b *batcher) msgLocked(ob *openBatch, subject, reply string, data []byte) *nats.Msg {
	b.hdrID[0] = ob.id
	b.hdrSeq[0] = strconv.Itoa(len(ob.ids) + 1)
	m := &b.msg
	clear(m.Header)
	m.Header[hdrBatchID] = b.hdrID
	m.Header[hdrBatchSeq] = b.hdrSeq
	m.Subject, m.Reply, m.Data = subject, reply, data
	return m
}

// reset forgets everything in flight (the connection was lost: no
// acknowledgement will come). Caller holds mu.
func (b *batcher) reset() {
	for _, lb := range b.logs {
		lb.plain, lb.committing, lb.open = 0, 0, nil
	}
}

// batchedLocked publishes entry id as part of its log's open batch, if the
// subject's log is busy; it reports false when the append must be plain
// (and then counts it as in flight for its log). Caller holds mu.
func (p *publisher) batchedLocked(e *pendingAppend, data []byte) (bool, error) {
	b := p.batch
	lb := b.route(e.subject)
	if lb == nil || !lb.file {
		return false, nil
	}
	if lb.plain == 0 && lb.committing == 0 && lb.open == nil {
		lb.plain++
		e.plainLog = lb
		b.plainLog++
		return false, nil
	}
	ob := lb.open
	if ob == nil {
		b.next++
		ob = &openBatch{lb: lb, id: b.prefix + strconv.FormatUint(b.next, 36), ids: make([]uint64, 0, 64)}
		lb.open = ob
	}
	m := b.msgLocked(ob, e.subject, "", data)
	err := p.r.nc.PublishMsg(m)
	m.Data = nil
	if err != nil {
		// The sequence was not used: the batch stays whole without it.
		if len(ob.ids) == 0 {
			lb.open = nil
		}
		return true, err
	}
	ob.ids = append(ob.ids, e.id)
	ob.subject = e.subject
	e.batch = ob
	b.batched++
	if len(ob.ids) >= maxBatch {
		p.commitLocked(lb)
	}
	return true, nil
}

// settledLocked is called when something in flight for lb ended: an idle
// log commits its open batch. Caller holds mu.
func (p *publisher) settledLocked(lb *logBatch) {
	if lb.open != nil && lb.plain == 0 && lb.committing == 0 {
		p.commitLocked(lb)
	}
}

// commitLocked sends lb's open batch's end marker, whose reply is the
// batch's last append id. Caller holds mu.
func (p *publisher) commitLocked(lb *logBatch) {
	ob := lb.open
	lb.open = nil
	if ob == nil || len(ob.ids) == 0 {
		return
	}
	b := p.batch
	m := b.msgLocked(ob, ob.subject, p.replyLocked(ob.ids[len(ob.ids)-1]), nil)
	m.Header[hdrBatchCommit] = b.hdrEnd
	err := p.r.nc.PublishMsg(m)
	m.Data = nil
	ob.committed = true
	lb.committing++
	b.commits++
	if err != nil {
		p.finishBatchLocked(ob, 0, err)
		p.wake()
	}
}

// finishBatchLocked completes every append of ob: with seq the batch's last
// stream sequence, or with err. Caller holds mu.
func (p *publisher) finishBatchLocked(ob *openBatch, last uint64, err error) {
	if ob.finished {
		return
	}
	ob.finished = true
	if ob.committed {
		ob.lb.committing--
	} else if ob.lb.open == ob {
		ob.lb.open = nil
	}
	n := uint64(len(ob.ids))
	for i, id := range ob.ids {
		e := &p.ring[id%p.window]
		if e.id != id || e.state != statePending {
			continue
		}
		e.state = stateComplete
		if err != nil {
			e.err = err
		} else {
			e.seq = last - n + 1 + uint64(i)
		}
	}
	p.settledLocked(ob.lb)
}

// setLog tells the batcher whether log name may be batched.
func (p *publisher) setLog(name string, subjects []string, file bool) {
	if p.batch == nil {
		return
	}
	p.mu.Lock()
	p.batch.setLog(name, slices.Clone(subjects), file)
	p.mu.Unlock()
}

func (e *impl) stats() Stats {
	r, err := e.running()
	if err != nil || r.pub.batch == nil {
		return Stats{}
	}
	p := r.pub
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.batch
	return Stats{GroupCommits: b.commits, BatchedAppends: b.batched, PlainSyncedAppends: b.plainLog}
}
