package main

import (
	"context"
	"fmt"
	"io"

	"github.com/heraldhq/herald/internal/bench"
)

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "amqp" {
		return fmt.Errorf("usage: herald bench amqp [flags] (see herald bench amqp -h)")
	}
	return bench.RunAMQP(ctx, args[1:], stdout, stderr)
}
