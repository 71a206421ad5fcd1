package realtime

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/errs"
	"github.com/heraldhq/herald/internal/httpapi"
)

// sseConn is one Server-Sent Events stream on one channel. The HTTP handler
// goroutine is its writer: deliver queues a frame and wakes it.
type sseConn struct {
	q      sendQueue
	wake   chan struct{} // capacity 1
	kicked chan struct{} // closed when the queue overflowed
	srv    *Server
}

func (c *sseConn) socketID() string { return "" }
func (c *sseConn) send([]byte)      {}

func (c *sseConn) deliver(e *event) { c.push(e.sseFrame()) }

func (c *sseConn) resumeFailed(channel, reason string) {
	c.push(appendSSE(nil, "", "herald:resume_failed", `{"reason":`+string(appendJSONString(nil, reason))+`}`))
}

func (c *sseConn) push(f []byte) {
	wake, overflow := c.q.push(f)
	if wake {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	if overflow {
		c.srv.metrics.slowDisconnects.Add(1)
		close(c.kicked)
	}
}

// serveSSE handles GET /v1/apps/{app_id}/channels/{channel}/events.
//
// Private and presence channels need ?auth=KEY:EXPIRES:SIGNATURE (see
// SignSSEToken); a presence channel is observed, SSE clients are not members.
// Last-Event-ID (header, or ?last_event_id= for a first connection) replays
// the kept events after that id before live ones; if they are no longer kept
// the stream starts with an event "herald:resume_failed".
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	fail := func(err error) { httpapi.WriteErrorNoChallenge(w, err) } // Herald's /v1 JSON envelope
	if !s.running() {
		fail(errs.New(errs.Unavailable, "realtime server not running"))
		return
	}
	h := s.hubByID[r.PathValue("app_id")]
	if h == nil {
		fail(errs.New(errs.NotFound, "unknown app id %q", r.PathValue("app_id")))
		return
	}
	name := r.PathValue("channel")
	if err := validChannel(name); err != nil {
		fail(err)
		return
	}
	if channelKind(name) != kindPublic {
		if err := checkSSEToken(h.app, name, r.URL.Query().Get("auth"), s.cfg.Now()); err != nil {
			fail(err)
			return
		}
	}
	if !s.acquireConn() {
		fail(errs.New(errs.ResourceError, "over capacity: too many connections, retry later"))
		return
	}
	defer s.releaseConn()
	c := &sseConn{q: sendQueue{limit: s.cfg.SendQueue}, wake: make(chan struct{}, 1), kicked: make(chan struct{}), srv: s}
	if !s.addSSE(c) {
		fail(errs.New(errs.Unavailable, "realtime server shutting down"))
		return
	}
	defer s.removeSSE(c)

	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 1000\n: connected\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}

	req := subscribeReq{channel: name}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id")
	}
	if last != "" {
		req.resume = &resumeFrom{id: last}
	}
	sub, err := h.subscribe(c, req)
	if err != nil {
		_, _ = w.Write(appendSSE(nil, "", "herald:error", `{"error":`+string(appendJSONString(nil, errs.Message(err)))+`}`))
		return
	}
	defer h.unsubscribe(sub)
	defer c.q.close()

	keep := time.NewTicker(s.cfg.SSEKeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-c.kicked:
			_, _ = io.WriteString(w, "event: herald:disconnected\ndata: {\"reason\":\"send queue full: client too slow\",\"code\":"+strconv.Itoa(codeSlowClient)+"}\n\n")
			_ = rc.Flush()
			return
		case <-keep.C:
			_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		case <-c.wake:
			for batch := c.q.take(); batch != nil; batch = c.q.take() {
				_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
				for _, f := range batch {
					if _, err := w.Write(f); err != nil {
						return
					}
				}
				if rc.Flush() != nil {
					return
				}
				c.q.written(batch)
			}
		}
	}
}

func (s *Server) addSSE(c *sseConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return false
	}
	s.wg.Add(1)
	s.sse[c] = struct{}{}
	return true
}

func (s *Server) removeSSE(c *sseConn) {
	s.mu.Lock()
	delete(s.sse, c)
	s.mu.Unlock()
	s.wg.Done()
}
