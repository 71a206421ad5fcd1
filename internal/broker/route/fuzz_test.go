package route

import (
	"slices"
	"strings"
	"testing"
)

// fuzzAlphabet maps fuzzer bytes onto a few characters so that patterns and
// keys collide often and every wildcard arrangement shows up.
const fuzzAlphabet = "ab*#."

func fuzzString(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = fuzzAlphabet[int(c)%len(fuzzAlphabet)]
	}
	return string(b)
}

// FuzzTopicMatch binds several fuzzed patterns (split at '|') to a few
// destinations, matches fuzzed keys against the trie and the reference
// matcher, removes every other binding and checks again.
func FuzzTopicMatch(f *testing.F) {
	f.Add("a.#.b|#|*.*|#.#", "a.b")
	f.Add("#.a.#.a.#|*.#.*|", "")
	f.Add("a..b|*.*.*|#.b.#|b", "a..b")
	f.Add("#.*|*|a.", "a.")
	f.Fuzz(func(t *testing.T, patterns, key string) {
		if len(patterns) > 200 || len(key) > 64 {
			return
		}
		ps := strings.Split(patterns, "|")
		for i := range ps {
			ps[i] = fuzzString(ps[i])
		}
		key = fuzzString(key)
		keys := []string{key, "", "a", "a.b", key + ".a", "a." + key}

		dest := func(i int) Dest { return Dest{Name: string(rune('p' + i%3)), IsExchange: i%5 == 4} }
		type binding struct {
			p string
			d Dest
		}
		var live []binding
		tp := NewTopic()
		for i, p := range ps {
			b := binding{p, dest(i)}
			added := tp.Add(p, b.d)
			mustf(t, added == !slices.Contains(live, b), "Add(%q, %v) = %v", p, b.d, added)
			if added {
				live = append(live, b)
			}
		}
		check := func(stage string) {
			t.Helper()
			if tp.Len() != len(live) {
				t.Fatalf("%s: Len = %d, want %d", stage, tp.Len(), len(live))
			}
			for _, k := range keys {
				var want []string
				for _, b := range live {
					if refMatch(b.p, k) {
						want = append(want, names([]Dest{b.d})...)
					}
				}
				slices.Sort(want)
				want = slices.Compact(want)
				got := names(tp.Match(k, nil))
				if !slices.Equal(got, want) {
					t.Fatalf("%s: key %q, bindings %v: got %v, want %v", stage, k, live, got, want)
				}
			}
		}
		check("after add")
		for i := 0; i < len(live); i++ {
			b := live[i]
			if !tp.Remove(b.p, b.d) {
				t.Fatalf("Remove(%q, %v) = false", b.p, b.d)
			}
			if tp.Remove(b.p, b.d) {
				t.Fatalf("second Remove(%q, %v) = true", b.p, b.d)
			}
			live = slices.Delete(live, i, i+1)
		}
		check("after remove")
		// Bind again with shifted destinations: reuses the freed dedup ids.
		for i, p := range ps {
			b := binding{p, dest(i + 1)}
			if tp.Add(p, b.d) {
				live = append(live, b)
			}
		}
		check("after re-add")
		for _, b := range slices.Clone(live) {
			tp.Remove(b.p, b.d)
		}
		live = nil
		check("after removing all")
		if !tp.root.empty() || tp.multi != 0 || len(tp.dests) != 0 {
			t.Fatalf("trie not pruned: %+v", tp.root)
		}
	})
}

func mustf(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}
