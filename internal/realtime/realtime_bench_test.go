package realtime

// Benchmarks (see BENCHMARKS.md for results and commands).
//
//   BenchmarkFanout            hub fan-out into per-connection send queues (no network)
//   BenchmarkFanoutWebSocket   end to end over loopback WebSocket; clients in a subprocess
//   BenchmarkLatencyWebSocket  paced publishing, p50/p99 publish-to-client latency
//   BenchmarkIdleConnections   server memory per idle subscribed connection at 10k

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// queueTransport is a subscriber without a network: deliveries land in a
// real sendQueue, drained by the benchmark.
type queueTransport struct{ q sendQueue }

func (t *queueTransport) socketID() string            { return "" }
func (t *queueTransport) deliver(e *event)            { t.q.push(e.wsFrame()) }
func (t *queueTransport) send(f []byte)               { t.q.push(f) }
func (t *queueTransport) resumeFailed(string, string) {}
func (t *queueTransport) drain()                      { t.q.written(t.q.take()) }

var _ transport = (*queueTransport)(nil)

func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			bb := setup(b, func(c *Config) { c.SendQueue = 64 << 20 })
			h := bb.srv.hubs[0]
			ts := make([]*queueTransport, n)
			for i := range ts {
				ts[i] = &queueTransport{q: sendQueue{limit: 64 << 20}}
				_, err := h.subscribe(ts[i], subscribeReq{channel: "bench"})
				if err != nil {
					b.Fatal(err)
				}
			}
			for _, t := range ts {
				t.drain()
			}
			data := strings.Repeat("x", 100)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.dispatch(inbound{channel: "bench", name: "tick", data: data})
				if i%64 == 63 {
					b.StopTimer()
					for _, t := range ts {
						t.drain()
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// The benchmark clients run in a subprocess (this test binary re-executed)
// so their memory and file descriptors are not the server's.
const clientsEnv = "HERALD_RT_BENCH_CLIENTS" // "wsURL n channel expect"

func init() {
	if spec := os.Getenv(clientsEnv); spec != "" {
		if err := runBenchClients(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench clients:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// runBenchClients opens n connections subscribed to channel, prints
// "ready", then (expect > 0) reads expect events on each and prints
// "done p50 p99 max" latencies in microseconds, or (expect = 0) waits for
// stdin to close.
func runBenchClients(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 4 {
		return fmt.Errorf("bad spec %q", spec)
	}
	url, channel := f[0], f[2]
	n, _ := strconv.Atoi(f[1])
	expect, _ := strconv.Atoi(f[3])
	ctx := context.Background()
	conns := make([]*websocket.Conn, n)
	sub, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": channel}})
	var wg sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				failed.Store(err)
				return
			}
			c.SetReadLimit(1 << 20)
			conns[i] = c
			if _, _, err := c.Read(ctx); err != nil { // connection_established
				failed.Store(err)
				return
			}
			if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
				failed.Store(err)
				return
			}
			if _, _, err := c.Read(ctx); err != nil { // subscription_succeeded
				failed.Store(err)
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	fmt.Println("ready")
	if expect == 0 {
		_, _ = io.Copy(io.Discard, os.Stdin)
		return nil
	}
	lat := make([][]int64, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]int64, 0, expect)
			for len(l) < expect {
				_, data, err := c.Read(ctx)
				if err != nil {
					failed.Store(err)
					return
				}
				now := time.Now().UnixNano()
				// data is {"event":"tick","channel":..,"data":"<unix nanos>",...}
				i := strings.Index(string(data), `"data":"`)
				if i < 0 {
					continue
				}
				rest := data[i+8:]
				j := strings.IndexByte(string(rest), '"')
				ts, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
				l = append(l, (now-ts)/1000)
			}
			lat[i] = l
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) int64 { return all[min(len(all)-1, int(float64(len(all))*p))] }
	fmt.Println("done", pct(0.50), pct(0.99), all[len(all)-1])
	for _, c := range conns {
		_ = c.CloseNow()
	}
	return nil
}

type benchClients struct {
	cmd   *exec.Cmd
	out   *bufio.Scanner
	stdin io.WriteCloser
}

func startBenchClients(b *testing.B, bb *bundle, n, expect int) *benchClients {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d bench %d", clientsEnv, bb.ws+"/app/"+bb.app.Key+"?protocol=7", n, expect))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	bc := &benchClients{cmd: cmd, out: bufio.NewScanner(stdout), stdin: stdin}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line := bc.line(b); line != "ready" {
		b.Fatalf("clients: %q", line)
	}
	return bc
}

func (bc *benchClients) line(b *testing.B) string {
	if !bc.out.Scan() {
		b.Fatalf("clients exited: %v", bc.out.Err())
	}
	return bc.out.Text()
}

// done parses "done p50 p99 max" (microseconds).
func (bc *benchClients) done(b *testing.B) (p50, p99, pmax float64) {
	line := bc.line(b)
	if _, err := fmt.Sscanf(line, "done %g %g %g", &p50, &p99, &pmax); err != nil {
		b.Fatalf("clients: %q", line)
	}
	return
}

func BenchmarkFanoutWebSocket(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			bb := setup(b, func(c *Config) { c.SendQueue = 64 << 20; c.MaxConnections = 20_000 })
			bc := startBenchClients(b, bb, n, b.N)
			h := bb.srv.hubs[0]
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.dispatch(inbound{channel: "bench", name: "tick", data: strconv.FormatInt(time.Now().UnixNano(), 10)})
			}
			p50, p99, _ := bc.done(b)
			b.StopTimer()
			// The clients share the 2 cores; deliveries per second of server
			// CPU shows what the server alone sustains.
			b.ReportMetric(float64(n)*float64(b.N)/(cpuTime()-cpu0).Seconds(), "deliveries/server-cpu-s")
			if s := bb.srv.Stats().SlowDisconnects; s > 0 {
				b.Fatalf("%d slow disconnects", s)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
			b.ReportMetric(p50, "p50-µs")
			b.ReportMetric(p99, "p99-µs")
		})
	}
}

