package webhook

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/route"
)

// DeadLetter is an event that used up its attempts.
type DeadLetter struct {
	WebhookID  string          `json:"webhook_id"`
	Attempts   int             `json:"attempts"`
	LastError  string          `json:"last_error,omitempty"`
	DeadAt     string          `json:"dead_at,omitempty"`
	Exchange   string          `json:"exchange"`
	RoutingKey string          `json:"routing_key"`
	Event      json.RawMessage `json:"event"` // as delivered (structured CloudEvent); WebSub: the body as a JSON string
}

// DeadLetters returns up to n dead letters, oldest first, leaving them in
// place (they are taken and put back, like RabbitMQ's "get messages" with
// requeue).
func (s *Service) DeadLetters(ctx context.Context, id string, n int) ([]DeadLetter, error) {
	d, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	sub := d.snapshot()
	var held []*broker.Delivery
	defer func() {
		for _, dl := range held {
			_ = dl.Nack(true)
		}
	}()
	out := []DeadLetter{}
	r := &run{sub: sub}
	for len(out) < n {
		dl, err := s.b.Get(ctx, sub.VHost, d.dead, false, "")
		if err != nil {
			return nil, fmt.Errorf("reading dead letters: %w", err)
		}
		if dl == nil {
			break
		}
		held = append(held, dl)
		ev := r.prepare(dl)
		h := dl.Message.Properties.Headers
		dead := DeadLetter{WebhookID: ev.webhookID, Exchange: ev.exchange, RoutingKey: ev.routingKey}
		if n, ok := route.Int(h[hdrAttempts]); ok {
			dead.Attempts = int(n)
		}
		dead.LastError, _ = h[hdrLastError].(string)
		dead.DeadAt, _ = h[hdrDeadAt].(string)
		if sub.Format == FormatWebSub {
			dead.Event = appendJSONString(nil, string(ev.body))
		} else {
			dead.Event = ev.body
		}
		out = append(out, dead)
	}
	return out, nil
}

// Redrive moves up to n dead letters back to the subscription's queue with
// a fresh attempt count (and the same webhook-id); it returns how many moved.
func (s *Service) Redrive(ctx context.Context, id string, n int) (int, error) {
	d, err := s.lookup(id)
	if err != nil {
		return 0, err
	}
	sub := d.snapshot()
	moved := 0
	for moved < n {
		dl, err := s.b.Get(ctx, sub.VHost, d.dead, false, "")
		if err != nil {
			return moved, fmt.Errorf("reading dead letters: %w", err)
		}
		if dl == nil {
			break
		}
		m := *dl.Message
		h := make(broker.Table, len(m.Properties.Headers))
		for k, v := range m.Properties.Headers {
			switch k {
			case hdrAttempt, hdrAttempts, hdrLastError, hdrDeadAt, hdrDelay, "x-death":
			default:
				h[k] = v
			}
		}
		m.Properties.Headers = h
		if _, err := s.b.Publish(ctx, broker.Publishing{VHost: sub.VHost, Exchange: "", RoutingKey: d.q, Message: &m}); err != nil {
			_ = dl.Nack(true)
			return moved, fmt.Errorf("redriving: %w", err)
		}
		if err := dl.Ack(); err != nil {
			return moved, err
		}
		moved++
	}
	return moved, nil
}

// orderingKey returns the value of the subscription's ordering key for a
// delivery: "subject", "type", "source" and "id" name CloudEvents
// attributes, "routing_key" the original routing key; any other name is a
// message header (or the CloudEvents extension of that name).
func orderingKey(dl *broker.Delivery, name string) (string, bool) {
	h := dl.Message.Properties.Headers
	switch name {
	case "routing_key":
		if s, ok := h[hdrRoutingKey].(string); ok {
			return s, true
		}
		return dl.RoutingKey, true
	case "subject", "type", "source", "id":
		v := headerString(h, name)
		if v == "" && name == "type" {
			return orderingKey(dl, "routing_key")
		}
		return v, v != ""
	}
	v, ok := h[name]
	if !ok {
		v, ok = h[ceHeader+name]
	}
	if !ok {
		return "", false
	}
	return fmt.Sprint(v), true
}
