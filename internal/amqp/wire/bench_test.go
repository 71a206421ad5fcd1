package wire

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// loopReader serves data over and over.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

var benchSizes = []int{16, 1024, 64 << 10}

// BenchmarkWritePublish encodes basic.publish + content header + body, as a
// client does, into a writer that flushes to io.Discard.
func BenchmarkWritePublish(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			w := NewWriter(io.Discard, 128<<10)
			m := &BasicPublish{Exchange: "amq.direct", RoutingKey: "bench.queue"}
			p := &Properties{DeliveryMode: 2, ContentType: "application/octet-stream"}
			body := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := w.WriteContent(1, m, p, body); err != nil {
					b.Fatal(err)
				}
			}
			_ = w.Flush()
		})
	}
}

// BenchmarkWriteDeliver encodes basic.deliver frames with a headers table,
// as the server does for every delivery.
func BenchmarkWriteDeliver(b *testing.B) {
	w := NewWriter(io.Discard, 128<<10)
	m := &BasicDeliver{ConsumerTag: "amq.ctag-0123456789", Exchange: "amq.topic", RoutingKey: "a.b.c"}
	p := &Properties{DeliveryMode: 2, Headers: Table{"x-first-death-queue": "q", "count": int64(3)}}
	body := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		m.DeliveryTag++
		if err := w.WriteContent(1, m, p, body); err != nil {
			b.Fatal(err)
		}
	}
	_ = w.Flush()
}

// BenchmarkReadPublish reads and decodes basic.publish + header + body, as
// the server does for every published message.
func BenchmarkReadPublish(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var buf bytes.Buffer
			w := NewWriter(&buf, 128<<10)
			p := &Properties{DeliveryMode: 2, ContentType: "application/octet-stream"}
			for range 64 {
				if err := w.WriteContent(1, &BasicPublish{Exchange: "amq.direct", RoutingKey: "bench.queue"}, p, make([]byte, size)); err != nil {
					b.Fatal(err)
				}
			}
			_ = w.Flush()
			r := NewReader(&loopReader{data: buf.Bytes()}, 128<<10)
			var h ContentHeader
			var pub BasicPublish
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				f, err := r.ReadFrame()
				if err != nil {
					b.Fatal(err)
				}
				if err := pub.ReadArgs(f.Payload[4:]); err != nil {
					b.Fatal(err)
				}
				if f, err = r.ReadFrame(); err != nil {
					b.Fatal(err)
				}
				if err := h.Read(f.Payload); err != nil {
					b.Fatal(err)
				}
				for got := uint64(0); got < h.BodySize; {
					f, err = r.ReadFrame()
					if err != nil {
						b.Fatal(err)
					}
					got += uint64(len(f.Payload))
				}
			}
		})
	}
}

// BenchmarkReadMethod is ReadMethod on basic.publish (allocating the method).
func BenchmarkReadMethod(b *testing.B) {
	payload, _ := AppendMethod(nil, &BasicPublish{Exchange: "amq.direct", RoutingKey: "bench.queue"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadMethod(payload); err != nil {
			b.Fatal(err)
		}
	}
}
