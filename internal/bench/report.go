package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Result is the outcome of one run, as printed by RunAMQP.
type Result struct {
	Broker        string  `json:"broker"` // server product and version
	URI           string  `json:"uri"`    // password redacted
	Publishers    int     `json:"publishers"`
	Consumers     int     `json:"consumers"`
	Queues        int     `json:"queues"`
	Exchange      string  `json:"exchange"`
	ExchangeType  string  `json:"exchange_type"`
	Size          int     `json:"size_bytes"`
	Persistent    bool    `json:"persistent"`
	Confirm       int     `json:"confirm_window"`
	Qos           int     `json:"qos"`
	MultiAckEvery int     `json:"multi_ack_every"`
	AutoAck       bool    `json:"auto_ack"`
	Rate          float64 `json:"rate_per_publisher"` // 0 = unlimited

	Seconds   float64 `json:"seconds"`
	Sent      int64   `json:"sent"`
	Confirmed int64   `json:"confirmed"`
	Nacked    int64   `json:"nacked"`
	Returned  int64   `json:"returned"`
	Received  int64   `json:"received"`
	// Rates are messages per second over Seconds, all publishers or
	// consumers together.
	SentRate      float64 `json:"sent_rate"`
	ConfirmedRate float64 `json:"confirmed_rate"`
	ReceivedRate  float64 `json:"received_rate"`
	// Latency is from the publisher's send to the consumer's receipt;
	// ConfirmLatency from the send to the publisher confirm. Nil when not
	// measured.
	Latency        *Latency `json:"latency_ms,omitempty"`
	ConfirmLatency *Latency `json:"confirm_latency_ms,omitempty"`
	Notes          []string `json:"notes,omitempty"`
}

// Latency summarises a latency histogram in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P75   float64 `json:"p75"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

func latencyOf(h *Histogram) *Latency {
	if h.Count() == 0 {
		return nil
	}
	return &Latency{
		Count: h.Count(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1e6,
		P50:   ms(h.Quantile(0.50)),
		P75:   ms(h.Quantile(0.75)),
		P95:   ms(h.Quantile(0.95)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

// merged returns the union of recorders' histograms, whole-run or (resetting
// it) the current interval.
func (r *run) merged(list *[]*recorder, interval bool) *Histogram {
	r.mu.Lock()
	recs := append([]*recorder(nil), *list...)
	r.mu.Unlock()
	h := &Histogram{}
	for _, rec := range recs {
		rec.mu.Lock()
		if interval {
			h.Merge(&rec.interval)
			rec.interval.Reset()
		} else {
			h.Merge(&rec.total)
		}
		rec.mu.Unlock()
	}
	return h
}

// progress prints a line every cfg.Progress until ctx is done.
func (r *run) progress(ctx context.Context, w io.Writer) {
	t := time.NewTicker(r.cfg.Progress)
	defer t.Stop()
	last := time.Now()
	var sent, confirmed, received int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			dt := now.Sub(last).Seconds()
			last = now
			s, c, rc := r.sent.Load(), r.confirmed.Load(), r.received.Load()
			var b strings.Builder
			fmt.Fprintf(&b, "time %.1fs, sent %.0f msg/s", now.Sub(r.start).Seconds(), float64(s-sent)/dt)
			if r.cfg.Confirm > 0 {
				fmt.Fprintf(&b, ", confirmed %.0f msg/s", float64(c-confirmed)/dt)
				if n := r.nacked.Load(); n > 0 {
					fmt.Fprintf(&b, ", nacked %d", n)
				}
			}
			if n := r.returned.Load(); n > 0 {
				fmt.Fprintf(&b, ", returned %d", n)
			}
			fmt.Fprintf(&b, ", received %.0f msg/s", float64(rc-received)/dt)
			if h := r.merged(&r.latency, true); h.Count() > 0 {
				fmt.Fprintf(&b, ", latency p50/p99/max %.2f/%.2f/%.2f ms", ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Max()))
			}
			if h := r.merged(&r.confirms, true); h.Count() > 0 {
				fmt.Fprintf(&b, ", confirm p99 %.2f ms", ms(h.Quantile(0.99)))
			}
			if n := r.blocked.Load(); n > 0 {
				fmt.Fprintf(&b, ", %d connection(s) BLOCKED by the broker", n)
			}
			sent, confirmed, received = s, c, rc
			fmt.Fprintln(w, b.String())
		}
	}
}

func (r *run) result(server string, elapsed time.Duration) *Result {
	c := r.cfg
	secs := elapsed.Seconds()
	res := &Result{
		Broker: server, URI: redact(c.URI),
		Publishers: c.Publishers, Consumers: c.Consumers, Queues: c.Queues,
		Exchange: c.Exchange, ExchangeType: c.ExchangeType,
		Size: c.Size, Persistent: c.Persistent, Confirm: c.Confirm, Qos: c.Qos,
		MultiAckEvery: c.MultiAckEvery, AutoAck: c.AutoAck, Rate: c.Rate,
		Seconds:   secs,
		Sent:      r.sent.Load(),
		Confirmed: r.confirmed.Load(),
		Nacked:    r.nacked.Load(),
		Returned:  r.returned.Load(),
		Received:  r.received.Load(),
	}
	if secs > 0 {
		res.SentRate = float64(res.Sent) / secs
		res.ConfirmedRate = float64(res.Confirmed) / secs
		res.ReceivedRate = float64(res.Received) / secs
	}
	res.Latency = latencyOf(r.merged(&r.latency, false))
	res.ConfirmLatency = latencyOf(r.merged(&r.confirms, false))
	if c.Size < 8 && c.Consumers > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("message size %d < 8 bytes: no room for the send timestamp, latency not measured", c.Size))
	}
	if c.ExchangeType == "fanout" && c.Queues > 1 {
		res.Notes = append(res.Notes, fmt.Sprintf("fanout to %d queues: each message is received %d times", c.Queues, c.Queues))
	}
	return res
}

