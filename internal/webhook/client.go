package webhook

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Limits of a poster's HTTP/1.1 connections.
const (
	// posterIdle closes a keep-alive connection idle this long: below the
	// 60-75 s idle timeouts of common servers, so the poster rarely reuses
	// one the server is closing (and retries once when it does).
	posterIdle = 50 * time.Second
	// posterHeaderBytes bounds an answer's status line and headers; a
	// longer head fails the attempt.
	posterHeaderBytes = 16 << 10
)

// answerDiscard is how much of an answer's body past the snippet is read
// (and dropped) so its connection can be reused; a longer body closes it.
const answerDiscard = 64 << 10

// errPosterClosed is a dial after the poster was closed.
var errPosterClosed = errors.New("webhook: delivery stopped")

// poster sends the attempts of one run: HTTP/1.1 keep-alive connections to
// the subscription's host, at most one per attempt in flight (the run's
// Concurrency), dialled through the guard so every connection's address is
// checked. It is valyala/fasthttp's HostClient, which reads and writes on
// the calling goroutine: net/http's transport hands each request to a
// writer and a reader goroutine per connection, which cost about a third of
// a delivery's CPU at 10 ms answers. close ends every connection, idle or
// in use, which aborts the attempts in flight.
type poster struct {
	hc *fasthttp.HostClient

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

// newPoster returns a poster for rawURL's host (an absolute http or https
// URL) with up to conns connections; a request waits up to wait for one.
func (g *TargetGuard) newPoster(rawURL string, conns int, wait time.Duration) (*poster, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	p := &poster{conns: map[*trackedConn]struct{}{}}
	dialer := g.Dialer()
	p.hc = &fasthttp.HostClient{
		Addr:  net.JoinHostPort(u.Hostname(), port),
		IsTLS: u.Scheme == "https",
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return nil, errPosterClosed
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			c, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return p.track(c)
		},
		MaxConns:                 max(conns, 1),
		MaxConnWaitTimeout:       wait,
		MaxIdleConnDuration:      posterIdle,
		ReadBufferSize:           posterHeaderBytes,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true, // the target's path and query as given
		StreamResponseBody:       true,
		// A POST is retried once when the connection ended before the
		// answer began (the server closed a kept-alive connection as it
		// was reused): net/http does the same. Receivers deduplicate on
		// webhook-id in the rare case the server had taken the request.
		RetryIfErr: func(_ *fasthttp.Request, attempts int, err error) (bool, bool) {
			return false, attempts < 2 && connEndedEarly(err)
		},
	}
	return p, nil
}

// send posts req and reads the answer's status line and headers into
// resp, all within timeout; the caller then reads the body (readAnswer).
func (p *poster) send(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	return p.hc.DoTimeout(req, resp, timeout)
}

// readAnswer reads the start of the body of an answer from send into snip,
// returning how many bytes it read, drops up to answerDiscard more, and
// closes the body (which returns or closes the connection).
func readAnswer(resp *fasthttp.Response, snip []byte) int {
	n := 0
	if body := resp.BodyStream(); body != nil { // none when the answer has no body (204)
		n, _ = io.ReadFull(body, snip)
		if n == len(snip) {
			_, _ = io.CopyN(io.Discard, body, answerDiscard)
		}
	}
	_ = resp.CloseBodyStream()
	return n
}

func connEndedEarly(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (p *poster) track(c net.Conn) (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return nil, errPosterClosed
	}
	tc := &trackedConn{Conn: c, p: p}
	p.conns[tc] = struct{}{}
	return tc, nil
}

// close closes every connection; later dials fail.
func (p *poster) close() {
	p.hc.CloseIdleConnections() // out of the pool too, so its sweeper ends
	p.mu.Lock()
	p.closed = true
	cs := make([]*trackedConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// trackedConn leaves its poster's set when closed.
type trackedConn struct {
	net.Conn
	p    *poster
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
	return c.Conn.Close()
}
