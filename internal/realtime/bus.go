package realtime

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// bus carries triggered events to every node's hubs: the seam between the
// Pusher protocol (which works alone, in memory) and the broker.
type bus interface {
	start(ctx context.Context) error
	// publish sends an event towards its channel's subscribers. With wait
	// it returns once the event is accepted (HTTP API); otherwise it may
	// return before (client events).
	publish(ctx context.Context, h *hub, in inbound, wait bool) error
	stop(ctx context.Context)
}

// localBus dispatches in-process: the single-node, broker-less mode.
type localBus struct{}

func (localBus) start(context.Context) error { return nil }
func (localBus) stop(context.Context)        {}
func (localBus) publish(_ context.Context, h *hub, in inbound, _ bool) error {
	h.dispatch(in)
	return nil
}

// Headers of a Pusher event inside the broker.
const (
	headerEvent    = "event"              // event name (required to reach clients)
	headerSocketID = "x-pusher-socket-id" // socket excluded from delivery
	headerUserID   = "x-pusher-user-id"   // presence sender of a client event
)

// ExchangeName is the topic exchange of a Pusher app: publish there with
// routing key = channel name and header "event" = event name to reach the
// channel's subscribers; bind a queue there to receive what is triggered.
func ExchangeName(appID string) string { return "pusher." + appID }

// brokerBus routes every event through the app's exchange. Each node
// declares, per app, a transient exclusive auto-delete queue
// "pusher.{app}.node.{node}" bound with "#" and consumes it with NoAck:
// delivery to browsers is at most once (a node that falls behind loses the
// oldest messages past x-max-length); clients close gaps with history
// resume.
type brokerBus struct {
	srv       *Server
	b         *broker.Broker
	owner     string
	consumers []*broker.Consumer
}

// nodeQueueMaxLength bounds a node queue; the oldest messages are dropped
// beyond it (x-overflow drop-head), which only happens if dispatch cannot
// keep up.
const nodeQueueMaxLength = 100_000

func (bb *brokerBus) start(ctx context.Context) error {
	vh := bb.srv.cfg.VHost
	for _, h := range bb.srv.hubs {
		ex := ExchangeName(h.app.ID)
		if _, err := bb.b.DeclareExchange(ctx, vh, broker.ExchangeSpec{Name: ex, Type: broker.Topic, Durable: true}, false); err != nil {
			return fmt.Errorf("declaring exchange %q: %w", ex, err)
		}
		qname := ex + ".node." + bb.srv.node
		if _, err := bb.b.DeclareQueue(ctx, vh, broker.QueueSpec{
			Name: qname, Exclusive: true, AutoDelete: true, Owner: bb.owner,
			Arguments: broker.Table{"x-max-length": int64(nodeQueueMaxLength), "x-overflow": "drop-head"},
		}, false); err != nil {
			return fmt.Errorf("declaring queue %q: %w", qname, err)
		}
		if err := bb.b.Bind(ctx, vh, broker.Binding{Source: ex, Destination: qname, RoutingKey: "#"}); err != nil {
			return fmt.Errorf("binding queue %q to %q: %w", qname, ex, err)
		}
		h := h
		c, err := bb.b.Consume(ctx, vh, qname, broker.ConsumeOptions{
			Tag: "realtime-" + bb.srv.node, NoAck: true, Exclusive: true, Owner: bb.owner,
			Deliver: func(d *broker.Delivery) { bb.deliver(h, d) },
			Cancelled: func(reason string) {
				bb.srv.log.Error("realtime: broker cancelled the node consumer; this app's events no longer reach browsers on this node",
					"app", h.app.ID, "queue", qname, "reason", reason)
			},
		})
		if err != nil {
			return fmt.Errorf("consuming queue %q: %w", qname, err)
		}
		bb.consumers = append(bb.consumers, c)
	}
	return nil
}

func (bb *brokerBus) deliver(h *hub, d *broker.Delivery) {
	if d.Message == nil {
		return
	}
	p := d.Message.Properties
	name := headerString(p.Headers, headerEvent)
	if name == "" {
		name = p.Type
	}
	if name == "" || validChannel(d.RoutingKey) != nil {
		bb.srv.metrics.dropped.Add(1)
		bb.srv.debug("realtime: dropping broker message without event header or with an invalid channel", "app", h.app.ID, "routing_key", d.RoutingKey)
		return
	}
	if len(d.Message.Body) > bb.srv.cfg.MaxMessageBytes {
		bb.srv.metrics.dropped.Add(1)
		bb.srv.debug("realtime: dropping broker message over MaxMessageBytes", "app", h.app.ID, "channel", d.RoutingKey, "bytes", len(d.Message.Body))
		return
	}
	h.dispatch(inbound{
		channel: d.RoutingKey,
		name:    name,
		data:    string(d.Message.Body),
		userID:  headerString(p.Headers, headerUserID),
		exclude: headerString(p.Headers, headerSocketID),
	})
}

func headerString(t broker.Table, k string) string {
	switch v := t[k].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

func (bb *brokerBus) publish(ctx context.Context, h *hub, in inbound, wait bool) error {
	hdr := broker.Table{headerEvent: in.name}
	if in.exclude != "" {
		hdr[headerSocketID] = in.exclude
	}
	if in.userID != "" {
		hdr[headerUserID] = in.userID
	}
	p := broker.Publishing{
		VHost:      bb.srv.cfg.VHost,
		Exchange:   ExchangeName(h.app.ID),
		RoutingKey: in.channel,
		Message: &broker.Message{
			Properties: broker.Properties{Headers: hdr, DeliveryMode: 1, Timestamp: bb.srv.cfg.Now(), AppID: "herald-realtime"},
			Body:       []byte(in.data),
		},
	}
	if wait {
		_, err := bb.b.Publish(ctx, p)
		return err
	}
	_, err := bb.b.PublishAsync(p, func(err error) {
		if err != nil {
			bb.srv.debug("realtime: client event not stored", "app", h.app.ID, "channel", in.channel, "err", err)
		}
	})
	return err
}

func (bb *brokerBus) stop(ctx context.Context) {
	for _, c := range bb.consumers {
		c.Cancel()
	}
	bb.consumers = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	bb.b.ReleaseOwner(ctx, bb.owner)
}
