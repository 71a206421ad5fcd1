package realtime

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const nodeDir = "testdata/node"

// requireNode fails (never skips) when node or the npm packages are missing.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: these tests run pusher-js, pusher and eventsource in Node 20; install Node, then run: bash .ci/setup.d/realtime.sh")
	}
	for _, pkg := range []string{"pusher-js", "pusher", "eventsource"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("npm package %q is missing from %s/node_modules; run: bash .ci/setup.d/realtime.sh (npm ci in %s)", pkg, nodeDir, nodeDir)
		}
	}
	return node
}

// runNode runs one scenario of testdata/node/scenarios.js against b.
func runNode(t *testing.T, b *bundle, scenario string, extraEnv ...string) {
	t.Helper()
	node := requireNode(t)
	u, err := url.Parse(b.base)
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(u.Host)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "scenarios.js", scenario)
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(),
		"HERALD_HOST="+host, "HERALD_PORT="+port,
		"APP_ID="+b.app.ID, "APP_KEY="+b.app.Key, "APP_SECRET="+b.app.Secret)
	cmd.Env = append(cmd.Env, extraEnv...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "node scenarios.js %s:\n%s", scenario, out)
	t.Logf("node %s: %s", scenario, out)
}

// TestNodeClients uses Herald as a new user would: pusher-js in Node, the
// pusher server SDK as the app backend, and the eventsource package.
func TestNodeClients(t *testing.T) {
	t.Parallel()
	requireNode(t)
	for _, sc := range []string{"public", "private", "forged", "presence", "clientEvents", "trigger", "sse"} {
		t.Run(sc, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			runNode(t, b, sc)
		})
	}
}
