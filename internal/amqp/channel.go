package amqp

import (
	"encoding/binary"
	"strings"
	"sync"

	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// channel is one AMQP channel of a connection.
type channel struct {
	c  *conn
	id uint16

	// Reader goroutine only.
	closing   bool   // the server sent channel.close, awaiting close-ok
	lastQueue string // the last queue declared, for "" queue names
	prefetch  int    // basic.qos for consumers started from now on
	limiter   *broker.Limiter
	conf      *confirmer // non-nil in confirm mode
	tx        *txState   // non-nil in tx mode
	content   contentState
	settle    []unackedEntry     // scratch for multiple acks
	settleDs  []*broker.Delivery // scratch for multiple acks

	confirmDirty bool // guarded by outbound.mu

	// Publishes handed to the broker but not yet stored. Methods that look
	// at queues wait for them, so that, as in RabbitMQ, a basic.get or
	// queue.declare after a publish on the same channel sees the message.
	pubMu      sync.Mutex
	pubPending int
	pubIdle    chan struct{} // closed when pubPending drops to 0
	pubDone    func(error)   // ch.publishDone, bound once

	mu        sync.Mutex // guards the fields below; broker goroutines take it
	closed    bool
	nextTag   uint64
	unacked   unacked
	consumers map[string]*consumer
	replyName string // direct reply-to name, while consuming it
	replyTag  string
}

// contentState assembles a published message: method, header, bodies.
type contentState struct {
	stage      uint8 // contentNone, contentHeader, contentBody
	exchange   string
	routingKey string
	mandatory  bool
	immediate  bool
	props      wire.Properties
	size       uint64
	body       []byte
}

const (
	contentNone uint8 = iota
	contentHeader
	contentBody
)

func newChannel(c *conn, id uint16) *channel {
	ch := &channel{c: c, id: id, consumers: map[string]*consumer{}}
	ch.pubDone = ch.publishDone
	return ch
}

// publishStarted counts a publish handed to the broker.
func (ch *channel) publishStarted() {
	ch.pubMu.Lock()
	ch.pubPending++
	ch.pubMu.Unlock()
}

// publishDone is the broker's done callback for a publish (or called
// directly when the broker refused it at once).
func (ch *channel) publishDone(error) {
	ch.pubMu.Lock()
	ch.pubPending--
	if ch.pubPending == 0 && ch.pubIdle != nil {
		close(ch.pubIdle)
		ch.pubIdle = nil
	}
	ch.pubMu.Unlock()
}

// awaitPublishes waits until the channel's publishes are stored.
func (ch *channel) awaitPublishes() error {
	ch.pubMu.Lock()
	if ch.pubPending == 0 {
		ch.pubMu.Unlock()
		return nil
	}
	if ch.pubIdle == nil {
		ch.pubIdle = make(chan struct{})
	}
	idle := ch.pubIdle
	ch.pubMu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ch.c.quit:
		return errConnClosed
	}
}

// closeWith raises a channel exception: the channel's resources are
// released now, channel.close is sent, and frames are ignored until the
// client answers close-ok.
func (ch *channel) closeWith(e *amqpError) {
	ch.teardown()
	ch.closing = true
	ch.content = contentState{}
	ch.c.out.pushControl(ch.id, &wire.ChannelClose{ReplyCode: e.code, ReplyText: e.replyText(), ClassID: e.classID, MethodID: e.methodID})
	ch.c.log.Debug("amqp channel error", "channel", ch.id, "code", e.code, "text", e.text)
}

// whileClosing handles a method after channel.close was sent.
func (ch *channel) whileClosing(f wire.Frame) error {
	m, err := wire.ReadMethod(f.Payload)
	if err != nil {
		return nil // discarded
	}
	switch m.(type) {
	case *wire.ChannelCloseOk:
		ch.c.removeChannel(ch)
	case *wire.ChannelClose:
		ch.c.out.pushControl(ch.id, &wire.ChannelCloseOk{})
		ch.c.removeChannel(ch)
	}
	return nil
}

