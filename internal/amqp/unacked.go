package amqp

import (
	"sort"

	"github.com/heraldhq/herald/internal/broker"
)

// unacked holds a channel's outstanding deliveries in delivery-tag order
// (tags only grow), so that single acks are a binary search and multiple
// acks pop from the front.
type unacked struct {
	e    []unackedEntry // e[head:] are live or settled (d == nil) entries
	head int
	n    int // live entries
}

type unackedEntry struct {
	tag uint64
	d   *broker.Delivery
}

// push adds a delivery with a tag greater than every tag held.
func (u *unacked) push(tag uint64, d *broker.Delivery) {
	u.e = append(u.e, unackedEntry{tag, d})
	u.n++
}

// insert adds a delivery at its place (a rolled-back transaction).
func (u *unacked) insert(tag uint64, d *broker.Delivery) {
	live := u.e[u.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].tag >= tag })
	if i < len(live) && live[i].tag == tag {
		live[i].d = d
	} else {
		u.e = append(u.e, unackedEntry{})
		copy(u.e[u.head+i+1:], u.e[u.head+i:])
		u.e[u.head+i] = unackedEntry{tag, d}
	}
	u.n++
}

// take removes and returns the delivery with tag, or nil.
func (u *unacked) take(tag uint64) *broker.Delivery {
	live := u.e[u.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].tag >= tag })
	if i == len(live) || live[i].tag != tag || live[i].d == nil {
		return nil
	}
	d := live[i].d
	live[i].d = nil
	u.n--
	u.trim()
	return d
}

// takeUpTo removes the deliveries with tags <= tag (all if tag is 0),
// appending them with their tags to out.
func (u *unacked) takeUpTo(tag uint64, out []unackedEntry) []unackedEntry {
	for u.head < len(u.e) && (tag == 0 || u.e[u.head].tag <= tag) {
		if e := u.e[u.head]; e.d != nil {
			out = append(out, e)
			u.n--
		}
		u.e[u.head] = unackedEntry{}
		u.head++
	}
	u.trim()
	return out
}

// trim drops settled entries at the front and compacts the slice.
func (u *unacked) trim() {
	for u.head < len(u.e) && u.e[u.head].d == nil {
		u.e[u.head] = unackedEntry{}
		u.head++
	}
	if u.head == len(u.e) {
		u.e, u.head = u.e[:0], 0
	} else if u.head > 64 && u.head > len(u.e)/2 {
		n := copy(u.e, u.e[u.head:])
		clear(u.e[n:])
		u.e, u.head = u.e[:n], 0
	}
}
