package webhook

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// rawServer accepts connections on loopback and runs serve on each.
func rawServer(t *testing.T, serve func(net.Conn)) (url string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return "http://" + ln.Addr().String() + "/hook", accepted
}

func postOnce(p *poster, url string, timeout time.Duration) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(http.MethodPost)
	req.SetBodyRaw([]byte(`{"a":1}`))
	if err := p.send(req, resp, timeout); err != nil {
		return 0, err
	}
	readAnswer(resp, nil)
	return resp.StatusCode(), nil
}

// A server closing a kept-alive connection between two requests: the
// second POST finds the connection ended before its answer and is sent
// again on a new one, once, as net/http does.
func TestPosterRetriesClosedKeepAlive(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	url, accepted := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readLeanRequest(br); err != nil {
			return
		}
		requests.Add(1)
		_, _ = c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n")) // keep-alive, then gone
		time.Sleep(20 * time.Millisecond)
	})
	p, err := NewTargetGuard(loopback).newPoster(url, 4, time.Second)
	require.NoError(t, err)
	defer p.close()
	for range 3 {
		status, err := postOnce(p, url, 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, 204, status)
		time.Sleep(100 * time.Millisecond) // the server has closed the connection
	}
	require.Equal(t, int64(3), requests.Load())
	require.Equal(t, int64(3), accepted.Load())
}

// close ends an attempt in flight (the run stopping or its drain timing
// out) and leaves the poster without connections, so fasthttp's sweeper
// goroutine ends; later dials are refused.
func TestPosterClose(t *testing.T) {
	t.Parallel()
	url, _ := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		_, _ = readLeanRequest(br)
		_, _ = br.ReadByte() // never answers: waits for the client to close
	})
	p, err := NewTargetGuard(loopback).newPoster(url, 4, time.Second)
	require.NoError(t, err)
	// The attempt's own timeout is far longer than the wait below: only
	// close can end it in time.
	done := make(chan error, 1)
	go func() { _, err := postOnce(p, url, 10*time.Minute); done <- err }()
	require.Eventually(t, func() bool { return p.hc.ConnsCount() == 1 }, 5*time.Second, 5*time.Millisecond)
	p.close()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(time.Minute):
		require.FailNow(t, "close did not end the attempt in flight")
	}
	require.Eventually(t, func() bool { return p.hc.ConnsCount() == 0 }, 5*time.Second, 5*time.Millisecond)
	p.mu.Lock()
	require.Empty(t, p.conns)
	p.mu.Unlock()
	_, err = postOnce(p, url, 5*time.Second)
	require.ErrorIs(t, err, errPosterClosed)
}

// Answers the attempt reads only in part: a 2xx with a body far over the
// sampled 64 KiB still counts by its status (the connection is closed, not
// reused), and a head over posterHeaderBytes fails the attempt with a reason.
func TestPosterLargeAnswers(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 1<<20)
	url, accepted := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readLeanRequest(br); err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + big))
		}
	})
	p, err := NewTargetGuard(loopback).newPoster(url, 1, time.Second)
	require.NoError(t, err)
	defer p.close()
	r := &run{d: &dispatcher{s: &Service{}}, post: p, signer: &signer{}, ctx: t.Context(),
		sub: Subscription{Spec: Spec{URL: url, Timeout: 5 * time.Second, Format: FormatWebSub}}}
	r.d.s.snips.New = func() any { b := make([]byte, 1024); return &b }
	for range 2 {
		res := r.attempt(&prepared{body: []byte("hi"), contentType: "text/plain"})
		require.True(t, res.ok, "%+v", res)
		require.Equal(t, 200, res.status)
		require.Len(t, res.snippet, 1024)
	}
	require.Equal(t, int64(2), accepted.Load(), "a body left unread closes its connection")

	hugeHead, _ := rawServer(t, func(c net.Conn) {
		if _, err := readLeanRequest(bufio.NewReader(c)); err == nil {
			_, _ = c.Write([]byte("HTTP/1.1 204 No Content\r\nX-Big: " + strings.Repeat("y", posterHeaderBytes) + "\r\n\r\n"))
		}
	})
	p2, err := NewTargetGuard(loopback).newPoster(hugeHead, 1, time.Second)
	require.NoError(t, err)
	defer p2.close()
	r.post, r.sub.URL = p2, hugeHead
	res := r.attempt(&prepared{body: []byte("hi")})
	require.False(t, res.ok)
	require.NotEmpty(t, res.errText)
}

// https targets: TLS on the guarded, tracked connection, verified against
// the roots in the poster's TLS config (the system's when nil); a
// certificate they do not vouch for fails the attempt.
func TestPosterTLS(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	ts.StartTLS()
	defer ts.Close()
	p, err := NewTargetGuard(loopback).newPoster(ts.URL, 2, time.Second)
	require.NoError(t, err)
	defer p.close()
	_, err = postOnce(p, ts.URL, 5*time.Second)
	require.ErrorContains(t, err, "certificate")

	p2, err := NewTargetGuard(loopback).newPoster(ts.URL, 2, time.Second)
	require.NoError(t, err)
	defer p2.close()
	p2.hc.TLSConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig
	for range 2 {
		status, err := postOnce(p2, ts.URL, 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, status)
	}
	require.Equal(t, 1, p2.hc.ConnsCount(), "kept alive")
}

// The request line carries the target's path and query exactly as given
// (escapes, doubled slashes and dot segments included): a signed or
// token-bearing URL reaches the endpoint unaltered, as net/http sends it.
func TestPosterSendsURLAsGiven(t *testing.T) {
	t.Parallel()
	lines := make(chan string, 1)
	base, _ := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = c.Write([]byte("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
	})
	target := strings.TrimSuffix(base, "/hook") + "/hooks/a%2Fb//c/../d;x=1?token=a%20b&x=%2F#frag"
	p, err := NewTargetGuard(loopback).newPoster(target, 1, time.Second)
	require.NoError(t, err)
	defer p.close()
	status, err := postOnce(p, target, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 204, status)
	require.Equal(t, "POST /hooks/a%2Fb//c/../d;x=1?token=a%20b&x=%2F HTTP/1.1", <-lines)
}
