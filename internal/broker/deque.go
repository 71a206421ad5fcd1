package broker

import "sort"

// deque is a FIFO of entries ordered by sequence, with sorted re-insertion
// for requeued messages (RabbitMQ puts them back in their original place).
type deque struct {
	buf  []*entry
	head int
}

func (d *deque) len() int { return len(d.buf) - d.head }

func (d *deque) front() *entry {
	if d.head == len(d.buf) {
		return nil
	}
	return d.buf[d.head]
}

func (d *deque) popFront() *entry {
	e := d.buf[d.head]
	d.buf[d.head] = nil
	d.head++
	if d.head == len(d.buf) {
		d.buf, d.head = d.buf[:0], 0
	} else if d.head > 1024 && d.head > len(d.buf)/2 {
		n := copy(d.buf, d.buf[d.head:])
		clear(d.buf[n:])
		d.buf, d.head = d.buf[:n], 0
	}
	return e
}

func (d *deque) pushBack(e *entry) {
	if n := len(d.buf); n > d.head && d.buf[n-1].seq > e.seq {
		d.insert(e)
		return
	}
	d.buf = append(d.buf, e)
}

// insert places e by sequence.
func (d *deque) insert(e *entry) {
	live := d.buf[d.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq > e.seq })
	if i == 0 && d.head > 0 {
		d.head--
		d.buf[d.head] = e
		return
	}
	d.buf = append(d.buf, nil)
	live = d.buf[d.head:]
	copy(live[i+1:], live[i:])
	live[i] = e
}

func (d *deque) drain() []*entry {
	out := append([]*entry(nil), d.buf[d.head:]...)
	d.buf, d.head = nil, 0
	return out
}
