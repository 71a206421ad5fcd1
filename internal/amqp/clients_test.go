package amqp_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// clientsExpected is what testdata/node/scenarios.js (amqplib) and
// testdata/python/scenarios.py (pika) print against Herald, one line per
// check: declare + bind, publish with confirms, consume with manual acks,
// topic routing, basic.get, dead-lettering with x-death, and a burst of
// publishes followed at once by connection.close.
const clientsExpected = `declared shop orders order.created
confirmed 10/10
consumed m0 m1 m2 m3 m4 m5 m6 m7 m8 m9
topic errors: db.error
topic app: app.db.error app.start
topic all: a.b app.db.error app.start db.error
get: first (1 left), second (0 left), empty
dead-letter: bad order; reason rejected; queue work; count 1; first-death-reason rejected
burst: 5000 published, then closed cleanly
`

const setupHint = "run: bash .ci/setup.d/amqp-clients.sh"

// requireNodeAmqplib returns the node binary; it fails (never skips) when
// node or the amqplib package is missing.
func requireNodeAmqplib(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: this test runs amqplib (npm) in Node 18+; install Node, then %s", setupHint)
	}
	if _, err := os.Stat(filepath.Join("testdata", "node", "node_modules", "amqplib", "package.json")); err != nil {
		t.Fatalf("npm package amqplib is missing from internal/amqp/testdata/node/node_modules; %s (npm ci there)", setupHint)
	}
	return node
}

// requirePythonPika returns a python3 that can import pika; it fails (never
// skips) when there is none. Debian's python3-pika installs into the system
// python3, which may not be the first python3 on PATH.
func requirePythonPika(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		tried = append(tried, path)
		if exec.Command(path, "-c", "import pika").Run() == nil {
			return path
		}
	}
	if len(tried) == 0 {
		t.Fatalf("python3 is not installed: this test runs pika; install python3 and python3-pika (apt-get install -y python3-pika), or %s", setupHint)
	}
	t.Fatalf("pika is not importable by %s: install Debian's python3-pika (apt-get install -y python3-pika), or %s", strings.Join(tried, " or "), setupHint)
	return ""
}

// TestClients runs the same scenarios with the Node (amqplib) and Python
// (pika) clients, as a new user of Herald would write them, each against its
// own Herald.
func TestClients(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, dir, script string
		interpreter       func(*testing.T) string
	}{
		{"node-amqplib", "node", "scenarios.js", requireNodeAmqplib},
		{"python-pika", "python", "scenarios.py", requirePythonPika},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			interpreter := c.interpreter(t)
			_, env := setup(t)
			ctx, cancel := context.WithTimeout(bg, 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, interpreter, c.script)
			cmd.Dir = filepath.Join("testdata", c.dir)
			cmd.Env = append(os.Environ(), "HERALD_AMQP_URL="+env.url)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, "%s %s failed; stdout:\n%s\nstderr:\n%s", interpreter, c.script, out, stderr.String())
			require.Equal(t, clientsExpected, string(out), "stderr:\n%s", stderr.String())
		})
	}
}