// teardown cancels the channel's consumers and requeues its unacknowledged
// deliveries. Safe to call twice.
func (ch *channel) teardown() {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	ch.closed = true
	var consumers []*broker.Consumer
	var requeue []*broker.Delivery
	for _, cs := range ch.consumers {
		cs.cancelled = true
		if cs.bc != nil {
			consumers = append(consumers, cs.bc)
		}
		requeue = append(requeue, cs.held...)
		cs.held = nil
	}
	clear(ch.consumers)
	for _, e := range ch.unacked.takeUpTo(0, nil) {
		requeue = append(requeue, e.d)
	}
	reply := ch.replyName
	ch.replyName, ch.replyTag = "", ""
	ch.mu.Unlock()

	if reply != "" {
		ch.c.srv.replyTo.remove(reply)
	}
	for _, bc := range consumers {
		bc.Cancel()
	}
	if ch.tx != nil {
		for _, s := range ch.tx.settles {
			requeue = append(requeue, s.d)
		}
		ch.tx = nil
	}
	for _, d := range requeue {
		_ = d.Nack(true)
	}
	if ch.conf != nil {
		ch.conf.kill()
	}
}

// methodKey reads the class and method IDs of a method frame.
func methodKey(payload []byte) uint32 {
	if len(payload) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(payload)
}

func (ch *channel) handleMethod(f wire.Frame) error {
	if ch.content.stage != contentNone {
		return newError(wire.UnexpectedFrame, "expected content header or body on channel %d, got a method", ch.id)
	}
	// The hot methods decode into reused structs.
	switch methodKey(f.Payload) {
	case wire.KeyBasicPublish:
		m := &ch.c.pub
		if err := m.ReadArgs(f.Payload[4:]); err != nil {
			return err
		}
		return ch.startPublish(m)
	case wire.KeyBasicAck:
		m := &ch.c.ack
		if err := m.ReadArgs(f.Payload[4:]); err != nil {
			return err
		}
		return ch.settleMethod(m, m.DeliveryTag, m.Multiple, true, false)
	}
	m, err := wire.ReadMethod(f.Payload)
	if err != nil {
		return err
	}
	switch m.(type) {
	case *wire.BasicNack, *wire.BasicReject, *wire.BasicCancel, *wire.BasicQos, *wire.ChannelFlow, *wire.ChannelFlowOk:
	default:
		if err := ch.awaitPublishes(); err != nil {
			return err
		}
	}
	if err := ch.dispatch(m); err != nil {
		return asAMQPError(err).forMethod(m)
	}
	return nil
}

func (ch *channel) reply(m wire.Method) { ch.c.out.pushControl(ch.id, m) }

