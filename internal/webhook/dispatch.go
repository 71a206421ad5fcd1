package webhook

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// Headers the dispatcher adds to the copies of a message it republishes
// (retries, dead letters), so later attempts see the original route, the
// same webhook-id and the attempt count.
const (
	hdrAttempt    = "x-herald-attempt"     // number of the next attempt (int32)
	hdrWebhookID  = "x-herald-webhook-id"  // stable webhook-id
	hdrExchange   = "x-herald-exchange"    // exchange the event was first published to
	hdrRoutingKey = "x-herald-routing-key" // its routing key
	hdrAttempts   = "x-herald-attempts"    // dead letters: attempts made (int32)
	hdrLastError  = "x-herald-last-error"  // dead letters: why the last attempt failed
	hdrDeadAt     = "x-herald-dead-at"     // dead letters: RFC 3339 time
	hdrDelay      = "x-delay"
)

// dispatcher drains one subscription's queue. Lock order: opMu before mu.
type dispatcher struct {
	s       *Service
	id      string
	q, dead string

	opMu sync.Mutex // serializes start/halt/modify
	gone bool       // removed; never restarted (opMu)

	mu          sync.Mutex
	rec         record
	cur         *run
	streak      int       // consecutive failed attempts
	streakSince time.Time // time of the first of them
	tripped     bool      // the breaker tripped in this run
}

func newDispatcher(s *Service, rec record) *dispatcher {
	return &dispatcher{
		s: s, id: rec.Sub.ID, q: queueName(rec.Sub.ID), dead: deadName(rec.Sub.ID), rec: rec,
	}
}

func (d *dispatcher) snapshot() Subscription {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rec.Sub
}

func (d *dispatcher) record() record {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rec
}

// start begins consuming unless paused, disabled or already running.
func (d *dispatcher) start() error {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	return d.startLocked()
}

func (d *dispatcher) startLocked() error {
	d.mu.Lock()
	rec := d.rec
	running := d.cur != nil
	d.mu.Unlock()
	if d.gone || running || rec.Sub.Paused || rec.Sub.Disabled || d.s.running() != nil {
		return nil
	}
	if !d.s.b.ServesQueue(rec.Sub.VHost, d.q) {
		// In a cluster one node serves the queue (consuming elsewhere
		// would move it): the others keep the subscription on standby.
		d.s.log.Debug("webhook subscription served by another node", "id", d.id)
		return nil
	}
	r, err := newRun(d, rec)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.cur = r
	d.streak, d.tripped = 0, false
	d.mu.Unlock()
	return nil
}

// halt stops consuming; attempts in flight finish until ctx ends.
func (d *dispatcher) halt(ctx context.Context) {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.haltLocked(ctx)
}

func (d *dispatcher) haltLocked(ctx context.Context) {
	d.mu.Lock()
	r := d.cur
	d.cur = nil
	d.mu.Unlock()
	if r != nil {
		r.stop(ctx)
	}
}

// modify halts the dispatcher, applies fn to a copy of the record, stores
// it and restarts. On error nothing changes (and the dispatcher restarts).
func (d *dispatcher) modify(ctx context.Context, fn func(*record) error) (Subscription, error) {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if d.gone {
		return Subscription{}, errs.New(errs.NotFound, "no webhook subscription %q", d.id)
	}
	d.haltLocked(ctx)
	rec := d.record()
	err := fn(&rec)
	if err == nil {
		err = d.s.persist(ctx, rec)
	}
	if err == nil {
		d.mu.Lock()
		d.rec = rec
		d.mu.Unlock()
	}
	if serr := d.startLocked(); err == nil {
		err = serr
	}
	return rec.Sub, err
}

// restart halts the dispatcher and starts it again (on standby if this
// node does not serve its queue).
func (d *dispatcher) restart(ctx context.Context) {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.haltLocked(ctx)
	if err := d.startLocked(); err != nil {
		d.s.log.Error("restarting webhook dispatcher", "id", d.id, "error", err)
	}
}

// remove marks the dispatcher gone and halts it.
func (d *dispatcher) remove(ctx context.Context) {
	d.opMu.Lock()
	defer d.opMu.Unlock()
	d.gone = true
	d.haltLocked(ctx)
}

// failed counts a failed attempt for the circuit breaker; it reports true
// (once per run) when the last BreakerFailures attempts all failed and the
// first of them is at least BreakerPeriod old.
func (d *dispatcher) failed(now time.Time) bool {
	n := d.s.cfg.BreakerFailures
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.streak == 0 {
		d.streakSince = now
	}
	d.streak++
	if n <= 0 || d.tripped || d.streak < n || now.Sub(d.streakSince) < d.s.cfg.BreakerPeriod {
		return false
	}
	d.tripped = true
	return true
}

