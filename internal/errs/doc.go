// Package errs is Herald's error catalog: the one place that says how a failure
// inside the broker is shown to the outside world.
//
// Every error the broker core returns to a face is (or wraps) an *Error with a
// Kind. Each face maps the Kind to its protocol's own vocabulary: an HTTP status
// with a JSON body, an AMQP reply code (channel or connection exception), or a
// WebSocket close code. Faces never invent their own mapping; they call
// HTTPStatus, AMQPCode and WSCode.
//
// errs is a leaf: it imports only the standard library, so every room may
// import it without cycles.
package errs
