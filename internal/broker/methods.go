package broker

import (
	"context"

	"github.com/heraldhq/herald/internal/engine"
)

// Broker is Herald's core. Create with New, then Start; Stop to shut down.
// All methods are safe for concurrent use.
type Broker struct{ core }

// New validates cfg and returns a broker that is not started.
func New(cfg Config) (*Broker, error) { return newBroker(cfg) }

// Start loads metadata (creating the default vhost "/", its amq.* exchanges
// and the default user on first start), rebuilds queue indexes from the logs,
// and starts background work (expiry, delayed delivery, metadata watch).
func (b *Broker) Start(ctx context.Context) error { return b.start(ctx) }

// Stop cancels consumers, flushes pending acknowledgements and stops
// background work. Safe to call twice or before Start. It does not stop the
// engine, which its owner stops afterwards.
func (b *Broker) Stop(ctx context.Context) { b.stop(ctx) }

// ---- virtual hosts

func (b *Broker) VHosts() []VHostInfo                                { return b.vhosts() }
func (b *Broker) AddVHost(ctx context.Context, name string) error    { return b.addVHost(ctx, name) }
func (b *Broker) DeleteVHost(ctx context.Context, name string) error { return b.deleteVHost(ctx, name) }

// ---- exchanges

// DeclareExchange creates an exchange, or checks that an existing one has
// the same type and flags (PreconditionFailed otherwise). With passive it only
// checks existence (NotFound).
func (b *Broker) DeclareExchange(ctx context.Context, vhost string, spec ExchangeSpec, passive bool) (ExchangeInfo, error) {
	return b.declareExchange(ctx, vhost, spec, passive)
}

// DeleteExchange deletes an exchange and its bindings. With ifUnused it
// fails (PreconditionFailed) if the exchange is the source of a binding.
// The default exchange and amq.* exchanges cannot be deleted (AccessRefused).
func (b *Broker) DeleteExchange(ctx context.Context, vhost, name string, ifUnused bool) error {
	return b.deleteExchange(ctx, vhost, name, ifUnused)
}

// Exchange returns one exchange (NotFound if absent).
func (b *Broker) Exchange(vhost, name string) (ExchangeInfo, error) { return b.exchange(vhost, name) }

// Exchanges lists the exchanges of vhost ("" = every vhost), sorted.
func (b *Broker) Exchanges(vhost string) []ExchangeInfo { return b.exchanges(vhost) }

// ---- queues

// DeclareQueue creates a queue or checks an existing one's flags and
// arguments (PreconditionFailed if they differ). An exclusive queue of
// another owner is ResourceLocked. With passive it only checks existence.
func (b *Broker) DeclareQueue(ctx context.Context, vhost string, spec QueueSpec, passive bool) (QueueInfo, error) {
	return b.declareQueue(ctx, vhost, spec, passive)
}

// DeleteQueue deletes a queue, returning how many messages it held.
// Its consumers are cancelled (Cancelled is called).
func (b *Broker) DeleteQueue(ctx context.Context, vhost, name string, ifUnused, ifEmpty bool, owner string) (int, error) {
	return b.deleteQueue(ctx, vhost, name, ifUnused, ifEmpty, owner)
}

// PurgeQueue removes the ready messages of a queue, returning how many.
func (b *Broker) PurgeQueue(ctx context.Context, vhost, name, owner string) (int, error) {
	return b.purgeQueue(ctx, vhost, name, owner)
}

// Queue returns one queue with fresh counts (NotFound if absent).
func (b *Broker) Queue(vhost, name string) (QueueInfo, error) { return b.queueInfo(vhost, name) }

// Queues lists the queues of vhost ("" = every vhost), sorted.
func (b *Broker) Queues(vhost string) []QueueInfo { return b.queues(vhost) }

// ---- bindings

// Bind adds a binding (idempotent). NotFound if either end is missing.
func (b *Broker) Bind(ctx context.Context, vhost string, bd Binding) error {
	return b.bind(ctx, vhost, bd)
}

// Unbind removes a binding; removing a missing binding is not an error
// (RabbitMQ), but missing ends are NotFound.
func (b *Broker) Unbind(ctx context.Context, vhost string, bd Binding) error {
	return b.unbind(ctx, vhost, bd)
}

// Bindings lists the bindings of vhost ("" = every vhost), including the
// implicit default-exchange binding of every queue, as RabbitMQ shows them.
func (b *Broker) Bindings(vhost string) []BindingInfo { return b.bindings(vhost) }

// ---- messages

