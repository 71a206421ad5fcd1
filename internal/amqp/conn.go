package amqp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/broker"
)

// conn is one client connection. Its reader goroutine (serve) negotiates,
// reads frames and runs every method in order; its writer goroutine
// (writeLoop) writes the outbound queue. Broker goroutines deliver messages
// and confirms into the outbound queue without blocking.
type conn struct {
	srv  *Server
	b    *broker.Broker
	log  *slog.Logger
	nc   net.Conn
	io   *countingConn
	r    *wire.Reader
	w    *wire.Writer // the reader's until the writer goroutine starts
	out  *outbound
	id   string // owner of exclusive queues
	name string // "peer -> local", as RabbitMQ names connections

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	// Set during the handshake, read-only afterwards (infoMu for Info).
	infoMu      sync.Mutex
	user        string
	vhost       string
	clientProps broker.Table
	caps        clientCaps
	connectedAt time.Time
	channelMax  uint16
	frameMax    int
	heartbeat   time.Duration

	// Reader goroutine only.
	channels  map[uint16]*channel
	authCache map[authKey]struct{}
	closed    bool // the client closed; answered with close-ok
	drainIn   bool // close-ok went to the client's close: drain its input before closing
	released  bool // exclusive queues deleted
	pub       wire.BasicPublish
	ack       wire.BasicAck
	hdr       wire.ContentHeader

	nchannels  atomic.Int32
	opened     atomic.Bool // the handshake completed
	closeSent  atomic.Bool // the server sent connection.close
	closeMu    sync.Mutex
	closeTimer *time.Timer
	quit       chan struct{} // closed by abort
	quitOnce   sync.Once
	writerDone chan struct{}

	alarmMu   sync.Mutex
	blocked   bool
	unblocked chan struct{} // closed when the alarm clears
}

// clientCaps are the capabilities a client announced in client-properties.
type clientCaps struct {
	cancelNotify     bool
	blocked          bool
	authFailureClose bool
}

type authKey struct {
	a    broker.Access
	name string
}

// countingConn counts bytes and applies the heartbeat read timeout.
type countingConn struct {
	net.Conn
	recv, sent  atomic.Int64
	readTimeout atomic.Int64 // nanoseconds; 0 = none
}

func (c *countingConn) Read(p []byte) (int, error) {
	if t := c.readTimeout.Load(); t > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(time.Duration(t)))
	}
	n, err := c.Conn.Read(p)
	c.recv.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

func newConn(s *Server, nc net.Conn) *conn {
	cc := &countingConn{Conn: nc}
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:        s,
		b:          s.b,
		nc:         nc,
		io:         cc,
		r:          wire.NewReader(cc, s.cfg.FrameMax),
		w:          wire.NewWriter(cc, s.cfg.FrameMax),
		out:        newOutbound(s.cfg.MaxOutboundBytes),
		id:         "amqp-" + s.id + "-" + itoa(s.connSeq.Add(1)),
		name:       nc.RemoteAddr().String() + " -> " + nc.LocalAddr().String(),
		ctx:        ctx,
		cancel:     cancel,
		channels:   map[uint16]*channel{},
		authCache:  map[authKey]struct{}{},
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	c.log = s.log.With("conn", c.name)
	return c
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// abort cuts the connection: the socket closes, blocked calls return.
func (c *conn) abort() {
	c.quitOnce.Do(func() {
		close(c.quit)
		c.cancel()
		_ = c.nc.Close()
	})
}

// serve runs the connection to its end and releases everything it holds.
func (c *conn) serve() {
	defer c.abort()
	if err := c.handshake(); err != nil {
		if !isClosedConn(err) {
			c.log.Debug("amqp handshake failed", "err", err)
		}
		return
	}
	stop := make(chan struct{})
	go c.writeLoop(stop)
	unregister := c.b.RegisterConnection(c)
	unsubscribe := c.b.OnAlarm(c.onAlarm)
	c.log.Debug("amqp connection open", "user", c.user, "vhost", c.vhost)

	err := c.readLoop()
	if err != nil && !isClosedConn(err) {
		c.log.Debug("amqp connection ended", "err", err)
	}

	unsubscribe()
	unregister()
	for _, ch := range c.channels {
		ch.teardown()
	}
	clear(c.channels)
	c.nchannels.Store(0)
	c.releaseExclusive()
	c.closeMu.Lock()
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
	c.closeMu.Unlock()
	// Let the writer send what is queued (close-ok, close), bounded.
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.closingTimeout()))
	close(stop)
	<-c.writerDone
	if c.drainIn {
		c.drain()
	}
}

