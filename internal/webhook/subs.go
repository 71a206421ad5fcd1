package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// Spec defaults.
const (
	defaultBackoffInitial = 5 * time.Second
	defaultBackoffMax     = time.Hour
	defaultTimeout        = 10 * time.Second
	defaultConcurrency    = 10
	maxTimeout            = 5 * time.Minute
	maxURLBytes           = 2048
)

// normalize fills a spec's defaults and validates it (errs.BadArgument
// naming the field).
func (s *Service) normalize(ctx context.Context, spec Spec) (Spec, error) {
	bad := func(format string, a ...any) (Spec, error) { return Spec{}, errs.New(errs.BadArgument, format, a...) }
	spec.VHost = cmp.Or(spec.VHost, "/")
	spec.Format = cmp.Or(spec.Format, FormatCloudEvents)
	spec.MaxAttempts = cmp.Or(spec.MaxAttempts, s.cfg.DefaultMaxAttempts)
	spec.BackoffInitial = cmp.Or(spec.BackoffInitial, defaultBackoffInitial)
	spec.BackoffMax = cmp.Or(spec.BackoffMax, max(defaultBackoffMax, spec.BackoffInitial))
	spec.Timeout = cmp.Or(spec.Timeout, defaultTimeout)
	spec.Concurrency = cmp.Or(spec.Concurrency, defaultConcurrency)
	switch {
	case spec.URL == "":
		return bad("url: required")
	case len(spec.URL) > maxURLBytes:
		return bad("url: longer than %d bytes", maxURLBytes)
	case spec.Exchange == "":
		return bad("exchange: required (the default exchange cannot be bound)")
	case len(spec.BindingKey) > 255:
		return bad("binding_key: longer than 255 bytes")
	case spec.MaxAttempts < 1 || spec.MaxAttempts > s.cfg.MaxAttemptsLimit:
		return bad("max_attempts: must be 1 to %d, got %d", s.cfg.MaxAttemptsLimit, spec.MaxAttempts)
	case spec.BackoffInitial < time.Millisecond || spec.BackoffMax < spec.BackoffInitial || spec.BackoffMax > 7*24*time.Hour:
		return bad("backoff_initial_ms, backoff_max_ms: need 1 ms <= initial <= max <= 7 days")
	case spec.Timeout < time.Millisecond || spec.Timeout > maxTimeout:
		return bad("timeout_ms: must be 1 to %d", maxTimeout.Milliseconds())
	case spec.Concurrency < 1 || spec.Concurrency > s.cfg.MaxConcurrency:
		return bad("concurrency: must be 1 to %d, got %d", s.cfg.MaxConcurrency, spec.Concurrency)
	case len(spec.OrderingKey) > 255:
		return bad("ordering_key: longer than 255 bytes")
	}
	switch spec.Format {
	case FormatCloudEvents:
		if spec.Secret == "" {
			spec.Secret = NewSecret()
		}
		if _, err := signingKey(spec.Secret); err != nil {
			return bad("secret: %v", err)
		}
	case FormatWebSub:
		if len(spec.Secret) > 200 {
			return bad("secret: longer than 200 bytes")
		}
	default:
		return bad("format: must be %q or %q", FormatCloudEvents, FormatWebSub)
	}
	if err := s.guard.CheckURL(ctx, spec.URL); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

// ensureTopology declares the subscription's queues, the vhost's retry
// exchange and the bindings (all idempotent).
func (s *Service) ensureTopology(ctx context.Context, sub Subscription) error {
	b, vh := s.b, sub.VHost
	if _, err := b.DeclareExchange(ctx, vh, broker.ExchangeSpec{
		Name: retryExchange, Type: broker.Delayed, Durable: true,
		Arguments: broker.Table{"x-delayed-type": broker.Direct},
	}, false); err != nil {
		return fmt.Errorf("declaring %s: %w", retryExchange, err)
	}
	q, dead := queueName(sub.ID), deadName(sub.ID)
	for _, spec := range []broker.QueueSpec{
		{Name: dead, Durable: true, Arguments: broker.Table{"x-max-length": int64(s.cfg.MaxDeadLetters)}},
		{Name: q, Durable: true, Arguments: broker.Table{
			"x-max-length":              int64(s.cfg.MaxPending),
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": dead,
		}},
	} {
		if _, err := b.DeclareQueue(ctx, vh, spec, false); err != nil {
			if !errs.Is(err, errs.PreconditionFailed) { // declared with other limits by an earlier run
				return fmt.Errorf("declaring queue %s: %w", spec.Name, err)
			}
		}
	}
	for _, bd := range []broker.Binding{
		{Source: sub.Exchange, Destination: q, RoutingKey: sub.BindingKey},
		{Source: retryExchange, Destination: q, RoutingKey: q},
	} {
		if err := b.Bind(ctx, vh, bd); err != nil {
			return fmt.Errorf("binding %s to %s: %w", bd.Destination, bd.Source, err)
		}
	}
	return nil
}

func (s *Service) dropTopology(ctx context.Context, sub Subscription) {
	for _, q := range []string{queueName(sub.ID), deadName(sub.ID)} {
		if _, err := s.b.DeleteQueue(ctx, sub.VHost, q, false, false, ""); err != nil && !errs.Is(err, errs.NotFound) {
			s.log.Warn("deleting webhook queue", "queue", q, "error", err)
		}
	}
}

// Start recovers the persisted subscriptions and starts their dispatchers,
// then follows the subscription records: subscriptions created, changed or
// deleted through another node of a cluster are applied here too.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.state != 0 {
		s.mu.Unlock()
		return errors.New("webhook: already started")
	}
	s.state = 1
	s.mu.Unlock()
	if err := s.b.EnsureJournal(ctx, deliveriesJournal, s.cfg.DeliveryLogSize); err != nil {
		return fmt.Errorf("opening the deliveries journal: %w", err)
	}
	s.startSync()
	recs, err := s.loadRecords()
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := s.ensureTopology(ctx, rec.Sub); err != nil {
			s.log.Error("recovering webhook subscription", "id", rec.Sub.ID, "error", err)
		}
		d := newDispatcher(s, rec)
		s.mu.Lock()
		if s.subs[rec.Sub.ID] != nil { // the syncer was first
			s.mu.Unlock()
			continue
		}
		s.subs[rec.Sub.ID] = d
		s.mu.Unlock()
		if err := d.start(); err != nil {
			s.log.Error("starting webhook dispatcher", "id", rec.Sub.ID, "error", err)
		}
	}
	return nil
}

