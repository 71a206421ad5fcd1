package amqp_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/amqp"
	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/broker"
)

// rawClient speaks AMQP frame by frame, to send what real clients never do.
type rawClient struct {
	nc net.Conn
	r  *wire.Reader
	w  *wire.Writer
}

func rawDial(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(20*time.Second)))
	return &rawClient{nc: nc, r: wire.NewReader(nc, 1<<20), w: wire.NewWriter(nc, 1<<20)}
}

func (c *rawClient) send(t *testing.T, ch uint16, m wire.Method) {
	t.Helper()
	require.NoError(t, c.w.WriteMethod(ch, m))
	require.NoError(t, c.w.Flush())
}

// next returns the next method, skipping heartbeats.
func (c *rawClient) next(t *testing.T) (uint16, wire.Method) {
	t.Helper()
	for {
		f, err := c.r.ReadFrame()
		require.NoError(t, err)
		if f.Type == wire.FrameHeartbeat {
			continue
		}
		require.Equal(t, uint8(wire.FrameMethod), f.Type)
		m, err := wire.ReadMethod(f.Payload)
		require.NoError(t, err)
		return f.Channel, m
	}
}

// open negotiates a connection with PLAIN (or AMQPLAIN) and heartbeat hb.
func (c *rawClient) open(t *testing.T, header string, mechanism string, hb uint16) {
	t.Helper()
	_, err := c.nc.Write([]byte(header))
	require.NoError(t, err)
	_, m := c.next(t)
	start := m.(*wire.ConnectionStart)
	require.Equal(t, "PLAIN AMQPLAIN", start.Mechanisms)
	caps := start.ServerProperties["capabilities"].(wire.Table)
	for _, k := range []string{"publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
		"connection.blocked", "consumer_priorities", "authentication_failure_close", "per_consumer_qos", "direct_reply_to"} {
		require.Equal(t, true, caps[k], k)
	}
	resp := "\x00guest\x00guest"
	if mechanism == "AMQPLAIN" {
		b, err := wire.AppendTable(nil, wire.Table{"LOGIN": "guest", "PASSWORD": "guest"})
		require.NoError(t, err)
		resp = string(b[4:])
	}
	c.send(t, 0, &wire.ConnectionStartOk{ClientProperties: wire.Table{"product": "raw"}, Mechanism: mechanism, Response: resp, Locale: "en_US"})
	_, m = c.next(t)
	tune := m.(*wire.ConnectionTune)
	require.Equal(t, uint16(2047), tune.ChannelMax)
	require.Equal(t, uint32(131072), tune.FrameMax)
	c.send(t, 0, &wire.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax, Heartbeat: hb})
	c.send(t, 0, &wire.ConnectionOpen{VirtualHost: "/"})
	_, m = c.next(t)
	require.IsType(t, &wire.ConnectionOpenOk{}, m)
}

func TestRawNegotiationOldHeaderAndAMQPLAIN(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	c := rawDial(t, env.addr)
	c.open(t, "AMQP\x01\x01\x00\x09", "AMQPLAIN", 0)
	c.send(t, 1, &wire.ChannelOpen{})
	ch, m := c.next(t)
	require.Equal(t, uint16(1), ch)
	require.IsType(t, &wire.ChannelOpenOk{}, m)
	c.send(t, 0, &wire.ConnectionClose{ReplyCode: 200, ReplyText: "bye"})
	_, m = c.next(t)
	require.IsType(t, &wire.ConnectionCloseOk{}, m)
}

func TestUnsupportedProtocolHeader(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	c := rawDial(t, env.addr)
	_, err := c.nc.Write([]byte("AMQP\x00\x01\x00\x00"))
	require.NoError(t, err)
	got, err := io.ReadAll(c.nc)
	require.NoError(t, err)
	require.Equal(t, wire.ProtocolHeader, string(got), "the server answers with the version it speaks and closes")
}

