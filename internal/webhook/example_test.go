package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/webhook"
)

// A subscription delivers what its binding routes, as a signed structured
// CloudEvent.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "webhook-example")
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, _ := engine.New(engine.Config{DataDir: dir, Logger: quiet})
	_ = eng.Start(ctx)
	defer eng.Stop(ctx)
	b, _ := broker.New(broker.Config{Engine: eng, Logger: quiet})
	_ = b.Start(ctx)
	defer b.Stop(ctx)
	_, _ = b.DeclareExchange(ctx, "/", broker.ExchangeSpec{Name: "orders", Type: broker.Topic, Durable: true}, false)

	got := make(chan http.Header, 1)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ Type, Source string }
		_ = json.NewDecoder(r.Body).Decode(&ev)
		fmt.Println("event:", ev.Type, "from", ev.Source)
		got <- r.Header
	}))
	defer sink.Close()

	svc, _ := webhook.New(webhook.Config{Broker: b, Logger: quiet,
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}) // the sink is local
	_ = svc.Start(ctx)
	defer svc.Stop(ctx)
	sub, err := svc.Create(ctx, webhook.Spec{URL: sink.URL, Exchange: "orders", BindingKey: "order.*"})
	fmt.Println("created:", err == nil, sub.Concurrency, sub.MaxAttempts)

	_, _ = b.Publish(ctx, broker.Publishing{VHost: "/", Exchange: "orders", RoutingKey: "order.created",
		Message: &broker.Message{Properties: broker.Properties{ContentType: "application/json", MessageID: "42"}, Body: []byte(`{"total":42}`)}})
	select {
	case h := <-got:
		fmt.Println("signed:", h.Get("webhook-id") != "" && h.Get("webhook-signature") != "")
	case <-time.After(10 * time.Second):
		fmt.Println("timeout")
	}
	// Output:
	// created: true 10 8
	// event: order.created from /herald/%2F/orders
	// signed: true
}
