package realtime

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// Pusher protocol close and error codes used by this face.
const (
	codeAppNotFound     = 4001 // no app with this key (do not reconnect)
	codeNoProtocol      = 4008 // no ?protocol= (do not reconnect)
	codeBadProtocol     = 4007 // unsupported protocol version (do not reconnect)
	codeUnauthorized    = 4009 // failed signin (do not reconnect)
	codeOverCapacity    = 4100 // MaxConnections reached (reconnect with backoff)
	codeSlowClient      = 4110 // Herald: send queue full (reconnect with backoff)
	codeClosedByAdmin   = 4111 // Herald: closed through the management API (reconnect with backoff)
	codeShuttingDown    = 4200 // server stopping (reconnect at once)
	codePongTimeout     = 4201 // no pong after a ping (reconnect at once)
	codeClientEventRate = 4301 // client event over the rate limit (not closed)
)

// wsConn is one Pusher protocol connection. The read loop runs in the HTTP
// handler's goroutine and owns subs, the token bucket and the user; a writer
// goroutine exists only while the send queue is non-empty, so an idle
// connection costs one goroutine.
type wsConn struct {
	srv  *Server
	h    *hub
	ws   *websocket.Conn
	cork *corkWriter // nil if the hijack kept net/http's buffers
	id   string
	q    sendQueue

	lastSeen   atomic.Int64 // unix nanoseconds of the last frame received
	pinged     atomic.Bool  // a server ping is outstanding
	closing    atomic.Bool
	finishCode atomic.Pointer[finishInfo]

	// Owned by the read loop.
	subs     []*subscription // few per connection: a slice is smaller than a map
	tokens   float64
	tokensAt time.Time

	signedIn atomic.Pointer[string] // user id after pusher:signin

	// For the broker's connection list.
	peer, local string
	since       int64 // unix nanoseconds
	nsubs       atomic.Int32
}

// Info describes the connection for the broker's connection list (the
// management API's /api/connections).
func (c *wsConn) Info() broker.ConnInfo {
	return broker.ConnInfo{
		Name:             c.peer + " -> " + c.local + " (pusher " + c.id + ")",
		Protocol:         "Pusher 7",
		User:             c.user(),
		VHost:            c.srv.cfg.VHost,
		Peer:             c.peer,
		ClientProperties: broker.Table{"app_id": c.h.app.ID, "socket_id": c.id},
		Channels:         int(c.nsubs.Load()),
		ConnectedAt:      time.Unix(0, c.since),
	}
}

// Close closes the connection from the management API with 4111.
func (c *wsConn) Close(reason string) { c.kill(codeClosedByAdmin, reason) }

// user is the id the connection signed in as ("" if none).
func (c *wsConn) user() string {
	if p := c.signedIn.Load(); p != nil {
		return *p
	}
	return ""
}

func (c *wsConn) socketID() string { return c.id }

func (c *wsConn) deliver(e *event) { c.send(e.wsFrame()) }

func (c *wsConn) send(f []byte) {
	wake, overflow := c.q.push(f)
	if wake {
		c.srv.wg.Go(c.writeLoop)
	}
	if overflow {
		c.srv.metrics.slowDisconnects.Add(1)
		c.kill(codeSlowClient, "send queue full: client too slow")
	}
}

func (c *wsConn) resumeFailed(channel, reason string) {
	c.send(protocolFrame("herald:resume_failed", channel, `{"reason":`+string(appendJSONString(nil, reason))+`}`))
}

// writeLoop writes queued frames until the queue is empty.
func (c *wsConn) writeLoop() {
	// Let the publisher finish its fan-out round first: events published
	// meanwhile join this batch and share one system call.
	runtime.Gosched()
	for {
		batch := c.q.take()
		if batch == nil {
			return
		}
		// With our own buffers, the batch's deadline is set on the socket
		// and writes get a context without Done: the library then skips its
		// per-message timer (a large share of fan-out cost).
		ctx, cancel := context.Background(), func() {}
		if c.cork != nil {
			_ = c.cork.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		} else {
			ctx, cancel = context.WithTimeout(c.srv.ctx, c.srv.cfg.WriteTimeout)
		}
		corked := c.cork != nil
		if corked {
			c.cork.cork()
		}
		for _, f := range batch {
			if len(f) == 0 { // finish's marker: everything before it is written
				if corked {
					_ = c.cork.uncork(time.Now().Add(c.srv.cfg.WriteTimeout))
				}
				cancel()
				c.q.close()
				code, reason := c.finishWith()
				_ = c.ws.Close(websocket.StatusCode(code), reason)
				return
			}
			if err := c.ws.Write(ctx, websocket.MessageText, f); err != nil {
				if corked {
					// A close frame written by kill may be in the cork:
					// let it out (Write fails once the close started).
					_ = c.cork.uncork(time.Now().Add(c.srv.cfg.WriteTimeout))
				}
				cancel()
				c.q.close()
				if !c.closing.Load() { // kill's goroutine finishes the close
					_ = c.ws.CloseNow()
				}
				return
			}
			c.srv.metrics.delivered.Add(1)
		}
		if corked {
			if err := c.cork.uncork(time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
				cancel()
				c.q.close()
				_ = c.ws.CloseNow()
				return
			}
		}
		cancel()
		c.q.written(batch)
	}
}

