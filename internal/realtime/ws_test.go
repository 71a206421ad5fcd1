package realtime

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

func TestConnectionEstablished(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ws := dialRaw(t, b, "/app/"+b.app.Key+"?protocol=7")
	c := &client{t: t, ws: ws}
	m := c.expect("pusher:connection_established", "")
	var d struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	m.obj(t, &d)
	require.Regexp(t, `^\d+\.\d+$`, d.SocketID)
	require.Equal(t, 120, d.ActivityTimeout)

	c.send("pusher:ping", map[string]any{}, "")
	c.expect("pusher:pong", "")

	other := dial(t, b)
	require.NotEqual(t, d.SocketID, other.socketID)
}

func TestRefusedConnections(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxConnections = 1 })
	for _, tc := range []struct {
		name, path string
		code       websocket.StatusCode
	}{
		{"unknown key", "/app/nope?protocol=7", codeAppNotFound},
		{"no protocol", "/app/" + b.app.Key, codeNoProtocol},
		{"bad protocol", "/app/" + b.app.Key + "?protocol=8", codeBadProtocol},
	} {
		c := &client{t: t, ws: dialRaw(t, b, tc.path)}
		m := c.expect("pusher:error", "")
		var d struct{ Code int }
		require.NoError(t, json.Unmarshal(m.Data, &d))
		require.Equal(t, int(tc.code), d.Code, tc.name)
		require.Equal(t, tc.code, c.closeStatus(), tc.name)
	}
	// MaxConnections = 1: the second connection is over capacity.
	dial(t, b)
	c := &client{t: t, ws: dialRaw(t, b, "/app/"+b.app.Key+"?protocol=7")}
	c.expect("pusher:error", "")
	require.Equal(t, websocket.StatusCode(codeOverCapacity), c.closeStatus())
}

func TestPublicChannelTrigger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c1, c2 := dial(t, b), dial(t, b)
	c1.subscribe("news", nil)
	c2.subscribe("news", nil)
	b.trigger(t, "news", "headline", `{"title":"hello"}`)
	for _, c := range []*client{c1, c2} {
		m := c.expect("headline", "news")
		require.Equal(t, `{"title":"hello"}`, m.str())
		require.NotEmpty(t, m.ID, "events carry Herald's resume id")
	}
	// Unsubscribed clients stop receiving.
	c2.send("pusher:unsubscribe", map[string]any{"channel": "news"}, "")
	c2.send("pusher:ping", nil, "") // ordering barrier: the pong proves the unsubscribe was handled
	c2.expect("pusher:pong", "")
	b.trigger(t, "news", "headline", `2`)
	require.Equal(t, "2", c1.expect("headline", "news").str())
	c2.quiet(100 * time.Millisecond)
}

func TestPrivateChannelAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := dial(t, b)
	good.subscribePrivate(b.app, "private-room")

	forged := dial(t, b)
	evil := App{ID: b.app.ID, Key: b.app.Key, Secret: "guessed"}
	forged.send("pusher:subscribe", map[string]any{"channel": "private-room", "auth": SignChannelAuth(evil, forged.socketID, "private-room", "")}, "")
	m := forged.expect("pusher:error", "")
	require.Contains(t, string(m.Data), "invalid signature")
	se := forged.expect("pusher:subscription_error", "private-room")
	var d struct {
		Type   string
		Status int
	}
	se.obj(t, &d)
	require.Equal(t, "AuthError", d.Type)
	require.Equal(t, 401, d.Status)

	// Another socket's valid auth does not work either.
	stolen := dial(t, b)
	stolen.send("pusher:subscribe", map[string]any{"channel": "private-room", "auth": SignChannelAuth(b.app, good.socketID, "private-room", "")}, "")
	stolen.expect("pusher:error", "")
	stolen.expect("pusher:subscription_error", "private-room")

	b.trigger(t, "private-room", "secret", "s3")
	require.Equal(t, "s3", good.expect("secret", "private-room").str())
	forged.quiet(100 * time.Millisecond)
	stolen.quiet(10 * time.Millisecond)
}

