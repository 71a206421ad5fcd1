package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// maxTableDepth bounds the nesting of JSON arguments and headers.
const maxTableDepth = 32

// tableFromJSON converts a decoded JSON object (numbers as json.Number) into
// an AMQP table: integers become int64, other numbers float64, objects
// tables and arrays []any. nil stays nil.
func tableFromJSON(m map[string]any) (broker.Table, error) {
	if m == nil {
		return nil, nil
	}
	v, err := fromJSON(m, 0)
	if err != nil {
		return nil, err
	}
	return v.(broker.Table), nil
}

func fromJSON(v any, depth int) (any, error) {
	if depth > maxTableDepth {
		return nil, errs.New(errs.BadArgument, "arguments nested deeper than %d levels", maxTableDepth)
	}
	switch v := v.(type) {
	case nil, bool, string:
		return v, nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, errs.New(errs.BadArgument, "number %s is out of range", truncateForError(v.String()))
		}
		return f, nil
	case float64: // decoded without UseNumber
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v), nil
		}
		return v, nil
	case map[string]any:
		t := make(broker.Table, len(v))
		for k, e := range v {
			c, err := fromJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			t[k] = c
		}
		return t, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := fromJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return nil, errs.New(errs.BadArgument, "unsupported JSON value %T", v)
	}
}

// tableToJSON converts an AMQP table into JSON-ready values the way
// RabbitMQ's management API shows them: byte strings as strings, timestamps
// as Unix seconds, decimals as numbers. It never returns nil, so "arguments"
// is always an object.
func tableToJSON(t broker.Table) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = valueToJSON(v)
	}
	return out
}

func valueToJSON(v any) any {
	switch v := v.(type) {
	case []byte:
		return string(v)
	case time.Time:
		return v.Unix()
	case broker.Decimal:
		return float64(v.Value) / math.Pow10(int(v.Scale))
	case broker.Table:
		return tableToJSON(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = valueToJSON(e)
		}
		return out
	case float32:
		return float64(v)
	default:
		return v
	}
}

// propertiesJSON is RabbitMQ's JSON form of AMQP basic properties, used both
// to read a publish request and to show a message from get.
type propertiesJSON struct {
	ContentType     string         `json:"content_type,omitempty"`
	ContentEncoding string         `json:"content_encoding,omitempty"`
	Headers         map[string]any `json:"headers,omitempty"`
	DeliveryMode    uint8          `json:"delivery_mode,omitempty"`
	Priority        uint8          `json:"priority,omitempty"`
	CorrelationID   string         `json:"correlation_id,omitempty"`
	ReplyTo         string         `json:"reply_to,omitempty"`
	Expiration      string         `json:"expiration,omitempty"`
	MessageID       string         `json:"message_id,omitempty"`
	Timestamp       int64          `json:"timestamp,omitempty"` // Unix seconds
	Type            string         `json:"type,omitempty"`
	UserID          string         `json:"user_id,omitempty"`
	AppID           string         `json:"app_id,omitempty"`
}

func (pj *propertiesJSON) toBroker() (broker.Properties, error) {
	headers, err := tableFromJSON(pj.Headers)
	if err != nil {
		return broker.Properties{}, err
	}
	if pj.DeliveryMode > 2 {
		return broker.Properties{}, errs.New(errs.BadArgument, "delivery_mode must be 1 or 2, not %d", pj.DeliveryMode)
	}
	p := broker.Properties{
		ContentType:     pj.ContentType,
		ContentEncoding: pj.ContentEncoding,
		Headers:         headers,
		DeliveryMode:    pj.DeliveryMode,
		Priority:        pj.Priority,
		CorrelationID:   pj.CorrelationID,
		ReplyTo:         pj.ReplyTo,
		Expiration:      pj.Expiration,
		MessageID:       pj.MessageID,
		Type:            pj.Type,
		UserID:          pj.UserID,
		AppID:           pj.AppID,
	}
	if pj.Timestamp != 0 {
		p.Timestamp = time.Unix(pj.Timestamp, 0).UTC()
	}
	return p, nil
}

func propertiesToJSON(p broker.Properties) propertiesJSON {
	pj := propertiesJSON{
		ContentType:     p.ContentType,
		ContentEncoding: p.ContentEncoding,
		DeliveryMode:    p.DeliveryMode,
		Priority:        p.Priority,
		CorrelationID:   p.CorrelationID,
		ReplyTo:         p.ReplyTo,
		Expiration:      p.Expiration,
		MessageID:       p.MessageID,
		Type:            p.Type,
		UserID:          p.UserID,
		AppID:           p.AppID,
	}
	if len(p.Headers) > 0 {
		pj.Headers = tableToJSON(p.Headers)
	}
	if !p.Timestamp.IsZero() {
		pj.Timestamp = p.Timestamp.Unix()
	}
	return pj
}

// propertiesKey is the "properties_key" that names a binding in URLs, in
// RabbitMQ's format: "~" for an empty routing key without arguments; the
// quoted routing key when there are no arguments; otherwise the quoted key,
// "~" and a hash of the arguments. Quoting is form encoding (space as "+")
// with "~" escaped as "%7E", so the only literal "~" is the separator.
//
// The hash differs from RabbitMQ's (an Erlang term hash): Herald uses the
// unpadded base64url of the first 16 bytes of SHA-256 over the arguments'
// canonical JSON (keys sorted). Keys are opaque to clients, who take them
// from the properties_key field of a binding.
func propertiesKey(routingKey string, args broker.Table) string {
	if len(args) == 0 {
		if routingKey == "" {
			return "~"
		}
		return quoteBinding(routingKey)
	}
	return quoteBinding(routingKey) + "~" + argsHash(args)
}

func quoteBinding(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "~", "%7E")
}

func argsHash(args broker.Table) string {
	data, err := json.Marshal(tableToJSON(args))
	if err != nil {
		// Tables hold only JSON-representable values; keep keys distinct anyway.
		data = []byte(err.Error())
	}
	sum := sha256.Sum256(data)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// matchesPropertiesKey reports whether a {props} path value names the binding
// with key. Clients that escape the key once more (as RabbitMQ's tools do)
// send it verbatim after path decoding; clients that paste it unescaped have
// its percent-escapes decoded by the path, which the second form accepts.
func matchesPropertiesKey(pathValue, key string) bool {
	if pathValue == key {
		return true
	}
	unq, err := url.PathUnescape(key)
	return err == nil && pathValue == unq
}
