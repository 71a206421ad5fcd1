package route

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func q(name string) Dest { return Dest{Name: name} }

func names(ds []Dest) []string {
	var s []string
	for _, d := range ds {
		n := d.Name
		if d.IsExchange {
			n = "x:" + n
		}
		s = append(s, n)
	}
	slices.Sort(s)
	return s
}

func TestTopicMatchOnePattern(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"*.feed_fetcher", []string{"domU-12-31-39-07.feed_fetcher", ".feed_fetcher"}, []string{"feed_fetcher", "a.b.feed_fetcher", "", "a.feed_fetcherx"}},
		{"#", []string{"", "domU-12-31-39-07.feed_fetcher", "a", ".", "a..b", "#", "*"}, nil},
		{"a.#.z", []string{"a.z", "a.b.z", "a.b.c.z", "a..z", "a.z.z"}, []string{"a", "z", "a.z.b", "b.a.z", "az", "a.b"}},
		{"#.z", []string{"z", "a.z", "a.b.z", ".z", "z.z"}, []string{"", "a", "z.a", "zz"}},
		{"#.#", []string{"", "a", "a.b", "a.b.c"}, nil},
		{"#.#.#", []string{"", "a", "a.b.c.d"}, nil},
		{"*", []string{"a", "*", "#", "long-word"}, []string{"", "a.b", ".", "a."}},
		{"*.*", []string{"a.b", ".", "a.", ".b"}, []string{"", "a", "a.b.c"}},
		{"a.*.#", []string{"a.b", "a.b.c", "a.b.c.d", "a."}, []string{"a", "b.c", ""}},
		{"*.#", []string{"a", "a.b", "a.b.c"}, []string{""}},
		{"#.*", []string{"a", "a.b", "a.b.c"}, []string{""}},
		{"#.*.#", []string{"a", "a.b"}, []string{""}},
		{"*.#.*", []string{"a.b", "a.b.c"}, []string{"", "a"}},
		{"#.b.#", []string{"b", "a.b", "b.c", "a.b.c", "a.a.b.c.c"}, []string{"", "a", "a.c", "ab"}},
		{"a.#.#.b", []string{"a.b", "a.x.b", "a.x.y.b"}, []string{"a", "b", "a.b.c"}},
		{"", []string{""}, []string{"a", ".", "*"}},
		{"a..b", []string{"a..b"}, []string{"a.b", "a...b", "a.x.b"}},
		{"a.", []string{"a."}, []string{"a", "a.b"}},
		{".", []string{"."}, []string{"", "a", ".."}},
		{"a.*", []string{"a.b", "a."}, []string{"a", "a.b.c"}},
		{"a*b.#", []string{"a*b", "a*b.c"}, []string{"axb", "a.b"}}, // '*' inside a word is literal
		{"a#.b", []string{"a#.b"}, []string{"a.b", "ax.b"}},
		{"stock.*.nyse", []string{"stock.ibm.nyse", "stock..nyse"}, []string{"stock.nyse", "stock.ibm.nasdaq", "stock.ibm.x.nyse"}},
	}
	for _, c := range cases {
		t.Run(c.pattern, func(t *testing.T) {
			t.Parallel()
			tp := NewTopic()
			require.True(t, tp.Add(c.pattern, q("q")))
			for _, k := range c.match {
				require.Equal(t, []Dest{q("q")}, tp.Match(k, nil), "%q should match key %q", c.pattern, k)
				require.True(t, refMatch(c.pattern, k), "reference: %q should match key %q", c.pattern, k)
			}
			for _, k := range c.noMatch {
				require.Empty(t, tp.Match(k, nil), "%q should not match key %q", c.pattern, k)
				require.False(t, refMatch(c.pattern, k), "reference: %q should not match key %q", c.pattern, k)
			}
		})
	}
}

