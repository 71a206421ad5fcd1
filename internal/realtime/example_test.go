package realtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldhq/herald/internal/realtime"
)

func ExampleParseApp() {
	app, err := realtime.ParseApp("42:my-key:my-secret")
	if err != nil {
		panic(err)
	}
	fmt.Println(app.ID, app.Key, realtime.ExchangeName(app.ID))
	_, err = realtime.ParseApp("42:my-key")
	fmt.Println(err)
	// Output:
	// 42 my-key pusher.42
	// pusher app "42:my-key": want ID:KEY:SECRET
}

// An app's auth endpoint signs a private channel subscription like this.
func ExampleSignChannelAuth() {
	app := realtime.App{ID: "42", Key: "278d425bdf160c739803", Secret: "7ad3773142a6692b25b8"}
	fmt.Println(realtime.SignChannelAuth(app, "1234.1234", "private-foobar", ""))
	// Output:
	// 278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4
}

// The whole flow: serve the face, connect a Pusher client over WebSocket,
// subscribe, trigger an event through the signed HTTP API, receive it.
func Example() {
	app := realtime.App{ID: "1", Key: "key", Secret: "secret"}
	srv, err := realtime.New(realtime.Config{Apps: []realtime.App{app}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	srv.Mount(mux)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer srv.Stop(ctx)

	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/app/key?protocol=7", nil)
	if err != nil {
		panic(err)
	}
	defer ws.CloseNow()
	read := func() (ev struct{ Event, Channel, Data string }) {
		_, b, err := ws.Read(ctx)
		if err != nil {
			panic(err)
		}
		_ = json.Unmarshal(b, &ev)
		return ev
	}
	fmt.Println(read().Event)
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"event":"pusher:subscribe","data":{"channel":"news"}}`))
	fmt.Println(read().Event)

	body := []byte(`{"name":"headline","channel":"news","data":"{\"title\":\"hi\"}"}`)
	q := realtime.SignAPIRequest(app, "POST", "/apps/1/events", nil, body, time.Now())
	resp, err := http.Post(ts.URL+"/apps/1/events?"+q, "application/json", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	ev := read()
	fmt.Println(resp.StatusCode, ev.Event, ev.Channel, ev.Data)
	// Output:
	// pusher:connection_established
	// pusher_internal:subscription_succeeded
	// 200 headline news {"title":"hi"}
}
