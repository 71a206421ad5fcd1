package amqp_test

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

func TestPublishConsumeRoundTrip(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.Contains(t, q.Name, "amq.gen-")
	ds, err := ch.Consume(q.Name, "", false, false, false, false, nil)
	require.NoError(t, err)
	ts := time.Unix(1_700_000_000, 0)
	headers := amqp091.Table{
		"string": "s", "int32": int32(-7), "int64": int64(1) << 40, "bool": true, "float": 1.5,
		"decimal": amqp091.Decimal{Scale: 2, Value: 12345}, "time": ts, "bytes": []byte{1, 2},
		"nested": amqp091.Table{"k": "v"}, "array": []any{int32(1), "two"}, "void": nil,
	}
	require.NoError(t, ch.PublishWithContext(bg, "", q.Name, false, false, amqp091.Publishing{
		ContentType: "text/plain", ContentEncoding: "utf-8", Headers: headers, DeliveryMode: 2, Priority: 3,
		CorrelationId: "corr", ReplyTo: "rt", Expiration: "60000", MessageId: "mid", Timestamp: ts,
		Type: "type", UserId: "guest", AppId: "app", Body: []byte("hello"),
	}))
	d := recv(t, ds)
	require.Equal(t, "hello", string(d.Body))
	require.Equal(t, "text/plain", d.ContentType)
	require.Equal(t, "utf-8", d.ContentEncoding)
	require.Equal(t, uint8(2), d.DeliveryMode)
	require.Equal(t, uint8(3), d.Priority)
	require.Equal(t, "corr", d.CorrelationId)
	require.Equal(t, "rt", d.ReplyTo)
	require.Equal(t, "60000", d.Expiration)
	require.Equal(t, "mid", d.MessageId)
	require.True(t, ts.Equal(d.Timestamp))
	require.Equal(t, "type", d.Type)
	require.Equal(t, "guest", d.UserId)
	require.Equal(t, "app", d.AppId)
	require.Equal(t, "", d.Exchange)
	require.Equal(t, q.Name, d.RoutingKey)
	require.False(t, d.Redelivered)
	require.Equal(t, uint64(1), d.DeliveryTag)
	require.Equal(t, headers["decimal"], d.Headers["decimal"])
	require.True(t, ts.Equal(d.Headers["time"].(time.Time)))
	delete(headers, "time")
	delete(d.Headers, "time")
	require.Equal(t, headers, d.Headers)
	require.NoError(t, d.Ack(false))
}

func TestTopicRouting(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	require.NoError(t, ch.ExchangeDeclare("events", "topic", true, false, false, false, nil))
	patterns := map[string]string{"errors": "*.error", "app": "app.#", "all": "#", "mid": "a.*.c", "deep": "#.audit.#"}
	consumers := map[string]<-chan amqp091.Delivery{}
	for q, pattern := range patterns {
		_, err := ch.QueueDeclare(t.Name()+q, false, true, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(t.Name()+q, pattern, "events", false, nil))
		ds, err := ch.Consume(t.Name()+q, "", true, false, false, false, nil)
		require.NoError(t, err)
		consumers[q] = ds
	}
	keys := []string{"db.error", "app.start", "app.db.error", "a.b.c", "a.b.b.c", "x.audit.y", "audit", ""}
	for _, k := range keys {
		publish(t, ch, "events", k, k)
	}
	want := map[string][]string{
		"errors": {"db.error"},
		"app":    {"app.db.error", "app.start"},
		"all":    {"", "a.b.b.c", "a.b.c", "app.db.error", "app.start", "audit", "db.error", "x.audit.y"},
		"mid":    {"a.b.c"},
		"deep":   {"audit", "x.audit.y"},
	}
	for q, keys := range want {
		var got []string
		for range keys {
			got = append(got, string(recv(t, consumers[q]).Body))
		}
		sort.Strings(got)
		require.Equal(t, keys, got, q)
	}
	for q := range want {
		noDelivery(t, consumers[q], 50*time.Millisecond)
	}
}

