package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// The stored form of a queued message: what a log holds for one queue entry.
//
//	version(1) flags(1) exchange(str8) routingKey(str8) props body
//
// flags bit 0: the message was dead-lettered or redelivered before (reserved).
// Strings are length-prefixed (str8: 1 byte, str32: 4 bytes). Properties are a
// 16-bit presence bitmap followed by the present fields in order.

const codecVersion = 1

var errCorrupt = errors.New("corrupt stored message")

type stored struct {
	Exchange   string
	RoutingKey string
	Msg        *Message
}

func encodeStored(exchange, key string, m *Message) []byte {
	return appendStored(make([]byte, 0, 64+len(m.Body)), exchange, key, m)
}

// appendStored appends the stored form of m to buf.
func appendStored(buf []byte, exchange, key string, m *Message) []byte {
	buf = append(buf, codecVersion, 0)
	buf = appendStr8(buf, exchange)
	buf = appendStr8(buf, key)
	buf = appendProps(buf, &m.Properties)
	return append(buf, m.Body...)
}

func decodeStored(data []byte) (stored, error) {
	d := decoder{b: data}
	if v := d.u8(); v != codecVersion {
		return stored{}, fmt.Errorf("%w: version %d", errCorrupt, v)
	}
	d.u8()
	s := stored{Exchange: d.str8(), RoutingKey: d.str8(), Msg: &Message{}}
	d.props(&s.Msg.Properties)
	if d.err != nil {
		return stored{}, d.err
	}
	s.Msg.Body = d.b[d.off:]
	return s, nil
}

const (
	pContentType = 1 << iota
	pContentEncoding
	pHeaders
	pDeliveryMode
	pPriority
	pCorrelationID
	pReplyTo
	pExpiration
	pMessageID
	pTimestamp
	pType
	pUserID
	pAppID
)

func appendProps(b []byte, p *Properties) []byte {
	var flags uint16
	set := func(cond bool, bit uint16) {
		if cond {
			flags |= bit
		}
	}
	set(p.ContentType != "", pContentType)
	set(p.ContentEncoding != "", pContentEncoding)
	set(p.Headers != nil, pHeaders)
	set(p.DeliveryMode != 0, pDeliveryMode)
	set(p.Priority != 0, pPriority)
	set(p.CorrelationID != "", pCorrelationID)
	set(p.ReplyTo != "", pReplyTo)
	set(p.Expiration != "", pExpiration)
	set(p.MessageID != "", pMessageID)
	set(!p.Timestamp.IsZero(), pTimestamp)
	set(p.Type != "", pType)
	set(p.UserID != "", pUserID)
	set(p.AppID != "", pAppID)
	b = binary.BigEndian.AppendUint16(b, flags)
	if flags&pContentType != 0 {
		b = appendStr8(b, p.ContentType)
	}
	if flags&pContentEncoding != 0 {
		b = appendStr8(b, p.ContentEncoding)
	}
	if flags&pHeaders != 0 {
		b = appendTable(b, p.Headers)
	}
	if flags&pDeliveryMode != 0 {
		b = append(b, p.DeliveryMode)
	}
	if flags&pPriority != 0 {
		b = append(b, p.Priority)
	}
	for _, f := range []struct {
		bit uint16
		s   string
	}{{pCorrelationID, p.CorrelationID}, {pReplyTo, p.ReplyTo}, {pExpiration, p.Expiration}, {pMessageID, p.MessageID}} {
		if flags&f.bit != 0 {
			b = appendStr8(b, f.s)
		}
	}
	if flags&pTimestamp != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(p.Timestamp.Unix()))
	}
	for _, f := range []struct {
		bit uint16
		s   string
	}{{pType, p.Type}, {pUserID, p.UserID}, {pAppID, p.AppID}} {
		if flags&f.bit != 0 {
			b = appendStr8(b, f.s)
		}
	}
	return b
}

func appendStr8(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255] // callers validate shortstr lengths; never corrupt the record
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendStr32(b []byte, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Table values are tagged with AMQP's field-type letters.
func appendTable(b []byte, t Table) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(t)))
	for k, v := range t {
		b = appendStr8(b, k)
		b = appendValue(b, v)
	}
	return b
}

