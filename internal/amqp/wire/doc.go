// Package wire is the AMQP 0-9-1 frame codec: frames, methods, content
// headers and field tables, with RabbitMQ's extensions (confirm.select,
// basic.nack, connection.blocked, connection.update-secret).
//
// The method structs, class and method IDs, reply codes and property flags in
// methods_gen.go are generated from spec/amqp-rabbitmq-0.9.1.json by ./gen
// (run `go generate ./internal/amqp/wire`); the generated file is committed so
// the build needs nothing outside the module. The rest is written by hand:
//
//   - Reader turns an io.Reader into frames, reading as many bytes per system
//     call as are available and bounding every frame by the negotiated
//     frame-max. A malformed or oversized frame is an *Error carrying the AMQP
//     reply code to close the connection with (501 FRAME_ERROR, 502
//     SYNTAX_ERROR, 503 COMMAND_INVALID); no input makes it panic.
//   - Writer buffers frames and writes many per system call; encoding a
//     method, content header or body into it does not allocate.
//   - ContentHeader and Properties encode the basic class's properties with
//     their property-flags bitmap.
//   - Field tables are Table (map[string]any) and field arrays []any, with
//     every field type RabbitMQ reads and writes.
//
// Field values use exactly these Go types, which the broker core shares:
//
//	'V' nil        't' bool       'b' int8       'B' uint8
//	's' int16      'u' uint16     'I' int32      'i' uint32
//	'l' int64      'f' float32    'd' float64    'D' Decimal
//	'S' string     'x' []byte     'T' time.Time  'F' Table
//	'A' []any
//
// 'L' (unsigned 64-bit, which RabbitMQ never writes) is read as int64; int
// values are written as 'l'. Timestamps are whole seconds and decode in UTC.
//
// wire is a leaf package: it imports only the standard library.
package wire

//go:generate go run ./gen