func TestCompetingConsumersPrefetchOne(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, pubCh := channel(t, env.url)
	q, err := pubCh.QueueDeclare("work", true, false, false, false, nil)
	require.NoError(t, err)

	var fast, slow atomic.Int64
	var wg sync.WaitGroup
	const total = 60
	var done atomic.Int64
	var conns []*amqp091.Connection
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
		wg.Wait()
	})
	start := func(counter *atomic.Int64, work time.Duration) {
		conn, ch := channel(t, env.url)
		conns = append(conns, conn)
		require.NoError(t, ch.Qos(1, 0, false))
		ds, err := ch.Consume(q.Name, "", false, false, false, false, nil)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range ds {
				time.Sleep(work) // the consumer's own processing time
				counter.Add(1)
				_ = d.Ack(false)
				if done.Add(1) == total {
					return
				}
			}
		}()
	}
	start(&fast, time.Millisecond)
	start(&slow, 40*time.Millisecond)
	for i := range total {
		publish(t, pubCh, "", q.Name, strconv.Itoa(i))
	}
	eventually(t, func() bool { return done.Load() >= total }, "all work done")
	t.Logf("fast consumer %d, slow consumer %d", fast.Load(), slow.Load())
	require.Greater(t, fast.Load(), 3*slow.Load(), "prefetch 1 favours the fast consumer")
}

func TestDeadLetterWithXDeath(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	require.NoError(t, ch.ExchangeDeclare("dlx", "fanout", true, false, false, false, nil))
	_, err := ch.QueueDeclare("dead", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("dead", "", "dlx", false, nil))
	_, err = ch.QueueDeclare("orders", true, false, false, false, amqp091.Table{"x-dead-letter-exchange": "dlx"})
	require.NoError(t, err)

	publish(t, ch, "", "orders", "bad order")
	ds, err := ch.Consume("orders", "", false, false, false, false, nil)
	require.NoError(t, err)
	d := recv(t, ds)
	require.NoError(t, d.Reject(false))

	dead, err := ch.Consume("dead", "", true, false, false, false, nil)
	require.NoError(t, err)
	dd := recv(t, dead)
	require.Equal(t, "bad order", string(dd.Body))
	deaths, ok := dd.Headers["x-death"].([]any)
	require.True(t, ok, "x-death header: %#v", dd.Headers)
	require.Len(t, deaths, 1)
	death := deaths[0].(amqp091.Table)
	require.Equal(t, "orders", death["queue"])
	require.Equal(t, "rejected", death["reason"])
	require.EqualValues(t, 1, death["count"])
	require.Equal(t, "orders", dd.Headers["x-first-death-queue"])
}

func TestMessageTTL(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("expired", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("short", true, false, false, false, amqp091.Table{
		"x-message-ttl": int32(100), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "expired",
	})
	require.NoError(t, err)
	publish(t, ch, "", "short", "queue ttl")
	publish(t, ch, "", "expired", "control")
	_, err = ch.QueueDeclare("permsg", true, false, false, false, amqp091.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "expired"})
	require.NoError(t, err)
	publish(t, ch, "", "permsg", "message ttl", func(p *amqp091.Publishing) { p.Expiration = "50" })

	ds, err := ch.Consume("expired", "", true, false, false, false, nil)
	require.NoError(t, err)
	got := map[string]string{}
	for range 3 {
		d := recv(t, ds)
		reason := ""
		if deaths, ok := d.Headers["x-death"].([]any); ok {
			reason, _ = deaths[0].(amqp091.Table)["reason"].(string)
		}
		got[string(d.Body)] = reason
	}
	require.Equal(t, map[string]string{"control": "", "queue ttl": "expired", "message ttl": "expired"}, got)
	q, err := ch.QueueDeclarePassive("short", true, false, false, false, nil)
	require.NoError(t, err)
	require.Zero(t, q.Messages)
}

func TestOverflowRejectPublishNacksConfirm(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("bounded", true, false, false, false, amqp091.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	var acks []bool
	for i := range 4 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(bg, "", "bounded", false, false, amqp091.Publishing{Body: []byte(strconv.Itoa(i))})
		require.NoError(t, err)
		ok, err := dc.WaitContext(bg)
		require.NoError(t, err)
		acks = append(acks, ok)
	}
	require.Equal(t, []bool{true, true, false, false}, acks)
	q, err := ch.QueueDeclarePassive("bounded", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 2, q.Messages)
}

func TestOverflowDropHead(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("latest", true, false, false, false, amqp091.Table{"x-max-length": int32(2)})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 10))
	for i := range 5 {
		publish(t, ch, "", "latest", strconv.Itoa(i))
	}
	for range 5 {
		c := <-confirms
		require.True(t, c.Ack)
	}
	ds, err := ch.Consume("latest", "", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, "3", string(recv(t, ds).Body))
	require.Equal(t, "4", string(recv(t, ds).Body))
}