// releaseExclusive deletes the connection's exclusive queues, once.
func (c *conn) releaseExclusive() {
	if c.released {
		return
	}
	c.released = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
	c.b.ReleaseOwner(ctx, c.id)
	cancel()
}

// closingTimeout bounds each half of the closing handshake, as RabbitMQ's
// closing timeout does: the wait for close-ok after the server's
// connection.close, and the drain after close-ok to the client's. It is
// CloseTimeout, or the negotiated heartbeat interval when that is shorter.
func (c *conn) closingTimeout() time.Duration {
	d := c.srv.cfg.CloseTimeout
	if c.heartbeat > 0 && c.heartbeat < d {
		d = c.heartbeat
	}
	return d
}

// drain reads and discards what the client still sends after close-ok to its
// connection.close, until it closes its socket or the closing timeout passes.
// A client may have written frames after its close (amqplib writes the close
// ahead of publishes still in its channel buffers): closing a socket with
// unread input makes the kernel reset the connection, and the client would
// see ECONNRESET instead of the close-ok already sent. RabbitMQ's reader
// likewise discards input in its closed state until the client closes.
func (c *conn) drain() {
	c.io.readTimeout.Store(0)
	_ = c.nc.SetReadDeadline(time.Now().Add(c.closingTimeout()))
	buf := make([]byte, 16<<10)
	for {
		if _, err := c.nc.Read(buf); err != nil {
			return
		}
	}
}

func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errConnClosed)
}

// Info implements broker.Conn.
func (c *conn) Info() broker.ConnInfo {
	c.infoMu.Lock()
	defer c.infoMu.Unlock()
	return broker.ConnInfo{
		Name:             c.name,
		ID:               c.id,
		Protocol:         "AMQP 0-9-1",
		User:             c.user,
		VHost:            c.vhost,
		Peer:             c.nc.RemoteAddr().String(),
		ClientProperties: c.clientProps,
		Channels:         int(c.nchannels.Load()),
		ConnectedAt:      c.connectedAt,
		RecvOct:          c.io.recv.Load(),
		SendOct:          c.io.sent.Load(),
	}
}

// Close implements broker.Conn: connection.close 320 CONNECTION_FORCED.
func (c *conn) Close(reason string) {
	c.closeWith(newError(wire.ConnectionForced, "%s", reason))
}

// closeWith starts the server side of the closing handshake: it sends
// connection.close once (not after close-ok to the client's own close) and
// cuts the socket if close-ok does not come back within the closing timeout;
// the frames read meanwhile are discarded.
func (c *conn) closeWith(e *amqpError) {
	if !c.opened.Load() {
		c.abort() // still negotiating: nothing to close politely
		return
	}
	c.closeMu.Lock()
	if !c.closeSent.CompareAndSwap(false, true) {
		c.closeMu.Unlock()
		return
	}
	c.out.pushControl(0, &wire.ConnectionClose{ReplyCode: e.code, ReplyText: e.replyText(), ClassID: e.classID, MethodID: e.methodID})
	c.closeTimer = time.AfterFunc(c.closingTimeout(), c.abort)
	c.closeMu.Unlock()
	if e.code != wire.ConnectionForced {
		c.log.Info("amqp connection error", "code", e.code, "text", e.text)
	}
}