func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, good := channel(t, env.url)
	_, err := good.QueueDeclare("survivor", false, false, false, false, nil)
	require.NoError(t, err)

	for name, frame := range map[string][]byte{
		"bad frame end":  {wire.FrameMethod, 0, 1, 0, 0, 0, 4, 0, 20, 0, 10, 0},
		"oversized":      {wire.FrameBody, 0, 1, 0x7f, 0, 0, 0},
		"unknown type":   {9, 0, 1, 0, 0, 0, 0, wire.FrameEnd},
		"unknown method": {wire.FrameMethod, 0, 0, 0, 0, 0, 4, 0, 99, 0, 1, wire.FrameEnd},
	} {
		c := rawDial(t, env.addr)
		c.open(t, wire.ProtocolHeader, "PLAIN", 0)
		_, err := c.nc.Write(frame)
		require.NoError(t, err)
		_, m := c.next(t)
		cl, ok := m.(*wire.ConnectionClose)
		require.True(t, ok, "%s: got %s", name, m.Name())
		require.True(t, wire.IsHardError(cl.ReplyCode), "%s: %d %s", name, cl.ReplyCode, cl.ReplyText)
		t.Logf("%s: %d %s", name, cl.ReplyCode, cl.ReplyText)
	}

	// The well-behaved connection did not notice.
	publish(t, good, "", "survivor", "still here")
	ds, err := good.Consume("survivor", "", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, "still here", string(recv(t, ds).Body))
}

func TestUnexpectedFrames(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	cases := map[string]func(c *rawClient){
		"body without publish": func(c *rawClient) {
			require.NoError(t, c.w.WriteBody(1, []byte("x")))
		},
		"method instead of header": func(c *rawClient) {
			require.NoError(t, c.w.WriteMethod(1, &wire.BasicPublish{RoutingKey: "q"}))
			require.NoError(t, c.w.WriteMethod(1, &wire.BasicQos{}))
		},
		"method on closed channel": func(c *rawClient) {
			require.NoError(t, c.w.WriteMethod(5, &wire.BasicQos{}))
		},
		"immediate": func(c *rawClient) {
			require.NoError(t, c.w.WriteContent(1, &wire.BasicPublish{RoutingKey: "q", Immediate: true}, &wire.Properties{}, []byte("x")))
		},
		"consumer tag reuse": func(c *rawClient) {
			require.NoError(t, c.w.WriteMethod(1, &wire.QueueDeclare{Queue: "reuse"}))
			require.NoError(t, c.w.WriteMethod(1, &wire.BasicConsume{Queue: "reuse", ConsumerTag: "t", NoWait: true}))
			require.NoError(t, c.w.WriteMethod(1, &wire.BasicConsume{Queue: "reuse", ConsumerTag: "t", NoWait: true}))
		},
	}
	want := map[string]uint16{
		"body without publish": wire.UnexpectedFrame, "method instead of header": wire.UnexpectedFrame,
		"method on closed channel": wire.ChannelError, "immediate": wire.NotImplemented, "consumer tag reuse": wire.NotAllowed,
	}
	for name, send := range cases {
		c := rawDial(t, env.addr)
		c.open(t, wire.ProtocolHeader, "PLAIN", 0)
		c.send(t, 1, &wire.ChannelOpen{})
		_, m := c.next(t)
		require.IsType(t, &wire.ChannelOpenOk{}, m)
		send(c)
		require.NoError(t, c.w.Flush())
		var cl *wire.ConnectionClose
		for cl == nil {
			_, m = c.next(t)
			cl, _ = m.(*wire.ConnectionClose)
		}
		require.Equal(t, want[name], cl.ReplyCode, "%s: %s", name, cl.ReplyText)
		c.send(t, 0, &wire.ConnectionCloseOk{})
		_, err := c.r.ReadFrame()
		require.Error(t, err, "socket closed after close-ok")
	}
}

