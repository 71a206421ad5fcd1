package amqp_test

import (
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// What the three tests of amqp091-go's integration suite that run only
// against a server whose product is "RabbitMQ" check (scripts/
// amqp091-integration.sh skips them by name), checked against Herald:
// TestRabbitMQQueueTTLGet, TestRabbitMQQueueNackMultipleRequeue and
// TestIntegrationRecoverNotImplemented.
func TestRabbitMQOnlySuiteChecks(t *testing.T) {
	t.Parallel()
	_, env := setup(t)

	t.Run("x-message-ttl expires before basic.get", func(t *testing.T) {
		_, ch := channel(t, env.url)
		_, err := ch.QueueDeclare("ttl-get", true, true, false, false, amqp091.Table{"x-message-ttl": int32(1000)})
		require.NoError(t, err)
		publish(t, ch, "", "ttl-get", "ttl")
		q, err := ch.QueueDeclarePassive("ttl-get", true, true, false, false, nil)
		require.NoError(t, err)
		require.Equal(t, 1, q.Messages, "stored")
		eventually(t, func() bool {
			q, err := ch.QueueDeclarePassive("ttl-get", true, true, false, false, nil)
			require.NoError(t, err)
			return q.Messages == 0
		}, "the message expires")
		_, ok, err := ch.Get("ttl-get", false)
		require.NoError(t, err)
		require.False(t, ok, "basic.get finds nothing once it expired")
	})

	t.Run("nack multiple with requeue keeps the order", func(t *testing.T) {
		_, ch := channel(t, env.url)
		_, err := ch.QueueDeclare("nack-multiple", false, false, true, false, nil)
		require.NoError(t, err)
		publish(t, ch, "", "nack-multiple", "1")
		publish(t, ch, "", "nack-multiple", "2")
		get := func(want string) amqp091.Delivery {
			d, ok, err := ch.Get("nack-multiple", false)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, want, string(d.Body))
			return d
		}
		get("1")
		require.NoError(t, get("2").Nack(true, true))
		get("1")
		get("2")
	})

	t.Run("basic.recover requeue=false is not implemented", func(t *testing.T) {
		_, ch := channel(t, env.url)
		//lint:ignore SA1019 basic.recover is what is under test
		e := amqpErr(t, ch.Recover(false))
		require.Equal(t, amqp091.NotImplemented, e.Code)
	})
}