// BenchmarkLatencyWebSocket publishes one event every 10 ms to 1,000
// subscribers (100k deliveries/s) and reports publish-to-client latency.
func BenchmarkLatencyWebSocket(b *testing.B) {
	const n = 1000
	bb := setup(b, func(c *Config) { c.MaxConnections = 20_000 })
	bc := startBenchClients(b, bb, n, b.N)
	h := bb.srv.hubs[0]
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-t.C
		h.dispatch(inbound{channel: "bench", name: "tick", data: strconv.FormatInt(time.Now().UnixNano(), 10)})
	}
	p50, p99, pmax := bc.done(b)
	b.ReportMetric(p50, "p50-µs")
	b.ReportMetric(p99, "p99-µs")
	b.ReportMetric(pmax, "max-µs")
}

// BenchmarkIdleConnections measures the server's memory per idle WebSocket
// connection subscribed to one channel, at 10,000 connections (clients in
// a subprocess). Run with -benchtime=1x.
func BenchmarkIdleConnections(b *testing.B) {
	const n = 10_000
	for i := 0; i < b.N; i++ {
		bb := setup(b, func(c *Config) { c.MaxConnections = 20_000 })
		before := memNow()
		g0 := runtime.NumGoroutine()
		bc := startBenchClients(b, bb, n, 0)
		waitFor(b, "all subscribed", func() bool { return bb.srv.hubs[0].channelInfo("bench").subscriptions == n })
		after := memNow()
		g1 := runtime.NumGoroutine()
		b.ReportMetric(float64(after.total-before.total)/n, "bytes/conn")
		b.ReportMetric(float64(after.heap-before.heap)/n, "heap-bytes/conn")
		b.ReportMetric(float64(after.stack-before.stack)/n, "stack-bytes/conn")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/conn")
		_ = bc.stdin.Close()
	}
}

type memSample struct{ heap, stack, total uint64 }

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{heap: m.HeapInuse, stack: m.StackInuse, total: m.HeapInuse + m.StackInuse}
}

// cpuTime is this process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
