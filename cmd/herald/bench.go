package main

import (
	"context"
	"fmt"
	"io"
)

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "amqp" {
		return fmt.Errorf("usage: herald bench amqp [flags]")
	}
	return fmt.Errorf("bench amqp: not wired yet")
}
