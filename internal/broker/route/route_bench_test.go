package route

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

var (
	benchExchanges = []string{"nyse", "nasdaq", "lse"}
	benchLevels    = []string{"info", "warn", "error"}
	benchRegions   = []string{"eu", "us", "ap"}
)

// benchPattern returns the i-th of a mix of realistic topic patterns.
func benchPattern(r *rand.Rand, i int) string {
	sym := fmt.Sprintf("sym%d", r.IntN(1000))
	svc := fmt.Sprintf("svc%d", r.IntN(200))
	ex := benchExchanges[r.IntN(len(benchExchanges))]
	region := benchRegions[r.IntN(len(benchRegions))]
	switch i % 8 {
	case 0:
		return "stock." + sym + "." + ex
	case 1:
		return "stock.*." + ex
	case 2:
		return "stock." + sym + ".*"
	case 3:
		return svc + ".#.error"
	case 4:
		return svc + "." + region + ".#"
	case 5:
		return "*." + region + "." + svc + ".*"
	case 6:
		return "#." + benchLevels[r.IntN(len(benchLevels))]
	default:
		return "app" + fmt.Sprint(r.IntN(500)) + ".prod.#"
	}
}

var benchKeys = []string{
	"stock.sym17.nyse",
	"svc3.eu.db.error",
	"app42.prod.http.request.served",
	"web.us.svc9.latency",
	"unrelated.key.with.five.words",
}

// benchTopic binds n patterns; each queue has perQueue of them.
func benchTopic(n, perQueue int) *Topic {
	r := rand.New(rand.NewPCG(1, 2))
	t := NewTopic()
	for i := range n {
		t.Add(benchPattern(r, i), Dest{Name: fmt.Sprintf("q%d", i/perQueue)})
	}
	return t
}

func BenchmarkTopicMatch(b *testing.B) {
	for _, c := range []struct{ n, perQueue int }{{1, 1}, {100, 1}, {10_000, 1}, {100, 2}, {10_000, 2}} {
		t := benchTopic(c.n, c.perQueue)
		name := fmt.Sprintf("bindings=%d", c.n)
		if c.perQueue > 1 {
			name += fmt.Sprintf(",patterns/queue=%d", c.perQueue)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			out := make([]Dest, 0, 1024)
			matched := 0
			for i := 0; b.Loop(); i++ {
				out = t.Match(benchKeys[i%len(benchKeys)], out[:0])
				matched += len(out)
			}
			b.ReportMetric(float64(matched)/float64(b.N), "dests/op")
		})
	}
}

// BenchmarkTopicMatchAll is the fan-out case: every binding matches ("#"),
// and each destination is also bound by a second pattern, so Match appends
// and then deduplicates n destinations.
func BenchmarkTopicMatchAll(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		t := NewTopic()
		for i := range n {
			d := Dest{Name: fmt.Sprintf("q%d", i)}
			t.Add("#", d)
			t.Add("a.*", d)
		}
		b.Run(fmt.Sprintf("bindings=%d", 2*n), func(b *testing.B) {
			b.ReportAllocs()
			out := make([]Dest, 0, n)
			for b.Loop() {
				out = t.Match("a.b", out[:0])
			}
			if len(out) != n {
				b.Fatalf("got %d dests, want %d", len(out), n)
			}
		})
	}
}

// BenchmarkTopicMatchNestedHashes is an adversarial pattern set: chains of
// '#' separated by one repeated word, against a 127-word key.
func BenchmarkTopicMatchNestedHashes(b *testing.B) {
	t := NewTopic()
	for n := 1; n <= 20; n++ {
		t.Add(strings.Repeat("#.a.", n)+"#", Dest{Name: fmt.Sprint(n)})
	}
	key := strings.TrimSuffix(strings.Repeat("a.", 127), ".")
	b.ReportAllocs()
	out := make([]Dest, 0, 64)
	for b.Loop() {
		out = t.Match(key, out[:0])
	}
}

func BenchmarkTopicAddRemove(b *testing.B) {
	t := benchTopic(10_000, 1)
	r := rand.New(rand.NewPCG(3, 4))
	pats := make([]string, 1024)
	for i := range pats {
		pats[i] = benchPattern(r, i)
	}
	d := Dest{Name: "bench-queue"}
	b.Run("bindings=10000", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			p := pats[i%len(pats)]
			t.Add(p, d)
			t.Remove(p, d)
		}
	})
}

// BenchmarkTopicAdd measures building a table of 10,000 bindings, per Add.
func BenchmarkTopicAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	pats := make([]string, 10_000)
	dests := make([]Dest, len(pats))
	for i := range pats {
		pats[i] = benchPattern(r, i)
		dests[i] = Dest{Name: fmt.Sprintf("q%d", i)}
	}
	b.ReportAllocs()
	t := NewTopic()
	for i := 0; b.Loop(); i++ {
		j := i % len(pats)
		if j == 0 {
			t = NewTopic()
		}
		t.Add(pats[j], dests[j])
	}
}

func BenchmarkDirectMatch(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		x := NewDirect()
		for i := range n {
			x.Add(fmt.Sprintf("key.%d", i), Dest{Name: fmt.Sprintf("q%d", i)})
		}
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			out := make([]Dest, 0, 16)
			key := fmt.Sprintf("key.%d", n/2)
			for b.Loop() {
				out = x.Match(key, out[:0])
			}
		})
	}
}

func BenchmarkFanoutMatch(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		f := NewFanout()
		for i := range n {
			f.Add(Dest{Name: fmt.Sprintf("q%d", i)})
		}
		b.Run(fmt.Sprintf("bindings=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			out := make([]Dest, 0, n)
			for b.Loop() {
				out = f.Match(out[:0])
			}
		})
	}
}

func BenchmarkMatchHeaders(b *testing.B) {
	headers := map[string]any{
		"format": "pdf", "type": "report", "size": int32(1024), "region": "eu",
		"x-trace": "abc", "priority": int8(3), "ok": true, "ts": int64(1700000000),
	}
	cases := []struct {
		name string
		args map[string]any
	}{
		{"all-3-match", map[string]any{"x-match": "all", "format": "pdf", "size": int64(1024), "ok": true}},
		{"all-3-miss", map[string]any{"x-match": "all", "format": "pdf", "size": int64(1024), "ok": false}},
		{"any-3-last", map[string]any{"x-match": "any", "a": "1", "b": "2", "region": []byte("eu")}},
		{"presence", map[string]any{"type": nil}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MatchHeaders(c.args, headers)
			}
		})
	}
}