// Publish routes and stores a message, waiting until every queue holds it
// durably. A queue refusing it by overflow (reject-publish) makes the error
// errs.Rejected; the message may still have reached other queues.
func (b *Broker) Publish(ctx context.Context, p Publishing) (PublishResult, error) {
	return b.publish(ctx, p)
}

// PublishAsync routes a message and starts storing it. Routing errors
// (NotFound exchange, AccessRefused, TooLarge) are returned at once and done is
// not called; otherwise done is called exactly once when the message is
// stored (nil) or refused (errs.Rejected). Calls from one goroutine complete
// in order. It blocks while the engine's in-flight window is full (flow
// control). done must not block.
func (b *Broker) PublishAsync(p Publishing, done func(error)) (PublishResult, error) {
	return b.publishAsync(p, done)
}

// Consume starts a consumer on a queue.
func (b *Broker) Consume(ctx context.Context, vhost, queue string, opts ConsumeOptions) (*Consumer, error) {
	return b.consume(ctx, vhost, queue, opts)
}

// Get takes one ready message (AMQP basic.get); (nil, nil) if none.
func (b *Broker) Get(ctx context.Context, vhost, queue string, noAck bool, owner string) (*Delivery, error) {
	return b.get(ctx, vhost, queue, noAck, owner)
}

// ReleaseOwner deletes the exclusive queues of owner (a closed connection).
func (b *Broker) ReleaseOwner(ctx context.Context, owner string) { b.releaseOwner(ctx, owner) }

// ---- users and permissions

func (b *Broker) Users() []User                                     { return b.users() }
func (b *Broker) PutUser(ctx context.Context, u User) error         { return b.putUser(ctx, u) }
func (b *Broker) DeleteUser(ctx context.Context, name string) error { return b.deleteUser(ctx, name) }

// Authenticate checks a password; Unauthorized on failure.
func (b *Broker) Authenticate(user, pass string) (User, error) { return b.authenticate(user, pass) }

func (b *Broker) Permissions() []Permission { return b.permissions() }
func (b *Broker) SetPermission(ctx context.Context, p Permission) error {
	return b.setPermission(ctx, p)
}
func (b *Broker) DeletePermission(ctx context.Context, user, vhost string) error {
	return b.deletePermission(ctx, user, vhost)
}

// VHostResource passed to Authorize checks access to the vhost itself (the
// user has any permission entry on it), as AMQP connection.open does.
const VHostResource = "\x00vhost"

// Authorize checks that user may access resource (an exchange or queue
// name; "" is the default exchange, checked as "amq.default" like RabbitMQ)
// on vhost; AccessRefused otherwise. VHostResource checks vhost access.
func (b *Broker) Authorize(user, vhost string, a Access, resource string) error {
	return b.authorize(user, vhost, a, resource)
}

// ---- connections and flow control

// RegisterConnection lists c in Connections until the returned func is called.
func (b *Broker) RegisterConnection(c Conn) (unregister func()) { return b.registerConn(c) }

// Consumers lists the consumers of vhost ("" = every vhost) that this node
// serves, sorted by vhost, queue and tag.
func (b *Broker) Consumers(vhost string) []ConsumerInfo { return b.consumers(vhost) }

// Connections lists registered connections.
func (b *Broker) Connections() []ConnInfo { return b.connections() }

// CloseConnection closes a registered connection by name (NotFound if absent).
func (b *Broker) CloseConnection(name, reason string) error { return b.closeConn(name, reason) }

// OnAlarm calls fn(true, reason) when publishers must be blocked (memory or
// disk threshold crossed) and fn(false, "") when they may resume; it calls fn
// at once with the current state. The returned func unsubscribes.
func (b *Broker) OnAlarm(fn func(blocked bool, reason string)) (unsubscribe func()) {
	return b.onAlarm(fn)
}

// Overview returns totals for the management API.
func (b *Broker) Overview() Overview { return b.overview() }

// Overview is a snapshot of broker-wide totals.
type Overview struct {
	Node                     string
	Messages, Ready, Unacked int
	Queues, Exchanges        int
	Consumers, Connections   int
	Published, Delivered     uint64 // since start
	Acked, Redelivered       uint64
	Engine                   engine.Stats // the store's group commits
}

// Consumer is an active consumer.
type Consumer struct{ consumerState }

// Tag is the consumer tag.
func (c *Consumer) Tag() string { return c.tag }

// Cancel stops deliveries. Unacknowledged deliveries stay outstanding
// until acked or nacked (or the face nacks them with requeue on close).
// Safe to call twice.
func (c *Consumer) Cancel() { c.cancel() }