func TestMandatoryReturn(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	returns := ch.NotifyReturn(make(chan amqp091.Return, 1))
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 1))
	require.NoError(t, ch.PublishWithContext(bg, "amq.direct", "nowhere", true, false, amqp091.Publishing{Body: []byte("lost"), MessageId: "m1"}))
	select {
	case r := <-returns:
		require.Equal(t, uint16(312), r.ReplyCode)
		require.Equal(t, "NO_ROUTE", r.ReplyText)
		require.Equal(t, "amq.direct", r.Exchange)
		require.Equal(t, "nowhere", r.RoutingKey)
		require.Equal(t, "lost", string(r.Body))
		require.Equal(t, "m1", r.MessageId)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no basic.return")
	}
	c := <-confirms
	require.True(t, c.Ack, "an unroutable message is confirmed after its return")
	// Not mandatory: dropped silently, still confirmed.
	publish(t, ch, "amq.direct", "nowhere", "dropped")
	require.True(t, (<-confirms).Ack)
	select {
	case r := <-returns:
		require.FailNow(t, "unexpected return", "%v", r)
	default:
	}
}

func TestDelayedMessages(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	require.NoError(t, ch.ExchangeDeclare("later", "x-delayed-message", true, false, false, false, amqp091.Table{"x-delayed-type": "direct"}))
	_, err := ch.QueueDeclare("reminders", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("reminders", "r", "later", false, nil))
	ds, err := ch.Consume("reminders", "", true, false, false, false, nil)
	require.NoError(t, err)
	start := time.Now()
	publish(t, ch, "later", "r", "in 300ms", func(p *amqp091.Publishing) { p.Headers = amqp091.Table{"x-delay": int32(300)} })
	publish(t, ch, "later", "r", "now")
	require.Equal(t, "now", string(recv(t, ds).Body))
	d := recv(t, ds)
	require.Equal(t, "in 300ms", string(d.Body))
	require.GreaterOrEqual(t, time.Since(start), 280*time.Millisecond)
}

func TestDeduplication(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("once", true, false, false, false, amqp091.Table{"x-message-deduplication": true})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	for _, id := range []string{"a", "b", "a", "a", "c", "b"} {
		dc, err := ch.PublishWithDeferredConfirmWithContext(bg, "", "once", false, false, amqp091.Publishing{
			Body: []byte(id), Headers: amqp091.Table{"x-deduplication-header": id},
		})
		require.NoError(t, err)
		_, err = dc.WaitContext(bg)
		require.NoError(t, err)
	}
	q, err := ch.QueueDeclarePassive("once", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 3, q.Messages)
}

func TestRequestReplyDirectReplyTo(t *testing.T) {
	t.Parallel()
	_, env := setup(t)

	// The server side: answers requests on "rpc" to their reply_to.
	srvConn, srvCh := channel(t, env.url)
	_, err := srvCh.QueueDeclare("rpc", false, false, false, false, nil)
	require.NoError(t, err)
	reqs, err := srvCh.Consume("rpc", "", false, false, false, false, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for d := range reqs {
			_ = srvCh.PublishWithContext(bg, "", d.ReplyTo, false, false, amqp091.Publishing{CorrelationId: d.CorrelationId, Body: append([]byte("re: "), d.Body...)})
			_ = d.Ack(false)
		}
	}()
	t.Cleanup(func() {
		_ = srvConn.Close()
		wg.Wait()
	})

	_, cli := channel(t, env.url)
	// Publishing with reply_to amq.rabbitmq.reply-to needs the consumer first.
	replies, err := cli.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	require.NoError(t, err)
	for i := range 3 {
		publish(t, cli, "", "rpc", fmt.Sprint("q", i), func(p *amqp091.Publishing) {
			p.ReplyTo = "amq.rabbitmq.reply-to"
			p.CorrelationId = strconv.Itoa(i)
		})
		r := recv(t, replies)
		require.Equal(t, fmt.Sprint("re: q", i), string(r.Body))
		require.Equal(t, strconv.Itoa(i), r.CorrelationId)
		require.Contains(t, r.RoutingKey, "amq.rabbitmq.reply-to.")
	}

	// Without the reply consumer the publish fails the channel.
	_, other := channel(t, env.url)
	closed := other.NotifyClose(make(chan *amqp091.Error, 1))
	require.NoError(t, other.PublishWithContext(bg, "", "rpc", false, false, amqp091.Publishing{ReplyTo: "amq.rabbitmq.reply-to"}))
	e := <-closed
	require.Equal(t, 406, e.Code)
	require.Contains(t, e.Reason, "fast reply consumer does not exist")
}

