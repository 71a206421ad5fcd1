package websub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/webhook"
	"github.com/heraldhq/herald/internal/websub"
)

// Every topic has a fanout exchange; publishing to it (from any face)
// distributes to the topic's subscribers.
func ExampleTopicExchange() {
	fmt.Println(websub.TopicExchange("https://blog.example/feed"))
	// Output:
	// herald.websub.t.5fe91a6fb49ea8e1c0188b0fbf5c2ae2
}

// The whole flow: a hub distributing through the webhook service, a
// subscriber that subscribes and echoes the challenge, and an event
// published to the topic's exchange reaching it with WebSub headers.
func Example() {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, _ := os.MkdirTemp("", "websub-example")
	defer os.RemoveAll(dir)
	eng, _ := engine.New(engine.Config{DataDir: dir, Logger: log})
	_ = eng.Start(ctx)
	defer eng.Stop(ctx)
	b, _ := broker.New(broker.Config{Engine: eng, Logger: log})
	_ = b.Start(ctx)
	defer b.Stop(ctx)

	var hub *websub.Hub
	wh, _ := webhook.New(webhook.Config{Broker: b, Logger: log,
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, // the subscriber is local
		OnGone:       func(s webhook.Subscription) { hub.Gone(s.ID) }})
	hub, err := websub.New(websub.Config{
		Broker: b, Logger: log, HubURL: "https://hub.example/websub/hub",
		Distributor: websub.WebhookDistributor(wh, webhook.Spec{}),
		CheckURL:    wh.Guard().CheckURL, Client: wh.Guard().Client(),
	})
	if err != nil {
		panic(err)
	}
	_ = wh.Start(ctx)
	defer wh.Stop(ctx)
	_ = hub.Start(ctx)
	defer hub.Stop(ctx)
	mux := http.NewServeMux()
	hub.Mount(mux)
	hubSrv := httptest.NewServer(mux)
	defer hubSrv.Close()

	got := make(chan string, 1)
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet { // verification of intent
			_, _ = io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		body, _ := io.ReadAll(r.Body)
		got <- fmt.Sprintf("%s\n%s\n%s", r.Header.Get("Content-Type"), r.Header.Get("Link"), body)
	}))
	defer sub.Close()

	topic := "https://blog.example/feed"
	resp, _ := http.PostForm(hubSrv.URL+websub.HubPath, url.Values{
		"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {sub.URL + "/cb"}})
	resp.Body.Close()
	fmt.Println(resp.Status)
	for len(hub.Subscriptions()) == 0 { // verification is asynchronous
		time.Sleep(10 * time.Millisecond)
	}

	_, _ = b.Publish(ctx, broker.Publishing{VHost: "/", Exchange: websub.TopicExchange(topic),
		Message: &broker.Message{Properties: broker.Properties{ContentType: "text/plain"}, Body: []byte("hello, subscribers")}})
	fmt.Println(<-got)
	// Output:
	// 202 Accepted
	// text/plain
	// <https://hub.example/websub/hub>; rel="hub", <https://blog.example/feed>; rel="self"
	// hello, subscribers
}
