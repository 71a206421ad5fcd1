package broker

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/errs"
)

func (b *core) publish(ctx context.Context, p Publishing) (PublishResult, error) {
	ch := make(chan error, 1)
	res, err := b.publishAsync(p, func(err error) { ch <- err })
	if err != nil {
		return res, err
	}
	select {
	case err := <-ch:
		return res, err
	case <-ctx.Done():
		return res, ctx.Err()
	}
}

func (b *core) checkPublish(p *Publishing) error {
	if err := b.running(); err != nil {
		return err
	}
	m := p.Message
	if m == nil {
		return errs.New(errs.BadArgument, "no message")
	}
	if len(m.Body) > b.cfg.MaxMessageBytes {
		return errs.New(errs.TooLarge, "message size %d is larger than the configured max size %d", len(m.Body), b.cfg.MaxMessageBytes)
	}
	if len(p.RoutingKey) > 255 {
		return errs.New(errs.BadArgument, "routing key is longer than 255 bytes")
	}
	if e := m.Properties.Expiration; e != "" {
		if n, err := strconv.ParseInt(e, 10, 64); err != nil || n < 0 {
			return errs.New(errs.PreconditionFailed, "invalid expiration '%s'", e)
		}
	}
	if p.User != "" && m.Properties.UserID != "" && m.Properties.UserID != p.User {
		return errs.New(errs.PreconditionFailed, "user_id property set to '%s' but authenticated user was '%s'", m.Properties.UserID, p.User)
	}
	return nil
}

func (b *core) publishAsync(p Publishing, done func(error)) (PublishResult, error) {
	if err := b.checkPublish(&p); err != nil {
		return PublishResult{}, err
	}
	b.mu.RLock()
	vh, err := b.lookupVHost(p.VHost)
	if err != nil {
		b.mu.RUnlock()
		return PublishResult{}, err
	}
	x := vh.exchanges[p.Exchange]
	if x == nil {
		b.mu.RUnlock()
		return PublishResult{}, errs.New(errs.NotFound, "no exchange '%s' in vhost '%s'", p.Exchange, p.VHost)
	}
	if x.spec.Internal {
		b.mu.RUnlock()
		return PublishResult{}, errs.New(errs.AccessRefused, "cannot publish to internal exchange '%s' in vhost '%s'", p.Exchange, p.VHost)
	}
	if x.delayed {
		if d, ok := asInt(p.Message.Properties.Headers["x-delay"]); ok && d > 0 {
			b.mu.RUnlock()
			b.stats.published.Add(1)
			return b.delay.schedule(vh, p, time.Duration(d)*time.Millisecond, done)
		}
	}
	var qbuf [8]*queue
	qs := b.routeLocked(qbuf[:0], vh, x, p.RoutingKey, p.Message.Properties.Headers)
	b.mu.RUnlock()
	b.stats.published.Add(1)
	return b.store(qs, p.Exchange, p.RoutingKey, p.Message, done), nil
}

// pubAgg completes a publish once every queue's store has finished.
type pubAgg struct {
	left     atomic.Int32
	rejected atomic.Bool
	mu       sync.Mutex
	err      error
	done     func(error)
}

