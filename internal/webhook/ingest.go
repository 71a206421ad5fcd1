package webhook

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

const batchContentType = "application/cloudevents-batch+json"

// maxExtensions bounds the extension attributes of one event (each becomes
// an AMQP header).
const maxExtensions = 64

// handleEvents is POST /v1/events/{vhost}/{exchange}: CloudEvents in binary,
// structured or batch mode, published with routing key = the event's type
// (or ?routing_key=). It answers 202 once every event is stored in every
// queue it routes to.
func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	user, err := s.authenticate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	vhost, exchange, err := eventsPath(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if exchange == "amq.default" {
		exchange = ""
	}
	resource := exchange
	if resource == "" {
		resource = "amq.default"
	}
	if err := s.b.Authorize(user.Name, vhost, broker.AccessWrite, resource); err != nil {
		writeError(w, err)
		return
	}
	events, err := s.readEvents(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	key, override := r.URL.Query()["routing_key"]
	msgs := make([]broker.Publishing, len(events))
	for i := range events {
		rk := events[i].Type()
		if override {
			rk = key[0]
		}
		msgs[i] = broker.Publishing{VHost: vhost, Exchange: exchange, RoutingKey: rk, Message: toMessage(&events[i]), User: user.Name}
	}
	routed, err := s.publishAll(r, msgs)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"accepted": len(msgs), "routed": routed})
}

// readEvents parses the request's events and validates them.
func (s *Service) readEvents(w http.ResponseWriter, r *http.Request) ([]event.Event, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, errs.New(errs.TooLarge, "request body larger than %d bytes", mbe.Limit)
		}
		return nil, errs.Wrap(errs.BadArgument, err, "reading request body")
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var events []event.Event
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), batchContentType) {
		events, err = cehttp.NewEventsFromHTTPRequest(r)
		if err != nil {
			return nil, errs.New(errs.BadArgument, "invalid CloudEvents batch: %v", err)
		}
		if len(events) == 0 {
			return nil, errs.New(errs.BadArgument, "empty CloudEvents batch")
		}
		if len(events) > s.cfg.MaxBatchEvents {
			return nil, errs.New(errs.TooLarge, "batch of %d events is larger than the limit of %d", len(events), s.cfg.MaxBatchEvents)
		}
	} else {
		if r.Header.Get("Ce-Specversion") == "" && !strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "application/cloudevents") {
			return nil, errs.New(errs.BadArgument, "not a CloudEvent: expected ce-* headers (binary mode), Content-Type application/cloudevents+json (structured mode) or %s (batch mode)", batchContentType)
		}
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			return nil, errs.New(errs.BadArgument, "invalid CloudEvent: %v", err)
		}
		events = []event.Event{*e}
	}
	for i := range events {
		if events[i].SpecVersion() != event.CloudEventsVersionV1 {
			return nil, errs.New(errs.BadArgument, "event %d: specversion must be 1.0, got %q", i, events[i].SpecVersion())
		}
		if err := events[i].Validate(); err != nil {
			return nil, errs.New(errs.BadArgument, "event %d: %v", i, strings.TrimSpace(err.Error()))
		}
		if n := len(events[i].Extensions()); n > maxExtensions {
			return nil, errs.New(errs.BadArgument, "event %d: %d extension attributes, more than %d", i, n, maxExtensions)
		}
	}
	return events, nil
}

// toMessage maps a CloudEvent to a message per the CloudEvents AMQP
// binding: attributes as cloudEvents_* headers, datacontenttype as the
// content-type property, data as the body.
func toMessage(e *event.Event) *broker.Message {
	h := broker.Table{
		ceHeader + "specversion": e.SpecVersion(),
		ceHeader + "id":          e.ID(),
		ceHeader + "source":      e.Source(),
		ceHeader + "type":        e.Type(),
	}
	if v := e.Subject(); v != "" {
		h[ceHeader+"subject"] = v
	}
	if t := e.Time(); !t.IsZero() {
		h[ceHeader+"time"] = t.UTC().Format(time.RFC3339Nano)
	}
	if v := e.DataSchema(); v != "" {
		h[ceHeader+"dataschema"] = v
	}
	for name, v := range e.Extensions() {
		switch x := v.(type) {
		case string, bool, int32:
			h[ceHeader+name] = x
		default:
			if str, err := types.Format(v); err == nil {
				h[ceHeader+name] = str
			}
		}
	}
	return &broker.Message{
		Properties: broker.Properties{
			ContentType:  e.DataContentType(),
			Headers:      h,
			DeliveryMode: 2,
			MessageID:    e.ID(),
			Timestamp:    e.Time(),
		},
		Body: e.Data(),
	}
}

// publishAll publishes msgs and waits until each is stored; it returns how
// many were routed to at least one queue.
func (s *Service) publishAll(r *http.Request, msgs []broker.Publishing) (int, error) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
		routed int
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	for _, p := range msgs {
		wg.Add(1)
		res, err := s.b.PublishAsync(p, func(err error) {
			if err != nil {
				fail(err)
			}
			wg.Done()
		})
		if err != nil {
			wg.Done()
			fail(err)
			break
		}
		if res.Routed {
			routed++
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-r.Context().Done():
		<-done // the broker calls done for each publish; stored or not, it ends
	}
	return routed, first
}
