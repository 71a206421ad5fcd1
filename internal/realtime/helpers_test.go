package realtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testApp = App{ID: "123", Key: "app-key", Secret: "app-secret"}

// bundle is what setup returns besides the server.
type bundle struct {
	srv  *Server
	ts   *httptest.Server
	app  App
	base string // http://127.0.0.1:port
	ws   string // ws://127.0.0.1:port
	mux  *http.ServeMux
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// setup starts a Server (in-memory bus unless mod sets a Broker) on a real
// HTTP listener with a random port.
func setup(t testing.TB, mods ...func(*Config)) *bundle {
	t.Helper()
	cfg := Config{Logger: testLogger(t), Apps: []App{testApp}}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	mux := http.NewServeMux()
	srv.Mount(mux)
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Stop(ctx)
		ts.Close()
	})
	return &bundle{srv: srv, ts: ts, app: cfg.Apps[0], base: ts.URL, ws: "ws" + strings.TrimPrefix(ts.URL, "http"), mux: mux}
}

// msg is a Pusher protocol message as a client receives it.
type msg struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	ID      string          `json:"id"`
	UserID  string          `json:"user_id"`
}

// str returns data when it is a JSON string (server events), else the raw
// JSON text.
func (m msg) str() string {
	var s string
	if json.Unmarshal(m.Data, &s) == nil {
		return s
	}
	return string(m.Data)
}

// obj decodes data (a JSON string holding JSON, or JSON) into v.
func (m msg) obj(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(m.str()), v), "data %s", m.Data)
}

type client struct {
	t        testing.TB
	ws       *websocket.Conn
	socketID string
}

func dialRaw(t testing.TB, b *bundle, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, b.ws+path, nil)
	require.NoError(t, err)
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws
}

// dial connects a Pusher client and reads connection_established.
func dial(t testing.TB, b *bundle) *client {
	t.Helper()
	c := &client{t: t, ws: dialRaw(t, b, "/app/"+b.app.Key+"?protocol=7&client=go-test&version=1")}
	m := c.expect("pusher:connection_established", "")
	var d struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	m.obj(t, &d)
	require.Regexp(t, `^\d+\.\d+$`, d.SocketID)
	c.socketID = d.SocketID
	return c
}

func (c *client) send(event string, data any, channel string) {
	c.t.Helper()
	m := map[string]any{"event": event, "data": data}
	if channel != "" {
		m["channel"] = channel
	}
	b, err := json.Marshal(m)
	require.NoError(c.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(c.t, c.ws.Write(ctx, websocket.MessageText, b))
}

func (c *client) read(timeout time.Duration) (msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, data, err := c.ws.Read(ctx)
	if err != nil {
		return msg{}, err
	}
	var m msg
	require.NoError(c.t, json.Unmarshal(data, &m), "frame %s", data)
	return m, nil
}

// next reads the next message (5 s deadline).
func (c *client) next() msg {
	c.t.Helper()
	m, err := c.read(5 * time.Second)
	require.NoError(c.t, err)
	return m
}

// expect reads the next message and checks its event (and channel if set).
func (c *client) expect(event, channel string) msg {
	c.t.Helper()
	m := c.next()
	require.Equal(c.t, event, m.Event, "message %+v data %s", m, m.Data)
	if channel != "" {
		require.Equal(c.t, channel, m.Channel)
	}
	return m
}

// quiet checks that nothing arrives within d (a bounded negative check).
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	m, err := c.read(d)
	if err == nil {
		c.t.Fatalf("unexpected message %+v data %s", m, m.Data)
	}
	require.True(c.t, errors.Is(err, context.DeadlineExceeded), "read: %v", err)
}

// closeStatus waits for the server to close the connection and returns the code.
func (c *client) closeStatus() websocket.StatusCode {
	c.t.Helper()
	for {
		_, err := c.read(10 * time.Second)
		if err != nil {
			require.False(c.t, errors.Is(err, context.DeadlineExceeded), "connection not closed")
			return websocket.CloseStatus(err)
		}
	}
}

func (c *client) subscribe(channel string, extra map[string]any) msg {
	c.t.Helper()
	d := map[string]any{"channel": channel}
	for k, v := range extra {
		d[k] = v
	}
	c.send("pusher:subscribe", d, "")
	return c.expect("pusher_internal:subscription_succeeded", channel)
}

func (c *client) subscribePrivate(app App, channel string) msg {
	c.t.Helper()
	return c.subscribe(channel, map[string]any{"auth": SignChannelAuth(app, c.socketID, channel, "")})
}

func (c *client) subscribePresence(app App, channel, userID string, info any) msg {
	c.t.Helper()
	cd, err := json.Marshal(map[string]any{"user_id": userID, "user_info": info})
	require.NoError(c.t, err)
	return c.subscribe(channel, map[string]any{
		"auth": SignChannelAuth(app, c.socketID, channel, string(cd)), "channel_data": string(cd),
	})
}

// api calls the Pusher HTTP API signed with app.
func (b *bundle) api(t testing.TB, method, path string, params url.Values, body any) (int, string) {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		raw, err = json.Marshal(body)
		require.NoError(t, err)
	}
	full := "/apps/" + b.app.ID + path
	q := SignAPIRequest(b.app, method, full, params, raw, time.Now())
	req, err := http.NewRequest(method, b.base+full+"?"+q, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(out)
}

func (b *bundle) trigger(t testing.TB, channel, name, data string) {
	t.Helper()
	code, body := b.api(t, "POST", "/events", nil, map[string]any{"name": name, "channels": []string{channel}, "data": data})
	require.Equal(t, 200, code, body)
}

// sseEvent is one parsed text/event-stream record.
type sseEvent struct {
	ID, Event, Data string
	Comment         string
}

type sseStream struct {
	t    testing.TB
	resp *http.Response
	rd   *bufio.Reader
	ch   chan sseResult
}

type sseResult struct {
	ev  sseEvent
	err error
}

// openSSE opens a stream; header is extra request headers.
func openSSE(t testing.TB, b *bundle, path string, header http.Header) (*sseStream, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", b.base+path, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	if resp.StatusCode != 200 {
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	s := &sseStream{t: t, resp: resp, rd: bufio.NewReader(resp.Body), ch: make(chan sseResult, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.ch)
		for {
			ev, err := s.readRecord()
			s.ch <- sseResult{ev, err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		for range s.ch {
		}
		<-done
	})
	return s, 200
}

func (s *sseStream) readRecord() (sseEvent, error) {
	var ev sseEvent
	var data []string
	seen := false
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			if seen {
				ev.Data = strings.Join(data, "\n")
				return ev, nil
			}
			continue
		}
		seen = true
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "":
			ev.Comment = v
		case "id":
			ev.ID = v
		case "event":
			ev.Event = v
		case "data":
			data = append(data, v)
		}
	}
}

// next returns the next record that is not a comment or retry line.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	for {
		ev := s.nextAny()
		if ev.Comment == "" && (ev.Event != "" || ev.Data != "") {
			return ev
		}
	}
}

// nextAny returns the next record, comments included.
func (s *sseStream) nextAny() sseEvent {
	s.t.Helper()
	select {
	case r, ok := <-s.ch:
		require.True(s.t, ok, "stream ended")
		require.NoError(s.t, r.err)
		return r.ev
	case <-time.After(5 * time.Second):
		s.t.Fatal("no SSE record within 5s")
	}
	return sseEvent{}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(2 * time.Millisecond) // poll interval, not a wait for the condition
	}
}
