package amqp

import (
	"strings"
	"sync"

	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/broker"
)

// consumer is one basic.consume of a channel.
type consumer struct {
	ch    *channel
	tag   string
	noAck bool // the client asked no-ack: the face settles each delivery once written
	bc    *broker.Consumer

	// Guarded by ch.mu.
	ready     bool // consume-ok is queued: deliveries may follow it
	cancelled bool
	held      []*broker.Delivery // deliveries that arrived before ready
}

// deliver is the broker's Deliver callback. It never blocks: the delivery
// is queued for the writer (the prefetch window bounds how many).
func (cs *consumer) deliver(d *broker.Delivery) {
	ch := cs.ch
	ch.mu.Lock()
	switch {
	case ch.closed || cs.cancelled:
		ch.mu.Unlock()
		_ = d.Nack(true)
		return
	case !cs.ready:
		cs.held = append(cs.held, d)
		ch.mu.Unlock()
		return
	}
	ok := ch.sendLocked(cs, d)
	ch.mu.Unlock()
	if !ok {
		_ = d.Nack(true)
	}
}

// cancelledByBroker is the broker's Cancelled callback (queue deleted, node
// lost): AMQP's consumer cancel notification.
func (cs *consumer) cancelledByBroker(reason string) {
	ch := cs.ch
	ch.mu.Lock()
	if ch.closed || cs.cancelled {
		ch.mu.Unlock()
		return
	}
	cs.cancelled = true
	if ch.consumers[cs.tag] == cs {
		delete(ch.consumers, cs.tag)
	}
	held := cs.held
	cs.held = nil
	if cs.ready && ch.c.caps.cancelNotify {
		ch.c.out.pushControl(ch.id, &wire.BasicCancel{ConsumerTag: cs.tag, NoWait: true})
	}
	ch.mu.Unlock()
	for _, d := range held {
		_ = d.Nack(true)
	}
	ch.c.log.Debug("amqp consumer cancelled by the broker", "channel", ch.id, "tag", cs.tag, "reason", reason)
}

// sendLocked queues a delivery for the socket, giving it the next delivery
// tag. It returns false if the connection refused it; the caller requeues it.
func (ch *channel) sendLocked(cs *consumer, d *broker.Delivery) bool {
	tag := ch.nextTag + 1
	ok, over := ch.c.out.push(outFrame{
		kind: outDeliver, ch: ch.id, noAck: cs.noAck, redelivered: d.Redelivered,
		tag: tag, ctag: cs.tag, exchange: d.Exchange, key: d.RoutingKey, msg: d.Message, d: d,
	})
	if over {
		ch.c.closeWith(newError(wire.ResourceError, "more than %d bytes queued for a client that reads too slowly", ch.c.srv.cfg.MaxOutboundBytes))
	}
	if !ok {
		return false
	}
	ch.nextTag = tag
	if !cs.noAck {
		ch.unacked.push(tag, d)
	}
	return true
}

// deliverReply hands a direct reply-to message to this channel's reply
// consumer; false if it has none.
func (ch *channel) deliverReply(routingKey string, msg *broker.Message) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed || ch.replyTag == "" || ch.replyName != routingKey {
		return false
	}
	tag := ch.nextTag + 1
	ok, over := ch.c.out.push(outFrame{kind: outDeliver, ch: ch.id, tag: tag, ctag: ch.replyTag, key: routingKey, msg: msg})
	if over {
		ch.c.closeWith(newError(wire.ResourceError, "more than %d bytes queued for a client that reads too slowly", ch.c.srv.cfg.MaxOutboundBytes))
	}
	if ok {
		ch.nextTag = tag
	}
	return ok
}

// ---- consume, cancel, get