// Stop stops the dispatchers: attempts in flight may finish until ctx ends,
// then they are cancelled and their events stay queued. Safe to call twice
// or before Start.
func (s *Service) Stop(ctx context.Context) {
	s.mu.Lock()
	if s.state == 2 {
		s.mu.Unlock()
		return
	}
	s.state = 2
	s.stopSync()
	ds := make([]*dispatcher, 0, len(s.subs))
	for _, d := range s.subs {
		ds = append(ds, d)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() { d.halt(ctx) })
	}
	wg.Wait()
	s.cancel()
	s.bg.Wait()
	s.guard.Close()
}

func (s *Service) running() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != 1 {
		return errNotRunning()
	}
	return nil
}

// Create stores a new subscription, declares its queues and bindings and
// starts delivering. The spec's defaults are filled in the result.
func (s *Service) Create(ctx context.Context, spec Spec) (Subscription, error) {
	if err := s.running(); err != nil {
		return Subscription{}, err
	}
	spec, err := s.normalize(ctx, spec)
	if err != nil {
		return Subscription{}, err
	}
	s.mu.Lock()
	n := len(s.subs)
	s.mu.Unlock()
	if n >= s.cfg.MaxSubscriptions {
		return Subscription{}, errs.New(errs.ResourceError, "too many webhook subscriptions (limit %d)", s.cfg.MaxSubscriptions)
	}
	sub := Subscription{ID: newID(), Spec: spec, CreatedAt: time.Now().UTC()}
	if err := s.ensureTopology(ctx, sub); err != nil {
		s.dropTopology(context.WithoutCancel(ctx), sub)
		return Subscription{}, err
	}
	rec := record{Sub: sub}
	if err := s.persist(ctx, rec); err != nil {
		s.dropTopology(context.WithoutCancel(ctx), sub)
		return Subscription{}, err
	}
	d := newDispatcher(s, rec)
	s.mu.Lock()
	if s.state != 1 {
		s.mu.Unlock()
		return Subscription{}, errNotRunning()
	}
	if cur := s.subs[sub.ID]; cur != nil {
		d = cur // the syncer saw the record first
	} else {
		s.subs[sub.ID] = d
	}
	s.mu.Unlock()
	if err := d.start(); err != nil {
		return Subscription{}, err
	}
	return sub, nil
}