// kill closes the connection with a Pusher close code without blocking the
// caller (which may hold a channel lock). The read loop then cleans up.
func (c *wsConn) kill(code int, reason string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.q.close()
	c.srv.wg.Go(func() {
		_ = c.ws.Close(websocket.StatusCode(code), reason)
	})
}

// finish closes the connection with code once the frames queued before it
// are written (so a pusher:error reaches the client before the close).
func (c *wsConn) finish(code int, reason string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.finishCode.Store(&finishInfo{code, reason})
	c.send(finishMarker)
}

type finishInfo struct {
	code   int
	reason string
}

var finishMarker = []byte{}

func (c *wsConn) finishWith() (int, string) {
	if f := c.finishCode.Load(); f != nil {
		return f.code, f.reason
	}
	return 1000, ""
}

// serveWS handles GET /app/{key}.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.running() {
		http.Error(w, "realtime server not running", http.StatusServiceUnavailable)
		return
	}
	sb := &smallBuffers{ResponseWriter: w}
	ws, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // Pusher accepts any Origin; apps authorize channels instead
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept wrote the HTTP error
	}
	ws.SetReadLimit(int64(s.cfg.MaxMessageBytes) + 4096)
	refuse := func(code int, msg string) {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WriteTimeout)
		defer cancel()
		_ = ws.Write(ctx, websocket.MessageText, errorFrame(code, msg))
		_ = ws.Close(websocket.StatusCode(code), msg)
	}
	h := s.hubByKey[r.PathValue("key")]
	if h == nil {
		refuse(codeAppNotFound, "App key "+r.PathValue("key")+" does not exist")
		return
	}
	switch p := r.URL.Query().Get("protocol"); {
	case p == "":
		refuse(codeNoProtocol, "No protocol version supplied")
		return
	case p != "5" && p != "6" && p != "7":
		refuse(codeBadProtocol, "Unsupported protocol version "+p+"; Herald speaks 5 to 7")
		return
	}
	if !s.acquireConn() {
		refuse(codeOverCapacity, "Over capacity: too many connections, retry later")
		return
	}

	c := &wsConn{srv: s, h: h, ws: ws, cork: sb.cork, id: s.newSocketID(), q: sendQueue{limit: s.cfg.SendQueue}}
	c.lastSeen.Store(s.cfg.Now().UnixNano())
	if !s.addConn(c) {
		s.releaseConn()
		refuse(codeShuttingDown, "server shutting down")
		return
	}
	unregister := func() {}
	if s.cfg.Broker != nil {
		c.peer, c.since = r.RemoteAddr, time.Now().UnixNano()
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			c.local = a.String()
		}
		unregister = s.cfg.Broker.RegisterConnection(c)
	}
	c.send(protocolFrame("pusher:connection_established", "",
		`{"socket_id":"`+c.id+`","activity_timeout":`+strconv.Itoa(int(s.cfg.ActivityTimeout/time.Second))+`}`))
	// The read loop gets a fresh goroutine (small stack) and the HTTP
	// server's goroutine, with its grown stack, ends: the connection is
	// hijacked. addConn counted the goroutine in s.wg.
	go func() {
		defer s.releaseConn()
		defer s.removeConn(c)
		defer unregister()
		c.readLoop()
	}()
}

// Buffer sizes of a hijacked WebSocket connection. net/http's are 4 KiB
// each; an idle Pusher connection reads small control messages, and the
// writer goroutine corks every batch into a pooled buffer (corkWriter), so
// the library's own write buffer only needs to hold a frame header. This
// cuts the idle cost per connection by about 7.5 KiB.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 128
)

