package webhook

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/heraldhq/herald/internal/broker"
)

// benchSink answers after latency; every failEvery-th request gets a 500.
// It counts the distinct webhook-ids it answered 2xx to. It is either a
// net/http server (httptest) or, to leave more of the shared CPU to Herald,
// a minimal HTTP/1.1 server on a raw socket (leanSink).
type benchSink struct {
	url     string
	n       atomic.Int64
	mu      sync.Mutex
	ok      map[string]struct{}
	dups    int
	okCount atomic.Int64
}

// answer decides the status of the next request for webhook-id id and
// records it.
func (s *benchSink) answer(id string, failEvery int64) (ok bool) {
	if n := s.n.Add(1); failEvery > 0 && n%failEvery == 0 {
		return false
	}
	s.mu.Lock()
	if _, dup := s.ok[id]; dup {
		s.dups++
	} else {
		s.ok[id] = struct{}{}
	}
	s.mu.Unlock()
	s.okCount.Add(1)
	return true
}

func newBenchSink(b *testing.B, latency time.Duration, failEvery int64) *benchSink {
	s := &benchSink{ok: map[string]struct{}{}}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if latency > 0 {
			time.Sleep(latency)
		}
		if !s.answer(r.Header.Get("webhook-id"), failEvery) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	ts.Config.MaxHeaderBytes = 1 << 16
	ts.Start()
	b.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// newLeanSink is newBenchSink on a minimal HTTP/1.1 server: one goroutine
// per connection reads a request line, headers (Content-Length and
// webhook-id are all it looks at) and the body, and writes a fixed
// response, flushing when no further request is buffered. It costs a
// fraction of net/http's CPU per request, which matters when the sink
// shares two cores with the broker it measures.
func newLeanSink(b *testing.B, latency time.Duration, failEvery int64) *benchSink {
	s := &benchSink{ok: map[string]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		conns sync.WaitGroup
		mu    sync.Mutex
		open  = map[net.Conn]struct{}{}
	)
	// Cleanup closes the connections the client keeps alive, as a server
	// shutting down does, so the serving goroutines end.
	b.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open[c] = struct{}{}
			mu.Unlock()
			conns.Go(func() {
				leanServe(c, s, latency, failEvery)
				mu.Lock()
				delete(open, c)
				mu.Unlock()
			})
		}
	}()
	s.url = "http://" + ln.Addr().String() + "/hook"
	return s
}

var (
	leanNoContent = []byte("HTTP/1.1 204 No Content\r\n\r\n")
	leanFailed    = []byte("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
)

func leanServe(c net.Conn, s *benchSink, latency time.Duration, failEvery int64) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	for {
		id, err := readLeanRequest(br)
		if err != nil {
			return
		}
		if latency > 0 {
			time.Sleep(latency)
		}
		resp := leanNoContent
		if !s.answer(id, failEvery) {
			resp = leanFailed
		}
		_, _ = bw.Write(resp)
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// readLeanRequest reads one request (request line, headers, a
// Content-Length body) and returns its webhook-id header.
func readLeanRequest(br *bufio.Reader) (id string, err error) {
	if _, err := br.ReadSlice('\n'); err != nil { // request line
		return "", err
	}
	length := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, _ = strconv.Atoi(string(value))
		case bytes.EqualFold(name, []byte("Webhook-Id")):
			id = string(value)
		}
	}
	_, err = br.Discard(length)
	return id, err
}

func (s *benchSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ok)
}

