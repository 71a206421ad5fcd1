package route

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
)

// MatchHeaders reports whether a message with headers matches a headers
// exchange binding with arguments args, with RabbitMQ's rules:
//
//   - x-match (a string) is "all" (the default, also for any value RabbitMQ
//     would not accept), "any", "all-with-x" or "any-with-x". It never takes
//     part in matching itself.
//   - Other arguments whose key starts with "x-" are ignored unless the mode
//     ends in "-with-x".
//   - An argument matches when the header of the same key is present and,
//     unless the argument's value is void (nil), equal to it.
//   - "all" matches when every considered argument matches, so a binding with
//     none matches every message; "any" when at least one does, so a binding
//     with none matches nothing.
//
// Values compare as RabbitMQ's Erlang == does: every integer type and
// time.Time (as whole Unix seconds, which is how AMQP carries timestamps) by
// numeric value, floats by value (1 == 1.0), string and []byte by bytes, bool
// by value, nested tables and arrays element by element with these same rules.
// Other types (decimals) are equal when they have the same type and value.
// Unlike RabbitMQ, nested tables compare as maps (RabbitMQ compares them in
// wire order and with their field types).
func MatchHeaders(args, headers map[string]any) bool {
	matchAny, withX := false, false
	if s, ok := args["x-match"].(string); ok {
		switch s {
		case "any":
			matchAny = true
		case "all-with-x":
			withX = true
		case "any-with-x":
			matchAny, withX = true, true
		}
	}
	for k, want := range args {
		if k == "x-match" || (!withX && strings.HasPrefix(k, "x-")) {
			continue
		}
		got, ok := headers[k]
		m := ok && (want == nil || equalValue(want, got))
		if matchAny && m {
			return true
		}
		if !matchAny && !m {
			return false
		}
	}
	return !matchAny
}

// ValidHeadersBinding checks a headers exchange binding's arguments as
// RabbitMQ does when the binding is made: x-match, when present, must be the
// string "all", "any", "all-with-x" or "any-with-x". RabbitMQ refuses other
// bindings with 406 PRECONDITION_FAILED. (MatchHeaders treats an invalid
// x-match as "all", as RabbitMQ does for bindings made before it validated.)
func ValidHeadersBinding(args map[string]any) error {
	v, ok := args["x-match"]
	if !ok {
		return nil
	}
	s, isString := v.(string)
	if !isString {
		return fmt.Errorf("invalid x-match field type %T (value %v); expected a string", v, v)
	}
	switch s {
	case "all", "any", "all-with-x", "any-with-x":
		return nil
	}
	return fmt.Errorf("invalid x-match field value %q; expected all, any, all-with-x, or any-with-x", s)
}

// equalValue compares two AMQP field values (see MatchHeaders).
func equalValue(a, b any) bool {
	if ai, ok := asInt(a); ok {
		if bi, ok := asInt(b); ok {
			return ai == bi
		}
		if bf, ok := asFloat(b); ok {
			return intEqualsFloat(ai, bf)
		}
		return false
	}
	if af, ok := asFloat(a); ok {
		if bf, ok := asFloat(b); ok {
			return af == bf
		}
		if bi, ok := asInt(b); ok {
			return intEqualsFloat(bi, af)
		}
		return false
	}
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case string:
		switch b := b.(type) {
		case string:
			return a == b
		case []byte:
			return a == string(b)
		}
		return false
	case []byte:
		switch b := b.(type) {
		case string:
			return string(a) == b
		case []byte:
			return string(a) == string(b)
		}
		return false
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equalValue(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalValue(a[i], b[i]) {
				return false
			}
		}
		return true
	}
	if b == nil {
		return false
	}
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// Int converts any of the integer types an AMQP field value can hold (and
// Go's int and uint) to int64; ok is false for other types and for unsigned
// values above math.MaxInt64. Faces use it to read integer arguments and
// headers whatever width a client chose.
func Int(v any) (int64, bool) {
	switch v := v.(type) {
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case int:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), true
		}
	case uint:
		if uint64(v) <= math.MaxInt64 {
			return int64(v), true
		}
	}
	return 0, false
}

// asInt is Int plus timestamps, which are integers on the wire.
func asInt(v any) (int64, bool) {
	if t, ok := v.(time.Time); ok {
		return t.Unix(), true
	}
	return Int(v)
}

func asFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case float32:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// intEqualsFloat reports whether i and f are the same number, exactly.
func intEqualsFloat(i int64, f float64) bool {
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return false
	}
	return int64(f) == i
}
