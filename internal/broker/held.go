package broker

import "container/heap"

// held is the set of a queue's log sequences that left its ready index but
// whose messages are still needed: unacknowledged deliveries, paged-out
// bodies being read for a no-ack delivery or for dead-lettering. With the
// ready index it gives the queue's floor: no message of the queue's subject
// below it is needed any more, so the engine may purge them all with one
// filtered purge instead of deleting them one by one (which costs an fsync
// each with --fsync=always). A min-heap with lazy removal; guarded by q.mu.
type held struct {
	n    map[uint64]int32 // seq → holds
	heap seqHeap
}

type seqHeap []uint64

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *seqHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (h *held) add(seq uint64) {
	if seq == 0 {
		return
	}
	if h.n == nil {
		h.n = make(map[uint64]int32)
	}
	if h.n[seq]++; h.n[seq] == 1 {
		heap.Push(&h.heap, seq)
	}
}

func (h *held) remove(seq uint64) {
	c, ok := h.n[seq]
	if !ok {
		return
	}
	if c > 1 {
		h.n[seq] = c - 1
		return
	}
	delete(h.n, seq)
	for len(h.heap) > 0 {
		if _, live := h.n[h.heap[0]]; live {
			break
		}
		heap.Pop(&h.heap)
	}
}

// min is the lowest held sequence, or 0 when none is held.
func (h *held) min() uint64 {
	if len(h.heap) == 0 {
		return 0
	}
	return h.heap[0]
}

// floorLocked is the lowest log sequence of the queue's subject that may
// still be needed: the lowest ready or held sequence; with none, one past
// the highest of dels (the deletes being queued). Messages of the queue
// are indexed in the order of their sequences (the engine calls back in
// append order, and a log stores appends in that order), so every message
// of the subject below the floor has been indexed and let go. 0 means no
// floor (a cluster, or while the index is being rebuilt). Caller holds q.mu.
func (q *queue) floorLocked(dels []uint64) uint64 {
	if q.b.eng.Clustered() || q.scanning || !q.leader {
		return 0
	}
	floor := q.held.min()
	for i := range q.ready {
		if e := q.ready[i].front(); e != nil && (floor == 0 || e.seq < floor) {
			floor = e.seq
		}
	}
	if floor == 0 {
		for _, s := range dels {
			floor = max(floor, s+1)
		}
	}
	return floor
}
