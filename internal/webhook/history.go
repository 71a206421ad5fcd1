package webhook

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"
)

// Outcomes of an attempt.
const (
	outcomeDelivered = "delivered" // 2xx
	outcomeRetry     = "retrying"  // failed; another attempt is scheduled
	outcomeDead      = "dead"      // failed; no attempts left, moved to the dead letters
	outcomeGone      = "gone"      // WebSub 410: the subscription was deleted
)

// deliveriesJournal is the broker journal holding the attempts, keyed by
// subscription id and bounded by Config.DeliveryLogSize per subscription.
const deliveriesJournal = "webhook-attempts"

// Attempt is one delivery attempt as listed by /v1/webhooks/{id}/deliveries.
type Attempt struct {
	Time      time.Time     `json:"time"`
	WebhookID string        `json:"webhook_id"`
	Attempt   int           `json:"attempt"`          // 1 for the first attempt
	Status    int           `json:"status,omitempty"` // HTTP status; 0 when no response
	Latency   time.Duration `json:"-"`
	Response  string        `json:"response,omitempty"` // first SnippetBytes of the body
	Error     string        `json:"error,omitempty"`
	Outcome   string        `json:"outcome"` // delivered, retrying, dead, gone
	// RetryAfter is the endpoint's Retry-After (429 and 503 answers),
	// clamped to the subscription's BackoffMax, that the next attempt waited
	// at least (outcome retrying only); 0 when there was none to honour.
	RetryAfter time.Duration `json:"-"`
}

type attemptJSON struct {
	plainAttempt
	LatencyMs    float64 `json:"latency_ms"`
	RetryAfterMs int64   `json:"retry_after_ms,omitempty"`
}

type plainAttempt Attempt

// MarshalJSON adds latency_ms and retry_after_ms. It is written by hand:
// every attempt is encoded on the delivery path (for the journal), and
// reflection cost 4% of a delivery's CPU in BenchmarkDeliveries.
func (a Attempt) MarshalJSON() ([]byte, error) {
	return a.appendJSON(make([]byte, 0, 192+len(a.Response)+len(a.Error))), nil
}

func (a Attempt) appendJSON(buf []byte) []byte {
	buf = append(buf, `{"time":"`...)
	buf = a.Time.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","webhook_id":`...)
	buf = appendJSONString(buf, a.WebhookID)
	buf = append(buf, `,"attempt":`...)
	buf = strconv.AppendInt(buf, int64(a.Attempt), 10)
	if a.Status != 0 {
		buf = append(buf, `,"status":`...)
		buf = strconv.AppendInt(buf, int64(a.Status), 10)
	}
	if a.Response != "" {
		buf = append(buf, `,"response":`...)
		buf = appendJSONString(buf, a.Response)
	}
	if a.Error != "" {
		buf = append(buf, `,"error":`...)
		buf = appendJSONString(buf, a.Error)
	}
	buf = append(buf, `,"outcome":`...)
	buf = appendJSONString(buf, a.Outcome)
	if a.RetryAfter > 0 {
		buf = append(buf, `,"retry_after_ms":`...)
		buf = strconv.AppendInt(buf, a.RetryAfter.Milliseconds(), 10)
	}
	buf = append(buf, `,"latency_ms":`...)
	buf = strconv.AppendFloat(buf, float64(a.Latency.Microseconds())/1000, 'f', -1, 64)
	return append(buf, '}')
}

// UnmarshalJSON reads latency_ms and retry_after_ms back into Latency and
// RetryAfter.
func (a *Attempt) UnmarshalJSON(data []byte) error {
	var j attemptJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*a = Attempt(j.plainAttempt)
	a.Latency = time.Duration(j.LatencyMs * float64(time.Millisecond))
	a.RetryAfter = time.Duration(j.RetryAfterMs) * time.Millisecond
	return nil
}

// record appends an attempt to the subscription's history: an asynchronous
// journal append that never blocks the delivery (dropped and counted by the
// broker when the engine falls behind).
func (d *dispatcher) recordAttempt(a Attempt) {
	var arr [512]byte
	d.s.b.JournalAppend(deliveriesJournal, d.id, a.appendJSON(arr[:0]))
}

// Deliveries returns a subscription's last attempts (at most
// Config.DeliveryLogSize, kept in the broker's journal, so they survive
// restarts and are seen by every node), newest first.
func (s *Service) Deliveries(ctx context.Context, id string) ([]Attempt, error) {
	if _, err := s.lookup(id); err != nil {
		return nil, err
	}
	return s.deliveries(ctx, id)
}

func (s *Service) deliveries(ctx context.Context, id string) ([]Attempt, error) {
	entries, err := s.b.JournalRead(ctx, deliveriesJournal, id, s.cfg.DeliveryLogSize)
	if err != nil {
		return nil, err
	}
	out := make([]Attempt, 0, len(entries))
	for _, e := range entries {
		var a Attempt
		if err := json.Unmarshal(e.Data, &a); err != nil {
			s.log.Warn("skipping a corrupt delivery attempt", "id", id, "seq", e.Seq, "error", err)
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// resumed restores the attempt count of ordered events retried in place
// (held unacked, so nothing in the message counts their attempts) when they
// are redelivered: after a restart, a failover, a pause or an update. The
// journal records every attempt by webhook-id; a run reads it once, at the
// first redelivered event it retries in place, and an event whose newest
// recorded attempt n was "retrying" goes on with attempt n+1.
type resumed struct {
	mu     sync.Mutex
	loaded bool
	next   map[string]int // webhook-id -> number of its next attempt
}

// resumeAttempt returns the number of the next attempt of the redelivered
// event webhookID as the journal recorded it, 0 when unknown (never
// attempted in place, settled, pushed out of the journal, or its append
// dropped). An id's count is handed out once per run: identical messages
// without ids share a webhook-id, and the second must not continue the
// first's count.
func (r *run) resumeAttempt(webhookID string) int {
	rs := &r.resume
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.loaded {
		rs.loaded = true
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		next, err := r.d.s.nextAttempts(ctx, r.d.id)
		cancel()
		if err != nil {
			r.d.s.log.Warn("reading the attempts of redelivered ordered events; their counts start again", "id", r.d.id, "error", err)
		}
		rs.next = next
	}
	n := rs.next[webhookID]
	delete(rs.next, webhookID)
	return n
}

// nextAttempts reads subscription id's journal and returns, for each
// webhook-id whose newest recorded attempt n has outcome retrying, n+1.
func (s *Service) nextAttempts(ctx context.Context, id string) (map[string]int, error) {
	atts, err := s.deliveries(ctx, id) // newest first
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(atts))
	next := map[string]int{}
	for _, a := range atts {
		if seen[a.WebhookID] {
			continue
		}
		seen[a.WebhookID] = true
		if a.Outcome == outcomeRetry {
			next[a.WebhookID] = a.Attempt + 1
		}
	}
	return next, nil
}
