package webhook

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
	"github.com/heraldhq/herald/internal/httpapi"
)

// Bounds of the management endpoints.
const (
	maxAPIBodyBytes    = 64 << 10
	maxDeadLetterList  = 1000
	maxRedrive         = 100_000
	defaultDeadLetters = 100
)

func (s *Service) mount(mux *http.ServeMux) {
	// The path is split by hand: Go's ServeMux cannot route a segment that
	// is "%2F" (the vhost "/") to a {wildcard}.
	mux.HandleFunc("POST /v1/events/", s.handleEvents)
	mux.HandleFunc("POST /v1/webhooks", s.api(s.handleCreate))
	mux.HandleFunc("GET /v1/webhooks", s.api(s.handleList))
	mux.HandleFunc("GET /v1/webhooks/{id}", s.api(s.handleGet))
	mux.HandleFunc("PATCH /v1/webhooks/{id}", s.api(s.handlePatch))
	mux.HandleFunc("DELETE /v1/webhooks/{id}", s.api(s.handleDelete))
	mux.HandleFunc("GET /v1/webhooks/{id}/deliveries", s.api(s.handleDeliveries))
	mux.HandleFunc("GET /v1/webhooks/{id}/dead-letters", s.api(s.handleDeadLetters))
	mux.HandleFunc("POST /v1/webhooks/{id}/dead-letters/redrive", s.api(s.handleRedrive))
}

func (s *Service) authenticate(r *http.Request) (broker.User, error) {
	return httpapi.Authenticate(s.b, r, s.cfg.AllowRemoteGuest)
}

func writeError(w http.ResponseWriter, err error) { httpapi.WriteError(w, err) }

func writeJSON(w http.ResponseWriter, code int, v any) { httpapi.WriteJSON(w, code, v) }

