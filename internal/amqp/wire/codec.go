package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Table is an AMQP field table. See the package documentation for the Go
// types of its values.
type Table = map[string]any

// Decimal is an AMQP decimal value: Value / 10^Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// MaxDepth bounds the nesting of field tables and arrays, on reading and on
// writing (which also stops a table that contains itself).
const MaxDepth = 64

// Error is a protocol error: the reply code to close the connection (or
// channel) with, and a text for the peer.
type Error struct {
	Code uint16 // reply code, e.g. FrameError, SyntaxError
	Text string
}

func (e *Error) Error() string {
	return fmt.Sprintf("amqp %d %s: %s", e.Code, ReplyText(e.Code), e.Text)
}

func errorf(code uint16, format string, args ...any) *Error {
	return &Error{Code: code, Text: fmt.Sprintf(format, args...)}
}

// decoder reads AMQP data types from b; the first failure sticks in err.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = errorf(SyntaxError, "truncated data: need %d bytes at offset %d of %d", n, d.off, len(d.b))
		return false
	}
	return true
}

func (d *decoder) bytes(n int) []byte {
	if !d.need(n) {
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

func (d *decoder) octet() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) short() uint16 {
	if !d.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v
}

func (d *decoder) long() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) longlong() uint64 {
	if !d.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) shortstr() string {
	n := int(d.octet())
	if n == 0 {
		return ""
	}
	return string(d.bytes(n))
}

func (d *decoder) longstr() string {
	n := d.long()
	if n == 0 {
		return ""
	}
	return string(d.bytes(int(n)))
}

func (d *decoder) timestamp() time.Time {
	return unixUTC(d.longlong())
}

func unixUTC(sec uint64) time.Time { return time.Unix(int64(sec), 0).UTC() }

// table reads a field table; an empty table is nil.
func (d *decoder) table() Table {
	n := d.long()
	if n == 0 {
		return nil
	}
	return d.tableBody(int(n), 0)
}

func (d *decoder) tableBody(n, depth int) Table {
	body := d.bytes(n)
	if d.err != nil {
		return nil
	}
	if depth >= MaxDepth {
		d.err = errorf(SyntaxError, "field tables nested deeper than %d", MaxDepth)
		return nil
	}
	sub := decoder{b: body}
	t := make(Table)
	for sub.off < len(sub.b) && sub.err == nil {
		k := sub.shortstr()
		v := sub.value(depth)
		if sub.err == nil {
			t[k] = v
		}
	}
	if sub.err != nil {
		d.err = sub.err
		return nil
	}
	return t
}

func (d *decoder) array(n, depth int) []any {
	body := d.bytes(n)
	if d.err != nil {
		return nil
	}
	if depth >= MaxDepth {
		d.err = errorf(SyntaxError, "field arrays nested deeper than %d", MaxDepth)
		return nil
	}
	sub := decoder{b: body}
	a := []any{}
	for sub.off < len(sub.b) && sub.err == nil {
		v := sub.value(depth)
		if sub.err == nil {
			a = append(a, v)
		}
	}
	if sub.err != nil {
		d.err = sub.err
		return nil
	}
	return a
}

func (d *decoder) value(depth int) any {
	switch t := d.octet(); t {
	case 't':
		return d.octet() != 0
	case 'b':
		return int8(d.octet())
	case 'B':
		return d.octet()
	case 's':
		return int16(d.short())
	case 'u':
		return d.short()
	case 'I':
		return int32(d.long())
	case 'i':
		return d.long()
	case 'l', 'L':
		return int64(d.longlong())
	case 'f':
		return math.Float32frombits(d.long())
	case 'd':
		return math.Float64frombits(d.longlong())
	case 'D':
		scale := d.octet()
		return Decimal{Scale: scale, Value: int32(d.long())}
	case 'S':
		return d.longstr()
	case 'x':
		n := d.long()
		b := d.bytes(int(n))
		if d.err != nil {
			return nil
		}
		return append([]byte{}, b...)
	case 'T':
		return d.timestamp()
	case 'F':
		return d.tableBody(int(d.long()), depth+1)
	case 'A':
		return d.array(int(d.long()), depth+1)
	case 'V':
		return nil
	default:
		if d.err == nil {
			d.err = errorf(SyntaxError, "unknown field type %q", t)
		}
		return nil
	}
}

// encoder appends AMQP data types to b; the first failure sticks in err.
type encoder struct {
	b   []byte
	err error
}

func (e *encoder) fail(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("amqp encoding: "+format, args...)
	}
}

