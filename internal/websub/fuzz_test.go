package websub

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// fuzzHub is a running hub without broker or workers: requests are parsed
// and queued, never processed.
func fuzzHub() *Hub {
	cfg := Config{CheckURL: func(context.Context, string) error { return nil }, MaxPending: 4}.withDefaults()
	h := &Hub{cfg: cfg, log: cfg.Logger, jobs: make(chan func(context.Context), cfg.MaxPending)}
	h.state.Store(1)
	return h
}

func FuzzHubRequest(f *testing.F) {
	for _, seed := range []string{
		"hub.mode=subscribe&hub.topic=http%3A%2F%2Fx%2Ft&hub.callback=http%3A%2F%2Fy%2Fcb%3Fa%3Db&hub.lease_seconds=60&hub.secret=s",
		"hub.mode=unsubscribe&hub.topic=https://x/t&hub.callback=https://y/cb",
		"hub.mode=publish&hub.url=http://x/a&hub.url=http://x/b&hub.topic=http://x/a",
		"hub.mode=subscribe&hub.lease_seconds=99999999999999999999",
		"hub.mode=%zz", "", "hub.mode=denied",
	} {
		f.Add(seed)
	}
	h := fuzzHub()
	f.Fuzz(func(t *testing.T, body string) {
		// Drain what earlier inputs queued so the queue never fills.
		for len(h.jobs) > 0 {
			<-h.jobs
		}
		r := httptest.NewRequest(http.MethodPost, HubPath, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.serveHub(w, r)
		switch w.Code {
		case http.StatusAccepted:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if strings.TrimSpace(w.Body.String()) == "" {
				t.Fatalf("%d without a reason for %q", w.Code, body)
			}
		default:
			t.Fatalf("unexpected status %d for %q", w.Code, body)
		}
		form, err := url.ParseQuery(body)
		if err != nil || w.Code != http.StatusAccepted {
			return
		}
		if cb := form.Get("hub.callback"); cb != "" {
			u, _ := url.Parse(cb)
			out, err := url.Parse(callbackWith(cb, url.Values{"hub.mode": {"subscribe"}}))
			if err != nil {
				t.Fatalf("callbackWith(%q) is not a URL: %v", cb, err)
			}
			if !strings.HasPrefix(out.RawQuery, u.RawQuery) || out.Query().Get("hub.mode") == "" {
				t.Fatalf("callbackWith(%q) lost the callback's query: %q", cb, out.RawQuery)
			}
		}
	})
}