func TestChannelExceptionKeepsConnectionUsable(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	conn := dial(t, env.url)
	ch, err := conn.Channel()
	require.NoError(t, err)
	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))

	_, err = ch.QueueDeclarePassive("missing", false, false, false, false, nil)
	e := amqpErr(t, err)
	require.Equal(t, 404, e.Code)
	require.Contains(t, e.Reason, "NOT_FOUND - no queue 'missing'")
	require.False(t, e.Server == false)
	require.NotNil(t, <-closed)

	ch2, err := conn.Channel()
	require.NoError(t, err)
	for code, provoke := range map[int]func(*amqp091.Channel) error{
		403: func(c *amqp091.Channel) error {
			return c.ExchangeDeclare("amq.custom", "direct", false, false, false, false, nil)
		},
		406: func(c *amqp091.Channel) error {
			if _, err := c.QueueDeclare("q406", false, false, false, false, nil); err != nil {
				return err
			}
			_, err := c.QueueDeclare("q406", true, false, false, false, nil)
			return err
		},
		404: func(c *amqp091.Channel) error { return c.QueueBind("nope", "", "amq.direct", false, nil) },
	} {
		ch, err := conn.Channel()
		require.NoError(t, err)
		require.Equal(t, code, amqpErr(t, provoke(ch)).Code)
	}
	_, err = ch2.QueueDeclare("fine", false, false, false, false, nil)
	require.NoError(t, err, "the connection outlives channel exceptions")
	require.False(t, conn.IsClosed())

	// Acking an unknown delivery tag is a channel exception too.
	ch3, err := conn.Channel()
	require.NoError(t, err)
	closed3 := ch3.NotifyClose(make(chan *amqp091.Error, 1))
	require.NoError(t, ch3.Ack(42, false))
	select {
	case e := <-closed3:
		require.Equal(t, 406, e.Code)
		require.Contains(t, e.Reason, "unknown delivery tag 42")
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no channel.close")
	}
}

func TestExclusiveQueues(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	connA, chA := channel(t, env.url)
	q, err := chA.QueueDeclare("mine", false, false, true, false, nil)
	require.NoError(t, err)
	_, chB := channel(t, env.url)
	_, err = chB.QueueDeclare(q.Name, false, false, true, false, nil)
	require.Equal(t, 405, amqpErr(t, err).Code)
	require.NoError(t, connA.Close())
	eventually(t, func() bool { _, err := env.b.Queue("/", "mine"); return err != nil }, "exclusive queue deleted with its connection")
}

func TestUnackedRequeuedWhenChannelCloses(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	conn, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("redo", true, false, false, false, nil)
	require.NoError(t, err)
	publish(t, ch, "", "redo", "a")
	publish(t, ch, "", "redo", "b")
	ds, err := ch.Consume("redo", "", false, false, false, false, nil)
	require.NoError(t, err)
	recv(t, ds)
	recv(t, ds)
	require.NoError(t, ch.Close())

	ch2, err := conn.Channel()
	require.NoError(t, err)
	ds2, err := ch2.Consume("redo", "", false, false, false, false, nil)
	require.NoError(t, err)
	got := map[string]bool{}
	for range 2 {
		d := recv(t, ds2)
		require.True(t, d.Redelivered)
		got[string(d.Body)] = true
	}
	require.Equal(t, map[string]bool{"a": true, "b": true}, got)

	// And when the connection closes.
	require.NoError(t, conn.Close())
	_, ch3 := channel(t, env.url)
	ds3, err := ch3.Consume("redo", "", false, false, false, false, nil)
	require.NoError(t, err)
	for range 2 {
		require.True(t, recv(t, ds3).Redelivered)
	}
}

func TestAckNackRejectRecover(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("settle", true, false, false, false, nil)
	require.NoError(t, err)
	for _, b := range []string{"1", "2", "3", "4", "5"} {
		publish(t, ch, "", "settle", b)
	}
	ds, err := ch.Consume("settle", "c", false, false, false, false, nil)
	require.NoError(t, err)
	var last amqp091.Delivery
	for range 5 {
		last = recv(t, ds)
	}
	require.Equal(t, uint64(5), last.DeliveryTag)
	require.NoError(t, ch.Ack(2, true))        // 1, 2
	require.NoError(t, ch.Nack(4, true, true)) // 3, 4 back
	require.NoError(t, ch.Reject(5, false))    // 5 dropped
	got := map[string]bool{}
	for range 2 {
		d := recv(t, ds)
		require.True(t, d.Redelivered)
		got[string(d.Body)] = true
	}
	require.Equal(t, map[string]bool{"3": true, "4": true}, got)
	//lint:ignore SA1019 basic.recover is what is under test
	require.NoError(t, ch.Recover(true))
	for range 2 {
		d := recv(t, ds)
		require.True(t, d.Redelivered)
		require.NoError(t, d.Ack(false))
	}
	eventually(t, func() bool { q, _ := env.b.Queue("/", "settle"); return q.Messages == 0 }, "all settled")
}