// api authenticates a /v1/webhooks request and writes the handler's answer
// or error.
func (s *Service) api(h func(r *http.Request, user string) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := s.authenticate(r)
		if err != nil {
			writeError(w, err)
			return
		}
		code, v, err := h(r, u.Name)
		if err != nil {
			if kind := errs.KindOf(err); kind.HTTPStatus() >= 500 {
				s.log.Warn("webhook request failed", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			writeError(w, err)
			return
		}
		if v == nil {
			w.WriteHeader(code)
			return
		}
		writeJSON(w, code, v)
	}
}

// subJSON is a subscription as the API shows it. The secret is shown only
// when created or rotated.
type subJSON struct {
	ID               string    `json:"id"`
	URL              string    `json:"url"`
	VHost            string    `json:"vhost"`
	Exchange         string    `json:"exchange"`
	BindingKey       string    `json:"binding_key"`
	Secret           string    `json:"secret,omitempty"`
	MaxAttempts      int       `json:"max_attempts"`
	BackoffInitialMs int64     `json:"backoff_initial_ms"`
	BackoffMaxMs     int64     `json:"backoff_max_ms"`
	TimeoutMs        int64     `json:"timeout_ms"`
	Concurrency      int       `json:"concurrency"`
	OrderingKey      string    `json:"ordering_key,omitempty"`
	Format           Format    `json:"format"`
	Owner            string    `json:"owner,omitempty"`
	Paused           bool      `json:"paused"`
	Disabled         bool      `json:"disabled"`
	DisabledReason   string    `json:"disabled_reason,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	Queue            string    `json:"queue"`
	DeadLetterQueue  string    `json:"dead_letter_queue"`
	Pending          int       `json:"pending"`
	DeadLetters      int       `json:"dead_letters"`
}

func (s *Service) toJSON(sub Subscription, withSecret bool) subJSON {
	j := subJSON{
		ID: sub.ID, URL: sub.URL, VHost: sub.VHost, Exchange: sub.Exchange, BindingKey: sub.BindingKey,
		MaxAttempts: sub.MaxAttempts, BackoffInitialMs: sub.BackoffInitial.Milliseconds(),
		BackoffMaxMs: sub.BackoffMax.Milliseconds(), TimeoutMs: sub.Timeout.Milliseconds(),
		Concurrency: sub.Concurrency, OrderingKey: sub.OrderingKey, Format: sub.Format, Owner: sub.Owner,
		Paused: sub.Paused, Disabled: sub.Disabled, DisabledReason: sub.DisabledReason, CreatedAt: sub.CreatedAt,
		Queue: queueName(sub.ID), DeadLetterQueue: deadName(sub.ID),
	}
	if withSecret {
		j.Secret = sub.Secret
	}
	if qi, err := s.b.Queue(sub.VHost, j.Queue); err == nil {
		j.Pending = qi.Messages
	}
	if qi, err := s.b.Queue(sub.VHost, j.DeadLetterQueue); err == nil {
		j.DeadLetters = qi.Messages
	}
	return j
}

// specJSON is the body of POST and PATCH; absent fields keep their value
// (PATCH) or default (POST).
type specJSON struct {
	URL              *string `json:"url"`
	VHost            *string `json:"vhost"`
	Exchange         *string `json:"exchange"`
	BindingKey       *string `json:"binding_key"`
	Secret           *string `json:"secret"`
	MaxAttempts      *int    `json:"max_attempts"`
	BackoffInitialMs *int64  `json:"backoff_initial_ms"`
	BackoffMaxMs     *int64  `json:"backoff_max_ms"`
	TimeoutMs        *int64  `json:"timeout_ms"`
	Concurrency      *int    `json:"concurrency"`
	OrderingKey      *string `json:"ordering_key"`
	// PATCH only.
	Paused       *bool `json:"paused"`
	Enabled      *bool `json:"enabled"`
	RotateSecret bool  `json:"rotate_secret"`
}

func (j *specJSON) apply(sp *Spec) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&sp.URL, j.URL)
	set(&sp.VHost, j.VHost)
	set(&sp.Exchange, j.Exchange)
	set(&sp.BindingKey, j.BindingKey)
	set(&sp.OrderingKey, j.OrderingKey)
	if j.MaxAttempts != nil {
		sp.MaxAttempts = *j.MaxAttempts
	}
	if j.Concurrency != nil {
		sp.Concurrency = *j.Concurrency
	}
	ms := func(dst *time.Duration, v *int64) {
		if v != nil {
			*dst = time.Duration(*v) * time.Millisecond
		}
	}
	ms(&sp.BackoffInitial, j.BackoffInitialMs)
	ms(&sp.BackoffMax, j.BackoffMaxMs)
	ms(&sp.Timeout, j.TimeoutMs)
}

func decode(r *http.Request, dst any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBodyBytes+1))
	if err != nil {
		return errs.Wrap(errs.BadArgument, err, "reading request body")
	}
	if len(data) > maxAPIBodyBytes {
		return errs.New(errs.TooLarge, "request body larger than %d bytes", maxAPIBodyBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return errs.New(errs.BadArgument, "bad JSON body: %v", err)
	}
	return nil
}

// canManage checks that user may configure the subscription's queue.
func (s *Service) canManage(user string, sub Subscription) error {
	return s.b.Authorize(user, sub.VHost, broker.AccessConfigure, queueName(sub.ID))
}

// subFor returns the API-visible subscription {id} that user may manage.
func (s *Service) subFor(r *http.Request, user string) (*dispatcher, Subscription, error) {
	d, err := s.lookup(r.PathValue("id"))
	if err != nil {
		return nil, Subscription{}, err
	}
	sub := d.snapshot()
	if sub.Owner != "" {
		return nil, Subscription{}, errs.New(errs.NotFound, "no webhook subscription %q", sub.ID)
	}
	if err := s.canManage(user, sub); err != nil {
		return nil, Subscription{}, err
	}
	return d, sub, nil
}

func (s *Service) handleCreate(r *http.Request, user string) (int, any, error) {
	var j specJSON
	if err := decode(r, &j); err != nil {
		return 0, nil, err
	}
	if j.Paused != nil || j.Enabled != nil || j.RotateSecret {
		return 0, nil, errs.New(errs.BadArgument, "paused, enabled and rotate_secret are PATCH fields")
	}
	var spec Spec
	j.apply(&spec)
	if j.Secret != nil {
		spec.Secret = *j.Secret
	}
	spec.VHost = cmp.Or(spec.VHost, "/")
	// Reading from the exchange is what a binding needs; configuring the
	// queues is checked against the herald.webhook. prefix.
	if err := s.b.Authorize(user, spec.VHost, broker.AccessRead, spec.Exchange); err != nil {
		return 0, nil, err
	}
	if err := s.b.Authorize(user, spec.VHost, broker.AccessConfigure, queueName("new")); err != nil {
		return 0, nil, err
	}
	sub, err := s.Create(r.Context(), spec)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, s.toJSON(sub, true), nil
}

func (s *Service) handleList(r *http.Request, user string) (int, any, error) {
	out := []subJSON{}
	for _, sub := range s.List() {
		if sub.Owner == "" && s.canManage(user, sub) == nil {
			out = append(out, s.toJSON(sub, false))
		}
	}
	return http.StatusOK, out, nil
}

func (s *Service) handleGet(r *http.Request, user string) (int, any, error) {
	_, sub, err := s.subFor(r, user)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.toJSON(sub, false), nil
}

func (s *Service) handleDelete(r *http.Request, user string) (int, any, error) {
	d, _, err := s.subFor(r, user)
	if err != nil {
		return 0, nil, err
	}
	if err := s.remove(r.Context(), d); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// handlePatch changes settings, pauses or resumes (paused), re-enables a
// subscription the circuit breaker disabled (enabled: true) and rotates the
// secret (rotate_secret, or a new secret): the old one keeps signing next to
// the new one for Config.SecretGrace.
func (s *Service) handlePatch(r *http.Request, user string) (int, any, error) {
	d, cur, err := s.subFor(r, user)
	if err != nil {
		return 0, nil, err
	}
	var j specJSON
	if err := decode(r, &j); err != nil {
		return 0, nil, err
	}
	if j.Enabled != nil && !*j.Enabled {
		return 0, nil, errs.New(errs.BadArgument, "enabled: only true is accepted (use paused to stop deliveries)")
	}
	if j.VHost != nil && *j.VHost != cur.VHost {
		return 0, nil, errs.New(errs.BadArgument, "vhost: cannot change")
	}
	spec := cur.Spec
	j.apply(&spec)
	newSecret := ""
	switch {
	case j.Secret != nil:
		newSecret = *j.Secret
	case j.RotateSecret:
		newSecret = NewSecret()
	}
	if newSecret != "" {
		spec.Secret = newSecret
	}
	if spec != cur.Spec {
		if spec, err = s.normalize(r.Context(), spec); err != nil {
			return 0, nil, err
		}
	}
	sub, err := d.modify(r.Context(), func(rec *record) error {
		if spec.Exchange != rec.Sub.Exchange || spec.BindingKey != rec.Sub.BindingKey {
			if err := s.rebind(r.Context(), rec.Sub, spec); err != nil {
				return err
			}
		}
		if newSecret != "" && newSecret != rec.Sub.Secret {
			rec.PrevSecret, rec.PrevUntil = rec.Sub.Secret, time.Now().Add(s.cfg.SecretGrace).UTC()
		}
		rec.Sub.Spec = spec
		if j.Paused != nil {
			rec.Sub.Paused = *j.Paused
		}
		if j.Enabled != nil {
			rec.Sub.Disabled, rec.Sub.DisabledReason = false, ""
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.toJSON(sub, newSecret != ""), nil
}

// rebind moves the subscription's queue binding to spec's exchange and key.
func (s *Service) rebind(ctx context.Context, cur Subscription, spec Spec) error {
	q := queueName(cur.ID)
	nb := broker.Binding{Source: spec.Exchange, Destination: q, RoutingKey: spec.BindingKey}
	if err := s.b.Bind(ctx, cur.VHost, nb); err != nil {
		return err
	}
	ob := broker.Binding{Source: cur.Exchange, Destination: q, RoutingKey: cur.BindingKey}
	if err := s.b.Unbind(ctx, cur.VHost, ob); err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	return nil
}

func (s *Service) handleDeliveries(r *http.Request, user string) (int, any, error) {
	d, _, err := s.subFor(r, user)
	if err != nil {
		return 0, nil, err
	}
	att, err := s.deliveries(r.Context(), d.id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, att, nil
}

func queryLimit(r *http.Request, def, limit int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > limit {
		return 0, errs.New(errs.BadArgument, "limit: must be 1 to %d", limit)
	}
	return n, nil
}

func (s *Service) handleDeadLetters(r *http.Request, user string) (int, any, error) {
	_, sub, err := s.subFor(r, user)
	if err != nil {
		return 0, nil, err
	}
	n, err := queryLimit(r, defaultDeadLetters, maxDeadLetterList)
	if err != nil {
		return 0, nil, err
	}
	out, err := s.DeadLetters(r.Context(), sub.ID, n)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

func (s *Service) handleRedrive(r *http.Request, user string) (int, any, error) {
	_, sub, err := s.subFor(r, user)
	if err != nil {
		return 0, nil, err
	}
	n, err := queryLimit(r, maxRedrive, maxRedrive)
	if err != nil {
		return 0, nil, err
	}
	moved, err := s.Redrive(r.Context(), sub.ID, n)
	if err != nil && moved == 0 {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"redriven": moved}, nil
}

// eventsPath splits /v1/events/{vhost}/{exchange} of the escaped path.
func eventsPath(r *http.Request) (vhost, exchange string, err error) {
	rest, _ := strings.CutPrefix(r.URL.EscapedPath(), "/v1/events/")
	segs := strings.Split(rest, "/")
	if len(segs) == 2 && segs[0] != "" && segs[1] != "" {
		vhost, err1 := url.PathUnescape(segs[0])
		exchange, err2 := url.PathUnescape(segs[1])
		if err1 == nil && err2 == nil {
			return vhost, exchange, nil
		}
	}
	return "", "", errs.New(errs.NotFound, "expected /v1/events/{vhost}/{exchange} (vhost \"/\" is %%2F)")
}