// BenchmarkDeliveries measures end-to-end webhook deliveries per second:
// publish (async) -> queue -> dispatcher -> signed POST -> ack, with 10% of
// the answers 500 (retried through the delay log with 1-5 ms backoff).
// Nothing may be lost: every event must reach the sink with a 2xx. The sink
// runs in the same process on the same two cores, as net/http (about 20
// CPU-µs per request) or as the lean raw-socket server (about 5).
func BenchmarkDeliveries(b *testing.B) {
	for _, bc := range []sinkCase{
		{0, 64, "net-http"},
		{0, 64, "lean"},
		// 256 in flight at 10 ms allow 25.6k/s, 512 allow 51k/s.
		{10 * time.Millisecond, 256, "net-http"},
		{10 * time.Millisecond, 256, "lean"},
		{10 * time.Millisecond, 512, "lean"},
	} {
		b.Run(bc.String(), func(b *testing.B) {
			failEvery := int64(10)
			if os.Getenv("WEBHOOK_BENCH_NO_FAILURES") != "" {
				failEvery = 0
			}
			e := startEnv(b, b.TempDir(), fastRetries)
			defer e.stop()
			sk := bc.sink(b, failEvery)
			_, err := e.s.Create(bg, Spec{URL: sk.url, Exchange: "events", BindingKey: "bench.#",
				MaxAttempts: 20, BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond,
				Concurrency: bc.concurrency})
			if err != nil {
				b.Fatal(err)
			}
			body := []byte(`{"order":12345,"status":"created","amount":"99.90","currency":"EUR","padding":"................................"}`)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			pubErr := make(chan error, 1)
			go func() {
				for i := range b.N {
					m := &broker.Message{Properties: broker.Properties{ContentType: "application/json", MessageID: fmt.Sprint("m-", i)}, Body: body}
					if _, err := e.b.PublishAsync(broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "bench.created", Message: m}, nil); err != nil {
						pubErr <- err
						return
					}
				}
				pubErr <- nil
			}()
			if err := <-pubErr; err != nil {
				b.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Minute)
			for sk.distinct() < b.N {
				if time.Now().After(deadline) {
					b.Fatalf("delivered %d of %d", sk.distinct(), b.N)
				}
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			// CPU per delivery (engine, broker, dispatcher, HTTP client and the
			// in-process sink) is steadier than the rate on a shared machine.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/delivery")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(sk.n.Load()-sk.okCount.Load())/float64(b.N)*100, "%5xx")
			if d := deadCount(e); d != 0 {
				b.Fatalf("%d events dead-lettered", d)
			}
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func deadCount(e *env) int {
	n := 0
	for _, q := range e.b.Queues("/") {
		if len(q.Name) > 5 && q.Name[len(q.Name)-5:] == ".dead" {
			n += q.Messages
		}
	}
	return n
}

// BenchmarkPendingRetriesMemory measures the heap held per pending retry:
// 100,000 events whose first attempt failed wait in the delay log (backoff
// one hour). Run with -benchtime=1x; b.N is ignored.
func BenchmarkPendingRetriesMemory(b *testing.B) {
	const n = 100_000
	e := startEnv(b, b.TempDir(), fastRetries)
	defer e.stop()
	var got atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer sink.Close()
	sub, err := e.s.Create(bg, Spec{URL: sink.URL, Exchange: "events", BindingKey: "mem.#", MaxAttempts: 5,
		BackoffInitial: time.Hour, BackoffMax: time.Hour, Concurrency: 64})
	if err != nil {
		b.Fatal(err)
	}
	e.s.jitter = func(ceil time.Duration) time.Duration { return ceil }
	body := []byte(`{"order":12345,"status":"created","amount":"99.90","currency":"EUR"}`)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	b.ResetTimer()
	for i := range n {
		m := &broker.Message{Properties: broker.Properties{ContentType: "application/json", MessageID: fmt.Sprint("m-", i)}, Body: body}
		if _, err := e.b.PublishAsync(broker.Publishing{VHost: "/", Exchange: "events", RoutingKey: "mem.x", Message: m}, nil); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		qi, err := e.b.Queue("/", queueName(sub.ID))
		if err == nil && got.Load() >= n && qi.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d attempts (queue %d)", got.Load(), n, qi.Messages)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	after := heap()
	b.ReportMetric(float64(int64(after)-int64(before))/n, "heap-B/pending-retry")
	b.ReportMetric(float64(after)/(1<<20), "heap-MiB")
}

// BenchmarkHTTPFloor is the floor under BenchmarkDeliveries: the same POSTs
// (body size, requests in flight, keep-alive, the guard's transport) to the
// same in-process sinks, with no broker, engine or signing.
func BenchmarkHTTPFloor(b *testing.B) {
	for _, bc := range []sinkCase{
		{0, 64, "net-http"},
		{0, 64, "lean"},
		{10 * time.Millisecond, 512, "lean"},
	} {
		b.Run(bc.String(), func(b *testing.B) { httpFloor(b, bc.sink(b, 0), bc.concurrency) })
	}
}

// sinkCase is one sink setting of the delivery benchmarks: the sink's
// answer latency, the requests in flight, and the sink's server ("net-http"
// or "lean").
type sinkCase struct {
	latency     time.Duration
	concurrency int
	server      string
}

func (c sinkCase) String() string {
	return fmt.Sprintf("sink=%s/server=%s/concurrency=%d", c.latency, c.server, c.concurrency)
}

func (c sinkCase) sink(b *testing.B, failEvery int64) *benchSink {
	if c.server == "lean" {
		return newLeanSink(b, c.latency, failEvery)
	}
	return newBenchSink(b, c.latency, failEvery)
}

func httpFloor(b *testing.B, sk *benchSink, concurrency int) {
	post, err := NewTargetGuard(loopback).newPoster(sk.url, concurrency, time.Minute) // as run.attempt sends
	if err != nil {
		b.Fatal(err)
	}
	defer post.close()
	body := make([]byte, 330)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for next.Add(1) <= int64(b.N) {
				req.Reset()
				req.SetRequestURI(sk.url)
				req.Header.SetMethod(http.MethodPost)
				req.Header.Set("webhook-id", strconv.FormatInt(next.Load(), 10))
				req.SetBodyRaw(body)
				if err := post.send(req, resp, time.Minute); err != nil {
					b.Error(err)
					return
				}
				readAnswer(resp, nil)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
}
