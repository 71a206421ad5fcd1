package realtime

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Webhook event names (Pusher's).
const (
	hookOccupied      = "channel_occupied"
	hookVacated       = "channel_vacated"
	hookMemberAdded   = "member_added"
	hookMemberRemoved = "member_removed"
	hookClientEvent   = "client_event"
)

// hookEvent is one entry of a webhook's "events" array.
type hookEvent struct {
	Name     string `json:"name"`
	Channel  string `json:"channel"`
	Event    string `json:"event,omitempty"`
	Data     string `json:"data,omitempty"`
	SocketID string `json:"socket_id,omitempty"`
	UserID   string `json:"user_id,omitempty"`
}

type hookItem struct {
	h  *hub
	ev hookEvent
}

// webhooks posts app webhooks from one goroutine. Notifications wait in a
// bounded queue (dropped when full); the goroutine batches what is queued
// (up to 100 events per request), signs each body like Pusher
// (X-Pusher-Key, X-Pusher-Signature = hex HMAC-SHA256(secret, body)) and
// retries a failed POST twice. Delivery is best effort: queued
// notifications are lost if the process dies.
type webhooks struct {
	srv    *Server
	q      chan hookItem
	client *http.Client

	mu     sync.Mutex
	closed bool
	stop   chan struct{}
}

func newWebhooks(s *Server) *webhooks {
	hooked := false
	for _, a := range s.cfg.Apps {
		hooked = hooked || len(a.Webhooks) > 0
	}
	size := s.cfg.WebhookQueue
	if !hooked {
		size = 0
	}
	return &webhooks{
		srv:    s,
		q:      make(chan hookItem, size),
		client: &http.Client{Timeout: s.cfg.WebhookTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}},
		stop:   make(chan struct{}),
	}
}

// enqueue never blocks: it may be called with channel locks held.
func (w *webhooks) enqueue(h *hub, ev hookEvent) {
	if len(h.app.Webhooks) == 0 {
		return
	}
	select {
	case w.q <- hookItem{h: h, ev: ev}:
	default:
		w.srv.log.Warn("realtime: webhook queue full, dropping notification", "app", h.app.ID, "event", ev.Name, "channel", ev.Channel)
	}
}

// close makes run return once the queue is drained.
func (w *webhooks) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
}

func (w *webhooks) run() {
	defer w.client.CloseIdleConnections()
	for {
		var first hookItem
		select {
		case first = <-w.q:
		case <-w.stop:
			// Drain what is queued, until Stop's deadline cancels srv.ctx.
			for {
				select {
				case first = <-w.q:
					w.post(w.collect(first))
				default:
					return
				}
			}
		}
		w.post(w.collect(first))
	}
}

// collect takes first plus whatever else is queued (up to 100 per app).
func (w *webhooks) collect(first hookItem) map[*hub][]hookEvent {
	batch := map[*hub][]hookEvent{first.h: {first.ev}}
	for n := 1; n < 100; n++ {
		select {
		case it := <-w.q:
			batch[it.h] = append(batch[it.h], it.ev)
		default:
			return batch
		}
	}
	return batch
}

func (w *webhooks) post(batch map[*hub][]hookEvent) {
	for h, evs := range batch {
		for _, wh := range h.app.Webhooks {
			sel := evs
			if len(wh.Events) > 0 {
				sel = nil
				for _, e := range evs {
					for _, name := range wh.Events {
						if e.Name == name {
							sel = append(sel, e)
						}
					}
				}
			}
			if len(sel) == 0 {
				continue
			}
			body, _ := json.Marshal(struct {
				TimeMS int64       `json:"time_ms"`
				Events []hookEvent `json:"events"`
			}{w.srv.cfg.Now().UnixMilli(), sel})
			w.send(h.app, wh.URL, body)
		}
	}
}

func (w *webhooks) send(a App, url string, body []byte) {
	delay := time.Second
	for attempt := 0; ; attempt++ {
		err := w.try(a, url, body)
		if err == nil {
			return
		}
		if attempt == 2 || w.srv.ctx.Err() != nil {
			w.srv.log.Warn("realtime: webhook not delivered", "app", a.ID, "url", url, "err", err)
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-w.srv.ctx.Done():
			t.Stop()
		}
		delay *= 2
	}
}

type statusError int

func (e statusError) Error() string { return "status " + http.StatusText(int(e)) }

func (w *webhooks) try(a App, url string, body []byte) error {
	req, err := http.NewRequestWithContext(w.srv.ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Pusher-Key", a.Key)
	req.Header.Set("X-Pusher-Signature", webhookSignature(a.Secret, body))
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp.StatusCode)
	}
	return nil
}
