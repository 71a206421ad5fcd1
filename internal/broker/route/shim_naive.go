// Package route holds the binding matchers of the broker core.
//
// TEMPORARY naive implementation written by the lead so the broker compiles
// while the real trie-based matcher is being written; the route author
// replaces this whole file (delete it).
package route

import (
	"reflect"
	"strings"
)

type Dest struct {
	Name       string
	IsExchange bool
}

type binding struct {
	pattern string
	d       Dest
}

type Topic struct{ bs []binding }

func NewTopic() *Topic { return &Topic{} }

func (t *Topic) Add(p string, d Dest) bool {
	for _, b := range t.bs {
		if b.pattern == p && b.d == d {
			return false
		}
	}
	t.bs = append(t.bs, binding{p, d})
	return true
}

func (t *Topic) Remove(p string, d Dest) bool {
	for i, b := range t.bs {
		if b.pattern == p && b.d == d {
			t.bs = append(t.bs[:i], t.bs[i+1:]...)
			return true
		}
	}
	return false
}

func (t *Topic) Len() int { return len(t.bs) }

func (t *Topic) Match(key string, out []Dest) []Dest {
	kw := strings.Split(key, ".")
	for _, b := range t.bs {
		if naive(strings.Split(b.pattern, "."), kw) && !has(out, b.d) {
			out = append(out, b.d)
		}
	}
	return out
}

func has(out []Dest, d Dest) bool {
	for _, o := range out {
		if o == d {
			return true
		}
	}
	return false
}

func naive(p, k []string) bool {
	if len(p) == 0 {
		return len(k) == 0
	}
	if p[0] == "#" {
		for i := 0; i <= len(k); i++ {
			if naive(p[1:], k[i:]) {
				return true
			}
		}
		return false
	}
	if len(k) == 0 {
		return false
	}
	return (p[0] == "*" || p[0] == k[0]) && naive(p[1:], k[1:])
}

type Direct struct{ t Topic }

func NewDirect() *Direct                       { return &Direct{} }
func (d *Direct) Add(k string, x Dest) bool    { return d.t.Add(k, x) }
func (d *Direct) Remove(k string, x Dest) bool { return d.t.Remove(k, x) }
func (d *Direct) Len() int                     { return d.t.Len() }
func (d *Direct) Match(key string, out []Dest) []Dest {
	for _, b := range d.t.bs {
		if b.pattern == key && !has(out, b.d) {
			out = append(out, b.d)
		}
	}
	return out
}

type Fanout struct{ t Topic }

func NewFanout() *Fanout             { return &Fanout{} }
func (f *Fanout) Add(x Dest) bool    { return f.t.Add("", x) }
func (f *Fanout) Remove(x Dest) bool { return f.t.Remove("", x) }
func (f *Fanout) Len() int           { return f.t.Len() }
func (f *Fanout) Match(out []Dest) []Dest {
	for _, b := range f.t.bs {
		if !has(out, b.d) {
			out = append(out, b.d)
		}
	}
	return out
}

func MatchHeaders(args, headers map[string]any) bool {
	mode, _ := args["x-match"].(string)
	any := strings.HasPrefix(mode, "any")
	n := 0
	for k, v := range args {
		if strings.HasPrefix(k, "x-") && !strings.HasSuffix(mode, "-with-x") {
			continue
		}
		n++
		hv, ok := headers[k]
		m := ok && (v == nil || reflect.DeepEqual(v, hv))
		if any && m {
			return true
		}
		if !any && !m {
			return false
		}
	}
	return !any || n == 0
}
