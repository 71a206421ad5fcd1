package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func publish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	uri := fs.String("uri", "amqp://guest:guest@localhost:5672/", "AMQP URI")
	exchange := fs.String("exchange", "", "exchange (\"\" is the default exchange)")
	key := fs.String("key", "", "routing key")
	body := fs.String("body", "", "message body")
	count := fs.Int("n", 1, "how many copies to publish")
	persistent := fs.Bool("persistent", true, "delivery mode 2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conn, err := amqp.Dial(*uri)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	mode := amqp.Transient
	if *persistent {
		mode = amqp.Persistent
	}
	for i := 0; i < *count; i++ {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, *exchange, *key, true, false,
			amqp.Publishing{Body: []byte(*body), DeliveryMode: mode, Timestamp: time.Now()})
		if err != nil {
			return err
		}
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("message %d was nacked by the broker", i)
		}
	}
	fmt.Fprintf(stdout, "published %d message(s) to exchange %q with key %q\n", *count, *exchange, *key)
	return nil
}

func consume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	uri := fs.String("uri", "amqp://guest:guest@localhost:5672/", "AMQP URI")
	queue := fs.String("queue", "", "queue to consume from (required)")
	count := fs.Int("n", 0, "stop after n messages (0 = until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *queue == "" {
		return fmt.Errorf("-queue is required")
	}
	conn, err := amqp.Dial(*uri)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(100, 0, false); err != nil {
		return err
	}
	msgs, err := ch.ConsumeWithContext(ctx, *queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return fmt.Errorf("consumer cancelled by the broker")
			}
			fmt.Fprintf(stdout, "%s %s %s\n", m.Exchange, m.RoutingKey, m.Body)
			if err := m.Ack(false); err != nil {
				return err
			}
			n++
			if *count > 0 && n >= *count {
				return nil
			}
		}
	}
}