func (a *pubAgg) fail(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

func (a *pubAgg) finish() {
	if a.left.Add(-1) != 0 {
		return
	}
	a.mu.Lock()
	err := a.err
	a.mu.Unlock()
	if err == nil && a.rejected.Load() {
		err = errs.New(errs.Rejected, "a queue refused the message (x-overflow)")
	}
	if a.done != nil {
		a.done(err)
	}
}

func dedupKeyOf(m *Message) string {
	v, ok := m.Properties.Headers[dedupHeader]
	if !ok {
		return ""
	}
	if s, ok := asString(v); ok {
		return s
	}
	return fmt.Sprint(v)
}

// storeBufs holds encoding buffers for store; buffers that grew past
// maxPooledStoreBuf (large messages) are left to the GC.
var storeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledStoreBuf = 64 << 10

// store writes m to each queue's log and enqueues it when acknowledged.
func (b *core) store(qs []*queue, exchange, key string, m *Message, done func(error)) PublishResult {
	if len(qs) == 0 {
		if done != nil {
			done(nil)
		}
		return PublishResult{}
	}
	// The engine copies data before AppendAsync returns, so one pooled
	// buffer serves every queue of this publish.
	bp := storeBufs.Get().(*[]byte)
	data := appendStored((*bp)[:0], exchange, key, m)
	defer func() {
		if cap(data) <= maxPooledStoreBuf {
			*bp = data[:0]
			storeBufs.Put(bp)
		}
	}()
	size := len(m.Body)
	now := b.cfg.Now().UnixMilli()
	var msgTTL int64 = -1
	if e := m.Properties.Expiration; e != "" {
		msgTTL, _ = strconv.ParseInt(e, 10, 64)
	}
	dk := dedupKeyOf(m)
	agg := &pubAgg{done: done}
	agg.left.Store(int32(len(qs)))
	res := PublishResult{Routed: true}
	clustered := b.eng.Clustered()
	for _, q := range qs {
		qdk := ""
		if q.dedup != nil {
			qdk = dk
		}
		ok, rejected := q.admit(size, qdk)
		if !ok {
			if rejected {
				agg.rejected.Store(true)
				if q.args.Overflow == overflowRejectPublishDL {
					q.deadLetterNow(&entry{exchange: exchange, key: key, size: size, msg: m}, "maxlen")
				}
			}
			agg.finish()
			continue
		}
		res.Queues++
		e := &entry{exchange: exchange, key: key, size: size, prio: m.Properties.Priority, dedup: qdk}
		ttl := q.args.MessageTTL
		if msgTTL >= 0 && (ttl < 0 || msgTTL < ttl) {
			ttl = msgTTL
		}
		if ttl >= 0 {
			e.expiresAt = now + ttl
			if ttl == 0 {
				e.expiresAt = now + 1 // TTL 0: deliverable only to a consumer ready now
			}
		}
		q := q
		err := b.eng.AppendAsync(q.subject, data, func(seq uint64, err error) {
			if err != nil {
				q.unadmit(size, qdk)
				agg.fail(errs.Wrap(errs.Unavailable, err, "storing message"))
				agg.finish()
				return
			}
			if clustered {
				q.unadmit(size, qdk) // the tail enqueues it on the leader
			} else {
				e.seq = seq
				b.keepInMemory(e, m)
				q.stored(e, true)
			}
			agg.finish()
		})
		if err != nil {
			q.unadmit(size, qdk)
			agg.fail(errs.Wrap(errs.Unavailable, err, "storing message"))
			agg.finish()
		}
	}
	return res
}

// keepInMemory attaches the body to the entry if the memory budget allows;
// otherwise the entry is paged out and read back from the log on delivery.
func (b *core) keepInMemory(e *entry, m *Message) {
	if b.memBytes.Add(int64(e.size)) > b.cfg.MemoryBudget {
		b.memBytes.Add(-int64(e.size))
		return
	}
	e.msg = m
}

// ---- dead-lettering

// deadLetterLocked removes e from the queue for good, republishing it to the
// queue's dead-letter exchange if it has one.
func (q *queue) deadLetterLocked(e *entry, reason string) {
	if q.args.DLX == nil {
		q.releaseLocked(e, true)
		return
	}
	msg := e.msg
	q.releaseLocked(e, false)
	e.msg = msg
	q.held.add(e.seq) // until deadLetterNow has read it
	q.outbox = append(q.outbox, func() {
		q.deadLetterNow(e, reason)
		q.mu.Lock()
		q.held.remove(e.seq)
		q.mu.Unlock()
	})
}

// deadLetterNow republishes e to the DLX, then deletes the original from the
// log (e.seq == 0 means it was never stored: reject-publish-dlx).
func (q *queue) deadLetterNow(e *entry, reason string) {
	b := q.b
	deleteOriginal := func(error) {
		if e.seq != 0 {
			b.eng.DeleteAsync(q.logName, e.seq)
		}
	}
	if q.args.DLX == nil {
		deleteOriginal(nil)
		return
	}
	msg := e.msg
	if msg == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, err := b.eng.Get(ctx, q.logName, e.seq)
		cancel()
		if err != nil {
			b.log.Warn("dead-lettering: message gone", "queue", q.name, "err", err)
			return
		}
		st, err := decodeStored(m.Data)
		if err != nil {
			deleteOriginal(nil)
			return
		}
		msg = st.Msg
	}
	dl, ok := withDeath(msg, q.name, reason, e.exchange, e.key, b.cfg.Now())
	if !ok {
		b.log.Warn("dead-letter cycle detected, dropping message", "queue", q.name, "reason", reason)
		deleteOriginal(nil)
		return
	}
	rk := e.key
	if q.args.DLRK != nil {
		rk = *q.args.DLRK
	}
	b.mu.RLock()
	var qs []*queue
	if vh := b.vhostsM[q.vh.name]; vh != nil {
		if x := vh.exchanges[*q.args.DLX]; x != nil {
			qs = b.routeLocked(nil, vh, x, rk, dl.Properties.Headers)
		}
	}
	b.mu.RUnlock()
	b.store(qs, *q.args.DLX, rk, dl, deleteOriginal)
}

