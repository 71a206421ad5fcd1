package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sameValue compares decoded field values, floats bit for bit (NaN included).
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case float32:
		b, ok := b.(float32)
		return ok && math.Float32bits(a) == math.Float32bits(b)
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case Table:
		b, ok := b.(Table)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !sameValue(v, w) {
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
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case time.Time:
		b, ok := b.(time.Time)
		return ok && a.Equal(b)
	default:
		return reflect.DeepEqual(a, b)
	}
}

// sameMethod compares two decoded methods field by field with sameValue.
func sameMethod(a, b Method) bool {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	if va.Type() != vb.Type() {
		return false
	}
	for i := range va.NumField() {
		if !sameValue(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return false
		}
	}
	return true
}

func sampleTable() Table {
	return Table{
		"bool":    true,
		"false":   false,
		"int8":    int8(-5),
		"uint8":   uint8(200),
		"int16":   int16(-3000),
		"uint16":  uint16(60000),
		"int32":   int32(-70000),
		"uint32":  uint32(4_000_000_000),
		"int64":   int64(-1 << 40),
		"float32": float32(1.5),
		"float64": 2.25,
		"decimal": Decimal{Scale: 2, Value: -12345},
		"string":  "héllo",
		"empty":   "",
		"bytes":   []byte{0, 1, 2},
		"time":    time.Unix(1_700_000_000, 0).UTC(),
		"void":    nil,
		"table":   Table{"nested": "yes", "deeper": Table{"x": int32(1)}, "none": Table{}},
		"array":   []any{int32(1), "two", []any{true}, Table{"k": nil}, []any{}},
	}
}

func TestFieldTypesRoundTrip(t *testing.T) {
	t.Parallel()
	for k, v := range sampleTable() {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			b, err := AppendTable(nil, Table{k: v})
			require.NoError(t, err)
			got, n, err := ReadTable(b)
			require.NoError(t, err)
			require.Equal(t, len(b), n)
			require.True(t, sameValue(Table{k: v}, got), "%#v != %#v", v, got[k])
			require.Equal(t, reflect.TypeOf(v), reflect.TypeOf(got[k]))
		})
	}
}

func TestFieldTypeEncodings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v    any
		want []byte
	}{
		{nil, []byte{'V'}},
		{true, []byte{'t', 1}},
		{false, []byte{'t', 0}},
		{int8(-2), []byte{'b', 0xfe}},
		{uint8(254), []byte{'B', 0xfe}},
		{int16(-2), []byte{'s', 0xff, 0xfe}},
		{uint16(65534), []byte{'u', 0xff, 0xfe}},
		{int32(-2), []byte{'I', 0xff, 0xff, 0xff, 0xfe}},
		{uint32(0xfffffffe), []byte{'i', 0xff, 0xff, 0xff, 0xfe}},
		{int64(-2), []byte{'l', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}},
		{int(-2), []byte{'l', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}},
		{float32(1), []byte{'f', 0x3f, 0x80, 0, 0}},
		{float64(1), []byte{'d', 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}},
		{Decimal{Scale: 3, Value: 5}, []byte{'D', 3, 0, 0, 0, 5}},
		{"ab", []byte{'S', 0, 0, 0, 2, 'a', 'b'}},
		{[]byte("ab"), []byte{'x', 0, 0, 0, 2, 'a', 'b'}},
		{time.Unix(258, 0), []byte{'T', 0, 0, 0, 0, 0, 0, 1, 2}},
		{Table{"a": uint8(1)}, []byte{'F', 0, 0, 0, 4, 1, 'a', 'B', 1}},
		{[]any{uint8(1), nil}, []byte{'A', 0, 0, 0, 3, 'B', 1, 'V'}},
	}
	for _, c := range cases {
		e := encoder{}
		e.value(c.v, 0)
		require.NoError(t, e.err)
		require.Equal(t, c.want, e.b, "%T %v", c.v, c.v)
	}
}

func TestReadFieldTypeL(t *testing.T) {
	t.Parallel()
	// 'L' (unsigned 64-bit, never written by RabbitMQ) reads as int64.
	b := []byte{0, 0, 0, 11, 1, 'k', 'L', 0, 0, 0, 0, 0, 0, 0, 7}
	got, _, err := ReadTable(b)
	require.NoError(t, err)
	require.Equal(t, Table{"k": int64(7)}, got)
}

func TestTableErrors(t *testing.T) {
	t.Parallel()
	_, err := AppendTable(nil, Table{"k": struct{}{}})
	require.ErrorContains(t, err, "unsupported field value type")
	_, err = AppendTable(nil, Table{strings.Repeat("k", 256): 1})
	require.ErrorContains(t, err, "short string")
	_, err = AppendTable(nil, Table{"k": uint64(1)})
	require.Error(t, err)

	self := Table{}
	self["self"] = self
	_, err = AppendTable(nil, self)
	require.ErrorContains(t, err, "nested deeper")

	for _, bad := range [][]byte{
		{0, 0, 0, 3, 1, 'k', 'Z'},             // unknown type
		{0, 0, 0, 4, 1, 'k', 's', 0},          // truncated short
		{0, 0, 0, 9},                          // length beyond data
		{0, 0, 0, 7, 1, 'k', 'S', 0, 0, 0, 9}, // string beyond table
		{0, 0, 0, 2, 5, 'k'},                  // key beyond table
	} {
		_, _, err := ReadTable(bad)
		var pe *Error
		require.True(t, errors.As(err, &pe), "%v: %v", bad, err)
		require.Equal(t, uint16(SyntaxError), pe.Code)
	}

	// Nesting deeper than MaxDepth is a syntax error.
	var deep []byte
	inner := []byte{}
	for range MaxDepth + 1 {
		entry := append([]byte{1, 'k', 'F'}, binary.BigEndian.AppendUint32(nil, uint32(len(inner)))...)
		inner = append(entry, inner...)
	}
	deep = binary.BigEndian.AppendUint32(deep, uint32(len(inner)))
	deep = append(deep, inner...)
	_, _, err = ReadTable(deep)
	require.ErrorContains(t, err, "nested deeper")
}

