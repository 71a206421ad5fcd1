package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/heraldhq/herald/internal/engine"
)

// A single embedded node: a log used as a queue, and a KV bucket.
func Example() {
	dir, _ := os.MkdirTemp("", "herald-engine-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	e, err := engine.New(engine.Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	if err := e.Start(ctx); err != nil {
		panic(err)
	}
	defer e.Stop(ctx)

	if err := e.EnsureLog(ctx, engine.LogConfig{Name: "orders", Subjects: []string{"orders.>"}}); err != nil {
		panic(err)
	}
	seq, _ := e.Append(ctx, "orders.created", []byte("order 1"))
	done := make(chan struct{})
	_ = e.AppendAsync("orders.paid", []byte("order 1 paid"), func(seq uint64, err error) {
		fmt.Println("async append acknowledged:", seq, err)
		close(done)
	})
	<-done

	msg, _ := e.Get(ctx, "orders", seq)
	fmt.Printf("get %d: %s %q\n", msg.Seq, msg.Subject, msg.Data)

	_ = e.Delete(ctx, "orders", seq) // acked
	last, _ := e.Scan(ctx, "orders", "", 0, func(m engine.Msg) error {
		fmt.Printf("scan %d: %s %q\n", m.Seq, m.Subject, m.Data)
		return nil
	})
	fmt.Println("scanned up to", last)

	kv, _ := e.KV(ctx, engine.KVConfig{Bucket: "meta"})
	rev, _ := kv.Create(ctx, "queue.orders", []byte(`{"durable":true}`))
	_, err = kv.Update(ctx, "queue.orders", []byte(`{}`), rev+1)
	fmt.Println("stale update:", err != nil)

	// Output:
	// async append acknowledged: 2 <nil>
	// get 1: orders.created "order 1"
	// scan 2: orders.paid "order 1 paid"
	// scanned up to 2
	// stale update: true
}
