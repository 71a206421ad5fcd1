package route_test

import (
	"fmt"

	"github.com/heraldhq/herald/internal/broker/route"
)

func ExampleTopic() {
	t := route.NewTopic()
	t.Add("*.feed_fetcher", route.Dest{Name: "fetchers"})
	t.Add("#.error", route.Dest{Name: "errors"})
	t.Add("#", route.Dest{Name: "audit"})
	t.Add("app.#", route.Dest{Name: "audit"}) // same queue twice: matched once

	for _, key := range []string{"domU-12-31-39-07.feed_fetcher", "app.db.error", ""} {
		fmt.Printf("%q -> %v\n", key, t.Match(key, nil))
	}
	// Output:
	// "domU-12-31-39-07.feed_fetcher" -> [{fetchers false} {audit false}]
	// "app.db.error" -> [{audit false} {errors false}]
	// "" -> [{audit false}]
}

func ExampleMatchHeaders() {
	args := map[string]any{"x-match": "any", "format": "pdf", "size": int64(1024)}
	fmt.Println(route.MatchHeaders(args, map[string]any{"size": int32(1024)}))
	fmt.Println(route.MatchHeaders(args, map[string]any{"format": "zip"}))
	// Output:
	// true
	// false
}
