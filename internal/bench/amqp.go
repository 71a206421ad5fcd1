package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQPConfig is one run of the AMQP load driver. Flag names follow RabbitMQ
// PerfTest where it has one.
type AMQPConfig struct {
	// URI of the broker (-uri). Default amqp://guest:guest@localhost:5672/.
	URI string
	// Publishers (-x) and Consumers (-y): each has its own connection and
	// channel. Default 1 each; 0 runs none of that side. With Queues > 1 and
	// -y not given, Consumers defaults to Queues. Consumers are spread over
	// the queues round-robin.
	Publishers, Consumers int
	// Size of each message body in bytes (-s). Default 12. The first 8 bytes
	// carry the send time for latency; a smaller body measures no latency.
	Size int
	// Confirm is the confirm window (-c): the most unconfirmed messages a
	// publisher has outstanding. 0 means no publisher confirms.
	Confirm int
	// Qos is the consumer prefetch count (-q). 0 means unlimited.
	Qos int
	// MultiAckEvery (--multi-ack-every) makes consumers acknowledge with
	// multiple=true every N messages. 0 or 1 acknowledges each message.
	MultiAckEvery int
	// AutoAck (-a) consumes in no-ack mode.
	AutoAck bool
	// Persistent (--persistent, or -f persistent) publishes with delivery
	// mode 2. Mandatory (--mandatory, or -f mandatory) sets the mandatory
	// flag and counts returned messages.
	Persistent, Mandatory bool
	// Rate (-r) is each publisher's rate in messages per second. 0 means as
	// fast as possible.
	Rate float64
	// Duration (-z) of the run. 0 means until the context is cancelled (or,
	// with PublisherMessages, until the messages are sent and consumed).
	Duration time.Duration
	// PublisherMessages (-C) is the number of messages each publisher sends
	// before it stops. 0 means no limit.
	PublisherMessages int
	// Exchange (-e) to publish to; "" is the default exchange (routing key =
	// queue name, nothing is declared or bound). Default "herald-bench" for
	// a direct exchange, "herald-bench-<type>" for the others (an exchange's
	// type cannot change once declared).
	Exchange string
	// ExchangeType (-t): direct (default), fanout or topic. --fanout is -t
	// fanout: every message goes to every queue.
	ExchangeType string
	// Queue (-u) is the queue name, or with Queues > 1 the prefix of
	// "<queue>-1".."<queue>-N". Default "herald-bench".
	Queue string
	// Queues (--queues) is the number of queues. Default 1. Each queue is
	// bound with its own name as the key; publishers rotate over the keys
	// (with a fanout exchange every queue gets every message).
	Queues int
	// RoutingKey (-k) for a single queue. Default: the queue name.
	RoutingKey string
	// Durable (--durable, default true), AutoDelete (--auto-delete) and
	// QueueArgs (--queue-args "x-queue-type=quorum,x-max-length=100000")
	// shape the declared queues.
	Durable, AutoDelete bool
	QueueArgs           amqp.Table
	// Predeclared (--predeclared) uses the existing exchange and queues and
	// declares nothing. Purge (--purge, default true) purges the queues
	// before the run so messages left over do not skew latency.
	Predeclared, Purge bool
	// Progress (--progress) is the interval of the progress line on stderr.
	// Default 1s; 0 prints none.
	Progress time.Duration
	// JSON (-json) prints the summary as JSON.
	JSON bool
	// CPUProfile (--cpuprofile) is a file for the driver's own CPU profile,
	// so its cost can be told from the broker's; "" writes none.
	CPUProfile string
}

// stopGrace bounds how long workers get to stop (and close their
// connections) once the run is over, before their connections are closed
// under them.
const stopGrace = 5 * time.Second

