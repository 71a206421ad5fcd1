package amqp_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// BenchmarkPublishConsume is the headline workload through real
// clients: one publisher with a confirm window, one consumer with a prefetch
// window acknowledging every multiAck deliveries, one durable queue, 16-byte
// persistent messages. b.N messages go through; msg/s is reported.
func BenchmarkPublishConsume(b *testing.B) {
	for _, c := range []struct {
		name                  string
		confirmWindow, prefet int
		multiAck              int
		noAck                 bool
	}{
		{"confirm192-qos200-multiack50", 192, 200, 50, false},
		{"noconfirm-noack", 0, 0, 0, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchPublishConsume(b, c.confirmWindow, c.prefet, c.multiAck, c.noAck)
		})
	}
}

func benchPublishConsume(b *testing.B, confirmWindow, prefetch, multiAck int, noAck bool) {
	_, env := setup(b)
	pconn, err := amqp091.Dial(env.url)
	require.NoError(b, err)
	defer pconn.Close()
	cconn, err := amqp091.Dial(env.url)
	require.NoError(b, err)
	defer cconn.Close()
	pch, err := pconn.Channel()
	require.NoError(b, err)
	cch, err := cconn.Channel()
	require.NoError(b, err)
	q := fmt.Sprintf("bench-%d", b.N)
	_, err = pch.QueueDeclare(q, true, false, false, false, nil)
	require.NoError(b, err)
	if prefetch > 0 {
		require.NoError(b, cch.Qos(prefetch, 0, false))
	}
	ds, err := cch.Consume(q, "", noAck, false, false, false, nil)
	require.NoError(b, err)

	body := make([]byte, 16)
	b.SetBytes(16)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= b.N; i++ {
			d := <-ds
			if !noAck && (i%multiAck == 0 || i == b.N) {
				_ = d.Ack(true)
			}
		}
	}()

	var confirms chan amqp091.Confirmation
	if confirmWindow > 0 {
		require.NoError(b, pch.Confirm(false))
		confirms = pch.NotifyPublish(make(chan amqp091.Confirmation, confirmWindow))
	}
	outstanding := 0
	for i := 0; i < b.N; i++ {
		if confirmWindow > 0 && outstanding == confirmWindow {
			<-confirms
			outstanding--
		}
		if err := pch.PublishWithContext(bg, "", q, false, false, amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: body}); err != nil {
			b.Fatal(err)
		}
		outstanding++
	}
	for confirmWindow > 0 && outstanding > 0 {
		<-confirms
		outstanding--
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
