package broker

import "sync"

// callbacks is a set of registered functions that their owner calls with no
// lock of the set held: add returns the function that removes fn, list the
// current ones. The zero value is ready to use.
type callbacks[F any] struct {
	mu   sync.Mutex
	fns  map[int]F
	next int
}

func (c *callbacks[F]) add(fn F) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fns == nil {
		c.fns = map[int]F{}
	}
	c.next++
	id := c.next
	c.fns[id] = fn
	return func() {
		c.mu.Lock()
		delete(c.fns, id)
		c.mu.Unlock()
	}
}

func (c *callbacks[F]) list() []F {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]F, 0, len(c.fns))
	for _, fn := range c.fns {
		out = append(out, fn)
	}
	return out
}