// RunAMQP parses PerfTest-style flags and runs the AMQP load driver: progress
// every second on stderr, the summary on stdout. It is `herald bench amqp`.
func RunAMQP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := ParseAMQPFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := RunAMQPConfig(ctx, cfg, stderr)
	if res != nil {
		if werr := res.Write(stdout, cfg.JSON); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// ParseAMQPFlags parses the flags of `herald bench amqp` into a validated
// AMQPConfig. Usage and flag errors are written to stderr.
func ParseAMQPFlags(args []string, stderr io.Writer) (AMQPConfig, error) {
	var c AMQPConfig
	fs := flag.NewFlagSet("herald bench amqp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald bench amqp [flags]\n\n"+
			"PerfTest-style load against any AMQP 0-9-1 broker. Example (RabbitMQ PerfTest's\n"+
			"-x 1 -y 1 -s 16 -f persistent -c 192 -q 200 --multi-ack-every 50 -z 15):\n\n"+
			"  herald bench amqp -x 1 -y 1 -s 16 --persistent -c 192 -q 200 --multi-ack-every 50 -z 15s\n\nFlags:\n")
		fs.PrintDefaults()
	}
	intVar := func(p *int, def int, usage string, names ...string) {
		for _, n := range names {
			fs.IntVar(p, n, def, usage)
		}
	}
	strVar := func(p *string, def, usage string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, def, usage)
		}
	}
	fs.StringVar(&c.URI, "uri", "amqp://guest:guest@localhost:5672/", "broker `URI`")
	fs.StringVar(&c.URI, "h", "amqp://guest:guest@localhost:5672/", "broker `URI` (PerfTest's -h)")
	intVar(&c.Publishers, 1, "publishers, one connection each", "x", "producers")
	intVar(&c.Consumers, 1, "consumers, one connection each (default: --queues)", "y", "consumers")
	intVar(&c.Size, 12, "message size in `bytes` (the first 8 carry the send time)", "s", "size")
	intVar(&c.Confirm, 0, "confirm window: max unconfirmed messages per publisher; 0 = no confirms", "c", "confirm")
	intVar(&c.Qos, 0, "consumer prefetch count; 0 = unlimited", "q", "qos")
	intVar(&c.MultiAckEvery, 0, "ack with multiple=true every `N` messages; 0 or 1 = ack each", "A", "multi-ack-every")
	intVar(&c.PublisherMessages, 0, "messages per publisher, then it stops; 0 = no limit", "C", "pmessages")
	intVar(&c.Queues, 1, "number of queues", "queues")
	fs.BoolVar(&c.AutoAck, "a", false, "consume in no-ack (auto-ack) mode")
	fs.BoolVar(&c.AutoAck, "autoack", false, "consume in no-ack (auto-ack) mode")
	fs.BoolVar(&c.Persistent, "persistent", false, "publish persistent messages (delivery mode 2)")
	fs.BoolVar(&c.Mandatory, "mandatory", false, "publish with the mandatory flag and count returns")
	fs.Func("f", "PerfTest flag: persistent or mandatory (repeatable)", func(s string) error {
		return c.setFlag(s)
	})
	fs.Func("flag", "PerfTest flag: persistent or mandatory (repeatable)", func(s string) error {
		return c.setFlag(s)
	})
	fs.Float64Var(&c.Rate, "r", 0, "rate per publisher in msg/s; 0 = unlimited")
	fs.Float64Var(&c.Rate, "rate", 0, "rate per publisher in msg/s; 0 = unlimited")
	fs.DurationVar(&c.Duration, "z", 0, "run `duration` (e.g. 30s); 0 = until interrupted")
	fs.DurationVar(&c.Duration, "duration", 0, "run `duration` (e.g. 30s); 0 = until interrupted")
	strVar(&c.Exchange, "herald-bench", "exchange; \"\" = the default exchange (default herald-bench, or herald-bench-<type> unless direct)", "e", "exchange")
	strVar(&c.ExchangeType, "direct", "exchange type: direct, fanout or topic", "t", "type")
	fanout := fs.Bool("fanout", false, "fanout exchange: every queue gets every message (= -t fanout)")
	strVar(&c.Queue, "herald-bench", "queue name (prefix with --queues > 1)", "u", "queue")
	strVar(&c.RoutingKey, "", "routing key (default: the queue name)", "k", "routing-key")
	fs.BoolVar(&c.Durable, "durable", true, "declare durable queues (the exchange is always durable)")
	fs.BoolVar(&c.AutoDelete, "auto-delete", false, "declare auto-delete queues")
	queueArgs := fs.String("queue-args", "", "queue arguments, e.g. x-queue-type=quorum,x-max-length=100000")
	fs.BoolVar(&c.Predeclared, "predeclared", false, "declare nothing: use the existing exchange and queues")
	fs.BoolVar(&c.Purge, "purge", true, "purge the queues before the run")
	fs.DurationVar(&c.Progress, "progress", time.Second, "progress line interval on stderr; 0 = none")
	fs.BoolVar(&c.JSON, "json", false, "print the summary as JSON")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the driver's own CPU profile to `file` (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *fanout {
		c.ExchangeType = "fanout"
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["e"] && !set["exchange"] && c.ExchangeType != "direct" {
		c.Exchange = "herald-bench-" + c.ExchangeType
	}
	setY := set["y"] || set["consumers"]
	if !setY && c.Queues > 1 {
		c.Consumers = c.Queues
	}
	args2, err := parseTable(*queueArgs)
	if err != nil {
		return c, fmt.Errorf("--queue-args: %w", err)
	}
	c.QueueArgs = args2
	return c, c.Validate()
}