// smallBuffers hands websocket.Accept a hijacked connection with smaller
// bufio buffers (unless the client already pipelined bytes into the HTTP
// server's reader, which is then kept) whose writes go through a corkWriter.
type smallBuffers struct {
	http.ResponseWriter
	cork *corkWriter
}

func (s *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return c, brw, err
	}
	if err := brw.Writer.Flush(); err != nil {
		return c, brw, err
	}
	s.cork = &corkWriter{conn: c}
	rd := brw.Reader
	if rd.Buffered() == 0 {
		rd = bufio.NewReaderSize(c, wsReadBuffer)
	}
	return c, bufio.NewReadWriter(rd, bufio.NewWriterSize(s.cork, wsWriteBuffer)), nil
}

// corkWriter sits under the WebSocket's bufio.Writer. The library flushes
// after every message; while the writer goroutine writes a batch the cork is
// on and those flushes only append to a buffer, which uncork writes with one
// system call. A fan-out burst thus costs one write per connection per
// batch instead of one per message.
type corkWriter struct {
	conn net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte
}

// corkLimit bounds the corked bytes; beyond it writes go through.
const corkLimit = 32 << 10

var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, corkLimit); return &b }}

func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.corked {
		if len(w.buf)+len(p) <= corkLimit {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	return w.conn.Write(p)
}

func (w *corkWriter) cork() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.corked {
		w.corked = true
		w.buf = (*corkPool.Get().(*[]byte))[:0]
	}
}

// uncork writes what was corked, within deadline.
func (w *corkWriter) uncork(deadline time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.corked {
		return nil
	}
	_ = w.conn.SetWriteDeadline(deadline)
	err := w.flushLocked()
	_ = w.conn.SetWriteDeadline(time.Time{})
	w.corked = false
	b := w.buf[:0]
	w.buf = nil
	corkPool.Put(&b)
	return err
}

func (w *corkWriter) flushLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.conn.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (c *wsConn) readLoop() {
	defer c.cleanup()
	for {
		typ, data, err := c.ws.Read(c.srv.ctx)
		if err != nil {
			return
		}
		c.lastSeen.Store(c.srv.cfg.Now().UnixNano())
		c.pinged.Store(false)
		if typ != websocket.MessageText {
			c.send(errorFrame(4000, "binary frames are not supported"))
			continue
		}
		// handle runs on a short-lived goroutine so that this one, parked
		// in Read for most of its life, keeps the small stack Read needs
		// instead of the one JSON decoding grew (halves idle stack memory).
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.handle(data)
		}()
		<-done
	}
}

// sub returns the connection's subscription to channel, or nil.
func (c *wsConn) sub(channel string) *subscription {
	for _, s := range c.subs {
		if s.ch.name == channel {
			return s
		}
	}
	return nil
}

// dropSub removes and returns the subscription to channel, or nil.
func (c *wsConn) dropSub(channel string) *subscription {
	for i, s := range c.subs {
		if s.ch.name == channel {
			last := len(c.subs) - 1
			c.subs[i] = c.subs[last]
			c.subs[last] = nil
			c.subs = c.subs[:last]
			c.nsubs.Store(int32(len(c.subs)))
			return s
		}
	}
	return nil
}

func (c *wsConn) cleanup() {
	c.q.close()
	for _, s := range c.subs {
		c.h.unsubscribe(s)
	}
	c.subs = nil
	if c.ws != nil { // nil only in the fuzz test
		_ = c.ws.CloseNow()
	}
}

// clientMsg is a message from a client.
type clientMsg struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// subscribeData is pusher:subscribe's data; resume_from is Herald's
// extension.
type subscribeData struct {
	Channel     string `json:"channel"`
	Auth        string `json:"auth"`
	ChannelData string `json:"channel_data"`
	ResumeFrom  string `json:"resume_from"`
}

// objectData decodes data that a client may send as an object or as a JSON
// string holding an object (older protocol versions).
func objectData(raw json.RawMessage, v any) error {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		raw = json.RawMessage(s)
	}
	return json.Unmarshal(raw, v)
}

func (c *wsConn) fail(code int, msg string) { c.send(errorFrame(code, msg)) }

