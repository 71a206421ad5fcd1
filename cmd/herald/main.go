// Command herald runs the Herald event backbone.
//
//	herald serve [flags]        run a node (see herald serve -h)
//	herald version              print the version
//	herald publish [flags]      publish a message over AMQP (for trying it out)
//	herald consume [flags]      consume messages over AMQP (for trying it out)
//	herald bench amqp [flags]   PerfTest-style load against any AMQP broker
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

const usage = `usage: herald <command> [flags]

commands:
  serve        run a Herald node
  version      print the version
  publish      publish a message over AMQP
  consume      consume messages over AMQP
  bench amqp   PerfTest-style AMQP load driver
`

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, "herald", Version)
		return nil
	case "publish":
		return publish(ctx, args[1:], stdout, stderr)
	case "consume":
		return consume(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
