package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func parse(t *testing.T, args ...string) (AMQPConfig, error) {
	t.Helper()
	var stderr bytes.Buffer
	return ParseAMQPFlags(args, &stderr)
}

func TestParseAMQPFlagsDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse(t)
	require.NoError(t, err)
	require.Equal(t, "amqp://guest:guest@localhost:5672/", c.URI)
	require.Equal(t, 1, c.Publishers)
	require.Equal(t, 1, c.Consumers)
	require.Equal(t, 12, c.Size)
	require.Equal(t, "herald-bench", c.Exchange)
	require.Equal(t, "direct", c.ExchangeType)
	require.Equal(t, "herald-bench", c.Queue)
	require.Equal(t, []string{"herald-bench"}, c.queueNames())
	require.Equal(t, []string{"herald-bench"}, c.bindingKeys())
	require.True(t, c.Durable)
	require.True(t, c.Purge)
	require.Equal(t, time.Second, c.Progress)
	require.Zero(t, c.Confirm)
	require.Zero(t, c.Duration)
}

func TestParseAMQPFlagsPerfTestStyle(t *testing.T) {
	t.Parallel()
	c, err := parse(t, "-x", "2", "-y", "3", "-s", "16", "-f", "persistent", "--flag", "mandatory",
		"-c", "192", "-q", "200", "--multi-ack-every", "50", "-r", "5000", "-z", "15s",
		"-u", "q", "-k", "key", "--queue-args", "x-queue-type=quorum,x-max-length=100,x-single-active-consumer=true", "-json")
	require.NoError(t, err)
	require.Equal(t, 2, c.Publishers)
	require.Equal(t, 3, c.Consumers)
	require.Equal(t, 16, c.Size)
	require.True(t, c.Persistent)
	require.True(t, c.Mandatory)
	require.Equal(t, 192, c.Confirm)
	require.Equal(t, 200, c.Qos)
	require.Equal(t, 50, c.MultiAckEvery)
	require.Equal(t, 5000.0, c.Rate)
	require.Equal(t, 15*time.Second, c.Duration)
	require.True(t, c.JSON)
	require.Equal(t, []string{"key"}, c.bindingKeys())
	require.Equal(t, amqp.Table{"x-queue-type": "quorum", "x-max-length": int64(100), "x-single-active-consumer": true}, c.QueueArgs)

	c, err = parse(t, "--producers", "4", "--consumers", "0", "--rate", "10", "--duration", "1m", "--persistent", "--confirm", "10")
	require.NoError(t, err)
	require.Equal(t, 4, c.Publishers)
	require.Zero(t, c.Consumers)
	require.Equal(t, 10.0, c.Rate)
	require.Equal(t, time.Minute, c.Duration)
	require.True(t, c.Persistent)
	require.Equal(t, 10, c.Confirm)
}

func TestParseAMQPFlagsQueues(t *testing.T) {
	t.Parallel()
	c, err := parse(t, "--queues", "3", "--fanout")
	require.NoError(t, err)
	require.Equal(t, "fanout", c.ExchangeType)
	require.Equal(t, "herald-bench-fanout", c.Exchange, "a fanout exchange does not reuse the direct one's name")
	require.Equal(t, 3, c.Consumers, "one consumer per queue unless -y is given")
	require.Equal(t, []string{"herald-bench-1", "herald-bench-2", "herald-bench-3"}, c.queueNames())
	require.Equal(t, c.queueNames(), c.bindingKeys())

	c, err = parse(t, "--queues", "3", "-y", "1", "-k", "ignored", "-e", "mine", "-t", "topic")
	require.NoError(t, err)
	require.Equal(t, 1, c.Consumers)
	require.Equal(t, "mine", c.Exchange)
	require.Equal(t, c.queueNames(), c.bindingKeys(), "with several queues each is bound with its name")
}

func TestParseAMQPFlagsErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-x", "-1"}, "-x"},
		{[]string{"-x", "0", "-y", "0"}, "nothing to run"},
		{[]string{"-s", "-1"}, "-s"},
		{[]string{"-c", "-1"}, "-c"},
		{[]string{"-q", "70000"}, "-q"},
		{[]string{"-q", "10", "--multi-ack-every", "50"}, "--multi-ack-every 50 > -q 10"},
		{[]string{"-r", "-5"}, "-r"},
		{[]string{"--queues", "0"}, "--queues"},
		{[]string{"-t", "headers"}, "-t"},
		{[]string{"-e", "", "--fanout"}, "--fanout"},
		{[]string{"-f", "fast"}, "unknown flag"},
		{[]string{"--queue-args", "novalue"}, "--queue-args"},
		{[]string{"-u", ""}, "-u"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--nope"}, "not defined"},
	} {
		_, err := parse(t, c.args...)
		require.ErrorContains(t, err, c.want, "args %q", c.args)
	}
	// Auto-ack makes the multi-ack/qos combination harmless.
	_, err := parse(t, "-q", "10", "--multi-ack-every", "50", "-a")
	require.NoError(t, err)
}

func TestRunAMQPConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now

	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = RunAMQP(ctx, []string{"-uri", "amqp://guest:secret@" + addr + "/", "-z", "1s"}, &stdout, &stderr)
	require.ErrorContains(t, err, "connecting to amqp://guest:xxx@"+addr)
	require.NotContains(t, err.Error(), "secret")
	require.Empty(t, stdout.String())
}

func TestPacer(t *testing.T) {
	t.Parallel()
	p := pacer{rate: 1000, start: time.Now()}
	defer p.stop()
	for range 100 {
		require.NoError(t, p.wait(context.Background()))
	}
	el := time.Since(p.start)
	require.GreaterOrEqual(t, el, 99*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := pacer{rate: 0.001, start: time.Now(), n: 1}
	require.ErrorIs(t, slow.wait(ctx), context.Canceled)
	slow.stop()
	unlimited := pacer{}
	require.ErrorIs(t, unlimited.wait(ctx), context.Canceled)
}

func TestRedact(t *testing.T) {
	t.Parallel()
	require.Equal(t, "amqp://guest:xxx@host:5672/vh", redact("amqp://guest:guest@host:5672/vh"))
	require.Equal(t, "amqp://host/", redact("amqp://host/"))
	require.Equal(t, "amqp://user@host/", redact("amqp://user@host/"))
}

func TestResultWrite(t *testing.T) {
	t.Parallel()
	var h Histogram
	for v := int64(1); v <= 1000; v++ {
		h.Record(v * 1000) // 1µs .. 1ms
	}
	res := &Result{
		Broker: "RabbitMQ 3.10.8", URI: "amqp://localhost/", Publishers: 1, Consumers: 1, Queues: 1,
		Exchange: "herald-bench", ExchangeType: "direct", Size: 16, Persistent: true, Confirm: 192,
		Qos: 200, MultiAckEvery: 50, Seconds: 2, Sent: 2000, Confirmed: 1990, Received: 1980,
		SentRate: 1000, ConfirmedRate: 995, ReceivedRate: 990, Latency: latencyOf(&h),
	}
	var text bytes.Buffer
	require.NoError(t, res.Write(&text, false))
	out := text.String()
	require.Contains(t, out, "RabbitMQ 3.10.8")
	require.Contains(t, out, "16-byte persistent messages")
	require.Contains(t, out, "confirm window 192, qos 200, multi-ack every 50, rate unlimited")
	require.Regexp(t, `sent\s+2000 msg\s+1000 msg/s`, out)
	require.Regexp(t, `latency \(ms\): min 0.001  p50 0.50[0-9] .* max 1.000  \(n=1000\)`, out)
	require.NotContains(t, out, "confirm latency")

	var js bytes.Buffer
	require.NoError(t, res.Write(&js, true))
	var back Result
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	require.Equal(t, *res.Latency, *back.Latency)
	require.InDelta(t, 0.99, back.Latency.P99, 0.01)
	require.Nil(t, back.ConfirmLatency)
}

// TestRunAMQPAgainstBroker runs the driver for real against the broker at
// HERALD_TEST_AMQP_URI (for example a local RabbitMQ started by
// scripts/bench-rabbitmq.sh). No broker runs in CI for this package yet;
// when Herald's AMQP face lands, an end-to-end test there should run this
// driver against it.
func TestRunAMQPAgainstBroker(t *testing.T) {
	uri := os.Getenv("HERALD_TEST_AMQP_URI")
	if uri == "" {
		t.Skip("HERALD_TEST_AMQP_URI is not set: no AMQP broker to run against")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(args ...string) *Result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append([]string{"-uri", uri, "-json", "-u", "herald-bench-test", "--auto-delete", "--durable=false"}, args...)
		require.NoError(t, RunAMQP(ctx, args, &stdout, &stderr), "stderr: %s", stderr.String())
		var res Result
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
		return &res
	}

	res := run("-x", "2", "-y", "1", "-s", "16", "-c", "50", "-q", "100", "--multi-ack-every", "10", "-C", "2000", "-z", "30s", "-e", "herald-bench-test")
	require.EqualValues(t, 4000, res.Sent)
	require.EqualValues(t, 4000, res.Confirmed)
	require.EqualValues(t, 4000, res.Received)
	require.NotNil(t, res.Latency)
	require.NotNil(t, res.ConfirmLatency)
	require.Greater(t, res.Latency.P99, 0.0)

	res = run("-x", "1", "--queues", "3", "--fanout", "-C", "500", "-z", "30s", "-e", "herald-bench-test-fanout", "-s", "4")
	require.EqualValues(t, 500, res.Sent)
	require.EqualValues(t, 1500, res.Received)
	require.Nil(t, res.Latency, "4-byte bodies carry no timestamp")
	require.Contains(t, strings.Join(res.Notes, " "), "no room for the send timestamp")

	res = run("-x", "1", "-y", "1", "-r", "200", "-z", "1s", "-e", "herald-bench-test", "--progress", "200ms")
	require.InDelta(t, 200, res.SentRate, 40)
}