func TestTransactions(t *testing.T) {
	t.Parallel()
	_, env := setup(t)
	_, ch := channel(t, env.url)
	_, err := ch.QueueDeclare("txq", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Tx())
	publish(t, ch, "", "txq", "rolled back")
	require.NoError(t, ch.TxRollback())
	publish(t, ch, "", "txq", "one")
	publish(t, ch, "", "txq", "two")
	q, err := ch.QueueDeclarePassive("txq", true, false, false, false, nil)
	require.NoError(t, err)
	require.Zero(t, q.Messages, "nothing before commit")
	require.NoError(t, ch.TxCommit())
	q, err = ch.QueueDeclarePassive("txq", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 2, q.Messages)

	// Acks inside a transaction take effect on commit only.
	ds, err := ch.Consume("txq", "", false, false, false, false, nil)
	require.NoError(t, err)
	d1, d2 := recv(t, ds), recv(t, ds)
	require.Equal(t, "one", string(d1.Body))
	require.NoError(t, d2.Ack(true))
	require.NoError(t, ch.TxRollback())
	info, err := env.b.Queue("/", "txq")
	require.NoError(t, err)
	require.Equal(t, 2, info.MessagesUnacked, "rolled-back acks leave messages unacknowledged")
	require.NoError(t, d2.Ack(true))
	require.NoError(t, ch.TxCommit())
	eventually(t, func() bool { q, _ := env.b.Queue("/", "txq"); return q.Messages == 0 }, "acks committed")

	// A confirm channel cannot become transactional.
	_, ch2 := channel(t, env.url)
	require.NoError(t, ch2.Confirm(false))
	require.Equal(t, 406, amqpErr(t, ch2.Tx()).Code)
}

// TestDurableSubscriberAcrossRestart: a durable queue bound to a topic
// exchange keeps collecting while its subscriber is away and across a
// restart of the server; a delivery left unacknowledged at the restart comes
// back redelivered, and the exchange and binding still route afterwards.
func TestDurableSubscriberAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, env := setupAt(t, dir)
	subConn, sub := channel(t, env.url)
	require.NoError(t, sub.ExchangeDeclare("news", "topic", true, false, false, false, nil))
	_, err := sub.QueueDeclare("subscriber-1", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, sub.QueueBind("subscriber-1", "sports.#", "news", false, nil))
	ds, err := sub.Consume("subscriber-1", "", false, false, false, false, nil)
	require.NoError(t, err)

	_, pub := channel(t, env.url)
	require.NoError(t, pub.Confirm(false))
	confirmed := func(key, body string) {
		t.Helper()
		dc, err := pub.PublishWithDeferredConfirmWithContext(bg, "news", key, false, false, amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: []byte(body)})
		require.NoError(t, err)
		ok, err := dc.WaitContext(bg)
		require.NoError(t, err)
		require.True(t, ok)
	}
	confirmed("sports.live", "live")
	require.NoError(t, recv(t, ds).Ack(false))
	confirmed("sports.live", "unacked at restart")
	require.Equal(t, "unacked at restart", string(recv(t, ds).Body))

	// The subscriber's connection stays open (its delivery unacknowledged)
	// while the server goes down; messages published before that wait.
	require.NoError(t, sub.Cancel("", false))
	confirmed("sports.football", "while away 1")
	confirmed("weather.rain", "not for this subscriber")
	confirmed("sports.tennis.final", "while away 2")
	env.stop()
	_ = subConn.Close()

	_, env = setupAt(t, dir)
	_, sub = channel(t, env.url)
	ds, err = sub.Consume("subscriber-1", "", false, false, false, false, nil)
	require.NoError(t, err)
	// Delivery counts are not stored, so every message recovered at start
	// is flagged redelivered: it may have been delivered before.
	var got []string
	for range 3 {
		d := recv(t, ds)
		got = append(got, fmt.Sprintf("%s redelivered=%v", d.Body, d.Redelivered))
		require.NoError(t, d.Ack(false))
	}
	require.Equal(t, []string{"unacked at restart redelivered=true", "while away 1 redelivered=true", "while away 2 redelivered=true"}, got)

	_, pub = channel(t, env.url)
	publish(t, pub, "news", "sports.chess", "after restart")
	publish(t, pub, "news", "weather.sun", "still not for this subscriber")
	d := recv(t, ds)
	require.Equal(t, "after restart", string(d.Body))
	require.False(t, d.Redelivered)
	noDelivery(t, ds, 50*time.Millisecond)
}
