package broker

import (
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/heraldhq/herald/internal/broker/route"
	"github.com/heraldhq/herald/internal/errs"
)

// queueArgs are a queue's validated x-arguments. -1 means "not set" for the
// numeric limits.
type queueArgs struct {
	MessageTTL     int64 // x-message-ttl, ms
	Expires        int64 // x-expires, ms (> 0)
	MaxLength      int64 // x-max-length
	MaxLengthBytes int64 // x-max-length-bytes
	Overflow       string
	DLX            *string // x-dead-letter-exchange ("" is the default exchange)
	DLRK           *string // x-dead-letter-routing-key
	SingleActive   bool
	DeliveryLimit  int64 // x-delivery-limit
	MaxPriority    uint8 // x-max-priority, 0 = no priorities
	Dedup          bool  // x-message-deduplication
	QueueType      string
}

const (
	overflowDropHead        = "drop-head"
	overflowRejectPublish   = "reject-publish"
	overflowRejectPublishDL = "reject-publish-dlx"
	maxPriorityLimit        = 255
	dedupHeader             = "x-deduplication-header"
)

func badArg(queue, arg string, format string, a ...any) error {
	return errs.New(errs.BadArgument, "invalid arg '%s' for queue '%s': %s", arg, queue, fmt.Sprintf(format, a...))
}

// asInt converts any AMQP integer (or an integral float, as JSON decodes
// numbers) to int64.
func asInt(v any) (int64, bool) {
	if n, ok := route.Int(v); ok {
		return n, true
	}
	switch v := v.(type) {
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v), true
		}
	case float32:
		if float64(v) == math.Trunc(float64(v)) {
			return int64(v), true
		}
	}
	return 0, false
}

func asString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

func parseQueueArgs(queue string, t Table) (queueArgs, error) {
	a := queueArgs{MessageTTL: -1, Expires: -1, MaxLength: -1, MaxLengthBytes: -1, DeliveryLimit: -1, Overflow: overflowDropHead}
	nonNeg := func(k string, v any, min int64) (int64, error) {
		n, ok := asInt(v)
		if !ok {
			return 0, badArg(queue, k, "expected an integer, got %T", v)
		}
		if n < min {
			return 0, badArg(queue, k, "must be at least %d, got %d", min, n)
		}
		return n, nil
	}
	for k, v := range t {
		var err error
		switch k {
		case "x-message-ttl":
			a.MessageTTL, err = nonNeg(k, v, 0)
		case "x-expires":
			a.Expires, err = nonNeg(k, v, 1)
		case "x-max-length":
			a.MaxLength, err = nonNeg(k, v, 0)
		case "x-max-length-bytes":
			a.MaxLengthBytes, err = nonNeg(k, v, 0)
		case "x-delivery-limit":
			a.DeliveryLimit, err = nonNeg(k, v, 0)
		case "x-max-priority":
			var n int64
			n, err = nonNeg(k, v, 0)
			if err == nil && n > maxPriorityLimit {
				err = badArg(queue, k, "must be at most 255")
			}
			a.MaxPriority = uint8(n)
		case "x-overflow":
			s, ok := asString(v)
			switch {
			case !ok:
				err = badArg(queue, k, "expected a string")
			case s == overflowDropHead || s == overflowRejectPublish || s == overflowRejectPublishDL:
				a.Overflow = s
			default:
				err = badArg(queue, k, "must be drop-head, reject-publish or reject-publish-dlx, got %q", s)
			}
		case "x-dead-letter-exchange":
			s, ok := asString(v)
			if !ok {
				err = badArg(queue, k, "expected a string")
			}
			a.DLX = &s
		case "x-dead-letter-routing-key":
			s, ok := asString(v)
			if !ok {
				err = badArg(queue, k, "expected a string")
			}
			a.DLRK = &s
		case "x-single-active-consumer":
			b, ok := v.(bool)
			if !ok {
				err = badArg(queue, k, "expected a boolean")
			}
			a.SingleActive = b
		case "x-message-deduplication":
			b, ok := v.(bool)
			if !ok {
				err = badArg(queue, k, "expected a boolean")
			}
			a.Dedup = b
		case "x-queue-type":
			s, ok := asString(v)
			if !ok || (s != "classic" && s != "quorum") {
				err = badArg(queue, k, "must be classic or quorum (streams are not supported)")
			}
			a.QueueType = s
		case "x-queue-mode", "x-queue-master-locator", "x-queue-leader-locator", "x-quorum-initial-group-size":
			// accepted for compatibility; Herald pages bodies to the log on its own
		}
		if err != nil {
			return queueArgs{}, err
		}
	}
	if a.DLRK != nil && a.DLX == nil {
		return queueArgs{}, badArg(queue, "x-dead-letter-routing-key", "requires x-dead-letter-exchange")
	}
	return a, nil
}

// validName checks an AMQP exchange or queue name (shortstr, no control bytes).
func validName(kind, name string) error {
	if len(name) > 255 {
		return errs.New(errs.BadArgument, "%s name is longer than 255 bytes", kind)
	}
	if !utf8.ValidString(name) {
		return errs.New(errs.BadArgument, "%s name is not valid UTF-8", kind)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errs.New(errs.BadArgument, "%s name contains a control character", kind)
		}
	}
	return nil
}

// equalArgs compares the arguments that must match on a redeclare.
func equalQueueArgs(x, y queueArgs) bool {
	eqp := func(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return x.MessageTTL == y.MessageTTL && x.Expires == y.Expires && x.MaxLength == y.MaxLength &&
		x.MaxLengthBytes == y.MaxLengthBytes && x.Overflow == y.Overflow && eqp(x.DLX, y.DLX) &&
		eqp(x.DLRK, y.DLRK) && x.SingleActive == y.SingleActive && x.DeliveryLimit == y.DeliveryLimit &&
		x.MaxPriority == y.MaxPriority && x.Dedup == y.Dedup
}