func (c *AMQPConfig) setFlag(s string) error {
	switch s {
	case "persistent":
		c.Persistent = true
	case "mandatory":
		c.Mandatory = true
	default:
		return fmt.Errorf("unknown flag %q (persistent or mandatory)", s)
	}
	return nil
}

// parseTable parses "k=v,k2=v2"; integer and boolean values become int64 and
// bool, anything else a string.
func parseTable(s string) (amqp.Table, error) {
	if s == "" {
		return nil, nil
	}
	t := amqp.Table{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		if i, err := strconv.ParseInt(v, 10, 64); err == nil {
			t[k] = i
		} else if b, err := strconv.ParseBool(v); err == nil {
			t[k] = b
		} else {
			t[k] = v
		}
	}
	return t, nil
}

// Validate checks the configuration and names the bad flag.
func (c *AMQPConfig) Validate() error {
	switch {
	case c.URI == "":
		return errors.New("-uri: empty")
	case c.Publishers < 0:
		return errors.New("-x: must be >= 0")
	case c.Consumers < 0:
		return errors.New("-y: must be >= 0")
	case c.Publishers == 0 && c.Consumers == 0:
		return errors.New("-x, -y: nothing to run")
	case c.Size < 0:
		return errors.New("-s: must be >= 0")
	case c.Confirm < 0:
		return errors.New("-c: must be >= 0")
	case c.Qos < 0 || c.Qos > 65535:
		return errors.New("-q: must be in 0..65535")
	case c.MultiAckEvery < 0:
		return errors.New("--multi-ack-every: must be >= 0")
	case c.Qos > 0 && c.MultiAckEvery > c.Qos && !c.AutoAck:
		return fmt.Errorf("--multi-ack-every %d > -q %d: consumers would stall waiting for messages the prefetch window never delivers", c.MultiAckEvery, c.Qos)
	case c.Rate < 0:
		return errors.New("-r: must be >= 0")
	case c.Duration < 0:
		return errors.New("-z: must be >= 0")
	case c.PublisherMessages < 0:
		return errors.New("-C: must be >= 0")
	case c.Queues < 1:
		return errors.New("--queues: must be >= 1")
	case c.Queue == "":
		return errors.New("-u: empty queue name")
	case c.Progress < 0:
		return errors.New("--progress: must be >= 0")
	}
	switch c.ExchangeType {
	case "direct", "fanout", "topic":
	default:
		return fmt.Errorf("-t: unknown exchange type %q (direct, fanout or topic)", c.ExchangeType)
	}
	if c.Exchange == "" && c.ExchangeType == "fanout" {
		return errors.New("--fanout: needs a named exchange (-e)")
	}
	return nil
}

// queueNames returns the queues of the run.
func (c *AMQPConfig) queueNames() []string {
	if c.Queues == 1 {
		return []string{c.Queue}
	}
	qs := make([]string, c.Queues)
	for i := range qs {
		qs[i] = fmt.Sprintf("%s-%d", c.Queue, i+1)
	}
	return qs
}

// bindingKeys returns the key each queue is bound (and published) with.
func (c *AMQPConfig) bindingKeys() []string {
	qs := c.queueNames()
	if len(qs) == 1 && c.RoutingKey != "" {
		return []string{c.RoutingKey}
	}
	return qs
}

