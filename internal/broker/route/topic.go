package route

import (
	"strings"
	"sync"
)

// Topic holds the bindings of a topic exchange (see the package doc for the
// rules). The same pattern and destination added twice is one binding.
//
// Bindings live in a trie over pattern words: a node has literal children,
// a '*' child and a '#' child, and holds the destinations of the patterns
// that end at it. Match walks the trie depth-first along the key's words.
type Topic struct {
	root  node
	n     int              // bindings
	dests map[Dest]destUse // every bound destination
	free  []uint32         // ids of destinations no longer bound, for reuse
	ids   uint32           // ids handed out so far (free ones included)
	// multi counts destinations bound by more than one pattern; only then can
	// one key reach a destination twice, so only then does Match deduplicate.
	multi int
}

// destUse is a bound destination's dense id (an index into Match's dedup
// bitset) and its number of bindings.
type destUse struct {
	id   uint32
	uses int
}

type node struct {
	words map[string]*node // literal children; nil when none
	star  *node            // '*' child
	hash  *node            // '#' child
	dests destSet          // bindings whose pattern ends here, with dest ids
	// nested marks a '#' node below another '#' node. Only such a node can be
	// entered more than once in one Match, so only it is memoized.
	nested bool
}

func (n *node) empty() bool {
	return n.dests.len() == 0 && len(n.words) == 0 && n.star == nil && n.hash == nil
}

// NewTopic returns an empty topic binding table.
func NewTopic() *Topic { return &Topic{dests: map[Dest]destUse{}} }

// Len returns the number of bindings.
func (t *Topic) Len() int { return t.n }

// words iterates over the words of a routing key or pattern the way RabbitMQ
// splits them: "" is no word at all, otherwise split at every '.'.
// pos is the start of the next word; end(s) means no word is left.
func end(s string) int { return len(s) + 1 }

func start(s string) int {
	if s == "" {
		return end(s)
	}
	return 0
}

// word returns the word starting at pos (pos < end(s)) and the start of the
// next one.
func word(s string, pos int) (w string, next int) {
	if i := strings.IndexByte(s[pos:], '.'); i >= 0 {
		return s[pos : pos+i], pos + i + 1
	}
	return s[pos:], len(s) + 1
}

// Add binds d with pattern. It reports false if that binding already exists.
func (t *Topic) Add(pattern string, d Dest) (added bool) {
	n, hashes := &t.root, 0
	for pos := start(pattern); pos < end(pattern); {
		var w string
		w, pos = word(pattern, pos)
		switch w {
		case "#":
			if n.hash == nil {
				n.hash = &node{nested: hashes > 0}
			}
			n = n.hash
			hashes++
		case "*":
			if n.star == nil {
				n.star = &node{}
			}
			n = n.star
		default:
			c := n.words[w]
			if c == nil {
				if n.words == nil {
					n.words = map[string]*node{}
				}
				c = &node{}
				n.words[strings.Clone(w)] = c
			}
			n = c
		}
	}
	u, ok := t.dests[d]
	if !ok { // d is bound nowhere, so the add below cannot fail
		u = destUse{id: t.ids}
		if k := len(t.free); k > 0 {
			u.id, t.free = t.free[k-1], t.free[:k-1]
		} else {
			t.ids++
		}
	}
	if !n.dests.add(d, u.id) {
		return false
	}
	t.n++
	u.uses++
	t.dests[d] = u
	if u.uses == 2 {
		t.multi++
	}
	return true
}

// Remove unbinds d from pattern, pruning trie nodes left empty. It reports
// false if there was no such binding.
func (t *Topic) Remove(pattern string, d Dest) (removed bool) {
	if !removeFrom(&t.root, pattern, start(pattern), d) {
		return false
	}
	t.n--
	u := t.dests[d]
	u.uses--
	if u.uses == 0 {
		delete(t.dests, d)
		t.free = append(t.free, u.id)
		return true
	}
	t.dests[d] = u
	if u.uses == 1 {
		t.multi--
	}
	return true
}

