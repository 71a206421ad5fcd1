package amqp

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/broker"
)

// Config configures a Server. Every limit is per connection unless it says
// otherwise; the zero value of each field is documented.
type Config struct {
	// Broker is the broker core the face serves. Required, and started
	// before the server accepts connections.
	Broker *broker.Broker
	// Logger receives the face's logs; nil discards them.
	Logger *slog.Logger

	// MaxConnections bounds open connections across the server; 0 means
	// 10,000. Connections beyond it are closed right after accept.
	MaxConnections int
	// MaxChannels is the channel-max offered in connection.tune; 0 means
	// 2047 (RabbitMQ's default). A client may ask for fewer, not more.
	MaxChannels int
	// FrameMax is the frame-max offered in connection.tune, in bytes; 0
	// means 131,072 (RabbitMQ's default). At least 4096.
	FrameMax int
	// Heartbeat is the heartbeat interval offered in connection.tune; 0
	// means 60s. The client's answer wins; a connection silent for two
	// intervals is closed. Whole seconds; at most 65535s.
	Heartbeat time.Duration
	// NoHeartbeat offers heartbeat 0 (disabled) instead of Heartbeat.
	NoHeartbeat bool
	// HandshakeTimeout bounds the time from accept to connection.open-ok;
	// 0 means 10s.
	HandshakeTimeout time.Duration
	// CloseTimeout bounds each half of a connection's closing handshake, as
	// RabbitMQ's 30 s closing timeout does: the wait for close-ok after the
	// server sends connection.close (frames read meanwhile are discarded),
	// and, after the server answers the client's connection.close, the time
	// it keeps reading and discarding input until the client closes its
	// socket (closing with unread input would reset the connection). A
	// negotiated heartbeat interval shorter than it bounds both instead. 0
	// means 30s.
	CloseTimeout time.Duration

	// MaxOutboundBytes bounds the bytes queued for one connection's socket
	// (deliveries, confirms, replies); 0 means 64 MiB. A client that lets
	// more pile up (it reads too slowly for its prefetch window) is
	// disconnected with 506 RESOURCE_ERROR.
	MaxOutboundBytes int64
	// NoAckWindow bounds the deliveries of a no-ack consumer that are
	// handed out but not yet written to the socket; 0 means 1024. The face
	// settles each such delivery once it is written.
	NoAckWindow int
	// MaxMessageBytes bounds a published message body; 0 means 16 MiB (the
	// broker's default; keep the two equal). A larger content header fails
	// the channel with 406 before any body is buffered.
	MaxMessageBytes int
	// MaxTxMessages bounds the publishes and acknowledgements buffered in
	// one transaction; 0 means 65,536. More fail the channel with 406.
	MaxTxMessages int
	// MaxTxBytes bounds the message bytes buffered in one transaction; 0
	// means 64 MiB.
	MaxTxBytes int64

	// AllowRemoteGuest lets the user "guest" connect from addresses other
	// than loopback (RabbitMQ's loopback_users = none); false refuses it.
	AllowRemoteGuest bool
	// ClusterName is the cluster_name server property; "" means the broker
	// node's name.
	ClusterName string
	// Version is the version server property; "" means "dev".
	Version string
}

const (
	defaultMaxConnections   = 10_000
	defaultMaxChannels      = 2047
	defaultFrameMax         = 131_072
	defaultHeartbeat        = 60 * time.Second
	defaultHandshakeTimeout = 10 * time.Second
	defaultCloseTimeout     = 30 * time.Second // RabbitMQ's CLOSING_TIMEOUT
	defaultMaxOutbound      = 64 << 20
	defaultNoAckWindow      = 1024
	defaultMaxTxMessages    = 65_536
	defaultMaxMessageBytes  = 16 << 20
	defaultMaxTxBytes       = 64 << 20
)

func (c Config) withDefaults() (Config, error) {
	if c.Broker == nil {
		return c, errors.New("amqp: Config.Broker is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.MaxConnections = cmp.Or(c.MaxConnections, defaultMaxConnections)
	c.MaxChannels = cmp.Or(c.MaxChannels, defaultMaxChannels)
	c.FrameMax = cmp.Or(c.FrameMax, defaultFrameMax)
	c.Heartbeat = cmp.Or(c.Heartbeat, defaultHeartbeat)
	c.HandshakeTimeout = cmp.Or(c.HandshakeTimeout, defaultHandshakeTimeout)
	c.CloseTimeout = cmp.Or(c.CloseTimeout, defaultCloseTimeout)
	c.MaxOutboundBytes = cmp.Or(c.MaxOutboundBytes, defaultMaxOutbound)
	c.NoAckWindow = cmp.Or(c.NoAckWindow, defaultNoAckWindow)
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, defaultMaxMessageBytes)
	c.MaxTxMessages = cmp.Or(c.MaxTxMessages, defaultMaxTxMessages)
	c.MaxTxBytes = cmp.Or(c.MaxTxBytes, defaultMaxTxBytes)
	c.Version = cmp.Or(c.Version, "dev")
	switch {
	case c.MaxConnections < 0:
		return c, fmt.Errorf("amqp: Config.MaxConnections %d is negative", c.MaxConnections)
	case c.MaxChannels < 1 || c.MaxChannels > 65535:
		return c, fmt.Errorf("amqp: Config.MaxChannels %d is outside 1..65535", c.MaxChannels)
	case c.FrameMax < wire.FrameMinSize || c.FrameMax > 1<<30:
		return c, fmt.Errorf("amqp: Config.FrameMax %d is outside %d..1GiB", c.FrameMax, wire.FrameMinSize)
	case c.Heartbeat < time.Second || c.Heartbeat > 65535*time.Second:
		return c, fmt.Errorf("amqp: Config.Heartbeat %s is outside 1s..65535s", c.Heartbeat)
	case c.HandshakeTimeout < 0, c.CloseTimeout < 0:
		return c, errors.New("amqp: Config.HandshakeTimeout and CloseTimeout must not be negative")
	case c.MaxOutboundBytes < 64<<10:
		return c, fmt.Errorf("amqp: Config.MaxOutboundBytes %d is below 64 KiB", c.MaxOutboundBytes)
	case c.NoAckWindow < 1, c.MaxTxMessages < 1, c.MaxTxBytes < 1, c.MaxMessageBytes < 1:
		return c, errors.New("amqp: Config.NoAckWindow, MaxMessageBytes, MaxTxMessages and MaxTxBytes must be positive")
	}
	return c, nil
}