// run is the shared state of one run.
type run struct {
	cfg   AMQPConfig
	start time.Time

	sent, confirmed, nacked, returned, received atomic.Int64
	blocked                                     atomic.Int32 // connections blocked by the broker now

	mu       sync.Mutex
	conns    []*amqp.Connection
	latency  []*recorder // per consumer
	confirms []*recorder // per publisher
	err      error       // first worker error
	cancel   context.CancelFunc
	bg       sync.WaitGroup // notification listeners; end when their connection closes
}

// recorder is one worker's histograms: the whole run and the current
// progress interval.
type recorder struct {
	mu              sync.Mutex
	total, interval Histogram
}

func (r *recorder) record(v int64) {
	r.mu.Lock()
	r.total.Record(v)
	r.interval.Record(v)
	r.mu.Unlock()
}

func (r *run) newRecorder(list *[]*recorder) *recorder {
	rec := &recorder{}
	r.mu.Lock()
	*list = append(*list, rec)
	r.mu.Unlock()
	return rec
}

// fail records the first worker error and ends the run.
func (r *run) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.cancel()
}

func (r *run) dial(ctx context.Context, name string) (*amqp.Connection, error) {
	var d net.Dialer
	conn, err := amqp.DialConfig(r.cfg.URI, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": name, "product": "herald bench amqp"},
		Dial: func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return d.DialContext(dctx, network, addr)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redact(r.cfg.URI), err)
	}
	r.mu.Lock()
	r.conns = append(r.conns, conn)
	r.mu.Unlock()
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	r.bg.Go(func() { // ends when the connection closes
		for b := range blocked {
			if b.Active {
				r.blocked.Add(1)
			} else {
				r.blocked.Add(-1)
			}
		}
	})
	return conn, nil
}

// RunAMQPConfig runs the load described by cfg, printing progress to
// progress (nil for none), and returns the result. A result is returned even
// with an error when the run got as far as starting.
func RunAMQPConfig(ctx context.Context, cfg AMQPConfig, progress io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &run{cfg: cfg, cancel: cancel}
	defer r.bg.Wait()
	defer r.closeAll()

	server, err := r.declare(ctx)
	if err != nil {
		return nil, err
	}

	var workers sync.WaitGroup
	// Consumers first, so that nothing published is missed.
	queues := cfg.queueNames()
	consumerCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	ready := make(chan error, cfg.Consumers)
	for i := range cfg.Consumers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			if err := r.consume(consumerCtx, i, queues[i%len(queues)], ready); err != nil {
				r.fail(err)
			}
		}()
	}
	for range cfg.Consumers {
		if err := <-ready; err != nil {
			cancel()
			workers.Wait()
			return nil, err
		}
	}

	r.start = time.Now()
	publisherCtx, stopPublishers := context.WithCancel(ctx)
	defer stopPublishers()
	var publishers sync.WaitGroup
	for i := range cfg.Publishers {
		publishers.Add(1)
		workers.Add(1)
		go func() {
			defer workers.Done()
			defer publishers.Done()
			if err := r.publish(publisherCtx, i); err != nil {
				r.fail(err)
			}
		}()
	}
	publishersDone := make(chan struct{})
	go func() { publishers.Wait(); close(publishersDone) }()

	var progressDone chan struct{}
	if progress != nil && cfg.Progress > 0 {
		progressDone = make(chan struct{})
		go func() {
			defer close(progressDone)
			r.progress(ctx, progress)
		}()
	}

	r.wait(ctx, publishersDone)
	elapsed := time.Since(r.start)
	stopPublishers()
	stopConsumers()
	cancel()
	if !waitTimeout(&workers, stopGrace) {
		r.closeAll() // unblocks workers stuck in a socket write
		workers.Wait()
	}
	if progressDone != nil {
		<-progressDone
	}

	res := r.result(server, elapsed)
	r.mu.Lock()
	err = r.err
	r.mu.Unlock()
	return res, err
}

