package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/engine"
	"github.com/heraldhq/herald/internal/httpapi"
)

// Mount the management API on a shared mux, declare a queue and publish to
// it through the default exchange, as RabbitMQ's management API does.
func ExampleAPI_Mount() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "herald-example")
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	eng, _ := engine.New(engine.Config{DataDir: dir, Logger: quiet})
	if err := eng.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Stop(ctx)
	b, _ := broker.New(broker.Config{Engine: eng, Logger: quiet})
	if err := b.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer b.Stop(ctx)

	mux := http.NewServeMux()
	httpapi.New(httpapi.Config{Broker: b, Logger: quiet}).Mount(mux)
	srv := httptest.NewServer(mux) // listens on loopback, so guest may log in
	defer srv.Close()

	call := func(method, path, body string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.SetBasicAuth("guest", "guest")
		res, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		fmt.Println(strings.TrimSpace(fmt.Sprint(res.StatusCode, " ", string(out))))
	}
	call("PUT", "/api/queues/%2F/orders", `{"durable":true}`)
	call("POST", "/api/exchanges/%2F/amq.default/publish",
		`{"properties":{},"routing_key":"orders","payload":"order 1","payload_encoding":"string"}`)
	call("POST", "/api/queues/%2F/orders/get", `{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}`)
	call("GET", "/api/queues/%2F/missing", "")
	// Output:
	// 201
	// 200 {"routed":true}
	// 200 [{"payload_bytes":7,"redelivered":false,"exchange":"","routing_key":"orders","message_count":0,"properties":{},"payload":"order 1","payload_encoding":"string"}]
	// 404 {"error":"Object Not Found","reason":"Not Found"}
}