// onAlarm is the broker's resource alarm callback (connection.blocked).
func (c *conn) onAlarm(blocked bool, reason string) {
	c.alarmMu.Lock()
	if blocked == c.blocked {
		c.alarmMu.Unlock()
		return
	}
	c.blocked = blocked
	if blocked {
		c.unblocked = make(chan struct{})
	} else {
		close(c.unblocked)
	}
	c.alarmMu.Unlock()
	if !c.caps.blocked {
		return
	}
	if blocked {
		if len(reason) > 255 {
			reason = reason[:255]
		}
		c.out.pushControl(0, &wire.ConnectionBlocked{Reason: reason})
	} else {
		c.out.pushControl(0, &wire.ConnectionUnblocked{})
	}
}

// waitUnblocked holds a publish while a resource alarm is up.
func (c *conn) waitUnblocked() error {
	c.alarmMu.Lock()
	if !c.blocked {
		c.alarmMu.Unlock()
		return nil
	}
	wait := c.unblocked
	c.alarmMu.Unlock()
	select {
	case <-wait:
		return nil
	case <-c.quit:
		return errConnClosed
	}
}

// ---- handshake

var (
	errHandshake  = errors.New("amqp: handshake failed")
	errConnClosed = errors.New("amqp: connection closed")
)

const oldProtocolHeader = "AMQP\x01\x01\x00\x09" // 0-9 as some clients send it

func (c *conn) serverProperties() wire.Table {
	cluster := c.srv.cfg.ClusterName
	if cluster == "" {
		cluster = c.b.Overview().Node
	}
	return wire.Table{
		"product":      "Herald",
		"version":      c.srv.cfg.Version,
		"platform":     "Go " + runtime.Version(),
		"copyright":    "Herald authors",
		"information":  "Herald event backbone, speaking AMQP 0-9-1 with RabbitMQ's extensions",
		"cluster_name": cluster,
		"capabilities": wire.Table{
			"publisher_confirms":           true,
			"exchange_exchange_bindings":   true,
			"basic.nack":                   true,
			"consumer_cancel_notify":       true,
			"connection.blocked":           true,
			"consumer_priorities":          true,
			"authentication_failure_close": true,
			"per_consumer_qos":             true,
			"direct_reply_to":              true,
		},
	}
}