func (d *dispatcher) succeeded() {
	d.mu.Lock()
	d.streak = 0
	d.mu.Unlock()
}

// trip disables the subscription (circuit breaker), in the background.
func (d *dispatcher) trip(reason string) {
	d.s.goBackground(func(ctx context.Context) {
		_, err := d.modify(ctx, func(rec *record) error {
			rec.Sub.Disabled, rec.Sub.DisabledReason = true, reason
			return nil
		})
		if err != nil {
			d.s.log.Warn("disabling webhook subscription", "id", d.id, "error", err)
			return
		}
		d.s.log.Warn("webhook subscription disabled", "id", d.id, "reason", reason)
	})
}

// backoff is the wait before attempt n+1 after attempt n failed: full
// jitter, uniform in [0, min(max, initial*2^(n-1))), at least 1 ms.
func (s *Service) backoff(sub Subscription, n int) time.Duration {
	ceil := sub.BackoffInitial
	for i := 1; i < n && ceil < sub.BackoffMax; i++ {
		ceil *= 2
	}
	ceil = min(ceil, sub.BackoffMax)
	return max(s.jitter(ceil), time.Millisecond)
}

func fullJitter(ceil time.Duration) time.Duration { return time.Duration(rand.Int64N(int64(ceil))) }

// run is one activation of a dispatcher: a consumer and its workers.
type run struct {
	d      *dispatcher
	sub    Subscription
	signer *signer
	post   *poster
	ctx    context.Context // cancelled when the drain times out or the run ends
	cancel context.CancelFunc
	quit   chan struct{} // closed when the run stops taking work

	mu     sync.Mutex
	closed bool
	work   chan *broker.Delivery // from the consumer
	exec   chan keyed            // ordering: from the router to the workers
	keyEnd chan string           // ordering: a key's event is settled
	cons   *broker.Consumer
	wg     sync.WaitGroup
	acks   *acker
	resume resumed // ordering: attempt counts of redelivered events (history.go)
}

func newRun(d *dispatcher, rec record) (*run, error) {
	sub := rec.Sub
	sg, err := newSigner(rec)
	if err != nil {
		return nil, err
	}
	// Prefetch is four times the concurrency: the acker may hold up to three
	// times Concurrency settled deliveries (see acker), and the workers must
	// not starve meanwhile. Attempts in flight stay bounded by the
	// Concurrency workers. (Twice and once: 3-4% more CPU per delivery with
	// 10% failures, as a failed event's ack waits for its retry copy to be
	// stored and the acks behind it were released out of order sooner.)
	prefetch := 4 * sub.Concurrency
	post, err := d.s.guard.newPoster(sub.URL, sub.Concurrency, sub.Timeout)
	if err != nil {
		return nil, err
	}
	r := &run{d: d, sub: sub, signer: sg, post: post, quit: make(chan struct{}), work: make(chan *broker.Delivery, prefetch), acks: newAcker(3 * sub.Concurrency)}
	r.ctx, r.cancel = context.WithCancel(d.s.ctx)
	// Cancelling the run (it stopped, or its drain timed out) closes its
	// connections, which ends the attempts in flight.
	context.AfterFunc(r.ctx, post.close)
	worker := r.worker
	if sub.OrderingKey != "" {
		r.exec = make(chan keyed, prefetch)
		r.keyEnd = make(chan string, sub.Concurrency)
		worker = r.orderedWorker
		r.wg.Add(1)
		go r.route()
	}
	r.wg.Add(sub.Concurrency)
	for range sub.Concurrency {
		go worker()
	}
	cons, err := d.s.b.Consume(r.ctx, sub.VHost, d.q, broker.ConsumeOptions{
		Prefetch: prefetch,
		Deliver:  r.deliver,
		Cancelled: func(reason string) {
			d.s.log.Warn("webhook consumer cancelled; restarting", "id", d.id, "reason", reason)
			d.s.goBackground(func(ctx context.Context) {
				if _, ok := d.s.b.Record(recordKind, d.id); !ok {
					return // deleted (through another node): not ours to repair
				}
				if _, err := d.s.b.Queue(sub.VHost, d.q); err == nil {
					// The queue moved to another node (cluster): stand by,
					// or consume again if it has come back meanwhile.
					d.restart(ctx)
					return
				}
				// Deleted behind our back (management API): declare the
				// topology again and restart.
				_, err := d.modify(ctx, func(rec *record) error { return d.s.ensureTopology(ctx, rec.Sub) })
				if err != nil {
					d.s.log.Error("restarting webhook dispatcher", "id", d.id, "error", err)
				}
			})
		},
	})
	if err != nil {
		r.stop(context.Background())
		return nil, fmt.Errorf("consuming %s: %w", d.q, err)
	}
	r.mu.Lock()
	r.cons = cons
	r.mu.Unlock()
	return r, nil
}