func (ch *channel) dispatch(m wire.Method) error {
	c := ch.c
	switch m := m.(type) {
	case *wire.ChannelClose:
		ch.teardown()
		ch.reply(&wire.ChannelCloseOk{})
		c.removeChannel(ch)
		return nil
	case *wire.ChannelCloseOk:
		return newError(wire.CommandInvalid, "channel.close-ok without channel.close")
	case *wire.ChannelOpen:
		return newError(wire.ChannelError, "channel %d is already open", ch.id)
	case *wire.ChannelFlow:
		// As RabbitMQ 3.x: active=false is a connection exception
		// (rabbit_channel raises protocol_error(not_implemented,
		// "active=false")); the server's own flow control is
		// connection.blocked, not channel.flow.
		if !m.Active {
			return newError(wire.NotImplemented, "active=false")
		}
		ch.reply(&wire.ChannelFlowOk{Active: true})
		return nil
	case *wire.ChannelFlowOk:
		return nil
	case *wire.AccessRequest:
		ch.reply(&wire.AccessRequestOk{Ticket: 1})
		return nil

	case *wire.ExchangeDeclare:
		return ch.exchangeDeclare(m)
	case *wire.ExchangeDelete:
		if err := c.authorize(broker.AccessConfigure, m.Exchange); err != nil {
			return err
		}
		// Deleting a missing exchange is not an error (RabbitMQ 3.x).
		if err := c.b.DeleteExchange(c.ctx, c.vhost, m.Exchange, m.IfUnused); err != nil && !errs.Is(err, errs.NotFound) {
			return err
		}
		if !m.NoWait {
			ch.reply(&wire.ExchangeDeleteOk{})
		}
		return nil
	case *wire.ExchangeBind:
		if err := ch.bind(true, m.Source, m.Destination, m.RoutingKey, m.Arguments, false); err != nil {
			return err
		}
		if !m.NoWait {
			ch.reply(&wire.ExchangeBindOk{})
		}
		return nil
	case *wire.ExchangeUnbind:
		if err := ch.bind(true, m.Source, m.Destination, m.RoutingKey, m.Arguments, true); err != nil {
			return err
		}
		if !m.NoWait {
			ch.reply(&wire.ExchangeUnbindOk{})
		}
		return nil

	case *wire.QueueDeclare:
		return ch.queueDeclare(m)
	case *wire.QueueBind:
		if err := ch.bind(false, m.Exchange, ch.queueName(m.Queue), m.RoutingKey, m.Arguments, false); err != nil {
			return err
		}
		if !m.NoWait {
			ch.reply(&wire.QueueBindOk{})
		}
		return nil
	case *wire.QueueUnbind:
		if err := ch.bind(false, m.Exchange, ch.queueName(m.Queue), m.RoutingKey, m.Arguments, true); err != nil {
			return err
		}
		ch.reply(&wire.QueueUnbindOk{})
		return nil
	case *wire.QueuePurge:
		name := ch.queueName(m.Queue)
		if err := c.authorize(broker.AccessRead, name); err != nil {
			return err
		}
		n, err := c.b.PurgeQueue(c.ctx, c.vhost, name, c.id)
		if err != nil {
			return err
		}
		if !m.NoWait {
			ch.reply(&wire.QueuePurgeOk{MessageCount: uint32(n)})
		}
		return nil
	case *wire.QueueDelete:
		name := ch.queueName(m.Queue)
		if err := c.authorize(broker.AccessConfigure, name); err != nil {
			return err
		}
		// Deleting a missing queue is not an error (RabbitMQ 3.x).
		n, err := c.b.DeleteQueue(c.ctx, c.vhost, name, m.IfUnused, m.IfEmpty, c.id)
		if err != nil && !errs.Is(err, errs.NotFound) {
			return err
		}
		if !m.NoWait {
			ch.reply(&wire.QueueDeleteOk{MessageCount: uint32(n)})
		}
		return nil

	case *wire.BasicQos:
		return ch.qos(m)
	case *wire.BasicConsume:
		return ch.consume(m)
	case *wire.BasicCancel:
		ch.cancelConsumer(m.ConsumerTag)
		if !m.NoWait {
			ch.reply(&wire.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		}
		return nil
	case *wire.BasicGet:
		return ch.get(m)
	case *wire.BasicReject:
		return ch.settleMethod(m, m.DeliveryTag, false, false, m.Requeue)
	case *wire.BasicNack:
		return ch.settleMethod(m, m.DeliveryTag, m.Multiple, false, m.Requeue)
	case *wire.BasicRecover:
		if err := ch.recover(m.Requeue); err != nil {
			return err
		}
		ch.reply(&wire.BasicRecoverOk{})
		return nil
	case *wire.BasicRecoverAsync:
		return ch.recover(m.Requeue)

	case *wire.ConfirmSelect:
		if ch.tx != nil {
			return newError(wire.PreconditionFailed, "cannot switch from tx to confirm mode")
		}
		if ch.conf == nil {
			ch.conf = newConfirmer()
		}
		if !m.NoWait {
			ch.reply(&wire.ConfirmSelectOk{})
		}
		return nil
	case *wire.TxSelect:
		if ch.conf != nil {
			return newError(wire.PreconditionFailed, "cannot switch from confirm to tx mode")
		}
		if ch.tx == nil {
			ch.tx = &txState{}
		}
		ch.reply(&wire.TxSelectOk{})
		return nil
	case *wire.TxCommit:
		if ch.tx == nil {
			return newError(wire.PreconditionFailed, "channel is not transactional")
		}
		if err := ch.commit(); err != nil {
			return err
		}
		ch.reply(&wire.TxCommitOk{})
		return nil
	case *wire.TxRollback:
		if ch.tx == nil {
			return newError(wire.PreconditionFailed, "channel is not transactional")
		}
		ch.rollback()
		ch.reply(&wire.TxRollbackOk{})
		return nil
	}
	if strings.HasPrefix(m.Name(), "connection.") {
		return newError(wire.CommandInvalid, "%s on channel %d", m.Name(), ch.id)
	}
	return newError(wire.CommandInvalid, "%s is a server method", m.Name())
}

// queueName resolves "" to the channel's last declared queue, as the spec asks.
func (ch *channel) queueName(name string) string {
	if name == "" {
		return ch.lastQueue
	}
	return name
}

func (ch *channel) exchangeDeclare(m *wire.ExchangeDeclare) error {
	c := ch.c
	if !m.Passive {
		if err := c.authorize(broker.AccessConfigure, m.Exchange); err != nil {
			return err
		}
	}
	_, err := c.b.DeclareExchange(c.ctx, c.vhost, broker.ExchangeSpec{
		Name:       m.Exchange,
		Type:       m.Type,
		Durable:    m.Durable,
		AutoDelete: m.AutoDelete,
		Internal:   m.Internal,
		Arguments:  brokerTable(m.Arguments),
	}, m.Passive)
	if err != nil {
		return err
	}
	if !m.NoWait {
		ch.reply(&wire.ExchangeDeclareOk{})
	}
	return nil
}

func (ch *channel) queueDeclare(m *wire.QueueDeclare) error {
	c := ch.c
	if m.Queue == replyToQueue && m.Passive {
		// RabbitMQ answers a passive declare of the pseudo-queue.
		if !m.NoWait {
			ch.reply(&wire.QueueDeclareOk{Queue: replyToQueue})
		}
		return nil
	}
	if !m.Passive && m.Queue != "" {
		if strings.HasPrefix(m.Queue, "amq.") {
			return newError(wire.AccessRefused, "queue name '%s' contains reserved prefix 'amq.*'", m.Queue)
		}
		if err := c.authorize(broker.AccessConfigure, m.Queue); err != nil {
			return err
		}
	}
	info, err := c.b.DeclareQueue(c.ctx, c.vhost, broker.QueueSpec{
		Name:       ch.queueName(m.Queue),
		Durable:    m.Durable,
		Exclusive:  m.Exclusive,
		AutoDelete: m.AutoDelete,
		Arguments:  brokerTable(m.Arguments),
		Owner:      c.id,
	}, m.Passive)
	if err != nil {
		return err
	}
	ch.lastQueue = info.Name
	if !m.NoWait {
		ch.reply(&wire.QueueDeclareOk{Queue: info.Name, MessageCount: uint32(info.MessagesReady), ConsumerCount: uint32(info.Consumers)})
	}
	return nil
}

// bind adds or removes an exchange-to-queue (or exchange-to-exchange) binding.
func (ch *channel) bind(toExchange bool, source, dest, key string, args wire.Table, unbind bool) error {
	c := ch.c
	if err := c.authorize(broker.AccessWrite, dest); err != nil {
		return err
	}
	if err := c.authorize(broker.AccessRead, source); err != nil {
		return err
	}
	bd := broker.Binding{Source: source, Destination: dest, DestinationIsExchange: toExchange, RoutingKey: key, Arguments: brokerTable(args)}
	if unbind {
		return c.b.Unbind(c.ctx, c.vhost, bd)
	}
	return c.b.Bind(c.ctx, c.vhost, bd)
}

func (ch *channel) qos(m *wire.BasicQos) error {
	if m.PrefetchSize != 0 {
		return newError(wire.NotImplemented, "prefetch_size!=0 (%d)", m.PrefetchSize)
	}
	n := int(m.PrefetchCount)
	if m.Global {
		if ch.limiter == nil {
			ch.limiter = broker.NewLimiter(n)
		} else {
			ch.limiter.SetLimit(n)
		}
	} else {
		ch.prefetch = n
	}
	ch.reply(&wire.BasicQosOk{})
	return nil
}