func (c *conn) handshake() error {
	cfg := &c.srv.cfg
	_ = c.nc.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	h, err := c.r.ReadProtocolHeader()
	if err != nil {
		return err
	}
	if hs := string(h[:]); hs != wire.ProtocolHeader && hs != oldProtocolHeader {
		_ = c.w.WriteProtocolHeader()
		_ = c.w.Flush()
		return errHandshake
	}
	if err := c.send(0, &wire.ConnectionStart{
		VersionMajor:     wire.VersionMajor,
		VersionMinor:     wire.VersionMinor,
		ServerProperties: c.serverProperties(),
		Mechanisms:       "PLAIN AMQPLAIN",
		Locales:          "en_US",
	}); err != nil {
		return err
	}
	m, err := c.handshakeMethod()
	if err != nil {
		return err
	}
	so, ok := m.(*wire.ConnectionStartOk)
	if !ok {
		return c.failHandshake(newError(wire.CommandInvalid, "expected connection.start-ok, got %s", m.Name()).forMethod(m))
	}
	caps, _ := so.ClientProperties["capabilities"].(wire.Table)
	c.caps = clientCaps{
		cancelNotify:     caps["consumer_cancel_notify"] == true,
		blocked:          caps["connection.blocked"] == true,
		authFailureClose: caps["authentication_failure_close"] == true,
	}
	user, err := c.authenticate(so)
	if err != nil {
		c.log.Info("amqp login refused", "mechanism", so.Mechanism, "err", err)
		if c.caps.authFailureClose {
			return c.failHandshake(newError(wire.AccessRefused, "%s", err.Error()).forMethod(so))
		}
		return err
	}

	heartbeat := uint16(cfg.Heartbeat / time.Second)
	if cfg.NoHeartbeat {
		heartbeat = 0
	}
	if err := c.send(0, &wire.ConnectionTune{ChannelMax: uint16(cfg.MaxChannels), FrameMax: uint32(cfg.FrameMax), Heartbeat: heartbeat}); err != nil {
		return err
	}
	if m, err = c.handshakeMethod(); err != nil {
		return err
	}
	tok, ok := m.(*wire.ConnectionTuneOk)
	if !ok {
		return c.failHandshake(newError(wire.CommandInvalid, "expected connection.tune-ok, got %s", m.Name()).forMethod(m))
	}
	frameMax := int(tok.FrameMax)
	if frameMax == 0 || frameMax > cfg.FrameMax {
		frameMax = cfg.FrameMax
	}
	if frameMax < wire.FrameMinSize {
		return c.failHandshake(newError(wire.NotAllowed, "frame_max=%d < %d min size", tok.FrameMax, wire.FrameMinSize).forMethod(tok))
	}
	channelMax := tok.ChannelMax
	if channelMax == 0 || int(channelMax) > cfg.MaxChannels {
		channelMax = uint16(cfg.MaxChannels)
	}
	c.r.SetFrameMax(frameMax)
	c.w.SetFrameMax(frameMax)

	if m, err = c.handshakeMethod(); err != nil {
		return err
	}
	open, ok := m.(*wire.ConnectionOpen)
	if !ok {
		return c.failHandshake(newError(wire.CommandInvalid, "expected connection.open, got %s", m.Name()).forMethod(m))
	}
	vhost := open.VirtualHost
	if err := c.b.Authorize(user, vhost, broker.AccessRead, vhostResource); err != nil {
		return c.failHandshake(newError(wire.NotAllowed, "access to vhost '%s' refused for user '%s'", vhost, user).forMethod(open))
	}
	c.infoMu.Lock()
	c.user, c.vhost = user, vhost
	c.clientProps = brokerTable(so.ClientProperties)
	c.connectedAt = time.Now()
	c.channelMax = channelMax
	c.frameMax = frameMax
	c.heartbeat = time.Duration(tok.Heartbeat) * time.Second
	c.infoMu.Unlock()
	// Open before open-ok goes out: a Stop racing with the client's first
	// method must close politely (320), and its connection.close queues
	// behind open-ok because the writer starts after the handshake.
	c.opened.Store(true)
	if err := c.send(0, &wire.ConnectionOpenOk{}); err != nil {
		return err
	}
	_ = c.nc.SetDeadline(time.Time{})
	if c.heartbeat > 0 {
		c.io.readTimeout.Store(int64(2 * c.heartbeat))
	}
	return nil
}

// vhostResource asks Authorize about access to the vhost itself.
const vhostResource = broker.VHostResource

// send writes one method during the handshake (before the writer runs).
func (c *conn) send(ch uint16, m wire.Method) error {
	if err := c.w.WriteMethod(ch, m); err != nil {
		return err
	}
	return c.w.Flush()
}

// failHandshake sends connection.close and ends the connection.
func (c *conn) failHandshake(e *amqpError) error {
	c.closeSent.Store(true)
	_ = c.send(0, &wire.ConnectionClose{ReplyCode: e.code, ReplyText: e.replyText(), ClassID: e.classID, MethodID: e.methodID})
	// Give the client a moment to read it and answer close-ok.
	_ = c.nc.SetReadDeadline(time.Now().Add(min(c.srv.cfg.CloseTimeout, c.srv.cfg.HandshakeTimeout)))
	for {
		f, err := c.r.ReadFrame()
		if err != nil {
			return e
		}
		if f.Type == wire.FrameMethod && f.Channel == 0 {
			if m, err := wire.ReadMethod(f.Payload); err == nil {
				if _, ok := m.(*wire.ConnectionCloseOk); ok {
					return e
				}
			}
		}
	}
}

