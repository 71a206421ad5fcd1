package broker

import (
	"time"
)

// Table is an AMQP field table. Values use these Go types only: nil, bool,
// int8, int16, int32, int64, uint8, uint16, uint32, float32, float64, string,
// []byte, time.Time, Decimal, Table, []any (of these types).
type Table = map[string]any

// Decimal is an AMQP decimal value: Value / 10^Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// Properties are a message's AMQP basic properties. The zero value of each
// field means "absent" (RabbitMQ also treats an empty string as absent).
type Properties struct {
	ContentType     string
	ContentEncoding string
	Headers         Table
	DeliveryMode    uint8 // 1 transient, 2 persistent, 0 absent
	Priority        uint8
	CorrelationID   string
	ReplyTo         string
	Expiration      string // per-message TTL in milliseconds, as a decimal string
	MessageID       string
	Timestamp       time.Time // zero = absent; second precision on AMQP
	Type            string
	UserID          string
	AppID           string
}

// Message is what is published and delivered. The broker never modifies a
// Message it was given; it copies before adding headers (x-death).
type Message struct {
	Properties Properties
	Body       []byte
}

// Exchange types.
const (
	Direct  = "direct"
	Fanout  = "fanout"
	Topic   = "topic"
	Headers = "headers"
	Delayed = "x-delayed-message" // argument x-delayed-type names the routing type
)

// ExchangeSpec declares an exchange.
type ExchangeSpec struct {
	Name       string
	Type       string
	Durable    bool
	AutoDelete bool  // deleted when its last binding (as source) is removed
	Internal   bool  // cannot be published to directly
	Arguments  Table // alternate-exchange, x-delayed-type
}

// ExchangeInfo describes an existing exchange.
type ExchangeInfo struct {
	VHost string
	ExchangeSpec
}

// QueueSpec declares a queue. Arguments carry RabbitMQ's x-arguments
// (x-message-ttl, x-expires, x-max-length, x-max-length-bytes, x-overflow,
// x-dead-letter-exchange, x-dead-letter-routing-key, x-single-active-consumer,
// x-delivery-limit, x-max-priority, x-message-deduplication, x-queue-type);
// they are validated at declare time (BadArgument / PreconditionFailed).
type QueueSpec struct {
	Name       string // "" asks the broker for a server-generated name (amq.gen-...)
	Durable    bool
	Exclusive  bool // owned by Owner; deleted when the owner goes away
	AutoDelete bool // deleted when its last consumer is cancelled
	Arguments  Table
	// Owner identifies the connection declaring the queue (for exclusive
	// queues); "" for faces without connections (HTTP).
	Owner string
}

// QueueInfo describes an existing queue with fresh counts.
type QueueInfo struct {
	VHost string
	QueueSpec
	Messages        int // ready + unacknowledged
	MessagesReady   int
	MessagesUnacked int
	MessageBytes    int64 // bytes of ready + unacked bodies
	Consumers       int
	Owner           string // exclusive owner, if any
	Node            string // node currently serving the queue
	IdleSince       time.Time
}

// Binding binds Source (an exchange) to Destination (a queue, or an exchange
// when DestinationIsExchange).
type Binding struct {
	Source                string
	Destination           string
	DestinationIsExchange bool
	RoutingKey            string
	Arguments             Table
}

// Publishing is one publish.
type Publishing struct {
	VHost      string
	Exchange   string // "" is the default exchange
	RoutingKey string
	Mandatory  bool // the face returns the message when Routed is false
	Message    *Message
	// User is the authenticated user, checked against Properties.UserID when
	// set (RabbitMQ validates user-id); "" skips the check.
	User string
}

// PublishResult says where a publish went.
type PublishResult struct {
	Routed bool // at least one queue (or a delayed store) accepted it
	Queues int  // how many queues it was stored in
}

// ConsumeOptions configure a consumer.
type ConsumeOptions struct {
	Tag       string // consumer tag; "" generates amq.ctag-...
	NoAck     bool   // deliveries are settled when handed out
	Exclusive bool   // no other consumer may consume from the queue
	// Prefetch bounds unacknowledged deliveries to this consumer; 0 means
	// the broker's MaxUnackedPerConsumer limit.
	Prefetch int
	// Limiter, if set, is shared by several consumers (AMQP basic.qos global).
	Limiter *Limiter
	Owner   string // connection id, for exclusive queues
	Args    Table  // x-priority (int), accepted and used for ordering consumers
	// Deliver is called for each delivery, in queue order, from one goroutine
	// per queue. It must not block: a face copies the delivery into its own
	// bounded send buffer (the prefetch window bounds that buffer).
	Deliver func(*Delivery)
	// Cancelled is called once if the broker cancels the consumer (queue
	// deleted, node lost): AMQP's consumer cancel notification. May be nil.
	Cancelled func(reason string)
}

// ConsumerInfo describes a consumer (management API /api/consumers).
type ConsumerInfo struct {
	VHost       string
	Queue       string
	Tag         string
	Owner       string // the connection id given in ConsumeOptions.Owner
	AckRequired bool
	Exclusive   bool
	Prefetch    int  // 0 = the broker's per-consumer limit
	Unacked     int  // deliveries not yet settled
	Active      bool // false for waiting single-active-consumer consumers
	Priority    int64
	Args        Table
}

// Delivery is a message handed to a consumer or returned by Get.
type Delivery struct {
	Queue        string
	ConsumerTag  string // "" for Get
	Exchange     string
	RoutingKey   string
	Redelivered  bool
	Message      *Message
	MessageCount int // Get only: messages left ready in the queue

	settle settler
}

// Ack acknowledges the delivery; the message is removed from its queue.
// Settling twice returns a PreconditionFailed error (AMQP "unknown delivery tag").
func (d *Delivery) Ack() error { return d.settle.ack() }

// Nack rejects the delivery. With requeue the message returns to its
// original place in the queue and is redelivered (Redelivered=true);
// without, it is dead-lettered (reason "rejected") or dropped.
func (d *Delivery) Nack(requeue bool) error { return d.settle.nack(requeue) }

// Limiter is a shared prefetch window (AMQP basic.qos with global=true).
type Limiter struct{ limiterState }

// NewLimiter returns a window of n unacknowledged deliveries; 0 = unlimited.
func NewLimiter(n int) *Limiter { return newLimiter(n) }

// SetLimit changes the window; deliveries resume if it grew.
func (l *Limiter) SetLimit(n int) { l.setLimit(n) }