func (ch *channel) consume(m *wire.BasicConsume) error {
	c := ch.c
	queue := ch.queueName(m.Queue)
	if queue == replyToQueue {
		return ch.consumeReplyTo(m)
	}
	if err := c.authorize(broker.AccessRead, queue); err != nil {
		return err
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = "amq.ctag-" + randomToken(16)
	}
	ch.mu.Lock()
	if _, dup := ch.consumers[tag]; dup || tag == ch.replyTag {
		ch.mu.Unlock()
		return newError(wire.NotAllowed, "attempt to reuse consumer tag '%s'", tag)
	}
	cs := &consumer{ch: ch, tag: tag, noAck: m.NoAck}
	ch.consumers[tag] = cs
	ch.mu.Unlock()

	opts := broker.ConsumeOptions{
		Tag:       tag,
		Exclusive: m.Exclusive,
		Owner:     c.id,
		Args:      brokerTable(m.Arguments),
		Deliver:   cs.deliver,
		Cancelled: cs.cancelledByBroker,
	}
	if m.NoAck {
		// Consumed in ack mode with a window, settled by the writer once
		// written: the broker cannot outrun the socket.
		opts.Prefetch = c.srv.cfg.NoAckWindow
	} else {
		opts.Prefetch = ch.prefetch
		opts.Limiter = ch.limiter
	}
	bc, err := c.b.Consume(c.ctx, c.vhost, queue, opts)
	if err != nil {
		ch.mu.Lock()
		if ch.consumers[tag] == cs {
			delete(ch.consumers, tag)
		}
		ch.mu.Unlock()
		return err
	}

	ch.mu.Lock()
	cs.bc = bc
	if !m.NoWait {
		c.out.pushControl(ch.id, &wire.BasicConsumeOk{ConsumerTag: tag})
	}
	cs.ready = true
	held := cs.held
	cs.held = nil
	var failed []*broker.Delivery
	if cs.cancelled {
		failed = held
		if c.caps.cancelNotify {
			c.out.pushControl(ch.id, &wire.BasicCancel{ConsumerTag: tag, NoWait: true})
		}
	} else {
		for _, d := range held {
			if !ch.sendLocked(cs, d) {
				failed = append(failed, d)
			}
		}
	}
	ch.mu.Unlock()
	for _, d := range failed {
		_ = d.Nack(true)
	}
	return nil
}