func TestPresenceChannel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := dial(t, b)
	m := alice.subscribePresence(b.app, "presence-lobby", "alice", map[string]any{"name": "Alice"})
	var p struct {
		Presence struct {
			IDs   []string                  `json:"ids"`
			Hash  map[string]map[string]any `json:"hash"`
			Count int                       `json:"count"`
		} `json:"presence"`
	}
	m.obj(t, &p)
	require.Equal(t, []string{"alice"}, p.Presence.IDs)
	require.Equal(t, 1, p.Presence.Count)

	bob := dial(t, b)
	m = bob.subscribePresence(b.app, "presence-lobby", "bob", map[string]any{"name": "Bob"})
	m.obj(t, &p)
	require.Equal(t, []string{"alice", "bob"}, p.Presence.IDs)
	require.Equal(t, "Alice", p.Presence.Hash["alice"]["name"])

	added := alice.expect("pusher_internal:member_added", "presence-lobby")
	var md struct {
		UserID   string         `json:"user_id"`
		UserInfo map[string]any `json:"user_info"`
	}
	added.obj(t, &md)
	require.Equal(t, "bob", md.UserID)
	require.Equal(t, "Bob", md.UserInfo["name"])

	// A second connection of bob adds no member.
	bob2 := dial(t, b)
	bob2.subscribePresence(b.app, "presence-lobby", "bob", nil)

	code, body := b.api(t, "GET", "/channels/presence-lobby/users", nil, nil)
	require.Equal(t, 200, code, body)
	require.JSONEq(t, `{"users":[{"id":"alice"},{"id":"bob"}]}`, body)
	code, body = b.api(t, "GET", "/channels/presence-lobby", map[string][]string{"info": {"user_count,subscription_count"}}, nil)
	require.Equal(t, 200, code, body)
	require.JSONEq(t, `{"occupied":true,"user_count":2,"subscription_count":3}`, body)

	// bob leaves on one connection: still a member; on both: removed.
	_ = bob2.ws.Close(websocket.StatusNormalClosure, "")
	_ = bob.ws.Close(websocket.StatusNormalClosure, "")
	removed := alice.expect("pusher_internal:member_removed", "presence-lobby")
	removed.obj(t, &md)
	require.Equal(t, "bob", md.UserID)

	// Bad channel_data is refused.
	eve := dial(t, b)
	eve.send("pusher:subscribe", map[string]any{"channel": "presence-lobby", "channel_data": "nope",
		"auth": SignChannelAuth(b.app, eve.socketID, "presence-lobby", "nope")}, "")
	eve.expect("pusher:error", "")
	eve.expect("pusher:subscription_error", "presence-lobby")
}

func TestPresenceLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxPresenceMembers = 1 })
	dial(t, b).subscribePresence(b.app, "presence-x", "1", nil)
	c := dial(t, b)
	cd := `{"user_id":"2"}`
	c.send("pusher:subscribe", map[string]any{"channel": "presence-x", "channel_data": cd, "auth": SignChannelAuth(b.app, c.socketID, "presence-x", cd)}, "")
	require.Contains(t, string(c.expect("pusher:error", "").Data), "is full")
}

func TestClientEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.ClientEventsPerSecond = 3; c.MaxMessageBytes = 100 })
	a, o := dial(t, b), dial(t, b)
	a.subscribePrivate(b.app, "private-chat")
	o.subscribePrivate(b.app, "private-chat")

	a.send("client-typing", map[string]any{"who": "a"}, "private-chat")
	m := o.expect("client-typing", "private-chat")
	require.JSONEq(t, `{"who":"a"}`, m.str())
	a.send("client-text", "plain", "private-chat")
	require.Equal(t, "plain", o.expect("client-text", "private-chat").str())

	// The sender does not get its own event.
	a.send("pusher:ping", nil, "")
	a.expect("pusher:pong", "")

	// Refusals: not subscribed, public channel, too large, rate.
	a.send("client-x", "1", "private-other")
	require.Contains(t, string(a.expect("pusher:error", "").Data), "must be subscribed")
	a.subscribe("public", nil)
	a.send("client-x", "1", "public")
	require.Contains(t, string(a.expect("pusher:error", "").Data), "only allowed on private")
	a.send("client-x", strings.Repeat("x", 200), "private-chat")
	require.Contains(t, string(a.expect("pusher:error", "").Data), "over 100 bytes")
	// 3/s bucket: two tokens were spent above (typing, text); the third
	// succeeds, the next is refused with 4301.
	a.send("client-x", "3", "private-chat")
	a.send("client-x", "4", "private-chat")
	e := a.expect("pusher:error", "")
	var d struct{ Code int }
	require.NoError(t, json.Unmarshal(e.Data, &d))
	require.Equal(t, codeClientEventRate, d.Code)
	require.Equal(t, "3", o.expect("client-x", "private-chat").str())
}