// TestTopicMatchManyBindings checks one table of bindings against many keys,
// the shape of RabbitMQ's own topic exchange test: the empty key is zero
// words ("*" does not match it), '#' may be repeated or stand anywhere.
func TestTopicMatchManyBindings(t *testing.T) {
	t.Parallel()
	bindings := map[string]string{
		"b01": "x.y.z", "b02": "x.*.z", "b03": "x.#.y", "b04": "x.y.y.z",
		"b05": "#", "b06": "#.#", "b07": "#.y", "b08": "*.*", "b09": "x.*",
		"b10": "*.y.z", "b11": "x.#", "b12": "x.#.#", "b13": "y.y.z",
		"b14": "x.y.y", "b15": "x.y", "b16": "y.z", "b17": "", "b18": "*.*.*",
		"b19": "gin.tonic", "b20": "*.#", "b21": "#.*.#", "b22": "*.#.#",
		"b23": "#.#.#", "b24": "*", "b25": "#.y.#",
	}
	tp := NewTopic()
	for name, p := range bindings {
		require.True(t, tp.Add(p, q(name)))
	}
	require.Equal(t, len(bindings), tp.Len())
	want := map[string][]string{
		"x.y.z":         {"b01", "b02", "b05", "b06", "b10", "b11", "b12", "b18", "b20", "b21", "b22", "b23", "b25"},
		"x.y":           {"b03", "b05", "b06", "b07", "b08", "b09", "b11", "b12", "b15", "b20", "b21", "b22", "b23", "b25"},
		"":              {"b05", "b06", "b17", "b23"},
		"single":        {"b05", "b06", "b20", "b21", "b22", "b23", "b24"},
		"gin.tonic":     {"b05", "b06", "b08", "b19", "b20", "b21", "b22", "b23"},
		"p.q.r.s.t":     {"b05", "b06", "b20", "b21", "b22", "b23"},
		"x.x.x.x.x":     {"b05", "b06", "b11", "b12", "b20", "b21", "b22", "b23"},
		"y.y.z":         {"b05", "b06", "b10", "b13", "b18", "b20", "b21", "b22", "b23", "b25"},
		"x.y.y":         {"b03", "b05", "b06", "b07", "b11", "b12", "b14", "b18", "b20", "b21", "b22", "b23", "b25"},
		"no.match.here": {"b05", "b06", "b18", "b20", "b21", "b22", "b23"},
	}
	for key, w := range want {
		var ref []string
		for name, p := range bindings {
			if refMatch(p, key) {
				ref = append(ref, name)
			}
		}
		slices.Sort(ref)
		require.Equal(t, w, ref, "reference for key %q", key)
		require.Equal(t, w, names(tp.Match(key, nil)), "key %q", key)
	}

	// Remove some bindings and check again against the reference.
	for _, name := range []string{"b01", "b05", "b11", "b19", "b20", "b23"} {
		require.True(t, tp.Remove(bindings[name], q(name)))
		require.False(t, tp.Remove(bindings[name], q(name)))
		delete(bindings, name)
	}
	require.Equal(t, len(bindings), tp.Len())
	for key := range want {
		var ref []string
		for name, p := range bindings {
			if refMatch(p, key) {
				ref = append(ref, name)
			}
		}
		slices.Sort(ref)
		require.Equal(t, ref, names(tp.Match(key, nil)), "after removal, key %q", key)
	}

	// Remove everything: the trie is pruned back to an empty root.
	for name, p := range bindings {
		require.True(t, tp.Remove(p, q(name)))
	}
	require.Zero(t, tp.Len())
	require.True(t, tp.root.empty())
	require.Empty(t, tp.dests)
	require.Zero(t, tp.multi)
	require.Empty(t, tp.Match("x.y.z", nil))
}

func TestTopicAddRemoveIdempotent(t *testing.T) {
	t.Parallel()
	tp := NewTopic()
	require.True(t, tp.Add("a.*", q("q1")))
	require.False(t, tp.Add("a.*", q("q1")))
	require.True(t, tp.Add("a.*", Dest{Name: "q1", IsExchange: true}), "exchange and queue of one name are different destinations")
	require.True(t, tp.Add("a.*", q("q2")))
	require.Equal(t, 3, tp.Len())
	require.False(t, tp.Remove("a.#", q("q1")))
	require.False(t, tp.Remove("a.*.b", q("q1")))
	require.False(t, tp.Remove("a.*", q("q3")))
	require.True(t, tp.Remove("a.*", q("q1")))
	require.Equal(t, []string{"q2", "x:q1"}, names(tp.Match("a.b", nil)))
	require.Equal(t, 2, tp.Len())
}

