package amqp_test

import (
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/amqp/wire"
)

// channel.flow from the client is answered as RabbitMQ 3.x does:
// active=true with flow-ok, active=false with connection.close 540
// NOT_IMPLEMENTED (rabbit_channel raises protocol_error(not_implemented,
// "active=false"), a connection exception). The server's own flow control
// is connection.blocked.
func TestClientChannelFlow(t *testing.T) {
	t.Parallel()
	_, env := setup(t)

	conn, ch := channel(t, env.url)
	require.NoError(t, ch.Flow(true), "flow active=true is answered with flow-ok")
	_, err := ch.QueueDeclare("flow-on", false, false, true, false, nil)
	require.NoError(t, err, "the channel is still usable")

	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	e := amqpErr(t, ch.Flow(false))
	require.Equal(t, amqp091.NotImplemented, e.Code)
	select {
	case e := <-closed:
		require.NotNil(t, e)
		require.Equal(t, amqp091.NotImplemented, e.Code, "a connection exception")
		require.Equal(t, "NOT_IMPLEMENTED - active=false", e.Reason)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the connection was not closed")
	}

	// On the wire: connection.close naming channel.flow as the failing method.
	c := rawDial(t, env.addr)
	c.open(t, wire.ProtocolHeader, "PLAIN", 0)
	c.send(t, 1, &wire.ChannelOpen{})
	_, m := c.next(t)
	require.IsType(t, &wire.ChannelOpenOk{}, m)
	c.send(t, 1, &wire.ChannelFlow{Active: true})
	chID, m := c.next(t)
	require.Equal(t, uint16(1), chID)
	require.Equal(t, &wire.ChannelFlowOk{Active: true}, m)
	c.send(t, 1, &wire.ChannelFlow{Active: false})
	chID, m = c.next(t)
	require.Equal(t, uint16(0), chID)
	cl, ok := m.(*wire.ConnectionClose)
	require.True(t, ok, "got %s", m.Name())
	classID, methodID := (&wire.ChannelFlow{}).ID()
	require.Equal(t, wire.ConnectionClose{ReplyCode: wire.NotImplemented, ReplyText: "NOT_IMPLEMENTED - active=false", ClassID: classID, MethodID: methodID}, *cl)
	c.send(t, 0, &wire.ConnectionCloseOk{})
	require.Error(t, readToEOF(c.nc))
}