// withDeath returns a copy of m carrying an updated x-death header, as
// RabbitMQ writes it. ok is false when the message is cycling between
// queues without ever being rejected (RabbitMQ drops those).
func withDeath(m *Message, queueName, reason, exchange, key string, now time.Time) (*Message, bool) {
	out := &Message{Properties: m.Properties, Body: m.Body}
	h := make(Table, len(m.Properties.Headers)+4)
	maps.Copy(h, m.Properties.Headers)
	out.Properties.Headers = h
	deaths, _ := h["x-death"].([]any)
	rejectedSeen := false
	idx := -1
	for i, d := range deaths {
		t, _ := d.(Table)
		if t == nil {
			continue
		}
		if r, _ := asString(t["reason"]); r == "rejected" {
			rejectedSeen = true
		}
		if qn, _ := asString(t["queue"]); qn == queueName {
			if r, _ := asString(t["reason"]); r == reason {
				idx = i
			}
		}
	}
	if idx >= 0 && reason != "rejected" && !rejectedSeen {
		return nil, false
	}
	var d Table
	if idx >= 0 {
		d = maps.Clone(deaths[idx].(Table))
		n, _ := asInt(d["count"])
		d["count"] = n + 1
		d["time"] = now
		rest := append([]any{}, deaths[:idx]...)
		deaths = append(rest, deaths[idx+1:]...)
	} else {
		d = Table{"count": int64(1), "reason": reason, "queue": queueName, "time": now,
			"exchange": exchange, "routing-keys": []any{key}}
		if e := m.Properties.Expiration; e != "" {
			d["original-expiration"] = e
		}
	}
	h["x-death"] = append([]any{d}, deaths...)
	if _, ok := h["x-first-death-queue"]; !ok {
		h["x-first-death-queue"] = queueName
		h["x-first-death-reason"] = reason
		h["x-first-death-exchange"] = exchange
	}
	out.Properties.Expiration = ""
	return out, true
}

// ---- janitor: work that must not run on engine callback goroutines

type janitor struct {
	mu   sync.Mutex
	work []func()
	wake chan struct{}
}

func (b *core) later(f func()) {
	j := &b.jan
	j.mu.Lock()
	j.work = append(j.work, f)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (b *core) runJanitor() {
	defer b.bg.Done()
	j := &b.jan
	for {
		select {
		case <-j.wake:
		case <-b.bgCtx.Done():
			j.mu.Lock()
			work := j.work
			j.work = nil
			j.mu.Unlock()
			for _, f := range work {
				f()
			}
			return
		}
		for {
			j.mu.Lock()
			work := j.work
			j.work = nil
			j.mu.Unlock()
			if len(work) == 0 {
				break
			}
			for _, f := range work {
				f()
			}
		}
	}
}
