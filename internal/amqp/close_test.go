package amqp_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/amqp"
	"github.com/heraldhq/herald/internal/amqp/wire"
)

// writePublishes writes n small publishes to queue on channel ch, unflushed.
func (c *rawClient) writePublishes(t *testing.T, ch uint16, queue string, n int) {
	t.Helper()
	for range n {
		require.NoError(t, c.w.WriteContent(ch, &wire.BasicPublish{RoutingKey: queue}, &wire.Properties{}, []byte("burst message")))
	}
}

// rawDialQueue opens a connection and channel 1, and declares queue on it.
func rawDialQueue(t *testing.T, addr, queue string) *rawClient {
	t.Helper()
	c := rawDial(t, addr)
	c.open(t, wire.ProtocolHeader, "PLAIN", 0)
	c.send(t, 1, &wire.ChannelOpen{})
	_, m := c.next(t)
	require.IsType(t, &wire.ChannelOpenOk{}, m)
	c.send(t, 1, &wire.QueueDeclare{Queue: queue})
	_, m = c.next(t)
	require.IsType(t, &wire.QueueDeclareOk{}, m)
	return c
}

// readToEOF reads until the server closes the socket and returns how the
// read ended: io.EOF for an orderly close, an error such as ECONNRESET
// otherwise.
func readToEOF(nc net.Conn) error {
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			return err
		}
	}
}

// A client such as amqplib writes connection.close ahead of publishes still
// queued in its buffers. The server answers close-ok and then reads and
// discards what follows until the client closes, instead of closing a socket
// with unread input (the kernel would reset the connection, and the client
// would see ECONNRESET instead of close-ok).
func TestClientCloseWithFramesInFlight(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	c := rawDialQueue(t, env.addr, "burst")
	// close, then a burst the server reads only after its close-ok.
	require.NoError(t, c.w.WriteMethod(0, &wire.ConnectionClose{ReplyCode: 200, ReplyText: "bye"}))
	require.NoError(t, c.w.Flush())
	written := make(chan error, 1)
	go func() {
		for range 20 {
			for range 500 {
				if err := c.w.WriteContent(1, &wire.BasicPublish{RoutingKey: "burst"}, &wire.Properties{}, []byte("burst message")); err != nil {
					written <- err
					return
				}
			}
			if err := c.w.Flush(); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	_, m := c.next(t)
	require.IsType(t, &wire.ConnectionCloseOk{}, m)
	require.NoError(t, <-written, "the server reads what the client sends after close-ok")
	require.NoError(t, c.nc.(*net.TCPConn).CloseWrite())
	require.ErrorIs(t, readToEOF(c.nc), io.EOF, "the server closes in order once the client has")

	// Frames after the close were discarded, as RabbitMQ does.
	q, err := env.b.Queue("/", "burst")
	require.NoError(t, err)
	require.Zero(t, q.Messages)
}

// After close-ok the server waits for the client to close its socket, but
// not for longer than CloseTimeout.
func TestClientCloseDrainIsBounded(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	_, env := setup(t, func(cfg *amqp.Config) { cfg.CloseTimeout = timeout })
	c := rawDial(t, env.addr)
	c.open(t, wire.ProtocolHeader, "PLAIN", 0)
	c.send(t, 0, &wire.ConnectionClose{ReplyCode: 200, ReplyText: "bye"})
	_, m := c.next(t)
	require.IsType(t, &wire.ConnectionCloseOk{}, m)
	start := time.Now()
	c.writePublishes(t, 1, "nowhere", 10)
	require.NoError(t, c.w.Flush())
	// The client neither closes nor sends more: the server gives up on it.
	err := readToEOF(c.nc)
	require.True(t, errors.Is(err, io.EOF), "socket closed in order, got %v", err)
	require.GreaterOrEqual(t, time.Since(start), timeout-50*time.Millisecond, "the server waited for the client to close first")
}

// After the server sends connection.close, frames are read and discarded
// until close-ok, then the socket closes in order.
func TestServerCloseDiscardsUntilCloseOk(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	c := rawDialQueue(t, env.addr, "after-close")
	// A connection exception (a method on a channel that is not open), then
	// publishes and a declare the client sent before it read the close.
	require.NoError(t, c.w.WriteMethod(7, &wire.BasicQos{}))
	c.writePublishes(t, 1, "after-close", 2000)
	require.NoError(t, c.w.WriteMethod(1, &wire.QueueDeclare{Queue: "never-declared"}))
	require.NoError(t, c.w.Flush())
	var cl *wire.ConnectionClose
	for cl == nil {
		_, m := c.next(t)
		cl, _ = m.(*wire.ConnectionClose)
	}
	require.Equal(t, uint16(wire.ChannelError), cl.ReplyCode, cl.ReplyText)
	c.send(t, 0, &wire.ConnectionCloseOk{})
	require.ErrorIs(t, readToEOF(c.nc), io.EOF)

	q, err := env.b.Queue("/", "after-close")
	require.NoError(t, err)
	require.Zero(t, q.Messages, "publishes after connection.close are discarded")
	_, err = env.b.Queue("/", "never-declared")
	require.Error(t, err, "methods after connection.close are discarded")
}

// After the server closes a channel, the client's frames on it (publishes
// with their content, other methods) are discarded until close-ok; the
// channel number can then be opened again.
func TestServerChannelCloseDiscardsUntilCloseOk(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	c := rawDialQueue(t, env.addr, "kept")
	// A channel exception (publish to a missing exchange), then frames the
	// client sent before it read channel.close.
	require.NoError(t, c.w.WriteContent(1, &wire.BasicPublish{Exchange: "missing"}, &wire.Properties{}, []byte("x")))
	c.writePublishes(t, 1, "kept", 1000)
	require.NoError(t, c.w.WriteMethod(1, &wire.QueueDeclare{Queue: "discarded"}))
	require.NoError(t, c.w.Flush())
	ch, m := c.next(t)
	require.Equal(t, uint16(1), ch)
	cl, ok := m.(*wire.ChannelClose)
	require.True(t, ok, "got %s", m.Name())
	require.Equal(t, uint16(wire.NotFound), cl.ReplyCode, cl.ReplyText)
	c.send(t, 1, &wire.ChannelCloseOk{})

	c.send(t, 1, &wire.ChannelOpen{})
	ch, m = c.next(t)
	require.Equal(t, uint16(1), ch)
	require.IsType(t, &wire.ChannelOpenOk{}, m, "nothing was answered on the closing channel")
	q, err := env.b.Queue("/", "kept")
	require.NoError(t, err)
	require.Zero(t, q.Messages, "publishes on a closing channel are discarded")
	_, err = env.b.Queue("/", "discarded")
	require.Error(t, err, "methods on a closing channel are discarded")

	c.send(t, 0, &wire.ConnectionClose{ReplyCode: 200})
	_, m = c.next(t)
	require.IsType(t, &wire.ConnectionCloseOk{}, m)
}

// The connection's exclusive queues are deleted before close-ok, as in
// RabbitMQ: once Close returns, another connection may declare them again.
func TestExclusiveQueuesGoneBeforeCloseOk(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	for i := range 20 {
		conn, ch := channel(t, env.url)
		_, err := ch.QueueDeclare("excl-again", false, false, true, false, nil)
		require.NoError(t, err, "declare %d", i)
		require.NoError(t, conn.Close())
	}
}