func TestBasicGet(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("pull", true, false, false, false, nil)
	require.NoError(t, err)
	_, ok, err := ch.Get("pull", false)
	require.NoError(t, err)
	require.False(t, ok, "get-empty")
	publish(t, ch, "", "pull", "x")
	publish(t, ch, "", "pull", "y")
	eventually(t, func() bool { q, _ := env.b.Queue("/", "pull"); return q.Messages == 2 }, "published")
	m, ok, err := ch.Get("pull", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "x", string(m.Body))
	require.Equal(t, uint32(1), m.MessageCount)
	require.NoError(t, m.Nack(false, true))
	m, ok, err = ch.Get("pull", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "x", string(m.Body))
	require.True(t, m.Redelivered)
}

func TestConsumerCancelNotification(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("doomed", false, false, false, false, nil)
	require.NoError(t, err)
	cancels := ch.NotifyCancel(make(chan string, 1))
	_, err = ch.Consume("doomed", "watcher", false, false, false, false, nil)
	require.NoError(t, err)
	_, other := channel(t, env.url)
	_, err = other.QueueDelete("doomed", false, false, false)
	require.NoError(t, err)
	select {
	case tag := <-cancels:
		require.Equal(t, "watcher", tag)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no basic.cancel")
	}
	_, err = ch.QueueDeclare("still-works", false, true, false, false, nil)
	require.NoError(t, err)
}

func TestConnectionBlocked(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	conn, ch := channel(t, env.url)
	blocks := conn.NotifyBlocked(make(chan amqp091.Blocking, 2))
	_, err := ch.QueueDeclare("flow", false, false, false, false, nil)
	require.NoError(t, err)

	env.b.SetAlarm(true, "memory alarm: test")
	select {
	case b := <-blocks:
		require.True(t, b.Active)
		require.Equal(t, "memory alarm: test", b.Reason)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no connection.blocked")
	}
	// A publish while blocked waits for the alarm to clear.
	publish(t, ch, "", "flow", "held")
	time.Sleep(50 * time.Millisecond) // a publish that is not processed leaves no trace to poll
	q, err := env.b.Queue("/", "flow")
	require.NoError(t, err)
	require.Zero(t, q.Messages, "held while blocked")
	env.b.SetAlarm(false, "")
	select {
	case b := <-blocks:
		require.False(t, b.Active)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no connection.unblocked")
	}
	eventually(t, func() bool { q, _ := env.b.Queue("/", "flow"); return q.Messages == 1 }, "publish resumes")
}