func removeFrom(n *node, pattern string, pos int, d Dest) bool {
	if pos == end(pattern) {
		return n.dests.remove(d)
	}
	w, next := word(pattern, pos)
	var c *node
	switch w {
	case "#":
		c = n.hash
	case "*":
		c = n.star
	default:
		c = n.words[w]
	}
	if c == nil || !removeFrom(c, pattern, next, d) {
		return false
	}
	if c.empty() {
		switch w {
		case "#":
			n.hash = nil
		case "*":
			n.star = nil
		default:
			delete(n.words, w)
			if len(n.words) == 0 {
				n.words = nil
			}
		}
	}
	return true
}

// Match appends to out the destinations whose patterns match key. Each
// destination is appended once per call even when several patterns match it
// (destinations already in out before the call are not looked at). Match
// only reads the trie and allocates nothing beyond growing out.
func (t *Topic) Match(key string, out []Dest) []Dest {
	w := walker{key: key, out: out}
	if t.multi > 0 {
		w.scratch = getScratch(t.ids)
		w.dedup = true
	}
	w.walk(&t.root, start(key))
	if w.scratch != nil {
		w.scratch.release()
	}
	return w.out
}

// walker is the state of one Match call.
type walker struct {
	key     string
	out     []Dest
	dedup   bool     // skip destinations already appended (scratch.bits)
	scratch *scratch // from scratchPool; nil until needed
}

// scratch is the per-call working memory of Match, pooled so that Match
// allocates nothing once warm and stays read-only on the trie.
type scratch struct {
	// bits has the bit of each destination id appended so far; set lists
	// those ids, so that release clears only what was set.
	bits []uint64
	set  []uint32
	// memo records, per nested '#' node entered so far, the lowest key
	// position it was entered at: every position from there on has been
	// explored below it already.
	memo []memoEntry
}

type memoEntry struct {
	n   *node
	pos int
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// getScratch returns a scratch whose bitset holds ids [0, ids).
func getScratch(ids uint32) *scratch {
	s := scratchPool.Get().(*scratch)
	if words := int(ids+63) / 64; len(s.bits) < words {
		s.bits = make([]uint64, max(words, 2*len(s.bits)))
	}
	return s
}

func (s *scratch) release() {
	for _, id := range s.set {
		s.bits[id/64] = 0
	}
	s.set = s.set[:0]
	clear(s.memo)
	s.memo = s.memo[:0]
	scratchPool.Put(s)
}

// appendDests appends the destinations bound at n, skipping those already
// appended when deduplicating.
func (w *walker) appendDests(n *node) {
	if !w.dedup {
		w.out = append(w.out, n.dests.list...)
		return
	}
	bits := w.scratch.bits
	for i, id := range n.dests.ids {
		word, bit := id/64, uint64(1)<<(id%64)
		if bits[word]&bit != 0 {
			continue
		}
		bits[word] |= bit
		w.scratch.set = append(w.scratch.set, id)
		w.out = append(w.out, n.dests.list[i])
	}
}

// walk matches the words of the key from pos on against the patterns below n.
func (w *walker) walk(n *node, pos int) {
	if pos == end(w.key) {
		w.appendDests(n)
		if n.hash != nil { // '#' matching zero words
			w.walkHash(n.hash, pos)
		}
		return
	}
	word, next := word(w.key, pos)
	if c := n.words[word]; c != nil {
		w.walk(c, next)
	}
	if n.star != nil {
		w.walk(n.star, next)
	}
	if n.hash != nil {
		w.walkHash(n.hash, pos)
	}
}

// walkHash lets the '#' node h swallow zero or more words from pos on, and
// matches what follows the '#' against the rest of the key after each.
func (w *walker) walkHash(h *node, pos int) {
	stop := end(w.key) + 1 // positions >= stop were explored already
	if h.nested {
		stop = w.enter(h, pos)
	}
	for p := pos; p < stop; {
		w.walk(h, p)
		if p == end(w.key) {
			return
		}
		_, p = word(w.key, p)
	}
}

// enter records that nested '#' node h is entered at pos and returns the
// lowest position it had been entered at before (or past the end if never).
func (w *walker) enter(h *node, pos int) (stop int) {
	if w.scratch == nil {
		w.scratch = getScratch(0)
	}
	memo := w.scratch.memo
	for i := range memo {
		if memo[i].n == h {
			stop = memo[i].pos
			memo[i].pos = min(stop, pos)
			return stop
		}
	}
	w.scratch.memo = append(memo, memoEntry{n: h, pos: pos})
	return end(w.key) + 1
}
