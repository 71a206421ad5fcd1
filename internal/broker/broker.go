package broker

import (
	"cmp"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/errs"
)

// Config configures a Broker.
type Config struct {
	// Engine stores messages and metadata. Required.
	Engine *engine.Engine
	// Logger receives the broker's logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxMessageBytes bounds a message body; 0 means 16 MiB. Larger
	// publishes fail with errs.TooLarge.
	MaxMessageBytes int
	// MemoryBudget bounds the message bodies kept in memory across all
	// queues; 0 means 256 MiB. Beyond it, bodies stay only in the log and are
	// read back on delivery (like RabbitMQ's lazy queues).
	MemoryBudget int64
	// MaxUnacked bounds unacknowledged deliveries per consumer when its
	// prefetch is 0 (unlimited in AMQP terms); 0 means 65535.
	MaxUnacked int
	// MaxQueues bounds the number of queues per node; 0 means 100,000.
	// Declaring more fails with errs.ResourceError.
	MaxQueues int
	// MaxExchanges bounds the number of exchanges; 0 means 100,000.
	MaxExchanges int
	// MaxBindings bounds the number of bindings; 0 means 1,000,000.
	MaxBindings int
	// QueueReplicas is the replica count of message logs in a cluster; 0
	// means 3 when clustered, 1 otherwise.
	QueueReplicas int
	// NodeTimeout (cluster mode) is how long a node may go without writing
	// its heartbeat (every NodeTimeout/5) before the other nodes take over
	// the queues it serves and the delayed messages it holds; 0 means 15 s.
	// A node that stops (Stop) hands them over at once.
	NodeTimeout time.Duration
	// DefaultUser and DefaultPass are created on first start if no user
	// exists; "" means guest/guest (which faces accept only from loopback).
	DefaultUser, DefaultPass string
	// Now is the clock; nil means time.Now. Tests only.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, 16<<20)
	c.MemoryBudget = cmp.Or(c.MemoryBudget, 256<<20)
	c.MaxUnacked = cmp.Or(c.MaxUnacked, 65535)
	c.MaxQueues = cmp.Or(c.MaxQueues, 100_000)
	c.MaxExchanges = cmp.Or(c.MaxExchanges, 100_000)
	c.MaxBindings = cmp.Or(c.MaxBindings, 1_000_000)
	c.NodeTimeout = cmp.Or(c.NodeTimeout, 15*time.Second)
	c.DefaultUser = cmp.Or(c.DefaultUser, "guest")
	c.DefaultPass = cmp.Or(c.DefaultPass, "guest")
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// VHostInfo describes a virtual host.
type VHostInfo struct {
	Name     string
	Messages int
}

// BindingInfo is a binding with its vhost.
type BindingInfo struct {
	VHost string
	Binding
}

// User is a broker user. Password is only used when writing; PasswordHash is
// RabbitMQ's rabbit_password_hashing_sha256 format (base64 of 4-byte salt +
// sha256(salt+password)).
type User struct {
	Name         string
	Password     string `json:"-"`
	PasswordHash string
	Tags         []string // "administrator", "management", ...
}

// Permission grants a user regular-expression rights on a vhost's resources.
type Permission struct {
	User      string
	VHost     string
	Configure string
	Write     string
	Read      string
}

// Access is the kind of right a face checks before acting.
type Access int

const (
	AccessConfigure Access = iota // declare/delete
	AccessWrite                   // publish to an exchange, bind a queue (write on queue)
	AccessRead                    // consume/get from a queue, bind from an exchange
)

// ConnInfo describes a client connection registered by a face.
type ConnInfo struct {
	Name             string // unique, e.g. "127.0.0.1:5555 -> 127.0.0.1:5672"
	ID               string // the owner id the face gives ConsumeOptions.Owner and QueueSpec.Owner
	Protocol         string // "AMQP 0-9-1", "Pusher 7", ...
	User             string
	VHost            string
	Peer             string
	ClientProperties Table
	Channels         int
	ConnectedAt      time.Time
	RecvOct, SendOct int64
}

// Conn is what a face registers so the broker can list and close it.
type Conn interface {
	Info() ConnInfo
	// Close closes the connection with a reason shown to the client
	// (AMQP connection.close 320 CONNECTION_FORCED).
	Close(reason string)
}

var _ = errs.New
