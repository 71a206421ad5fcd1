// Package httpapi is Herald's management HTTP face: the paths and JSON shapes
// of RabbitMQ's management API (/api/overview, /api/queues/{vhost}/{name},
// /api/exchanges/{vhost}/{name}/publish, /api/bindings/..., ...) on top of the
// broker core, so existing tools and scripts work against Herald.
//
// Every endpoint requires HTTP basic authentication against the broker's users;
// the user "guest" is accepted only from loopback clients, as RabbitMQ's
// loopback_users does. Errors share one envelope:
//
//	{"error": "bad_request", "reason": "..."}
//
// with the status RabbitMQ uses (400, 401, 403, 404, 405, 413, ...), mapped
// from the broker's error kinds through package errs. Counts (messages,
// consumers, ...) are read from the broker at request time, never cached.
//
// Mounting: an *API is an http.Handler for the paths under /api/. The server
// that owns the listener either serves it directly (Handler) or mounts it next
// to other faces on a shared mux:
//
//	mux := http.NewServeMux()
//	api.Mount(mux) // registers "/api/"
//	mux.Handle("/app/", realtimeHandler)
//
// See README.md for the endpoint list and how Herald differs from RabbitMQ.
package httpapi