func TestClientEventsPresenceUserID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, o := dial(t, b), dial(t, b)
	a.subscribePresence(b.app, "presence-room", "ann", nil)
	o.subscribePresence(b.app, "presence-room", "otto", nil)
	a.expect("pusher_internal:member_added", "presence-room")
	a.send("client-hi", "x", "presence-room")
	m := o.expect("client-hi", "presence-room")
	require.Equal(t, "ann", m.UserID)
}

func TestClientEventsDisabled(t *testing.T) {
	t.Parallel()
	app := testApp
	app.DisableClientEvents = true
	b := setup(t, func(c *Config) { c.Apps = []App{app} })
	a := dial(t, b)
	a.subscribePrivate(b.app, "private-chat")
	a.send("client-x", "1", "private-chat")
	require.Contains(t, string(a.expect("pusher:error", "").Data), "disabled")
}

func TestTriggerExcludesSocket(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, o := dial(t, b), dial(t, b)
	a.subscribe("c", nil)
	o.subscribe("c", nil)
	code, body := b.api(t, "POST", "/events", nil, map[string]any{"name": "e", "channel": "c", "data": "1", "socket_id": a.socketID})
	require.Equal(t, 200, code, body)
	o.expect("e", "c")
	a.send("pusher:ping", nil, "")
	a.expect("pusher:pong", "")
}

func TestBadMessages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := dial(t, b)
	for _, raw := range []string{`not json`, `{"event":"pusher:subscribe","data":42}`, `{"event":"whatever"}`} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		require.NoError(t, c.ws.Write(ctx, websocket.MessageText, []byte(raw)))
		cancel()
		c.expect("pusher:error", "")
	}
	c.send("pusher:subscribe", map[string]any{"channel": "bad channel!"}, "")
	c.expect("pusher:error", "")
	c.expect("pusher:subscription_error", "bad channel!")
	// Over the frame limit (MaxMessageBytes + 4 KiB): closed with 1009.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, []byte(`{"event":"client-x","data":"`+strings.Repeat("x", 20<<10)+`"}`))
	require.Equal(t, websocket.StatusMessageTooBig, c.closeStatus())
}

func TestSignin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := dial(t, b)
	ud := `{"id":"u1","name":"U"}`
	c.send("pusher:signin", map[string]any{"user_data": ud, "auth": SignUserAuth(b.app, c.socketID, ud)}, "")
	m := c.expect("pusher:signin_success", "")
	var d struct {
		UserData string `json:"user_data"`
	}
	m.obj(t, &d)
	require.Equal(t, ud, d.UserData)

	// The app can terminate the user's connections.
	code, body := b.api(t, "POST", "/users/u1/terminate_connections", nil, map[string]any{})
	require.Equal(t, 200, code, body)
	require.Equal(t, websocket.StatusCode(codeUnauthorized), c.closeStatus())

	bad := dial(t, b)
	bad.send("pusher:signin", map[string]any{"user_data": ud, "auth": b.app.Key + ":00"}, "")
	bad.expect("pusher:error", "")
	require.Equal(t, websocket.StatusCode(codeUnauthorized), bad.closeStatus())
}

func TestWebSocketResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := dial(t, b)
	c.subscribe("feed", nil)
	b.trigger(t, "feed", "e", "1")
	first := c.expect("e", "feed")
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "unsubscribe", func() bool { return b.srv.hubs[0].channelInfo("feed").subscriptions == 0 })
	b.trigger(t, "feed", "e", "2")
	b.trigger(t, "feed", "e", "3")

	// Reconnect and subscribe with resume_from: 2 and 3 are replayed in order, then live.
	c2 := dial(t, b)
	c2.subscribe("feed", map[string]any{"resume_from": first.ID})
	require.Equal(t, "2", c2.expect("e", "feed").str())
	require.Equal(t, "3", c2.expect("e", "feed").str())
	b.trigger(t, "feed", "e", "4")
	require.Equal(t, "4", c2.expect("e", "feed").str())

	// herald:resume on an existing subscription (for clients that cannot
	// add resume_from to pusher:subscribe): replays up to the subscription.
	c3 := dial(t, b)
	c3.subscribe("feed", nil)
	c3.send("herald:resume", map[string]any{"channel": "feed", "since": first.ID}, "")
	for _, want := range []string{"2", "3", "4"} {
		require.Equal(t, want, c3.expect("e", "feed").str())
	}

	// An unknown id is reported, not silently ignored.
	c4 := dial(t, b)
	c4.subscribe("feed", map[string]any{"resume_from": "zzz-1"})
	c4.expect("herald:resume_failed", "feed")
}

func TestResumeGap(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.HistorySize = 2 })
	c := dial(t, b)
	c.subscribe("g", nil)
	b.trigger(t, "g", "e", "1")
	first := c.expect("e", "g")
	for _, d := range []string{"2", "3", "4"} {
		b.trigger(t, "g", "e", d)
		c.expect("e", "g")
	}
	c2 := dial(t, b)
	m := c2.subscribe("g", map[string]any{"resume_from": first.ID})
	_ = m
	f := c2.expect("herald:resume_failed", "g")
	require.Contains(t, f.str(), "no longer in history")
}

func TestSlowClientDisconnected(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.SendQueue = 64 << 10 })
	slow := dial(t, b) // never reads after subscribing
	slow.subscribe("firehose", nil)
	fast := dial(t, b)
	fast.subscribe("firehose", nil)

	// The fast client reads each event before the next is published (a
	// paced publisher); the slow one never reads, so its socket buffers and
	// then its 64 KiB queue fill up.
	payload := strings.Repeat("x", 8<<10)
	const n = 2000 // 16 MB: more than loopback socket buffers hold
	got := 0
	for i := 0; i < n && b.srv.Stats().SlowDisconnects == 0; i++ {
		b.srv.hubs[0].dispatch(inbound{channel: "firehose", name: "big", data: payload})
		require.Equal(t, "big", fast.expect("big", "firehose").Event)
		got++
	}
	for i := 0; i < 10; i++ { // and it keeps getting events afterwards
		b.srv.hubs[0].dispatch(inbound{channel: "firehose", name: "big", data: "after"})
		require.Equal(t, "after", fast.expect("big", "firehose").str())
	}
	require.Less(t, got, n, "the slow client was disconnected before the end")
	waitFor(t, "slow client disconnected", func() bool { return b.srv.Stats().SlowDisconnects >= 1 })
	require.Equal(t, websocket.StatusCode(codeSlowClient), slow.closeStatus())
}

func TestServerPingsIdleClients(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.ActivityTimeout = time.Second; c.PongTimeout = time.Second })
	c := dial(t, b)
	m, err := c.read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "pusher:ping", m.Event)
	c.send("pusher:pong", nil, "")
	m, err = c.read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "pusher:ping", m.Event, "pinged again after another idle period")
	// No pong this time: closed with 4201.
	require.Equal(t, websocket.StatusCode(codePongTimeout), c.closeStatus())
}

func TestStopClosesConnections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := dial(t, b)
	c.subscribe("x", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.srv.Stop(ctx)
	}()
	require.Equal(t, websocket.StatusCode(codeShuttingDown), c.closeStatus())
	<-done
	code, _ := b.api(t, "POST", "/events", nil, map[string]any{"name": "e", "channel": "x", "data": "1"})
	require.Equal(t, 503, code)
}