// deliver is the consumer callback: it must not block. The prefetch window
// bounds the deliveries buffered in work.
func (r *run) deliver(dl *broker.Delivery) {
	r.acks.track(dl)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		select {
		case r.work <- dl:
			return
		default:
		}
	}
	r.acks.nack(dl)
}

func (r *run) stopping() bool {
	select {
	case <-r.quit:
		return true
	default:
		return false
	}
}

func (r *run) stop(ctx context.Context) {
	r.mu.Lock()
	cons := r.cons
	r.closed = true
	r.mu.Unlock()
	if cons != nil {
		cons.Cancel()
	}
	close(r.quit)
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.cancel()
		<-done
	}
	r.cancel()
	for {
		select {
		case dl := <-r.work:
			r.acks.nack(dl)
			continue
		case k := <-r.exec: // nil (never ready) without ordering
			r.acks.nack(k.dl)
			continue
		default:
		}
		break
	}
	r.acks.stop()
}

func (r *run) worker() {
	defer r.wg.Done()
	for {
		select {
		case <-r.quit:
			return
		case dl := <-r.work:
			if r.stopping() {
				r.acks.nack(dl)
				continue
			}
			r.handle(dl)
		}
	}
}

// keyed is an event the router hands to an ordered worker.
type keyed struct {
	dl      *broker.Delivery
	key     string
	ordered bool // false: the event has no ordering key value
}

func (r *run) orderedWorker() {
	defer r.wg.Done()
	for {
		select {
		case <-r.quit:
			return
		case k := <-r.exec:
			if r.stopping() {
				r.acks.nack(k.dl)
				continue
			}
			if !k.ordered {
				r.handle(k.dl)
				continue
			}
			r.handleInPlace(k.dl)
			select {
			case r.keyEnd <- k.key:
			case <-r.quit:
			}
		}
	}
}

// route (ordering only) hands each key's events to the workers one at a
// time, in queue order; events without the key are not ordered. At most
// prefetch deliveries are unacked, so sends on exec never block.
func (r *run) route() {
	defer r.wg.Done()
	waiting := map[string][]*broker.Delivery{} // a key present here is in flight
	for {
		select {
		case <-r.quit:
			for _, l := range waiting {
				for _, dl := range l {
					r.acks.nack(dl)
				}
			}
			return
		case dl := <-r.work:
			key, ok := orderingKey(dl, r.sub.OrderingKey)
			if !ok {
				r.exec <- keyed{dl: dl}
				continue
			}
			if l, busy := waiting[key]; busy {
				waiting[key] = append(l, dl)
				continue
			}
			waiting[key] = nil
			r.exec <- keyed{dl: dl, key: key, ordered: true}
		case key := <-r.keyEnd:
			l := waiting[key]
			if len(l) == 0 {
				delete(waiting, key)
				continue
			}
			waiting[key] = l[1:]
			r.exec <- keyed{dl: l[0], key: key, ordered: true}
		}
	}
}

// handle makes one attempt and settles the delivery: ack on success,
// otherwise republish it delayed (retry) or to the dead letters, and ack the
// original once the copy is stored.
func (r *run) handle(dl *broker.Delivery) {
	ev := r.prepare(dl)
	res := r.attempt(ev)
	if res.cancelled {
		r.acks.nack(dl)
		return
	}
	if !r.finish(dl, ev, res) {
		r.log(ev, res, outcomeRetry)
		r.retryLater(dl, ev, r.retryWait(ev.attempt, res))
	}
}

// retryWait is the wait before attempt n+1 after attempt n failed with res:
// the backoff, or the endpoint's Retry-After (already clamped to
// BackoffMax) when that is longer.
func (r *run) retryWait(n int, res result) time.Duration {
	return max(r.d.s.backoff(r.sub, n), res.retryAfter)
}

// handleInPlace (ordering) retries an event while holding it unacked, so the
// key's later events wait. A redelivered event (the run that held it
// stopped: restart, failover, pause, update) goes on with the attempt count
// the journal recorded for it.
func (r *run) handleInPlace(dl *broker.Delivery) {
	ev := r.prepare(dl)
	if dl.Redelivered {
		ev.attempt = max(ev.attempt, r.resumeAttempt(ev.webhookID))
	}
	for {
		res := r.attempt(ev)
		if res.cancelled {
			r.acks.nack(dl)
			return
		}
		if r.finish(dl, ev, res) {
			return
		}
		r.log(ev, res, outcomeRetry)
		t := time.NewTimer(r.retryWait(ev.attempt, res))
		select {
		case <-t.C:
		case <-r.quit:
			t.Stop()
			r.acks.nack(dl)
			return
		}
		ev.attempt++
	}
}

