// Package enginetest starts engines for the tests of the packages built on
// the engine (broker, faces): a cluster of several nodes in one process.
package enginetest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/engine"
)

// StartCluster starts n engines forming one cluster on loopback ports, each
// with its own t.TempDir(), named node-a, node-b, ...; it fails the test if
// one does not start. They are stopped when the test ends, after the
// cleanups registered later (stop what runs on them there).
func StartCluster(t testing.TB, ctx context.Context, n int, log *slog.Logger) []*engine.Engine {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserving a cluster port: %v", err)
		}
		addrs[i] = ln.Addr().String()
		_ = ln.Close()
	}
	engines := make([]*engine.Engine, n)
	for i := range engines {
		e, err := engine.New(engine.Config{
			DataDir: t.TempDir(), NodeName: fmt.Sprintf("node-%c", 'a'+i), ClusterName: "herald-test",
			ClusterListen: addrs[i], Routes: slices.Delete(slices.Clone(addrs), i, i+1), Logger: log,
		})
		if err != nil {
			t.Fatalf("configuring node %d: %v", i, err)
		}
		engines[i] = e
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, e := range engines {
		wg.Go(func() { errs[i] = e.Start(ctx) })
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, e := range engines {
			wg.Go(func() { e.Stop(context.Background()) })
		}
		wg.Wait()
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("starting node %d: %v", i, err)
		}
	}
	return engines
}