func (e *encoder) octet(v uint8)     { e.b = append(e.b, v) }
func (e *encoder) short(v uint16)    { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) long(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) longlong(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *encoder) shortstr(s string) {
	if len(s) > math.MaxUint8 {
		e.fail("short string of %d bytes (max 255)", len(s))
		return
	}
	e.b = append(e.b, byte(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) longstr(s string) {
	if uint64(len(s)) > math.MaxUint32 {
		e.fail("long string of %d bytes", len(s))
		return
	}
	e.long(uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) timestamp(t time.Time) { e.longlong(uint64(t.Unix())) }

func (e *encoder) table(t Table) { e.tableDepth(t, 0) }

func (e *encoder) tableDepth(t Table, depth int) {
	if depth >= MaxDepth {
		e.fail("field tables nested deeper than %d", MaxDepth)
		return
	}
	start := len(e.b)
	e.b = append(e.b, 0, 0, 0, 0)
	for k, v := range t {
		e.shortstr(k)
		e.value(v, depth)
		if e.err != nil {
			return
		}
	}
	e.patchLen(start)
}

func (e *encoder) arrayDepth(a []any, depth int) {
	if depth >= MaxDepth {
		e.fail("field arrays nested deeper than %d", MaxDepth)
		return
	}
	start := len(e.b)
	e.b = append(e.b, 0, 0, 0, 0)
	for _, v := range a {
		e.value(v, depth)
		if e.err != nil {
			return
		}
	}
	e.patchLen(start)
}

// patchLen writes the length of what follows the 4 bytes at start.
func (e *encoder) patchLen(start int) {
	n := len(e.b) - start - 4
	if uint64(n) > math.MaxUint32 {
		e.fail("field table of %d bytes", n)
		return
	}
	binary.BigEndian.PutUint32(e.b[start:], uint32(n))
}

func (e *encoder) value(v any, depth int) {
	switch v := v.(type) {
	case nil:
		e.octet('V')
	case bool:
		var b uint8
		if v {
			b = 1
		}
		e.b = append(e.b, 't', b)
	case int8:
		e.b = append(e.b, 'b', uint8(v))
	case uint8:
		e.b = append(e.b, 'B', v)
	case int16:
		e.octet('s')
		e.short(uint16(v))
	case uint16:
		e.octet('u')
		e.short(v)
	case int32:
		e.octet('I')
		e.long(uint32(v))
	case uint32:
		e.octet('i')
		e.long(v)
	case int64:
		e.octet('l')
		e.longlong(uint64(v))
	case int:
		e.octet('l')
		e.longlong(uint64(v))
	case float32:
		e.octet('f')
		e.long(math.Float32bits(v))
	case float64:
		e.octet('d')
		e.longlong(math.Float64bits(v))
	case Decimal:
		e.b = append(e.b, 'D', v.Scale)
		e.long(uint32(v.Value))
	case string:
		e.octet('S')
		e.longstr(v)
	case []byte:
		if uint64(len(v)) > math.MaxUint32 {
			e.fail("byte array of %d bytes", len(v))
			return
		}
		e.octet('x')
		e.long(uint32(len(v)))
		e.b = append(e.b, v...)
	case time.Time:
		e.octet('T')
		e.timestamp(v)
	case Table:
		e.octet('F')
		e.tableDepth(v, depth+1)
	case []any:
		e.octet('A')
		e.arrayDepth(v, depth+1)
	default:
		e.fail("unsupported field value type %T", v)
	}
}

// AppendTable appends the encoding of t (a 4-byte length and the entries) to b.
func AppendTable(b []byte, t Table) ([]byte, error) {
	e := encoder{b: b}
	e.table(t)
	return e.b, e.err
}

// ReadTable decodes a field table encoded by AppendTable from the start of b,
// returning it (nil when empty) and the number of bytes it used.
func ReadTable(b []byte) (Table, int, error) {
	d := decoder{b: b}
	t := d.table()
	return t, d.off, d.err
}

// Key combines a class and a method ID into one method key (see the Key
// constants).
func Key(classID, methodID uint16) uint32 { return uint32(classID)<<16 | uint32(methodID) }

// Method is an AMQP method: one generated struct per method of the spec.
type Method interface {
	// ID returns the class and method IDs.
	ID() (classID, methodID uint16)
	// Name returns the spec name, e.g. "basic.publish".
	Name() string
	// Synchronous reports whether the method expects a reply.
	Synchronous() bool
	// HasContent reports whether a content header and body follow.
	HasContent() bool
	// ReadArgs decodes the arguments (the method payload after the IDs).
	ReadArgs(b []byte) error
	// WriteArgs appends the encoded arguments to b.
	WriteArgs(b []byte) ([]byte, error)
}

// ReadMethod decodes a method frame's payload. Unknown methods are
// COMMAND_INVALID; malformed arguments are SYNTAX_ERROR.
func ReadMethod(payload []byte) (Method, error) {
	if len(payload) < 4 {
		return nil, errorf(FrameError, "method frame of %d bytes", len(payload))
	}
	cls := binary.BigEndian.Uint16(payload)
	mid := binary.BigEndian.Uint16(payload[2:])
	m := NewMethod(cls, mid)
	if m == nil {
		return nil, errorf(CommandInvalid, "unknown method %d.%d", cls, mid)
	}
	if err := m.ReadArgs(payload[4:]); err != nil {
		if e, ok := err.(*Error); ok {
			e.Text = m.Name() + ": " + e.Text
		}
		return nil, err
	}
	return m, nil
}

// AppendMethod appends a method's payload (IDs and arguments) to b.
func AppendMethod(b []byte, m Method) ([]byte, error) {
	cls, mid := m.ID()
	b = binary.BigEndian.AppendUint16(b, cls)
	b = binary.BigEndian.AppendUint16(b, mid)
	return m.WriteArgs(b)
}

// ReadTableEntries decodes field-table entries that fill b, without the
// 4-byte length prefix (the form of an AMQPLAIN response).
func ReadTableEntries(b []byte) (Table, error) {
	d := decoder{b: b}
	t := d.tableBody(len(b), 0)
	return t, d.err
}