// handshakeMethod reads the next method on channel 0, skipping heartbeats.
func (c *conn) handshakeMethod() (wire.Method, error) {
	for {
		f, err := c.r.ReadFrame()
		if err != nil {
			var we *wire.Error
			if errors.As(err, &we) {
				return nil, c.failHandshake(&amqpError{code: we.Code, text: we.Text})
			}
			return nil, err
		}
		switch {
		case f.Type == wire.FrameHeartbeat:
			continue
		case f.Type != wire.FrameMethod || f.Channel != 0:
			return nil, c.failHandshake(newError(wire.UnexpectedFrame, "unexpected frame type %d on channel %d during connection negotiation", f.Type, f.Channel))
		}
		m, err := wire.ReadMethod(f.Payload)
		if err != nil {
			return nil, c.failHandshake(asAMQPError(err))
		}
		if _, ok := m.(*wire.ConnectionClose); ok {
			_ = c.send(0, &wire.ConnectionCloseOk{})
			return nil, io.EOF
		}
		return m, nil
	}
}

// authenticate checks the SASL response of start-ok.
func (c *conn) authenticate(so *wire.ConnectionStartOk) (string, error) {
	var user, pass string
	switch so.Mechanism {
	case "PLAIN":
		// authzid NUL authcid NUL passwd
		parts := strings.Split(so.Response, "\x00")
		if len(parts) != 3 {
			return "", errors.New("malformed PLAIN response")
		}
		user, pass = parts[1], parts[2]
	case "AMQPLAIN":
		t, err := wire.ReadTableEntries([]byte(so.Response))
		if err != nil {
			// Some clients send the table with its length prefix.
			if t, _, err = wire.ReadTable([]byte(so.Response)); err != nil {
				return "", errors.New("malformed AMQPLAIN response")
			}
		}
		user, _ = t["LOGIN"].(string)
		pass, _ = t["PASSWORD"].(string)
	default:
		return "", errors.New("unsupported authentication mechanism " + so.Mechanism)
	}
	if _, err := c.b.Authenticate(user, pass); err != nil {
		return "", errors.New("Login was refused using authentication mechanism " + so.Mechanism + ". For details see the broker logfile.")
	}
	if user == "guest" && !c.srv.cfg.AllowRemoteGuest && !isLoopback(c.nc.RemoteAddr()) {
		return "", errors.New("user 'guest' can only connect via localhost")
	}
	return user, nil
}

func isLoopback(a net.Addr) bool {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	return false
}

// ---- frames

// readLoop reads frames until the connection ends.
func (c *conn) readLoop() error {
	for !c.closed {
		f, err := c.r.ReadFrame()
		if err != nil {
			var we *wire.Error
			if errors.As(err, &we) {
				// The stream cannot be parsed any further: say why and end.
				c.closeWith(&amqpError{code: we.Code, text: we.Text})
			}
			return err
		}
		if c.closeSent.Load() {
			if done := c.whileClosing(f); done {
				return nil
			}
			continue
		}
		if err := c.handleFrame(f); err != nil {
			c.fail(f.Channel, asAMQPError(err))
		}
	}
	return nil
}

// whileClosing handles a frame after the server sent connection.close:
// only close and close-ok count. It reports whether the connection is done.
func (c *conn) whileClosing(f wire.Frame) bool {
	if f.Type != wire.FrameMethod || f.Channel != 0 {
		return false
	}
	m, err := wire.ReadMethod(f.Payload)
	if err != nil {
		return false
	}
	switch m.(type) {
	case *wire.ConnectionCloseOk:
		return true
	case *wire.ConnectionClose:
		// Both sides closed at once: the client's input is drained as
		// after any close-ok the server sends.
		c.out.pushControl(0, &wire.ConnectionCloseOk{})
		c.drainIn = true
		return true
	}
	return false
}

// fail raises an exception: a channel exception closes the channel, a
// connection exception (or any error on channel 0) the connection.
func (c *conn) fail(chID uint16, e *amqpError) {
	ch := c.channels[chID]
	if e.hard() || chID == 0 || ch == nil {
		if !e.hard() {
			e.code = wire.ChannelError
		}
		c.closeWith(e)
		return
	}
	ch.closeWith(e)
}

