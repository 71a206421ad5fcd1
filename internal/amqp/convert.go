package amqp

import (
	"github.com/heraldhq/herald/internal/amqp/wire"
	"github.com/heraldhq/herald/internal/broker"
)

// The wire codec and the broker core share the field-table representation
// (map[string]any with the same value types) except for decimals, which each
// package defines for itself. These functions copy a table only when it holds
// a decimal somewhere; otherwise the same map is passed through.

func hasWireDecimal(v any) bool {
	switch v := v.(type) {
	case wire.Decimal:
		return true
	case map[string]any:
		for _, x := range v {
			if hasWireDecimal(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if hasWireDecimal(x) {
				return true
			}
		}
	}
	return false
}

func hasBrokerDecimal(v any) bool {
	switch v := v.(type) {
	case broker.Decimal:
		return true
	case map[string]any:
		for _, x := range v {
			if hasBrokerDecimal(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if hasBrokerDecimal(x) {
				return true
			}
		}
	}
	return false
}

// toBroker converts a field value decoded by wire for the broker core.
func toBroker(v any) any {
	switch v := v.(type) {
	case wire.Decimal:
		return broker.Decimal{Scale: v.Scale, Value: v.Value}
	case map[string]any:
		t := make(map[string]any, len(v))
		for k, x := range v {
			t[k] = toBroker(x)
		}
		return t
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = toBroker(x)
		}
		return a
	}
	return v
}

// toWire converts a broker field value for the wire codec.
func toWire(v any) any {
	switch v := v.(type) {
	case broker.Decimal:
		return wire.Decimal{Scale: v.Scale, Value: v.Value}
	case map[string]any:
		t := make(map[string]any, len(v))
		for k, x := range v {
			t[k] = toWire(x)
		}
		return t
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = toWire(x)
		}
		return a
	}
	return v
}

// brokerTable returns t for the broker core, copied only if it must be.
func brokerTable(t wire.Table) broker.Table {
	if t == nil || !hasWireDecimal(t) {
		return t
	}
	return toBroker(t).(broker.Table)
}

// wireTable returns t for the wire codec, copied only if it must be.
func wireTable(t broker.Table) wire.Table {
	if t == nil || !hasBrokerDecimal(t) {
		return t
	}
	return toWire(t).(wire.Table)
}

// brokerProps copies properties read from a content header.
func brokerProps(p *wire.Properties) broker.Properties {
	return broker.Properties{
		ContentType:     p.ContentType,
		ContentEncoding: p.ContentEncoding,
		Headers:         brokerTable(p.Headers),
		DeliveryMode:    p.DeliveryMode,
		Priority:        p.Priority,
		CorrelationID:   p.CorrelationID,
		ReplyTo:         p.ReplyTo,
		Expiration:      p.Expiration,
		MessageID:       p.MessageID,
		Timestamp:       p.Timestamp,
		Type:            p.Type,
		UserID:          p.UserID,
		AppID:           p.AppID,
	}
}

// setWireProps fills p (reused by the writer) from broker properties.
func setWireProps(p *wire.Properties, b *broker.Properties) {
	*p = wire.Properties{
		ContentType:     b.ContentType,
		ContentEncoding: b.ContentEncoding,
		Headers:         wireTable(b.Headers),
		DeliveryMode:    b.DeliveryMode,
		Priority:        b.Priority,
		CorrelationID:   b.CorrelationID,
		ReplyTo:         b.ReplyTo,
		Expiration:      b.Expiration,
		MessageID:       b.MessageID,
		Timestamp:       b.Timestamp,
		Type:            b.Type,
		UserID:          b.UserID,
		AppID:           b.AppID,
	}
}
