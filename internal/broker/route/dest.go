package route

// MaxKeyLen is the longest routing key or binding key in bytes: an AMQP
// short string.
const MaxKeyLen = 255

// Dest is a binding destination: a queue or, for exchange-to-exchange
// bindings, an exchange.
type Dest struct {
	Name       string
	IsExchange bool
}

// ValidKey reports whether key is a valid routing key (at most MaxKeyLen
// bytes). Any bytes are allowed, as in RabbitMQ.
func ValidKey(key string) bool { return len(key) <= MaxKeyLen }

// ValidTopicPattern reports whether pattern is a valid topic binding key (at
// most MaxKeyLen bytes). Every string of that length is a legal pattern:
// words other than "*" and "#" match themselves literally.
func ValidTopicPattern(pattern string) bool { return len(pattern) <= MaxKeyLen }

// smallSet is the size up to which a destSet is searched linearly; past it
// the set keeps an index.
const smallSet = 8

// destSet is a set of destinations kept as a slice (for appending matches
// fast) with an index built once the set is large. Removal swaps with the last
// element, so the order is not stable.
type destSet struct {
	list []Dest
	ids  []uint32     // ids[i] is the caller's id for list[i] (Topic's dedup ids)
	idx  map[Dest]int // position in list; nil while len(list) <= smallSet
}

func (s *destSet) len() int { return len(s.list) }

func (s *destSet) find(d Dest) int {
	if s.idx != nil {
		if i, ok := s.idx[d]; ok {
			return i
		}
		return -1
	}
	for i, x := range s.list {
		if x == d {
			return i
		}
	}
	return -1
}

func (s *destSet) add(d Dest, id uint32) bool {
	if s.find(d) >= 0 {
		return false
	}
	s.list = append(s.list, d)
	s.ids = append(s.ids, id)
	switch {
	case s.idx != nil:
		s.idx[d] = len(s.list) - 1
	case len(s.list) > smallSet:
		s.idx = make(map[Dest]int, 2*len(s.list))
		for i, x := range s.list {
			s.idx[x] = i
		}
	}
	return true
}

func (s *destSet) remove(d Dest) bool {
	i := s.find(d)
	if i < 0 {
		return false
	}
	last := len(s.list) - 1
	if i != last {
		s.list[i] = s.list[last]
		s.ids[i] = s.ids[last]
		if s.idx != nil {
			s.idx[s.list[i]] = i
		}
	}
	s.list[last] = Dest{}
	s.list = s.list[:last]
	s.ids = s.ids[:last]
	if s.idx != nil {
		delete(s.idx, d)
		if len(s.list) <= smallSet/2 {
			s.idx = nil
		}
	}
	if len(s.list) == 0 {
		s.list, s.ids = nil, nil
	}
	return true
}

// Direct holds the bindings of a direct exchange: a message goes to the
// destinations whose binding key equals its routing key.
type Direct struct {
	keys map[string]*destSet
	n    int
}

// NewDirect returns an empty direct binding table.
func NewDirect() *Direct { return &Direct{keys: map[string]*destSet{}} }

// Add binds d with key. It reports false if that binding already exists.
func (x *Direct) Add(key string, d Dest) (added bool) {
	s := x.keys[key]
	if s == nil {
		s = &destSet{}
		x.keys[key] = s
	}
	if !s.add(d, 0) {
		return false
	}
	x.n++
	return true
}

// Remove unbinds d from key. It reports false if there was no such binding.
func (x *Direct) Remove(key string, d Dest) (removed bool) {
	s := x.keys[key]
	if s == nil || !s.remove(d) {
		return false
	}
	if s.len() == 0 {
		delete(x.keys, key)
	}
	x.n--
	return true
}

// Match appends to out the destinations bound with exactly key, each once.
func (x *Direct) Match(key string, out []Dest) []Dest {
	if s := x.keys[key]; s != nil {
		out = append(out, s.list...)
	}
	return out
}

// Len returns the number of bindings.
func (x *Direct) Len() int { return x.n }

// Fanout holds the bindings of a fanout exchange: every destination matches.
type Fanout struct {
	set destSet
}

// NewFanout returns an empty fanout binding table.
func NewFanout() *Fanout { return &Fanout{} }

// Add binds d. It reports false if d is already bound.
func (f *Fanout) Add(d Dest) (added bool) { return f.set.add(d, 0) }

// Remove unbinds d. It reports false if d was not bound.
func (f *Fanout) Remove(d Dest) (removed bool) { return f.set.remove(d) }

// Match appends every bound destination to out.
func (f *Fanout) Match(out []Dest) []Dest { return append(out, f.set.list...) }

// Len returns the number of bindings.
func (f *Fanout) Len() int { return f.set.len() }