// TestCloseWhileBlocked is amqp091-go's TestConnection_Close_WhenMemoryAlarmIsActive
// (which needs rabbitmqctl): a client closing its connection while a publish
// is held by the alarm gets a timely error, and the server, which is not
// reading that socket, notices when its heartbeats fail and drops the
// connection instead of keeping it until the alarm clears.
func TestCloseWhileBlocked(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	conn, err := amqp091.DialConfig(env.url, amqp091.Config{Heartbeat: time.Second})
	require.NoError(t, err)
	ch, err := conn.Channel()
	require.NoError(t, err)
	blocks := conn.NotifyBlocked(make(chan amqp091.Blocking, 1))
	_, err = ch.QueueDeclare("held", false, false, false, false, nil)
	require.NoError(t, err)
	env.b.SetAlarm(true, "memory alarm: test")
	t.Cleanup(func() { env.b.SetAlarm(false, "") })
	require.True(t, (<-blocks).Active)
	publish(t, ch, "", "held", "held")
	start := time.Now()
	require.Error(t, conn.CloseDeadline(time.Now().Add(time.Second)), "close-ok cannot come while the publish is held")
	require.True(t, conn.IsClosed())
	require.Less(t, time.Since(start), 5*time.Second)
	eventually(t, func() bool { return len(env.b.Connections()) == 0 }, "server dropped the connection")
	t.Logf("server dropped the connection %v after the client closed it", time.Since(start))
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, err := amqp091.Dial("amqp://guest:wrong@" + env.addr + "/")
	require.Equal(t, 403, amqpErr(t, err).Code)

	_, err = amqp091.Dial("amqp://guest:guest@" + env.addr + "/nope")
	require.Error(t, err)
	require.Contains(t, err.Error(), "vhost")

	conn, err := amqp091.DialConfig("amqp://"+env.addr+"/", amqp091.Config{SASL: []amqp091.Authentication{&amqp091.AMQPlainAuth{Username: "guest", Password: "guest"}}})
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	require.NoError(t, env.b.PutUser(bg, broker.User{Name: "alice", Password: "pw"}))
	require.NoError(t, env.b.SetPermission(bg, broker.Permission{User: "alice", VHost: "/", Configure: "^alice-.*", Write: ".*", Read: ".*"}))
	_, ch := channel(t, "amqp://alice:pw@"+env.addr+"/")
	_, err = ch.QueueDeclare("alice-q", false, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("bob-q", false, false, false, false, nil)
	require.Equal(t, 403, amqpErr(t, err).Code)
}

func TestManagementListsAndClosesConnections(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	conn := dial(t, env.url)
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	var info broker.ConnInfo
	eventually(t, func() bool {
		for _, c := range env.b.Connections() {
			if c.ClientProperties["connection_name"] == t.Name() {
				info = c
				return true
			}
		}
		return false
	}, "connection listed")
	require.Equal(t, "AMQP 0-9-1", info.Protocol)
	require.Equal(t, "guest", info.User)
	require.Equal(t, "/", info.VHost)
	require.Equal(t, conn.LocalAddr().String()+" -> "+env.addr, info.Name)
	require.NoError(t, env.b.CloseConnection(info.Name, "closed by an operator"))
	select {
	case e := <-closed:
		require.Equal(t, 320, e.Code)
		require.Contains(t, e.Reason, "CONNECTION_FORCED - closed by an operator")
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no connection.close")
	}
	eventually(t, func() bool { return len(env.b.Connections()) == 0 }, "connection unregistered")
}

func TestMissedHeartbeatsCloseTheSocket(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	c := rawDial(t, env.addr)
	c.open(t, wire.ProtocolHeader, "PLAIN", 1)
	start := time.Now()
	// Read without answering: heartbeats arrive, then the server gives up.
	var err error
	beats := 0
	for err == nil {
		var f wire.Frame
		f, err = c.r.ReadFrame()
		if err == nil && f.Type == wire.FrameHeartbeat {
			beats++
		}
	}
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
	require.Greater(t, beats, 0, "the server sends heartbeats")
	elapsed := time.Since(start)
	require.Greater(t, elapsed, 1500*time.Millisecond)
	require.Less(t, elapsed, 5*time.Second)
}

func TestHeartbeatsKeepIdleConnectionsOpen(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	conn, err := amqp091.DialConfig(env.url, amqp091.Config{Heartbeat: time.Second})
	require.NoError(t, err)
	defer conn.Close()
	time.Sleep(3 * time.Second) // idle for three heartbeat intervals
	require.False(t, conn.IsClosed())
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Close())
}

func TestLimits(t *testing.T) {
	t.Parallel()
	_, env := setup(t, func(c *amqp.Config) { c.MaxMessageBytes = 1000; c.MaxChannels = 3; c.MaxConnections = 3 })
	conn, ch := channel(t, env.url)
	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	require.NoError(t, ch.PublishWithContext(bg, "", "q", false, false, amqp091.Publishing{Body: make([]byte, 1001)}))
	e := <-closed
	require.Equal(t, 406, e.Code)
	require.Contains(t, e.Reason, "larger than configured max size")

	for range 3 {
		_, err := conn.Channel()
		require.NoError(t, err)
	}
	_, err := conn.Channel()
	require.Error(t, err, "channel-max 3")

	dial(t, env.url)
	dial(t, env.url)
	_, err = amqp091.Dial(env.url)
	require.Error(t, err, "max connections 3")
}

func TestListenIPv6(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	srv, env := setup(t)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	_, ch := channel(t, "amqp://guest:guest@"+ln.Addr().String()+"/")
	_, err = ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.Len(t, srv.Addrs(), 2)
	require.Equal(t, 1, len(env.b.Connections()))
	srv.Stop(bg)
	require.NoError(t, <-errc)
}

func TestStopClosesClientsWithConnectionForced(t *testing.T) {
	t.Parallel()
	srv, env := setup(t)
	conn := dial(t, env.url)
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	srv.Stop(bg)
	e := <-closed
	require.Equal(t, 320, e.Code)
	srv.Stop(bg) // twice is fine
	_, err := amqp091.Dial(env.url)
	require.Error(t, err)
}