// wait returns when the run is over: the context is done (interrupted, or a
// worker failed), the duration is up, or every publisher has sent its
// PublisherMessages and the consumers have received all they will.
func (r *run) wait(ctx context.Context, publishersDone <-chan struct{}) {
	var deadline <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(r.cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	if r.cfg.PublisherMessages == 0 || r.cfg.Publishers == 0 {
		publishersDone = nil // publishers stop only when told to
	}
	select {
	case <-ctx.Done():
		return
	case <-deadline:
		return
	case <-publishersDone:
	}
	if r.cfg.Consumers == 0 {
		return
	}
	// Publishers are done: wait until consumers have everything, or until
	// nothing arrived for a while (messages routed nowhere, returned, or
	// received by consumers of another run).
	want := r.sent.Load()
	if r.cfg.ExchangeType == "fanout" {
		want *= int64(r.cfg.Queues)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last, lastChange := r.received.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case now := <-tick.C:
			n := r.received.Load()
			if n >= want {
				return
			}
			if n != last {
				last, lastChange = n, now
			} else if now.Sub(lastChange) > 2*time.Second {
				return
			}
		}
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// closeAll closes every connection of the run, bounded by stopGrace. It is
// safe to call more than once.
func (r *run) closeAll() {
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closeConn(c)
		}()
	}
	wg.Wait()
}

// closeConn closes conn, waiting at most stopGrace for the broker. Errors
// are of no interest: the run is over and the connection is gone either way.
func closeConn(conn *amqp.Connection) {
	if !conn.IsClosed() {
		_ = conn.CloseDeadline(time.Now().Add(stopGrace))
	}
}

// declare declares (or, with Predeclared, checks) the exchange and queues,
// purges them, and returns the broker's product and version.
func (r *run) declare(ctx context.Context) (string, error) {
	c := r.cfg
	conn, err := r.dial(ctx, "herald-bench-setup")
	if err != nil {
		return "", err
	}
	defer closeConn(conn)
	server := strings.TrimSpace(fmt.Sprint(conn.Properties["product"], " ", conn.Properties["version"]))
	ch, err := conn.Channel()
	if err != nil {
		return server, fmt.Errorf("opening channel: %w", err)
	}
	if c.Predeclared {
		for _, q := range c.queueNames() {
			if _, err := ch.QueueDeclarePassive(q, c.Durable, c.AutoDelete, false, false, c.QueueArgs); err != nil {
				return server, fmt.Errorf("checking queue %q: %w", q, err)
			}
		}
		return server, nil
	}
	if c.Exchange != "" {
		// Always durable: it does not change what happens to messages, and
		// one exchange then serves durable and transient runs alike.
		if err := ch.ExchangeDeclare(c.Exchange, c.ExchangeType, true, false, false, false, nil); err != nil {
			return server, fmt.Errorf("declaring exchange %q: %w", c.Exchange, err)
		}
	}
	keys := c.bindingKeys()
	for i, q := range c.queueNames() {
		if _, err := ch.QueueDeclare(q, c.Durable, c.AutoDelete, false, false, c.QueueArgs); err != nil {
			return server, fmt.Errorf("declaring queue %q: %w", q, err)
		}
		if c.Exchange != "" {
			if err := ch.QueueBind(q, keys[i], c.Exchange, false, nil); err != nil {
				return server, fmt.Errorf("binding queue %q to %q: %w", q, c.Exchange, err)
			}
		}
		if c.Purge {
			if _, err := ch.QueuePurge(q, false); err != nil {
				return server, fmt.Errorf("purging queue %q: %w", q, err)
			}
		}
	}
	return server, nil
}

