package route

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type decimal struct {
	Scale uint8
	Value int32
}

func TestMatchHeaders(t *testing.T) {
	t.Parallel()
	ts := time.Unix(1700000000, 0)
	cases := []struct {
		name    string
		args    map[string]any
		headers map[string]any
		want    bool
	}{
		{"all by default", map[string]any{"a": "1", "b": "2"}, map[string]any{"a": "1", "b": "2", "c": "3"}, true},
		{"all misses one", map[string]any{"a": "1", "b": "2"}, map[string]any{"a": "1"}, false},
		{"all wrong value", map[string]any{"x-match": "all", "a": "1", "b": "2"}, map[string]any{"a": "1", "b": "3"}, false},
		{"any one", map[string]any{"x-match": "any", "a": "1", "b": "2"}, map[string]any{"b": "2"}, true},
		{"any none", map[string]any{"x-match": "any", "a": "1", "b": "2"}, map[string]any{"a": "2", "c": "1"}, false},
		{"all with no arguments matches everything", map[string]any{}, nil, true},
		{"all with only x- arguments", map[string]any{"x-match": "all", "x-foo": "1"}, nil, true},
		{"any with no arguments matches nothing", map[string]any{"x-match": "any"}, map[string]any{"a": "1"}, false},
		{"nil args", nil, map[string]any{"a": 1}, true},
		{"nil headers", map[string]any{"a": 1}, nil, false},
		{"unknown x-match is all", map[string]any{"x-match": "some", "a": "1", "b": "2"}, map[string]any{"a": "1"}, false},
		{"x-match not a string is all", map[string]any{"x-match": []byte("any"), "a": "1", "b": "2"}, map[string]any{"a": "1"}, false},
		{"x- ignored", map[string]any{"x-foo": "1", "a": "1"}, map[string]any{"a": "1"}, true},
		{"x- ignored any", map[string]any{"x-match": "any", "x-foo": "1"}, map[string]any{"x-foo": "1"}, false},
		{"all-with-x", map[string]any{"x-match": "all-with-x", "x-foo": "1", "a": "1"}, map[string]any{"a": "1", "x-foo": "1"}, true},
		{"all-with-x missing x-", map[string]any{"x-match": "all-with-x", "x-foo": "1", "a": "1"}, map[string]any{"a": "1"}, false},
		{"any-with-x", map[string]any{"x-match": "any-with-x", "x-foo": "1", "a": "1"}, map[string]any{"x-foo": "1"}, true},
		{"x-match itself never compared", map[string]any{"x-match": "all-with-x"}, map[string]any{}, true},
		{"void is presence", map[string]any{"a": nil}, map[string]any{"a": 42}, true},
		{"void presence of void", map[string]any{"a": nil}, map[string]any{"a": nil}, true},
		{"void absent", map[string]any{"a": nil}, map[string]any{"b": 42}, false},
		{"value against void header", map[string]any{"a": 1}, map[string]any{"a": nil}, false},
		{"int types", map[string]any{"a": int8(7), "b": int16(-3), "c": uint32(9), "d": int(5)}, map[string]any{"a": int64(7), "b": int32(-3), "c": uint8(9), "d": uint16(5)}, true},
		{"int differs", map[string]any{"a": int32(7)}, map[string]any{"a": int64(8)}, false},
		{"int equals float", map[string]any{"a": int32(1)}, map[string]any{"a": 1.0}, true},
		{"int not float", map[string]any{"a": 1.5}, map[string]any{"a": int32(1)}, false},
		{"float32 vs float64", map[string]any{"a": float32(0.5)}, map[string]any{"a": 0.5}, true},
		{"string vs number", map[string]any{"a": "1"}, map[string]any{"a": 1}, false},
		{"string vs bytes", map[string]any{"a": "abc"}, map[string]any{"a": []byte("abc")}, true},
		{"bytes vs bytes", map[string]any{"a": []byte("abc")}, map[string]any{"a": []byte("abd")}, false},
		{"bool", map[string]any{"a": true}, map[string]any{"a": true}, true},
		{"bool vs int", map[string]any{"a": true}, map[string]any{"a": 1}, false},
		{"timestamp", map[string]any{"a": ts}, map[string]any{"a": ts.Add(300 * time.Millisecond).UTC()}, true},
		{"timestamp is seconds", map[string]any{"a": ts}, map[string]any{"a": int64(1700000000)}, true},
		{"decimal", map[string]any{"a": decimal{2, 150}}, map[string]any{"a": decimal{2, 150}}, true},
		{"decimal scale", map[string]any{"a": decimal{2, 150}}, map[string]any{"a": decimal{1, 15}}, false},
		{"decimal vs int", map[string]any{"a": decimal{0, 1}}, map[string]any{"a": 1}, false},
		{"table", map[string]any{"a": map[string]any{"k": int8(1), "l": "s"}}, map[string]any{"a": map[string]any{"k": int64(1), "l": []byte("s")}}, true},
		{"table differs", map[string]any{"a": map[string]any{"k": 1}}, map[string]any{"a": map[string]any{"k": 1, "l": 2}}, false},
		{"array", map[string]any{"a": []any{1, "x", nil}}, map[string]any{"a": []any{int16(1), "x", nil}}, true},
		{"array order", map[string]any{"a": []any{1, 2}}, map[string]any{"a": []any{2, 1}}, false},
		{"array vs table", map[string]any{"a": []any{}}, map[string]any{"a": map[string]any{}}, false},
	}
	for _, c := range cases {
		require.Equal(t, c.want, MatchHeaders(c.args, c.headers), c.name)
	}
}

func TestValidHeadersBinding(t *testing.T) {
	t.Parallel()
	for _, ok := range []map[string]any{nil, {}, {"a": 1}, {"x-match": "all"}, {"x-match": "any"}, {"x-match": "all-with-x"}, {"x-match": "any-with-x"}} {
		require.NoError(t, ValidHeadersBinding(ok), "%v", ok)
	}
	require.ErrorContains(t, ValidHeadersBinding(map[string]any{"x-match": "some"}), `invalid x-match field value "some"`)
	require.ErrorContains(t, ValidHeadersBinding(map[string]any{"x-match": []byte("any")}), "invalid x-match field type []uint8")
	require.ErrorContains(t, ValidHeadersBinding(map[string]any{"x-match": nil}), "invalid x-match field type <nil>")
}
