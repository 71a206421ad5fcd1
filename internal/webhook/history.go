package webhook

import (
	"encoding/json"
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
}

// MarshalJSON adds latency_ms.
func (a Attempt) MarshalJSON() ([]byte, error) {
	type plain Attempt
	return json.Marshal(struct {
		plain
		LatencyMs float64 `json:"latency_ms"`
	}{plain(a), float64(a.Latency.Microseconds()) / 1000})
}

// deliveryLog keeps the last n attempts of a subscription in memory.
type deliveryLog struct {
	mu   sync.Mutex
	buf  []Attempt
	next int
	full bool
}

func newDeliveryLog(n int) *deliveryLog {
	return &deliveryLog{buf: make([]Attempt, 0, min(n, 64)), next: n}
}

func (l *deliveryLog) add(a Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		l.buf = append(l.buf, a)
		if len(l.buf) == l.next {
			l.full, l.next = true, 0
		}
		return
	}
	l.buf[l.next] = a
	l.next = (l.next + 1) % len(l.buf)
}

// list returns the attempts, newest first.
func (l *deliveryLog) list() []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Attempt, 0, len(l.buf))
	if !l.full {
		for i := len(l.buf) - 1; i >= 0; i-- {
			out = append(out, l.buf[i])
		}
		return out
	}
	for i := range len(l.buf) {
		out = append(out, l.buf[(l.next-1-i+2*len(l.buf))%len(l.buf)])
	}
	return out
}

// Deliveries returns a subscription's last attempts (at most
// Config.DeliveryLogSize, kept in memory), newest first.
func (s *Service) Deliveries(id string) ([]Attempt, error) {
	d, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	return d.hist.list(), nil
}
