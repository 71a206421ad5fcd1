package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestAMQPConfirmedMessagesSurviveKill9 publishes persistent messages with
// publisher confirms to a durable queue, kills the server with SIGKILL in
// the middle of the stream, restarts it on the same data directory and
// checks that every confirmed message is there, in publish order, with no
// duplicates (unconfirmed ones may or may not be). With --fsync=interval the
// data is in the OS page cache when the confirm is sent, which a process
// crash does not lose; --fsync=always also survives an OS crash.
func TestAMQPConfirmedMessagesSurviveKill9(t *testing.T) {
	t.Parallel()
	bin := buildHerald(t)
	for _, fsync := range []string{"interval", "always"} {
		t.Run("fsync="+fsync, func(t *testing.T) {
			t.Parallel()
			const total, killAfter = 5000, 2000
			dir := t.TempDir()
			httpAddr, amqpAddr := freePort(t), freePort(t)
			url := "amqp://guest:guest@" + amqpAddr + "/"
			n := startNode(t, bin, dir, httpAddr, amqpAddr, "--fsync", fsync)

			conn, err := amqp091.Dial(url)
			require.NoError(t, err)
			defer conn.Close()
			ch, err := conn.Channel()
			require.NoError(t, err)
			_, err = ch.QueueDeclare("crash", true, false, false, false, nil)
			require.NoError(t, err)
			require.NoError(t, ch.Confirm(false))
			confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, total))

			// Publish until the connection dies; the main goroutine counts
			// confirms and kills the server after killAfter of them.
			var wg sync.WaitGroup
			var published int
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range total {
					err := ch.PublishWithContext(context.Background(), "", "crash", false, false, amqp091.Publishing{
						DeliveryMode: amqp091.Persistent, Body: []byte(strconv.Itoa(i)),
					})
					if err != nil {
						return
					}
					published = i + 1
				}
			}()
			confirmed := 0 // messages 0..confirmed-1 are confirmed: confirms come in tag order
			killed := false
			for c := range confirms {
				require.True(t, c.Ack, "message %d nacked", c.DeliveryTag-1)
				require.Equal(t, uint64(confirmed+1), c.DeliveryTag, "confirms in order")
				confirmed++
				if confirmed == killAfter && !killed {
					n.kill9()
					killed = true
				}
			}
			wg.Wait()
			require.True(t, killed, "killed mid-stream")
			t.Logf("fsync=%s: %d published before the connection died, %d confirmed", fsync, published, confirmed)

			n = startNode(t, bin, dir, httpAddr, amqpAddr, "--fsync", fsync)
			conn2, err := amqp091.Dial(url)
			require.NoError(t, err)
			defer conn2.Close()
			ch2, err := conn2.Channel()
			require.NoError(t, err)
			q, err := ch2.QueueDeclarePassive("crash", true, false, false, false, nil)
			require.NoError(t, err)
			require.GreaterOrEqual(t, q.Messages, confirmed, "every confirmed message is stored")
			require.LessOrEqual(t, q.Messages, published)
			t.Logf("fsync=%s: %d messages in the queue after restart", fsync, q.Messages)
			ds, err := ch2.Consume("crash", "", true, false, false, false, nil)
			require.NoError(t, err)
			next := 0 // the body each delivery must have at least: order kept, no duplicates
			for range q.Messages {
				select {
				case d := <-ds:
					got, err := strconv.Atoi(string(d.Body))
					require.NoError(t, err)
					require.GreaterOrEqual(t, got, next, "in order, no duplicates")
					if next < confirmed {
						require.Equal(t, next, got, "confirmed message %d present", next)
					}
					next = got + 1
				case <-time.After(10 * time.Second):
					require.FailNow(t, fmt.Sprintf("only %d of %d messages delivered after restart", next, q.Messages))
				}
			}
			require.GreaterOrEqual(t, next, confirmed)
			select {
			case d := <-ds:
				require.FailNow(t, "more messages than the queue reported", "body %q", d.Body)
			case <-time.After(100 * time.Millisecond):
			}
			n.sigterm()
		})
	}
}