func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, 'V')
	case bool:
		if v {
			return append(b, 't', 1)
		}
		return append(b, 't', 0)
	case int8:
		return append(b, 'b', byte(v))
	case uint8:
		return append(b, 'B', v)
	case int16:
		return binary.BigEndian.AppendUint16(append(b, 's'), uint16(v))
	case uint16:
		return binary.BigEndian.AppendUint16(append(b, 'u'), v)
	case int32:
		return binary.BigEndian.AppendUint32(append(b, 'I'), uint32(v))
	case uint32:
		return binary.BigEndian.AppendUint32(append(b, 'i'), v)
	case int64:
		return binary.BigEndian.AppendUint64(append(b, 'l'), uint64(v))
	case int:
		return binary.BigEndian.AppendUint64(append(b, 'l'), uint64(v))
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 'f'), math.Float32bits(v))
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 'd'), math.Float64bits(v))
	case Decimal:
		return binary.BigEndian.AppendUint32(append(b, 'D', v.Scale), uint32(v.Value))
	case string:
		return appendStr32(append(b, 'S'), []byte(v))
	case []byte:
		return appendStr32(append(b, 'x'), v)
	case time.Time:
		return binary.BigEndian.AppendUint64(append(b, 'T'), uint64(v.Unix()))
	case Table:
		return appendTable(append(b, 'F'), v)
	case []any:
		b = binary.BigEndian.AppendUint32(append(b, 'A'), uint32(len(v)))
		for _, e := range v {
			b = appendValue(b, e)
		}
		return b
	default:
		// Unknown types are stored as their string form rather than lost.
		return appendStr32(append(b, 'S'), []byte(fmt.Sprint(v)))
	}
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || d.off+n > len(d.b) {
		d.err = errCorrupt
		return false
	}
	return true
}

func (d *decoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *decoder) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	d.off += 2
	return binary.BigEndian.Uint16(d.b[d.off-2:])
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	d.off += 4
	return binary.BigEndian.Uint32(d.b[d.off-4:])
}

func (d *decoder) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	d.off += 8
	return binary.BigEndian.Uint64(d.b[d.off-8:])
}

func (d *decoder) bytes(n int) []byte {
	if !d.need(n) {
		return nil
	}
	d.off += n
	return d.b[d.off-n : d.off]
}

func (d *decoder) str8() string { return string(d.bytes(int(d.u8()))) }

func (d *decoder) props(p *Properties) {
	flags := d.u16()
	if flags&pContentType != 0 {
		p.ContentType = d.str8()
	}
	if flags&pContentEncoding != 0 {
		p.ContentEncoding = d.str8()
	}
	if flags&pHeaders != 0 {
		p.Headers = d.table(0)
	}
	if flags&pDeliveryMode != 0 {
		p.DeliveryMode = d.u8()
	}
	if flags&pPriority != 0 {
		p.Priority = d.u8()
	}
	for _, f := range []struct {
		bit uint16
		s   *string
	}{{pCorrelationID, &p.CorrelationID}, {pReplyTo, &p.ReplyTo}, {pExpiration, &p.Expiration}, {pMessageID, &p.MessageID}} {
		if flags&f.bit != 0 {
			*f.s = d.str8()
		}
	}
	if flags&pTimestamp != 0 {
		p.Timestamp = time.Unix(int64(d.u64()), 0)
	}
	for _, f := range []struct {
		bit uint16
		s   *string
	}{{pType, &p.Type}, {pUserID, &p.UserID}, {pAppID, &p.AppID}} {
		if flags&f.bit != 0 {
			*f.s = d.str8()
		}
	}
}

const maxTableDepth = 32

func (d *decoder) table(depth int) Table {
	if depth > maxTableDepth {
		d.err = errCorrupt
		return nil
	}
	n := int(d.u32())
	if !d.need(n) { // every entry takes at least one byte
		return nil
	}
	t := make(Table, n)
	for range n {
		k := d.str8()
		t[k] = d.value(depth)
		if d.err != nil {
			return nil
		}
	}
	return t
}

func (d *decoder) value(depth int) any {
	switch d.u8() {
	case 'V':
		return nil
	case 't':
		return d.u8() != 0
	case 'b':
		return int8(d.u8())
	case 'B':
		return d.u8()
	case 's':
		return int16(d.u16())
	case 'u':
		return d.u16()
	case 'I':
		return int32(d.u32())
	case 'i':
		return d.u32()
	case 'l':
		return int64(d.u64())
	case 'f':
		return math.Float32frombits(d.u32())
	case 'd':
		return math.Float64frombits(d.u64())
	case 'D':
		s := d.u8()
		return Decimal{Scale: s, Value: int32(d.u32())}
	case 'S':
		return string(d.bytes(int(d.u32())))
	case 'x':
		return append([]byte(nil), d.bytes(int(d.u32()))...)
	case 'T':
		return time.Unix(int64(d.u64()), 0)
	case 'F':
		return d.table(depth + 1)
	case 'A':
		n := int(d.u32())
		if !d.need(n) {
			return nil
		}
		a := make([]any, 0, n)
		for range n {
			a = append(a, d.value(depth+1))
			if d.err != nil {
				return nil
			}
		}
		return a
	default:
		d.err = errCorrupt
		return nil
	}
}