func (c *conn) handleFrame(f wire.Frame) error {
	switch f.Type {
	case wire.FrameHeartbeat:
		if f.Channel != 0 {
			return newError(wire.FrameError, "heartbeat frame on channel %d", f.Channel)
		}
		return nil
	case wire.FrameMethod:
		if f.Channel == 0 {
			return c.handleConnectionMethod(f)
		}
		ch := c.channels[f.Channel]
		if ch == nil {
			return c.openChannel(f)
		}
		if ch.closing {
			return ch.whileClosing(f)
		}
		return ch.handleMethod(f)
	case wire.FrameHeader, wire.FrameBody:
		ch := c.channels[f.Channel]
		if ch == nil {
			return newError(wire.ChannelError, "content frame on channel %d, which is not open", f.Channel)
		}
		if ch.closing {
			return nil
		}
		if f.Type == wire.FrameHeader {
			return ch.handleHeader(f.Payload)
		}
		return ch.handleBody(f.Payload)
	}
	return newError(wire.FrameError, "unknown frame type %d", f.Type)
}

func (c *conn) handleConnectionMethod(f wire.Frame) error {
	m, err := wire.ReadMethod(f.Payload)
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *wire.ConnectionClose:
		// No connection.close of the server's may follow close-ok; one
		// already queued makes this a simultaneous close, which is fine.
		c.closeMu.Lock()
		c.closeSent.Store(true)
		c.closeMu.Unlock()
		// Channels first, so that requeued messages are back before the
		// client learns the connection is closed.
		for id, ch := range c.channels {
			ch.teardown()
			delete(c.channels, id)
		}
		c.nchannels.Store(0)
		// Exclusive queues are gone before close-ok, as in RabbitMQ, so
		// that a client may declare them again as soon as it is closed.
		c.releaseExclusive()
		c.out.pushControl(0, &wire.ConnectionCloseOk{})
		c.closed = true
		c.drainIn = true
		return nil
	case *wire.ConnectionCloseOk:
		return newError(wire.CommandInvalid, "connection.close-ok without connection.close")
	case *wire.ConnectionUpdateSecret:
		c.out.pushControl(0, &wire.ConnectionUpdateSecretOk{})
		return nil
	case *wire.ConnectionBlocked, *wire.ConnectionUnblocked:
		return nil // clients may announce their own blocking; nothing to do
	default:
		return newError(wire.CommandInvalid, "%s is not allowed on an open connection", m.Name()).forMethod(m)
	}
}

// openChannel handles a method on a channel that is not open: only
// channel.open is allowed.
func (c *conn) openChannel(f wire.Frame) error {
	m, err := wire.ReadMethod(f.Payload)
	if err != nil {
		return err
	}
	if _, ok := m.(*wire.ChannelCloseOk); ok {
		// Both sides closed the channel at once: the client answers our
		// channel.close after we answered its own. Nothing left to do.
		return nil
	}
	if _, ok := m.(*wire.ChannelOpen); !ok {
		return newError(wire.ChannelError, "expected 'channel.open' on channel %d, got %s", f.Channel, m.Name()).forMethod(m)
	}
	if f.Channel > c.channelMax {
		return newError(wire.NotAllowed, "channel %d is above channel_max %d", f.Channel, c.channelMax).forMethod(m)
	}
	ch := newChannel(c, f.Channel)
	c.channels[f.Channel] = ch
	c.nchannels.Add(1)
	c.out.pushControl(f.Channel, &wire.ChannelOpenOk{})
	return nil
}

// removeChannel forgets a channel whose close handshake is complete.
func (c *conn) removeChannel(ch *channel) {
	if c.channels[ch.id] == ch {
		delete(c.channels, ch.id)
		c.nchannels.Add(-1)
	}
}

// authorize checks a permission, caching successes for the connection.
func (c *conn) authorize(a broker.Access, name string) error {
	k := authKey{a, name}
	if _, ok := c.authCache[k]; ok {
		return nil
	}
	if err := c.b.Authorize(c.user, c.vhost, a, name); err != nil {
		return err
	}
	if len(c.authCache) >= 256 {
		clear(c.authCache)
	}
	c.authCache[k] = struct{}{}
	return nil
}