func (ch *channel) consumeReplyTo(m *wire.BasicConsume) error {
	if !m.NoAck {
		return newError(wire.PreconditionFailed, "reply consumer cannot acknowledge")
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = "amq.ctag-" + randomToken(16)
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.replyTag != "" {
		return newError(wire.PreconditionFailed, "reply consumer already set")
	}
	if _, dup := ch.consumers[tag]; dup {
		return newError(wire.NotAllowed, "attempt to reuse consumer tag '%s'", tag)
	}
	ch.replyTag = tag
	ch.replyName = ch.c.srv.replyTo.add(ch)
	if !m.NoWait {
		ch.c.out.pushControl(ch.id, &wire.BasicConsumeOk{ConsumerTag: tag})
	}
	return nil
}

// cancelConsumer ends a consumer (basic.cancel); unknown tags are ignored,
// as RabbitMQ does.
func (ch *channel) cancelConsumer(tag string) {
	ch.mu.Lock()
	if tag != "" && tag == ch.replyTag {
		name := ch.replyName
		ch.replyName, ch.replyTag = "", ""
		ch.mu.Unlock()
		ch.c.srv.replyTo.remove(name)
		return
	}
	cs := ch.consumers[tag]
	ch.mu.Unlock()
	if cs == nil {
		return
	}
	// Deliveries that arrive until Cancel returns still go to the client,
	// which may receive messages until cancel-ok.
	if cs.bc != nil {
		cs.bc.Cancel()
	}
	ch.mu.Lock()
	cs.cancelled = true
	if ch.consumers[tag] == cs {
		delete(ch.consumers, tag)
	}
	requeue := cs.held
	cs.held = nil
	ch.mu.Unlock()
	for _, d := range requeue {
		_ = d.Nack(true)
	}
}

func (ch *channel) get(m *wire.BasicGet) error {
	c := ch.c
	queue := ch.queueName(m.Queue)
	if err := c.authorize(broker.AccessRead, queue); err != nil {
		return err
	}
	d, err := c.b.Get(c.ctx, c.vhost, queue, m.NoAck, c.id)
	if err != nil {
		return err
	}
	if d == nil {
		ch.reply(&wire.BasicGetEmpty{})
		return nil
	}
	ch.mu.Lock()
	tag := ch.nextTag + 1
	ok, _ := c.out.push(outFrame{kind: outContent, ch: ch.id, msg: d.Message, m: &wire.BasicGetOk{
		DeliveryTag: tag, Redelivered: d.Redelivered, Exchange: d.Exchange, RoutingKey: d.RoutingKey, MessageCount: uint32(d.MessageCount),
	}})
	if ok {
		ch.nextTag = tag
		if !m.NoAck {
			ch.unacked.push(tag, d)
		}
	}
	ch.mu.Unlock()
	if !ok && !m.NoAck {
		_ = d.Nack(true)
	}
	return nil
}

// ---- ack, nack, reject, recover

// settleMethod handles basic.ack, basic.nack and basic.reject.
func (ch *channel) settleMethod(m wire.Method, tag uint64, multiple, ack, requeue bool) error {
	ch.mu.Lock()
	ents := ch.settle[:0]
	if multiple {
		if tag > ch.nextTag {
			ch.mu.Unlock()
			return newError(wire.PreconditionFailed, "unknown delivery tag %d", tag).forMethod(m)
		}
		ents = ch.unacked.takeUpTo(tag, ents)
	} else {
		d := ch.unacked.take(tag)
		if d == nil {
			ch.mu.Unlock()
			return newError(wire.PreconditionFailed, "unknown delivery tag %d", tag).forMethod(m)
		}
		ents = append(ents, unackedEntry{tag, d})
	}
	ch.mu.Unlock()

	if tx := ch.tx; tx != nil {
		if tx.count()+len(ents) > ch.c.srv.cfg.MaxTxMessages {
			ch.mu.Lock()
			for _, e := range ents {
				ch.unacked.insert(e.tag, e.d)
			}
			ch.mu.Unlock()
			clear(ents)
			return newError(wire.PreconditionFailed, "transaction holds more than %d publishes and acknowledgements", ch.c.srv.cfg.MaxTxMessages).forMethod(m)
		}
		for _, e := range ents {
			tx.settles = append(tx.settles, txSettle{tag: e.tag, d: e.d, ack: ack, requeue: requeue})
		}
	} else if ack && len(ents) > 1 {
		// One queue lock and one batch of log deletes per queue.
		ds := ch.settleDs[:0]
		for _, e := range ents {
			ds = append(ds, e.d)
		}
		broker.AckAll(ds)
		clear(ds)
		ch.settleDs = ds[:0]
	} else {
		for _, e := range ents {
			if ack {
				_ = e.d.Ack()
			} else {
				_ = e.d.Nack(requeue)
			}
		}
	}
	clear(ents)
	ch.settle = ents[:0]
	return nil
}

func (ch *channel) recover(requeue bool) error {
	if !requeue {
		return newError(wire.NotImplemented, "requeue=false")
	}
	ch.mu.Lock()
	ents := ch.unacked.takeUpTo(0, nil)
	ch.mu.Unlock()
	for _, e := range ents {
		_ = e.d.Nack(true)
	}
	return nil
}

// ---- publish

func (ch *channel) startPublish(m *wire.BasicPublish) error {
	ch.content = contentState{
		stage:      contentHeader,
		exchange:   m.Exchange,
		routingKey: m.RoutingKey,
		mandatory:  m.Mandatory,
		immediate:  m.Immediate,
	}
	return nil
}

func (ch *channel) handleHeader(payload []byte) error {
	cs := &ch.content
	if cs.stage != contentHeader {
		return newError(wire.UnexpectedFrame, "content header on channel %d without basic.publish", ch.id)
	}
	h := &ch.c.hdr
	if err := h.Read(payload); err != nil {
		return err
	}
	if h.ClassID != wire.ClassBasic {
		return newError(wire.UnexpectedFrame, "content header of class %d, expected %d", h.ClassID, wire.ClassBasic)
	}
	if max := ch.c.srv.cfg.MaxMessageBytes; h.BodySize > uint64(max) {
		ch.content = contentState{}
		return newError(wire.PreconditionFailed, "message size %d is larger than configured max size %d", h.BodySize, max).forMethod(&wire.BasicPublish{})
	}
	cs.props = h.Properties
	cs.size = h.BodySize
	if cs.size == 0 {
		return ch.finishPublish()
	}
	cs.stage = contentBody
	// Exact allocation up to 1 MiB; beyond, the body grows with what arrives.
	cs.body = make([]byte, 0, min(cs.size, 1<<20))
	return nil
}

func (ch *channel) handleBody(payload []byte) error {
	cs := &ch.content
	if cs.stage != contentBody {
		return newError(wire.UnexpectedFrame, "content body on channel %d without a content header", ch.id)
	}
	if uint64(len(cs.body))+uint64(len(payload)) > cs.size {
		return newError(wire.FrameError, "content body larger than the %d bytes announced", cs.size)
	}
	cs.body = append(cs.body, payload...)
	if uint64(len(cs.body)) == cs.size {
		return ch.finishPublish()
	}
	return nil
}

func (ch *channel) finishPublish() error {
	cs := ch.content
	ch.content = contentState{}
	err := ch.publish(cs.exchange, cs.routingKey, cs.mandatory, cs.immediate, &cs.props, cs.body)
	if err != nil {
		return asAMQPError(err).forMethod(&wire.BasicPublish{})
	}
	return nil
}

func (ch *channel) publish(exchange, key string, mandatory, immediate bool, props *wire.Properties, body []byte) error {
	c := ch.c
	if immediate {
		return newError(wire.NotImplemented, "immediate=true")
	}
	if err := c.waitUnblocked(); err != nil {
		return err
	}
	if err := c.authorize(broker.AccessWrite, exchange); err != nil {
		return err
	}
	msg := &broker.Message{Properties: brokerProps(props), Body: body}
	if msg.Properties.ReplyTo == replyToQueue {
		ch.mu.Lock()
		name := ch.replyName
		ch.mu.Unlock()
		if name == "" {
			return newError(wire.PreconditionFailed, "fast reply consumer does not exist")
		}
		msg.Properties.ReplyTo = name
	}
	if exchange == "" && strings.HasPrefix(key, replyToPrefix) {
		routed := c.srv.replyTo.deliver(key, msg)
		if !routed && mandatory {
			ch.sendReturn(exchange, key, msg)
		}
		if ch.conf != nil {
			seq := ch.conf.begin()
			ch.conf.complete(seq, true)
			ch.conf.release()
			c.out.confirmsReady(ch)
		}
		return nil
	}
	p := broker.Publishing{VHost: c.vhost, Exchange: exchange, RoutingKey: key, Mandatory: mandatory, Message: msg, User: c.user}
	if ch.tx != nil {
		return ch.txPublish(p)
	}
	conf := ch.conf
	ch.publishStarted()
	if conf == nil {
		res, err := c.b.PublishAsync(p, ch.pubDone)
		if err != nil {
			ch.publishDone(err)
			return err
		}
		if mandatory && !res.Routed {
			ch.sendReturn(exchange, key, msg)
		}
		return nil
	}
	seq := conf.begin()
	res, err := c.b.PublishAsync(p, func(err error) {
		conf.complete(seq, err == nil)
		c.out.confirmsReady(ch)
		ch.publishDone(err)
	})
	if err != nil {
		ch.publishDone(err)
		conf.release()
		return err
	}
	if mandatory && !res.Routed {
		ch.sendReturn(exchange, key, msg)
	}
	if conf.release() {
		c.out.confirmsReady(ch)
	}
	return nil
}

// sendReturn queues basic.return 312 NO_ROUTE for an unroutable mandatory publish.
func (ch *channel) sendReturn(exchange, key string, msg *broker.Message) {
	ch.c.out.push(outFrame{kind: outContent, ch: ch.id, msg: msg, m: &wire.BasicReturn{
		ReplyCode: wire.NoRoute, ReplyText: "NO_ROUTE", Exchange: exchange, RoutingKey: key,
	}})
}

// ---- transactions

func (ch *channel) txPublish(p broker.Publishing) error {
	c := ch.c
	tx := ch.tx
	if tx.count() >= c.srv.cfg.MaxTxMessages || tx.bytes+int64(len(p.Message.Body)) > c.srv.cfg.MaxTxBytes {
		return newError(wire.PreconditionFailed, "transaction holds more than %d publishes and acknowledgements or %d bytes", c.srv.cfg.MaxTxMessages, c.srv.cfg.MaxTxBytes)
	}
	if _, err := c.b.Exchange(c.vhost, p.Exchange); err != nil {
		return err
	}
	tx.pubs = append(tx.pubs, p)
	tx.bytes += int64(len(p.Message.Body))
	return nil
}

// commit publishes the transaction's messages, waits until they are stored,
// then applies its acknowledgements.
func (ch *channel) commit() error {
	c := ch.c
	tx := ch.tx
	ch.tx = &txState{}
	var wg sync.WaitGroup
	var firstErr error
	for _, p := range tx.pubs {
		wg.Add(1)
		res, err := c.b.PublishAsync(p, func(error) { wg.Done() })
		if err != nil {
			wg.Done()
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if p.Mandatory && !res.Routed {
			ch.sendReturn(p.Exchange, p.RoutingKey, p.Message)
		}
	}
	wg.Wait()
	for _, s := range tx.settles {
		if s.ack {
			_ = s.d.Ack()
		} else {
			_ = s.d.Nack(s.requeue)
		}
	}
	return firstErr
}

// rollback drops the transaction's publishes; its acknowledgements are
// forgotten and the deliveries are unacknowledged again.
func (ch *channel) rollback() {
	tx := ch.tx
	ch.tx = &txState{}
	ch.mu.Lock()
	for _, s := range tx.settles {
		ch.unacked.insert(s.tag, s.d)
	}
	ch.mu.Unlock()
}