func TestTopicMatchDedup(t *testing.T) {
	t.Parallel()
	tp := NewTopic()
	for _, p := range []string{"#", "a.#", "*.b", "a.b", "#.b", "#.#"} {
		tp.Add(p, q("q1"))
	}
	tp.Add("a.b", q("q2"))
	out := tp.Match("a.b", []Dest{q("before"), q("q1")})
	require.Equal(t, []Dest{q("before"), q("q1")}, out[:2], "what the caller had is kept")
	require.Equal(t, []string{"q1", "q2"}, names(out[2:]))

	// Many destinations, each through several patterns: the sorting path.
	tp = NewTopic()
	for i := range 100 {
		d := q(fmt.Sprintf("q%03d", i))
		tp.Add("#", d)
		tp.Add("a.*", d)
		tp.Add("*.b", d)
	}
	got := tp.Match("a.b", nil)
	require.Len(t, got, 100)
	require.Len(t, tp.Match("a.c", nil), 100)
	require.Len(t, tp.Match("c", nil), 100)
}

// TestTopicNestedHashes checks that patterns with many '#'s match correctly
// and in reasonable time on long keys (the memo on nested '#' nodes).
func TestTopicNestedHashes(t *testing.T) {
	t.Parallel()
	tp := NewTopic()
	var ps []string
	for n := 1; n <= 20; n++ {
		p := strings.Repeat("#.a.", n) + "#"
		ps = append(ps, p)
		tp.Add(p, q(fmt.Sprint(n)))
		p = strings.Repeat("#.", n) + "b"
		ps = append(ps, p)
		tp.Add(p, q(fmt.Sprint("b", n)))
	}
	tp.Add(strings.TrimSuffix(strings.Repeat("#.", 127), ".")+".#", q("many"))
	key := strings.TrimSuffix(strings.Repeat("a.", 127), ".") // 253 bytes, 127 words
	got := names(tp.Match(key, nil))
	require.Len(t, got, 21) // every "#.a.#..." (n <= 127) and the "#" chain
	require.NotContains(t, got, "b1")
	require.Len(t, tp.Match(key+".b", nil), 41)
	for _, p := range ps[:6] {
		require.True(t, refMatch(p, key+".b"))
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	require.True(t, ValidKey(""))
	require.True(t, ValidKey(strings.Repeat("a", 255)))
	require.False(t, ValidKey(strings.Repeat("a", 256)))
	require.True(t, ValidTopicPattern("#.*.a..b"))
	require.False(t, ValidTopicPattern(strings.Repeat("#.", 128)))
}

func TestMatchDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items)")
	}
	tp := NewTopic()
	for i := range 1000 {
		tp.Add(fmt.Sprintf("s.%d.#", i), q(fmt.Sprint("a", i)))
		tp.Add(fmt.Sprintf("#.%d.*", i), q(fmt.Sprint("a", i)))
		tp.Add("#.x.#.y.#", q(fmt.Sprint("b", i)))
	}
	out := make([]Dest, 0, 4096)
	for _, key := range []string{"s.5.x", "s.7.x.y", "a.b.c", "", "x.y.x.y.x.y"} {
		allocs := testing.AllocsPerRun(100, func() { out = tp.Match(key, out[:0]) })
		require.Zero(t, allocs, "key %q", key)
	}
	d := NewDirect()
	d.Add("k", q("q"))
	require.Zero(t, testing.AllocsPerRun(100, func() { out = d.Match("k", out[:0]) }))
	f := NewFanout()
	f.Add(q("q"))
	require.Zero(t, testing.AllocsPerRun(100, func() { out = f.Match(out[:0]) }))
}

// TestTopicConcurrentMatch runs Match from several goroutines at once, as the
// broker does under its read lock; run with -race it checks that Match only
// reads the trie (its per-call state is pooled, never shared).
func TestTopicConcurrentMatch(t *testing.T) {
	t.Parallel()
	tp := NewTopic()
	for i := range 200 {
		tp.Add(fmt.Sprintf("k%d.#", i%20), q(fmt.Sprint(i%50)))
		tp.Add("#.x.#.y.#", q(fmt.Sprint(i%50)))
	}
	want := names(tp.Match("k3.x.a.y", nil))
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			var out []Dest
			for range 500 {
				out = tp.Match("k3.x.a.y", out[:0])
				if got := names(out); !slices.Equal(got, want) {
					errs <- fmt.Sprintf("got %v, want %v", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