// Write prints the result as text or JSON.
func (res *Result) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	var b strings.Builder
	broker := res.Broker
	if broker == "" {
		broker = "unknown broker"
	}
	fmt.Fprintf(&b, "herald bench amqp: %s at %s\n", broker, res.URI)
	mode := "transient"
	if res.Persistent {
		mode = "persistent"
	}
	rate := "unlimited"
	if res.Rate > 0 {
		rate = fmt.Sprintf("%g msg/s per publisher", res.Rate)
	}
	confirm := "off"
	if res.Confirm > 0 {
		confirm = fmt.Sprint(res.Confirm)
	}
	ack := fmt.Sprintf("qos %d, multi-ack every %d", res.Qos, res.MultiAckEvery)
	if res.AutoAck {
		ack = "auto-ack"
	}
	fmt.Fprintf(&b, "  %d publisher(s), %d consumer(s), %d queue(s) on %q (%s), %d-byte %s messages\n",
		res.Publishers, res.Consumers, res.Queues, res.Exchange, res.ExchangeType, res.Size, mode)
	fmt.Fprintf(&b, "  confirm window %s, %s, rate %s\n", confirm, ack, rate)
	fmt.Fprintf(&b, "  duration %.2fs\n", res.Seconds)
	fmt.Fprintf(&b, "sent       %10d msg  %10.0f msg/s\n", res.Sent, res.SentRate)
	if res.Confirm > 0 {
		fmt.Fprintf(&b, "confirmed  %10d msg  %10.0f msg/s\n", res.Confirmed, res.ConfirmedRate)
		fmt.Fprintf(&b, "nacked     %10d msg\n", res.Nacked)
	}
	if res.Returned > 0 {
		fmt.Fprintf(&b, "returned   %10d msg\n", res.Returned)
	}
	fmt.Fprintf(&b, "received   %10d msg  %10.0f msg/s\n", res.Received, res.ReceivedRate)
	writeLatency(&b, "latency (ms)", res.Latency)
	writeLatency(&b, "confirm latency (ms)", res.ConfirmLatency)
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLatency(b *strings.Builder, name string, l *Latency) {
	if l == nil {
		return
	}
	fmt.Fprintf(b, "%s: min %.3f  p50 %.3f  p75 %.3f  p95 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%d)\n",
		name, l.Min, l.P50, l.P75, l.P95, l.P99, l.P999, l.Max, l.Count)
}