func TestReadTableEntries(t *testing.T) {
	t.Parallel()
	// AMQPLAIN: entries without the length prefix.
	b, err := AppendTable(nil, Table{"LOGIN": "guest", "PASSWORD": "secret"})
	require.NoError(t, err)
	got, err := ReadTableEntries(b[4:])
	require.NoError(t, err)
	require.Equal(t, Table{"LOGIN": "guest", "PASSWORD": "secret"}, got)
}

// fillMethod sets every field of m to a random value.
func fillMethod(r *rand.Rand, m Method) {
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(r.IntN(2) == 1)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(r.Uint64() & (1<<(8*f.Type().Size()) - 1))
		case reflect.String:
			b := make([]byte, r.IntN(40))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			f.SetString(string(b))
		case reflect.Map:
			f.Set(reflect.ValueOf(sampleTable()))
		default:
			panic("unexpected field kind " + f.Kind().String())
		}
	}
}

// allMethods returns a zero value of every method in the spec.
func allMethods() []Method {
	var ms []Method
	for cls := uint16(0); cls <= 100; cls++ {
		for mid := uint16(0); mid <= 130; mid++ {
			if m := NewMethod(cls, mid); m != nil {
				ms = append(ms, m)
			}
		}
	}
	return ms
}

func TestEveryMethodRoundTrip(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	ms := allMethods()
	require.Len(t, ms, 66)
	for _, m := range ms {
		for range 20 {
			fillMethod(r, m)
			b, err := AppendMethod(nil, m)
			require.NoError(t, err, m.Name())
			got, err := ReadMethod(b)
			require.NoError(t, err, m.Name())
			require.True(t, sameMethod(m, got), "%s: %#v != %#v", m.Name(), m, got)
			cls, mid := m.ID()
			require.Equal(t, m.Name(), MethodName(cls, mid))
			// Every truncation is an error, never a panic.
			for n := 4; n < len(b); n++ {
				_, err := ReadMethod(b[:n])
				require.Error(t, err, "%s decoded from %d of %d bytes", m.Name(), n, len(b))
			}
		}
	}
}

func TestMethodSpecFacts(t *testing.T) {
	t.Parallel()
	require.True(t, (&BasicPublish{}).HasContent())
	require.True(t, (&BasicDeliver{}).HasContent())
	require.False(t, (&BasicAck{}).HasContent())
	require.True(t, (&QueueDeclare{}).Synchronous())
	require.False(t, (&BasicPublish{}).Synchronous())
	require.Equal(t, "basic.nack", MethodName(60, 120))
	require.Equal(t, "confirm.select", (&ConfirmSelect{}).Name())
	require.True(t, IsHardError(FrameError))
	require.False(t, IsHardError(NotFound))
	require.Equal(t, "NO_ROUTE", ReplyText(NoRoute))

	// Bits pack into one octet: exchange.declare's five flags.
	b, err := AppendMethod(nil, &ExchangeDeclare{Exchange: "x", Type: "topic", Durable: true, NoWait: true})
	require.NoError(t, err)
	require.Equal(t, []byte{0, 40, 0, 10, 0, 0, 1, 'x', 5, 't', 'o', 'p', 'i', 'c', 0b10010, 0, 0, 0, 0}, b)

	_, err = ReadMethod([]byte{0, 99, 0, 1})
	var pe *Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, uint16(CommandInvalid), pe.Code)
}

func TestContentHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	full := Properties{
		ContentType: "application/json", ContentEncoding: "gzip", Headers: sampleTable(),
		DeliveryMode: 2, Priority: 9, CorrelationID: "c", ReplyTo: "r", Expiration: "60000",
		MessageID: "m", Timestamp: time.Unix(1_700_000_000, 0).UTC(), Type: "t", UserID: "u",
		AppID: "a", ClusterID: "cl",
	}
	for _, p := range []Properties{{}, {DeliveryMode: 1}, full} {
		b, err := AppendContentHeader(nil, ClassBasic, 12345, &p)
		require.NoError(t, err)
		var h ContentHeader
		require.NoError(t, h.Read(b))
		require.Equal(t, uint16(ClassBasic), h.ClassID)
		require.Equal(t, uint64(12345), h.BodySize)
		require.True(t, sameValue(p.Headers, h.Properties.Headers))
		h.Properties.Headers, p.Headers = nil, nil
		require.Equal(t, p, h.Properties)
	}
	b, err := AppendContentHeader(nil, ClassBasic, 0, &full)
	require.NoError(t, err)
	require.Equal(t, uint16(0xfffc), binary.BigEndian.Uint16(b[12:]))

	var h ContentHeader
	require.Error(t, h.Read([]byte{0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), "continuation flag")
	require.Error(t, h.Read([]byte{0, 60, 0, 0}), "short header")
	require.Error(t, h.Read([]byte{0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 5, 'a'}), "truncated property")
}
