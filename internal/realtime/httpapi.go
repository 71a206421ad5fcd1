package realtime

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/heraldhq/herald/internal/errs"
)

var socketIDRe = regexp.MustCompile(`^\d+\.\d+$`)

// Limits of the Pusher HTTP API (Pusher's values).
const (
	maxTriggerChannels = 100
	maxBatchEvents     = 10
	maxEventName       = 200
)

type apiHandler func(r *http.Request, h *hub, body []byte) (any, error)

// api wraps a Pusher HTTP API handler: it finds the app, reads the bounded
// body, verifies the request signature and writes the JSON answer or the
// error as text with the catalog's status (401 for signatures).
func (s *Server) api(fn apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fail := func(err error) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(errs.KindOf(err).HTTPStatus())
			_, _ = io.WriteString(w, errs.Message(err)+"\n")
		}
		if !s.running() {
			fail(errs.New(errs.Unavailable, "realtime server not running"))
			return
		}
		h := s.hubByID[r.PathValue("app_id")]
		if h == nil {
			fail(errs.New(errs.NotFound, "unknown app id %q", r.PathValue("app_id")))
			return
		}
		limit := int64(maxBatchEvents*s.cfg.MaxMessageBytes + 64<<10)
		body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			fail(errs.Wrap(errs.BadArgument, err, "reading request body"))
			return
		}
		if int64(len(body)) > limit {
			fail(errs.New(errs.TooLarge, "request body is over %d bytes", limit))
			return
		}
		if err := verifyAPIRequest(h.app, r, body, s.cfg.Now(), s.cfg.AuthTimestampWindow); err != nil {
			fail(err)
			return
		}
		out, err := fn(r, h, body)
		if err != nil {
			fail(err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

// triggerReq is one event of POST /events or of a batch.
type triggerReq struct {
	Name     string          `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels []string        `json:"channels"`
	Channel  string          `json:"channel"`
	SocketID string          `json:"socket_id"`
	Info     string          `json:"info"`
}

func (s *Server) validTrigger(t *triggerReq) (data string, err error) {
	if t.Channel != "" {
		t.Channels = append(t.Channels, t.Channel)
	}
	switch {
	case t.Name == "":
		return "", errs.New(errs.BadArgument, "missing event name")
	case len(t.Name) > maxEventName:
		return "", errs.New(errs.BadArgument, "event name is over %d characters", maxEventName)
	case len(t.Channels) == 0:
		return "", errs.New(errs.BadArgument, "missing channels")
	case len(t.Channels) > maxTriggerChannels:
		return "", errs.New(errs.BadArgument, "more than %d channels", maxTriggerChannels)
	case t.SocketID != "" && !socketIDRe.MatchString(t.SocketID):
		return "", errs.New(errs.BadArgument, "invalid socket_id %q", t.SocketID)
	}
	for _, c := range t.Channels {
		if err := validChannel(c); err != nil {
			return "", err
		}
	}
	data = string(t.Data)
	if len(t.Data) > 0 && t.Data[0] == '"' {
		if err := json.Unmarshal(t.Data, &data); err != nil {
			return "", errs.New(errs.BadArgument, "invalid data string")
		}
	}
	if len(data) > s.cfg.MaxMessageBytes {
		return "", errs.New(errs.TooLarge, "event data is %d bytes, over the %d byte limit", len(data), s.cfg.MaxMessageBytes)
	}
	return data, nil
}

func (s *Server) trigger(r *http.Request, h *hub, t *triggerReq) (map[string]any, error) {
	data, err := s.validTrigger(t)
	if err != nil {
		return nil, err
	}
	for _, c := range t.Channels {
		in := inbound{channel: c, name: t.Name, data: data, exclude: t.SocketID}
		if err := s.bus.publish(r.Context(), h, in, true); err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "publishing to %q: %s", c, errs.Message(err))
		}
	}
	if t.Info == "" {
		return nil, nil
	}
	infos := map[string]any{}
	for _, c := range t.Channels {
		infos[c] = infoFields(h.channelInfo(c), t.Info, channelKind(c) == kindPresence)
	}
	return infos, nil
}

func infoFields(ci channelInfo, info string, presence bool) map[string]any {
	m := map[string]any{}
	for _, f := range strings.Split(info, ",") {
		switch strings.TrimSpace(f) {
		case "subscription_count":
			m["subscription_count"] = ci.subscriptions
		case "user_count":
			if presence {
				m["user_count"] = ci.users
			}
		}
	}
	return m
}

func decodeBody(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return errs.Wrap(errs.BadArgument, err, "invalid JSON body: %v", err)
	}
	return nil
}

func (s *Server) apiEvents(r *http.Request, h *hub, body []byte) (any, error) {
	var t triggerReq
	if err := decodeBody(body, &t); err != nil {
		return nil, err
	}
	infos, err := s.trigger(r, h, &t)
	if err != nil {
		return nil, err
	}
	if infos != nil {
		return map[string]any{"channels": infos}, nil
	}
	return struct{}{}, nil
}

func (s *Server) apiBatchEvents(r *http.Request, h *hub, body []byte) (any, error) {
	var b struct {
		Batch []triggerReq `json:"batch"`
	}
	if err := decodeBody(body, &b); err != nil {
		return nil, err
	}
	if len(b.Batch) == 0 || len(b.Batch) > maxBatchEvents {
		return nil, errs.New(errs.BadArgument, "batch must hold 1 to %d events", maxBatchEvents)
	}
	for i := range b.Batch {
		if len(b.Batch[i].Channels) > 0 {
			return nil, errs.New(errs.BadArgument, "batch[%d]: use \"channel\", not \"channels\"", i)
		}
		if _, err := s.validTrigger(&b.Batch[i]); err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "batch[%d]: %s", i, errs.Message(err))
		}
		b.Batch[i].Channels = nil // validTrigger appended Channel; trigger does it again
	}
	withInfo := false
	results := make([]any, len(b.Batch))
	for i := range b.Batch {
		infos, err := s.trigger(r, h, &b.Batch[i])
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "batch[%d]: %s", i, errs.Message(err))
		}
		if infos != nil {
			withInfo = true
			results[i] = infos[b.Batch[i].Channel]
		} else {
			results[i] = struct{}{}
		}
	}
	if withInfo {
		return map[string]any{"batch": results}, nil
	}
	return struct{}{}, nil
}

func (s *Server) apiChannels(r *http.Request, h *hub, _ []byte) (any, error) {
	prefix := r.URL.Query().Get("filter_by_prefix")
	info := r.URL.Query().Get("info")
	if strings.Contains(info, "user_count") && !strings.HasPrefix(prefix, "presence-") {
		return nil, errs.New(errs.BadArgument, "info=user_count needs filter_by_prefix=presence-")
	}
	chans := map[string]any{}
	for _, ci := range h.info(prefix) {
		chans[ci.name] = infoFields(ci, info, true)
	}
	return map[string]any{"channels": chans}, nil
}

func (s *Server) apiChannel(r *http.Request, h *hub, _ []byte) (any, error) {
	name := r.PathValue("channel")
	if err := validChannel(name); err != nil {
		return nil, err
	}
	info := r.URL.Query().Get("info")
	presence := channelKind(name) == kindPresence
	if strings.Contains(info, "user_count") && !presence {
		return nil, errs.New(errs.BadArgument, "info=user_count is only for presence channels")
	}
	ci := h.channelInfo(name)
	m := infoFields(ci, info, presence)
	m["occupied"] = ci.subscriptions > 0
	return m, nil
}

func (s *Server) apiUsers(r *http.Request, h *hub, _ []byte) (any, error) {
	name := r.PathValue("channel")
	if err := validChannel(name); err != nil {
		return nil, err
	}
	if channelKind(name) != kindPresence {
		return nil, errs.New(errs.BadArgument, "users are only listed for presence channels")
	}
	users := []map[string]string{}
	for _, id := range h.users(name) {
		users = append(users, map[string]string{"id": id})
	}
	return map[string]any{"users": users}, nil
}

// apiTerminate closes the connections signed in (pusher:signin) as user_id.
func (s *Server) apiTerminate(r *http.Request, h *hub, _ []byte) (any, error) {
	uid := r.PathValue("user_id")
	if uid == "" {
		return nil, errs.New(errs.BadArgument, "missing user id")
	}
	s.mu.Lock()
	var victims []*wsConn
	for c := range s.conns {
		if c.h == h && c.user() == uid {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.kill(codeUnauthorized, "connection terminated by the app")
	}
	return struct{}{}, nil
}