func (c *wsConn) handle(data []byte) {
	var m clientMsg
	if err := json.Unmarshal(data, &m); err != nil {
		c.fail(4000, "invalid JSON message: "+err.Error())
		return
	}
	switch {
	case m.Event == "pusher:ping":
		c.send(protocolFrame("pusher:pong", "", "{}"))
	case m.Event == "pusher:pong":
	case m.Event == "pusher:subscribe":
		c.subscribe(m.Data)
	case m.Event == "pusher:unsubscribe":
		var d subscribeData
		if err := objectData(m.Data, &d); err != nil {
			c.fail(4000, "invalid pusher:unsubscribe data")
			return
		}
		if s := c.dropSub(d.Channel); s != nil {
			c.h.unsubscribe(s)
		}
	case m.Event == "pusher:signin":
		c.signin(m.Data)
	case m.Event == "herald:resume":
		var d struct {
			Channel string `json:"channel"`
			Since   string `json:"since"`
		}
		if err := objectData(m.Data, &d); err != nil {
			c.fail(4000, "invalid herald:resume data")
			return
		}
		s := c.sub(d.Channel)
		if s == nil {
			c.fail(4000, "herald:resume: not subscribed to "+d.Channel)
			return
		}
		c.h.resume(s, d.Since)
	case strings.HasPrefix(m.Event, "client-"):
		c.clientEvent(m)
	default:
		c.fail(0, "unsupported event "+strconv.Quote(m.Event))
	}
}

func (c *wsConn) subscribe(raw json.RawMessage) {
	var d subscribeData
	if err := objectData(raw, &d); err != nil {
		c.fail(4000, "invalid pusher:subscribe data")
		return
	}
	refuse := func(err error) {
		msg := errs.Message(err)
		c.fail(0, msg)
		status := errs.KindOf(err).HTTPStatus()
		c.send(protocolFrame("pusher:subscription_error", d.Channel,
			`{"type":"AuthError","error":`+string(appendJSONString(nil, msg))+`,"status":`+strconv.Itoa(status)+`}`))
	}
	if err := validChannel(d.Channel); err != nil {
		refuse(err)
		return
	}
	if c.sub(d.Channel) != nil {
		// Already subscribed: confirm again, as Pusher does.
		c.send(protocolFrame("pusher_internal:subscription_succeeded", d.Channel, "{}"))
		return
	}
	if len(c.subs) >= c.srv.cfg.MaxChannelsPerConnection {
		refuse(errs.New(errs.ResourceError, "too many channels on this connection (limit %d)", c.srv.cfg.MaxChannelsPerConnection))
		return
	}
	req := subscribeReq{channel: d.Channel}
	kind := channelKind(d.Channel)
	switch kind {
	case kindPrivate, kindEncrypted:
		if err := checkAuth(c.h.app, d.Auth, c.id+":"+d.Channel); err != nil {
			refuse(err)
			return
		}
	case kindPresence:
		if err := checkAuth(c.h.app, d.Auth, c.id+":"+d.Channel+":"+d.ChannelData); err != nil {
			refuse(err)
			return
		}
		uid, info, err := parseChannelData(d.ChannelData)
		if err != nil {
			refuse(err)
			return
		}
		req.userID, req.userInfo = uid, info
	}
	if d.ResumeFrom != "" {
		req.resume = &resumeFrom{id: d.ResumeFrom}
	}
	req.succeeded = func(members map[string]*member) []byte {
		if kind == kindPresence {
			return protocolFrame("pusher_internal:subscription_succeeded", d.Channel, presenceJSON(members))
		}
		return protocolFrame("pusher_internal:subscription_succeeded", d.Channel, "{}")
	}
	s, err := c.h.subscribe(c, req)
	if err != nil {
		refuse(err)
		return
	}
	c.subs = append(c.subs, s)
	c.nsubs.Store(int32(len(c.subs)))
}

