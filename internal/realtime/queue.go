package realtime

import "sync"

// transport is what a channel delivers to: a WebSocket connection (wsConn)
// or an SSE stream (sseConn). Both must return at once: they copy a pointer
// to a shared, immutable frame into their bounded sendQueue, and a transport
// whose queue overflows disconnects itself.
type transport interface {
	// socketID is the Pusher socket id ("" for SSE: it cannot be excluded).
	socketID() string
	// deliver queues a channel event.
	deliver(e *event)
	// send queues a protocol frame (WebSocket only; SSE ignores it).
	send(frame []byte)
	// resumeFailed tells the client that what it missed on channel cannot
	// be replayed (event herald:resume_failed with {"reason":...}).
	resumeFailed(channel, reason string)
}

// sendQueue is a connection's bounded outgoing queue of shared frames. The
// frames are never modified; the queue only holds references. limit bounds
// the bytes queued plus the batch being written.
type sendQueue struct {
	mu      sync.Mutex
	frames  [][]byte
	spare   [][]byte
	bytes   int
	limit   int
	writing bool // a writer owns the queue (goroutine running / stream awake)
	closed  bool
}

// push queues b. wake is true when the queue went from idle to busy: the
// caller must start (or wake) its writer. overflow is true when b did not
// fit: the queue is now closed and the caller must disconnect the client.
func (q *sendQueue) push(b []byte) (wake, overflow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false, false
	}
	if q.bytes+len(b) > q.limit {
		q.closed = true
		q.frames, q.spare = nil, nil
		return false, true
	}
	q.frames = append(q.frames, b)
	q.bytes += len(b)
	if !q.writing {
		q.writing = true
		return true, false
	}
	return false, false
}

// take hands the writer everything queued. When nothing is queued it returns
// nil and the writer must stop (writing is cleared); it is then woken again
// by the next push.
func (q *sendQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) == 0 || q.closed {
		q.writing = false
		return nil
	}
	batch := q.frames
	q.frames = q.spare[:0]
	q.spare = nil
	return batch
}

// written returns the batch's buffer for reuse and releases its bytes.
func (q *sendQueue) written(batch [][]byte) {
	n := 0
	for i, b := range batch {
		n += len(b)
		batch[i] = nil
	}
	q.mu.Lock()
	q.bytes -= n
	if q.spare == nil && cap(batch) <= 1024 {
		q.spare = batch[:0]
	}
	q.mu.Unlock()
}

// close drops everything queued; later pushes are ignored. It reports
// whether the queue was open.
func (q *sendQueue) close() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	was := !q.closed
	q.closed = true
	q.frames, q.spare = nil, nil
	return was
}