// publish runs publisher i until ctx is done or it has sent its messages.
func (r *run) publish(ctx context.Context, i int) error {
	c := r.cfg
	conn, err := r.dial(ctx, fmt.Sprintf("herald-bench-publisher-%d", i))
	if err != nil {
		return err
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("publisher %d: opening channel: %w", i, err)
	}

	var (
		window   chan struct{}
		sentAt   []atomic.Int64 // send time by delivery tag % Confirm
		confirms sync.WaitGroup
	)
	if c.Confirm > 0 {
		if err := ch.Confirm(false); err != nil {
			return fmt.Errorf("publisher %d: confirm.select: %w", i, err)
		}
		window = make(chan struct{}, c.Confirm)
		sentAt = make([]atomic.Int64, c.Confirm)
		rec := r.newRecorder(&r.confirms)
		acks := ch.NotifyPublish(make(chan amqp.Confirmation, c.Confirm+1))
		confirms.Add(1)
		go func() { // ends when the channel closes
			defer confirms.Done()
			for a := range acks {
				rec.record(time.Now().UnixNano() - sentAt[a.DeliveryTag%uint64(c.Confirm)].Load())
				if a.Ack {
					r.confirmed.Add(1)
				} else {
					r.nacked.Add(1)
				}
				<-window
			}
		}()
	}
	if c.Mandatory {
		returns := ch.NotifyReturn(make(chan amqp.Return, 64))
		r.bg.Go(func() { // ends when the channel closes
			for range returns {
				r.returned.Add(1)
			}
		})
	}
	defer confirms.Wait()
	defer closeConn(conn)

	keys := c.bindingKeys()
	body := make([]byte, c.Size)
	msg := amqp.Publishing{Body: body}
	if c.Persistent {
		msg.DeliveryMode = amqp.Persistent
	}
	p := pacer{rate: c.Rate, start: time.Now()}
	defer p.stop()
	for n := 0; c.PublisherMessages == 0 || n < c.PublisherMessages; n++ {
		if err := p.wait(ctx); err != nil {
			return nil
		}
		if window != nil {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
		}
		now := time.Now().UnixNano()
		if len(body) >= 8 {
			binary.BigEndian.PutUint64(body, uint64(now))
		}
		if sentAt != nil {
			sentAt[ch.GetNextPublishSeqNo()%uint64(c.Confirm)].Store(now)
		}
		if err := ch.Publish(c.Exchange, keys[n%len(keys)], c.Mandatory, false, msg); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("publisher %d: %w", i, closeReason(err, closed))
		}
		r.sent.Add(1)
	}
	// Sent them all: wait for the outstanding confirms (fill the window).
	for range cap(window) {
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// consume runs consumer i on queue until ctx is done. It reports on ready
// once it is consuming (or failed to).
func (r *run) consume(ctx context.Context, i int, queue string, ready chan<- error) error {
	c := r.cfg
	fail := func(err error) error { ready <- err; return nil }
	conn, err := r.dial(ctx, fmt.Sprintf("herald-bench-consumer-%d", i))
	if err != nil {
		return fail(err)
	}
	defer closeConn(conn)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fail(fmt.Errorf("consumer %d: opening channel: %w", i, err))
	}
	if c.Qos > 0 {
		if err := ch.Qos(c.Qos, 0, false); err != nil {
			return fail(fmt.Errorf("consumer %d: basic.qos: %w", i, err))
		}
	}
	deliveries, err := ch.Consume(queue, fmt.Sprintf("herald-bench-%d", i), c.AutoAck, false, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consumer %d: consuming %q: %w", i, queue, err))
	}
	ready <- nil
	rec := r.newRecorder(&r.latency)
	every := uint64(max(c.MultiAckEvery, 1))
	var lastTag, unacked uint64
	for {
		select {
		case <-ctx.Done():
			if unacked > 0 {
				// Best effort: the run is over either way.
				_ = ch.Ack(lastTag, true)
			}
			return nil
		case d, ok := <-deliveries:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("consumer %d: deliveries ended: %w", i, closeReason(amqp.ErrClosed, closed))
			}
			if len(d.Body) >= 8 {
				rec.record(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(d.Body)))
			}
			r.received.Add(1)
			if c.AutoAck {
				continue
			}
			lastTag, unacked = d.DeliveryTag, unacked+1
			if unacked >= every {
				if err := ch.Ack(lastTag, every > 1); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("consumer %d: ack: %w", i, closeReason(err, closed))
				}
				unacked = 0
			}
		}
	}
}

// closeReason prefers the broker's reason for closing the connection, when
// it gave one, over a bare "channel/connection is not open".
func closeReason(err error, closed <-chan *amqp.Error) error {
	select {
	case e, ok := <-closed:
		if ok && e != nil {
			return e
		}
	case <-time.After(100 * time.Millisecond):
	}
	return err
}

// pacer spaces one publisher's messages at rate per second on an absolute
// schedule, so a late wake-up is made up by sending the next ones at once.
type pacer struct {
	rate  float64
	start time.Time
	n     int64
	timer *time.Timer
}

func (p *pacer) wait(ctx context.Context) error {
	if p.rate == 0 {
		return ctx.Err()
	}
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	p.n++
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

// redact hides the password of a URI.
func redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.User == nil {
		return uri
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}
