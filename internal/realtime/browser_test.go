package realtime

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const browserPage = `<!doctype html>
<html><head><title>Herald browser test</title></head>
<body>
<div id="out">waiting</div>
<script src="/test/pusher.min.js"></script>
<script>
  const pusher = new Pusher(%q, {
    cluster: 'herald', wsHost: location.hostname, wsPort: Number(location.port),
    forceTLS: false, enabledTransports: ['ws'], disableStats: true,
  });
  const channel = pusher.subscribe('browser-news');
  channel.bind('pusher:subscription_succeeded', () => fetch('/test/ready'));
  channel.bind('greeting', (data) => {
    const out = document.getElementById('out');
    out.textContent = data.text;
    fetch('/test/result?text=' + encodeURIComponent(out.textContent));
  });
</script>
</body></html>
`

// TestBrowserChromium loads a page in headless Chromium that uses the web
// build of pusher-js (served from node_modules, no CDN), subscribes, and
// shows an event the server side triggers through the HTTP API.
func TestBrowserChromium(t *testing.T) {
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: this test drives Debian's headless chromium; run: bash .ci/setup.d/realtime.sh (apt-get install chromium)")
	}
	requireNode(t)
	js, err := os.ReadFile(filepath.Join(nodeDir, "node_modules", "pusher-js", "dist", "web", "pusher.min.js"))
	require.NoError(t, err, "pusher-js web build missing; run: bash .ci/setup.d/realtime.sh")

	b := setup(t)
	ready := make(chan struct{}, 1)
	result := make(chan string, 1)
	b.mux.HandleFunc("GET /test/page.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(sprintfJS(browserPage, b.app.Key)))
	})
	b.mux.HandleFunc("GET /test/pusher.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/javascript")
		_, _ = w.Write(js)
	})
	b.mux.HandleFunc("GET /test/ready", func(w http.ResponseWriter, r *http.Request) {
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	b.mux.HandleFunc("GET /test/result", func(w http.ResponseWriter, r *http.Request) {
		select {
		case result <- r.URL.Query().Get("text"):
		default:
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), b.base+"/test/page.html")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // chromium and its helpers
		<-exited
	}()

	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		t.Fatalf("chromium exited before the page subscribed: %v\n%s", err, out.String())
	case <-ctx.Done():
		t.Fatalf("the page did not subscribe within 90s; chromium output:\n%s", out.String())
	}
	b.trigger(t, "browser-news", "greeting", `{"text":"Hello, browser, from Herald"}`)
	select {
	case text := <-result:
		require.Equal(t, "Hello, browser, from Herald", text, "the page shows the event")
	case <-ctx.Done():
		t.Fatalf("the page did not show the event; chromium output:\n%s", out.String())
	}
}

// sprintfJS fills the page's single %q with a JS string literal.
func sprintfJS(page, key string) string {
	return string(bytes.Replace([]byte(page), []byte("%q"), appendJSONString(nil, key), 1))
}