// finish settles dl if res ends the event's attempts (delivered, gone, or
// out of attempts: dead-lettered); false means another attempt is due.
func (r *run) finish(dl *broker.Delivery, ev *prepared, res result) bool {
	switch {
	case res.ok:
		r.log(ev, res, outcomeDelivered)
		r.acks.ack(dl)
	case res.gone:
		r.log(ev, res, outcomeGone)
		r.acks.ack(dl)
		r.d.s.gone(r.d)
	case ev.attempt >= r.sub.MaxAttempts:
		r.log(ev, res, outcomeDead)
		r.deadLetter(dl, ev, res)
	default:
		return false
	}
	return true
}

// log records the attempt and feeds the circuit breaker. A 429 is neutral
// for the breaker: it neither counts as a failed attempt nor resets the
// count, as the endpoint is up and asking to slow down (which Retry-After
// does); so an endpoint answering only 429 is never disabled.
func (r *run) log(ev *prepared, res result, outcome string) {
	now := time.Now()
	a := Attempt{
		Time: now.UTC(), WebhookID: ev.webhookID, Attempt: ev.attempt, Status: res.status,
		Latency: res.latency, Response: res.snippet, Error: res.errText, Outcome: outcome,
	}
	if outcome == outcomeRetry {
		a.RetryAfter = res.retryAfter
	}
	r.d.recordAttempt(a)
	switch {
	case res.ok || res.gone:
		r.d.succeeded()
		return
	case res.status == http.StatusTooManyRequests:
		return
	}
	if r.d.failed(now) {
		r.d.trip(fmt.Sprintf("%d consecutive failed attempts, the last: %s", r.d.s.cfg.BreakerFailures, res.describe()))
	}
}

// retryLater republishes the event to the retry exchange with x-delay and
// acks the original once the copy is stored in the delay log.
func (r *run) retryLater(dl *broker.Delivery, ev *prepared, wait time.Duration) {
	m := republished(dl.Message, ev, broker.Table{
		hdrAttempt: int32(ev.attempt + 1),
		hdrDelay:   wait.Milliseconds(),
	}, nil)
	r.publishThenAck(dl, retryExchange, r.d.q, m)
}

func (r *run) deadLetter(dl *broker.Delivery, ev *prepared, res result) {
	m := republished(dl.Message, ev, broker.Table{
		hdrAttempts:  int32(ev.attempt),
		hdrLastError: truncate(res.describe(), 256),
		hdrDeadAt:    time.Now().UTC().Format(time.RFC3339Nano),
	}, []string{hdrAttempt, hdrDelay})
	r.publishThenAck(dl, "", r.d.dead, m)
}

func (r *run) publishThenAck(dl *broker.Delivery, exchange, key string, m *broker.Message) {
	_, err := r.d.s.b.PublishAsync(broker.Publishing{VHost: r.sub.VHost, Exchange: exchange, RoutingKey: key, Message: m}, func(err error) {
		if err != nil {
			r.acks.nack(dl)
			return
		}
		r.acks.ack(dl)
	})
	if err != nil {
		r.d.s.log.Warn("republishing webhook event", "id", r.d.id, "exchange", exchange, "error", err)
		r.acks.nack(dl)
	}
}

// republished copies m with the route and webhook-id headers, set and
// without drop.
func republished(m *broker.Message, ev *prepared, set broker.Table, drop []string) *broker.Message {
	h := make(broker.Table, len(m.Properties.Headers)+len(set)+3)
	for k, v := range m.Properties.Headers {
		h[k] = v
	}
	for _, k := range drop {
		delete(h, k)
	}
	h[hdrWebhookID] = ev.webhookID
	h[hdrExchange] = ev.exchange
	h[hdrRoutingKey] = ev.routingKey
	for k, v := range set {
		h[k] = v
	}
	c := *m
	c.Properties.Headers = h
	return &c
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// goBackground runs fn on a goroutine owned by the service.
func (s *Service) goBackground(fn func(ctx context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != 1 {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		fn(ctx)
	}()
}

// gone deletes a WebSub subscription whose endpoint answered 410, then
// calls OnGone.
func (s *Service) gone(d *dispatcher) {
	s.goBackground(func(ctx context.Context) {
		sub := d.snapshot()
		if err := s.remove(ctx, d); err != nil {
			s.log.Warn("removing gone subscription", "id", sub.ID, "error", err)
			return
		}
		if s.cfg.OnGone != nil {
			s.cfg.OnGone(sub)
		}
	})
}
