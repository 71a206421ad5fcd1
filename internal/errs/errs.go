package errs

import (
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies a failure for the outside world.
type Kind int

// The kinds. The comment on each names the AMQP reply code it maps to.
const (
	Internal           Kind = iota // 541 internal-error (connection), HTTP 500
	NotFound                       // 404 not-found (channel)
	PreconditionFailed             // 406 precondition-failed (channel)
	AccessRefused                  // 403 access-refused (channel)
	ResourceLocked                 // 405 resource-locked (channel)
	BadArgument                    // 406 on AMQP (arguments are preconditions there), HTTP 400
	NotAllowed                     // 530 not-allowed (connection)
	NotImplemented                 // 540 not-implemented (connection)
	ResourceError                  // 506 resource-error (connection), HTTP 503
	Unauthorized                   // 403 on AMQP, HTTP 401
	TooLarge                       // 406 on AMQP (frame size is separate), HTTP 413
	Rejected                       // a queue refused a message by overflow policy: publisher nack, HTTP 409
	Unavailable                    // broker shutting down or engine not ready: 320 connection-forced, HTTP 503
)

var kindNames = [...]string{
	Internal:           "internal_error",
	NotFound:           "not_found",
	PreconditionFailed: "precondition_failed",
	AccessRefused:      "access_refused",
	ResourceLocked:     "resource_locked",
	BadArgument:        "bad_request",
	NotAllowed:         "not_allowed",
	NotImplemented:     "not_implemented",
	ResourceError:      "resource_error",
	Unauthorized:       "not_authorised",
	TooLarge:           "too_large",
	Rejected:           "rejected",
	Unavailable:        "unavailable",
}

// String is the short machine name used as "error" in HTTP JSON bodies.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// HTTPStatus is the status RabbitMQ's management API uses for this kind.
func (k Kind) HTTPStatus() int {
	switch k {
	case NotFound:
		return http.StatusNotFound
	case PreconditionFailed, BadArgument:
		return http.StatusBadRequest
	case AccessRefused:
		return http.StatusForbidden
	case Unauthorized:
		return http.StatusUnauthorized
	case ResourceLocked:
		return http.StatusMethodNotAllowed // RabbitMQ answers 405 for locked resources
	case NotAllowed:
		return http.StatusMethodNotAllowed
	case NotImplemented:
		return http.StatusNotImplemented
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case Rejected:
		return http.StatusConflict
	case ResourceError, Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// AMQP reply codes (AMQP 0-9-1 section 1.2 constants).
const (
	AMQPContentTooLarge    = 311
	AMQPNoRoute            = 312
	AMQPConnectionForced   = 320
	AMQPInvalidPath        = 402
	AMQPAccessRefused      = 403
	AMQPNotFound           = 404
	AMQPResourceLocked     = 405
	AMQPPreconditionFailed = 406
	AMQPFrameError         = 501
	AMQPSyntaxError        = 502
	AMQPCommandInvalid     = 503
	AMQPChannelError       = 504
	AMQPUnexpectedFrame    = 505
	AMQPResourceError      = 506
	AMQPNotAllowed         = 530
	AMQPNotImplemented     = 540
	AMQPInternalError      = 541
)

// AMQPCode is the AMQP reply code for this kind.
func (k Kind) AMQPCode() uint16 {
	switch k {
	case NotFound:
		return AMQPNotFound
	case PreconditionFailed, BadArgument, TooLarge, Rejected:
		return AMQPPreconditionFailed
	case AccessRefused, Unauthorized:
		return AMQPAccessRefused
	case ResourceLocked:
		return AMQPResourceLocked
	case NotAllowed:
		return AMQPNotAllowed
	case NotImplemented:
		return AMQPNotImplemented
	case ResourceError:
		return AMQPResourceError
	case Unavailable:
		return AMQPConnectionForced
	default:
		return AMQPInternalError
	}
}

// AMQPHardError reports whether the AMQP code closes the connection
// (a connection exception) rather than only the channel.
func AMQPHardError(code uint16) bool {
	switch code {
	case AMQPConnectionForced, AMQPInvalidPath, AMQPFrameError, AMQPSyntaxError,
		AMQPCommandInvalid, AMQPChannelError, AMQPUnexpectedFrame, AMQPResourceError,
		AMQPNotAllowed, AMQPNotImplemented, AMQPInternalError:
		return true
	}
	return false
}

// WSCode is the Pusher-protocol close/error code for this kind
// (4000-4099: do not reconnect; 4100-4199: reconnect after backoff;
// 4200-4299: reconnect immediately; 4300+ is Herald's own range).
func (k Kind) WSCode() int {
	switch k {
	case Unauthorized, AccessRefused:
		return 4009 // connection is unauthorized
	case BadArgument, PreconditionFailed, NotFound:
		return 4000 // bad request / not found, do not retry as is
	case TooLarge:
		return 4301 // Herald: message too large
	case ResourceError:
		return 4100 // over capacity, reconnect with backoff
	case Unavailable:
		return 4200 // generic reconnect immediately
	default:
		return 4201
	}
}

// Error is a catalogued failure. Msg is for humans and is safe to show to a
// client; it never contains secrets.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause, not shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error of kind k with a formatted message.
func New(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error of kind k whose cause is err.
func Wrap(k Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the Kind of err: the Kind of the first *Error in its chain,
// or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Message returns the client-safe message of err: the Msg of the first *Error
// in its chain, or a generic text for uncatalogued errors.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return "internal error"
}

// Is reports whether err is a catalogued error of kind k.
func Is(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}
