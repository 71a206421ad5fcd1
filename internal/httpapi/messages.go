package httpapi

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// Payload encodings of publish and get.
const (
	encodingString = "string"
	encodingBase64 = "base64"
	encodingAuto   = "auto"
)

// publishBody is POST /api/exchanges/{vhost}/{name}/publish.
type publishBody struct {
	Properties      propertiesJSON `json:"properties"`
	RoutingKey      *string        `json:"routing_key"`
	Payload         *string        `json:"payload"`
	PayloadEncoding string         `json:"payload_encoding"`
}

type routedJSON struct {
	Routed bool `json:"routed"`
}

// publish publishes one message and waits until it is stored. It answers
// {"routed": false} when no queue received it (RabbitMQ's mandatory flag).
func (a *API) publish(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return err
	}
	exchange, err := pathExchange(r, "name")
	if err != nil {
		return err
	}
	var body publishBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	msg, err := body.message()
	if err != nil {
		return err
	}
	if _, err := a.b.Exchange(vhost, exchange); err != nil {
		return notFoundAsRabbit(err)
	}
	if err := a.authorize(p, vhost, broker.AccessWrite, exchangeResource(exchange)); err != nil {
		return err
	}
	res, err := a.b.Publish(r.Context(), broker.Publishing{
		VHost: vhost, Exchange: exchange, RoutingKey: *body.RoutingKey,
		Mandatory: true, Message: msg, User: p.name,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, routedJSON{Routed: res.Routed})
	return nil
}

// message validates the body and builds the message it describes.
func (b *publishBody) message() (*broker.Message, error) {
	if b.RoutingKey == nil {
		return nil, errs.New(errs.BadArgument, "routing_key is required")
	}
	if len(*b.RoutingKey) > maxNameBytes {
		return nil, errs.New(errs.BadArgument, "routing_key is %d bytes, longer than %d", len(*b.RoutingKey), maxNameBytes)
	}
	if b.Payload == nil {
		return nil, errs.New(errs.BadArgument, "payload is required")
	}
	var payload []byte
	switch b.PayloadEncoding {
	case encodingString, "":
		payload = []byte(*b.Payload)
	case encodingBase64:
		var err error
		if payload, err = base64.StdEncoding.DecodeString(*b.Payload); err != nil {
			return nil, errs.New(errs.BadArgument, "payload is not valid base64")
		}
	default:
		return nil, errs.New(errs.BadArgument, "payload_encoding must be %q or %q", encodingString, encodingBase64)
	}
	props, err := b.Properties.toBroker()
	if err != nil {
		return nil, err
	}
	return &broker.Message{Properties: props, Body: payload}, nil
}

// Ack modes of POST /api/queues/{vhost}/{name}/get.
const (
	ackRequeueTrue     = "ack_requeue_true"     // leave the messages in the queue (redelivered)
	ackRequeueFalse    = "ack_requeue_false"    // remove the messages
	rejectRequeueTrue  = "reject_requeue_true"  // reject and requeue (redelivered)
	rejectRequeueFalse = "reject_requeue_false" // reject: dead-letter or drop
)

// getBody is POST /api/queues/{vhost}/{name}/get.
type getBody struct {
	Count    *int     `json:"count"`
	AckMode  string   `json:"ackmode"`
	Requeue  *optBool `json:"requeue"` // before RabbitMQ 3.7: requeue=true|false
	Encoding string   `json:"encoding"`
	Truncate *int     `json:"truncate"`
}

type gotMessageJSON struct {
	PayloadBytes    int            `json:"payload_bytes"`
	Redelivered     bool           `json:"redelivered"`
	Exchange        string         `json:"exchange"`
	RoutingKey      string         `json:"routing_key"`
	MessageCount    int            `json:"message_count"`
	Properties      propertiesJSON `json:"properties"`
	Payload         string         `json:"payload"`
	PayloadEncoding string         `json:"payload_encoding"`
}

// validate checks the body and fills defaults: count 1, encoding auto.
func (g *getBody) validate(maxCount int) (count int, err error) {
	count = 1
	if g.Count != nil {
		count = *g.Count
	}
	if count < 0 || count > maxCount {
		return 0, errs.New(errs.BadArgument, "count must be between 0 and %d", maxCount)
	}
	if g.AckMode == "" && g.Requeue != nil {
		g.AckMode = ackRequeueFalse
		if g.Requeue.v {
			g.AckMode = ackRequeueTrue
		}
	}
	switch g.AckMode {
	case ackRequeueTrue, ackRequeueFalse, rejectRequeueTrue, rejectRequeueFalse:
	case "":
		return 0, errs.New(errs.BadArgument, "ackmode is required")
	default:
		return 0, errs.New(errs.BadArgument, "ackmode must be one of %s, %s, %s, %s",
			ackRequeueTrue, ackRequeueFalse, rejectRequeueTrue, rejectRequeueFalse)
	}
	switch g.Encoding {
	case "":
		g.Encoding = encodingAuto
	case encodingAuto, encodingBase64:
	default:
		return 0, errs.New(errs.BadArgument, "encoding must be %q or %q", encodingAuto, encodingBase64)
	}
	if g.Truncate != nil && *g.Truncate < 0 {
		return 0, errs.New(errs.BadArgument, "truncate must not be negative")
	}
	return count, nil
}

// getMessages takes up to count messages. Requeueing modes hold the
// messages until all are taken and then requeue them, so a count above one
// does not see the same message twice (as RabbitMQ, which requeues when its
// channel closes).
func (a *API) getMessages(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, name, err := a.pathVHostQueue(r)
	if err != nil {
		return err
	}
	var body getBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	count, err := body.validate(a.cfg.MaxGetCount)
	if err != nil {
		return err
	}
	if _, err := a.b.Queue(vhost, name); err != nil {
		return notFoundAsRabbit(err)
	}
	if err := a.authorize(p, vhost, broker.AccessRead, name); err != nil {
		return err
	}

	var held []*broker.Delivery
	defer func() {
		if len(held) == 0 {
			return
		}
		// Requeue even when the request failed half way or the client left.
		for _, d := range held {
			if err := d.Nack(true); err != nil {
				a.log.Warn("requeueing a message taken by get", slog.String("vhost", vhost),
					slog.String("queue", name), slog.Any("error", err))
			}
		}
	}()

	out := []gotMessageJSON{}
	for range count {
		d, err := a.b.Get(r.Context(), vhost, name, body.AckMode == ackRequeueFalse, "")
		if err != nil {
			return err
		}
		if d == nil {
			break
		}
		switch body.AckMode {
		case ackRequeueTrue, rejectRequeueTrue:
			held = append(held, d)
		case rejectRequeueFalse:
			if err := d.Nack(false); err != nil {
				return err
			}
		}
		out = append(out, gotView(d, body.Encoding, body.Truncate))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func gotView(d *broker.Delivery, encoding string, truncate *int) gotMessageJSON {
	payload := d.Message.Body
	if truncate != nil && len(payload) > *truncate {
		payload = payload[:*truncate]
	}
	out := gotMessageJSON{
		PayloadBytes: len(d.Message.Body),
		Redelivered:  d.Redelivered,
		Exchange:     d.Exchange,
		RoutingKey:   d.RoutingKey,
		MessageCount: d.MessageCount,
		Properties:   propertiesToJSON(d.Message.Properties),
	}
	if encoding == encodingAuto && utf8.Valid(payload) {
		out.Payload, out.PayloadEncoding = string(payload), encodingString
	} else {
		out.Payload, out.PayloadEncoding = base64.StdEncoding.EncodeToString(payload), encodingBase64
	}
	return out
}