func (s *Service) lookup(id string) (*dispatcher, error) {
	s.mu.Lock()
	d := s.subs[id]
	s.mu.Unlock()
	if d == nil {
		return nil, errs.New(errs.NotFound, "no webhook subscription %q", id)
	}
	return d, nil
}

// Update replaces a subscription's target settings (URL, secret, retry
// policy, concurrency, ordering, binding; not its vhost, format or owner) and
// re-enables it if the circuit breaker had disabled it.
func (s *Service) Update(ctx context.Context, id string, spec Spec) (Subscription, error) {
	if err := s.running(); err != nil {
		return Subscription{}, err
	}
	d, err := s.lookup(id)
	if err != nil {
		return Subscription{}, err
	}
	cur := d.snapshot()
	spec.VHost = cmp.Or(spec.VHost, cur.VHost)
	spec.Format = cmp.Or(spec.Format, cur.Format)
	if spec.VHost != cur.VHost || spec.Format != cur.Format || spec.Owner != cur.Owner {
		return Subscription{}, errs.New(errs.BadArgument, "vhost, format and owner of a subscription cannot change")
	}
	spec, err = s.normalize(ctx, spec)
	if err != nil {
		return Subscription{}, err
	}
	return d.modify(ctx, func(rec *record) error {
		if spec.Exchange != rec.Sub.Exchange || spec.BindingKey != rec.Sub.BindingKey {
			if err := s.rebind(ctx, rec.Sub, spec); err != nil {
				return err
			}
		}
		if spec.Secret != rec.Sub.Secret {
			rec.PrevSecret, rec.PrevUntil = "", time.Time{}
		}
		rec.Sub.Spec = spec
		rec.Sub.Disabled, rec.Sub.DisabledReason = false, ""
		return nil
	})
}

// Delete stops a subscription's dispatcher and deletes its queues (pending
// events, retries waiting in the delay log and dead letters are dropped) and
// its record.
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := s.running(); err != nil {
		return err
	}
	d, err := s.lookup(id)
	if err != nil {
		return err
	}
	return s.remove(ctx, d)
}

func (s *Service) remove(ctx context.Context, d *dispatcher) error {
	sub := d.snapshot()
	s.mu.Lock()
	if s.subs[sub.ID] != d {
		s.mu.Unlock()
		return errs.New(errs.NotFound, "no webhook subscription %q", sub.ID)
	}
	delete(s.subs, sub.ID)
	s.removing[sub.ID] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.removing, sub.ID)
		s.mu.Unlock()
	}()
	d.remove(ctx)
	// The record goes first: the other nodes of a cluster stop their
	// dispatchers on it, before the queues' deletion reaches them (which
	// would otherwise look like a queue deleted behind their back).
	if err := s.b.DeleteRecord(ctx, recordKind, sub.ID); err != nil {
		return fmt.Errorf("deleting subscription %s: %w", sub.ID, err)
	}
	s.dropTopology(ctx, sub)
	if err := s.b.JournalDelete(ctx, deliveriesJournal, sub.ID); err != nil {
		s.log.Warn("deleting a webhook subscription's deliveries", "id", sub.ID, "error", err)
	}
	return nil
}

// Get returns a subscription.
func (s *Service) Get(id string) (Subscription, bool) {
	d, err := s.lookup(id)
	if err != nil {
		return Subscription{}, false
	}
	return d.snapshot(), true
}

// List returns every subscription (all owners), sorted by creation time.
func (s *Service) List() []Subscription {
	s.mu.Lock()
	out := make([]Subscription, 0, len(s.subs))
	for _, d := range s.subs {
		out = append(out, d.snapshot())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Subscription) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}