// parseChannelData reads a presence channel_data: {"user_id": string or
// number, "user_info": any}.
func parseChannelData(s string) (string, json.RawMessage, error) {
	var cd struct {
		UserID   json.RawMessage `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	if err := json.Unmarshal([]byte(s), &cd); err != nil {
		return "", nil, errs.New(errs.BadArgument, "presence channel_data must be JSON {\"user_id\":...,\"user_info\":...}")
	}
	var uid string
	if err := json.Unmarshal(cd.UserID, &uid); err != nil {
		var n json.Number
		if err := json.Unmarshal(cd.UserID, &n); err != nil {
			return "", nil, errs.New(errs.BadArgument, "presence channel_data needs a user_id string")
		}
		uid = n.String()
	}
	if uid == "" || len(uid) > 128 {
		return "", nil, errs.New(errs.BadArgument, "presence user_id must be 1-128 characters")
	}
	if len(cd.UserInfo) > 1024 {
		return "", nil, errs.New(errs.TooLarge, "presence user_info is over 1 KiB")
	}
	return uid, cd.UserInfo, nil
}

func (c *wsConn) signin(raw json.RawMessage) {
	var d struct {
		UserData string `json:"user_data"`
		Auth     string `json:"auth"`
	}
	if err := objectData(raw, &d); err != nil {
		c.fail(4000, "invalid pusher:signin data")
		return
	}
	var ud struct {
		ID string `json:"id"`
	}
	if err := checkAuth(c.h.app, d.Auth, c.id+"::user::"+d.UserData); err != nil {
		c.fail(codeUnauthorized, errs.Message(err))
		c.finish(codeUnauthorized, "signin failed")
		return
	}
	if err := json.Unmarshal([]byte(d.UserData), &ud); err != nil || ud.ID == "" {
		c.fail(codeUnauthorized, "user_data must be a JSON object with a non-empty \"id\"")
		c.finish(codeUnauthorized, "signin failed")
		return
	}
	c.signedIn.Store(&ud.ID)
	c.send(protocolFrame("pusher:signin_success", "", `{"user_data":`+string(appendJSONString(nil, d.UserData))+`}`))
}

func (c *wsConn) clientEvent(m clientMsg) {
	s := c.sub(m.Channel)
	switch {
	case c.h.app.DisableClientEvents:
		c.fail(0, "client events are disabled for this app")
		return
	case s == nil:
		c.fail(0, "client event rejected: you must be subscribed to "+strconv.Quote(m.Channel))
		return
	case s.ch.kind != kindPrivate && s.ch.kind != kindPresence:
		c.fail(0, "client events are only allowed on private- and presence- channels")
		return
	case len(m.Event) > 200:
		c.fail(0, "event name is over 200 characters")
		return
	case len(m.Data) > c.srv.cfg.MaxMessageBytes:
		c.fail(errs.TooLarge.WSCode(), "client event data is over "+strconv.Itoa(c.srv.cfg.MaxMessageBytes)+" bytes")
		return
	case !c.allowClientEvent():
		c.fail(codeClientEventRate, "client event rejected due to rate limit ("+strconv.Itoa(c.srv.cfg.ClientEventsPerSecond)+"/s)")
		return
	}
	data := string(m.Data)
	if len(m.Data) > 0 && m.Data[0] == '"' {
		var str string
		if err := json.Unmarshal(m.Data, &str); err == nil {
			data = str
		}
	}
	in := inbound{channel: m.Channel, name: m.Event, data: data, userID: s.userID, exclude: c.id}
	if err := c.srv.bus.publish(c.srv.ctx, c.h, in, false); err != nil {
		c.fail(errs.KindOf(err).WSCode(), "client event not published: "+errs.Message(err))
		return
	}
	c.srv.hooks.enqueue(c.h, hookEvent{Name: hookClientEvent, Channel: m.Channel, Event: m.Event, Data: data, SocketID: c.id, UserID: s.userID})
}

// allowClientEvent is a token bucket of ClientEventsPerSecond with an equal
// burst.
func (c *wsConn) allowClientEvent() bool {
	now := c.srv.cfg.Now()
	rate := float64(c.srv.cfg.ClientEventsPerSecond)
	if c.tokensAt.IsZero() {
		c.tokens = rate
	} else {
		c.tokens = min(rate, c.tokens+now.Sub(c.tokensAt).Seconds()*rate)
	}
	c.tokensAt = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// checkActivity pings a silent connection and closes one that did not
// answer. Called by the janitor.
func (c *wsConn) checkActivity(now time.Time) {
	idle := now.Sub(time.Unix(0, c.lastSeen.Load()))
	switch {
	case idle >= c.srv.cfg.ActivityTimeout+c.srv.cfg.PongTimeout && c.pinged.Load():
		c.kill(codePongTimeout, "Pong reply not received")
	case idle >= c.srv.cfg.ActivityTimeout && !c.pinged.Load():
		c.pinged.Store(true)
		c.send(pingFrame)
	}
}

var pingFrame = protocolFrame("pusher:ping", "", "{}")
