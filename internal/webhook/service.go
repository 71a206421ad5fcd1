package webhook

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// Service is the CloudEvents ingestion and webhook face. Create with New,
// then Start; Stop to shut down.
type Service struct {
	cfg   Config
	b     *broker.Broker
	log   *slog.Logger
	guard *TargetGuard

	mu       sync.Mutex // guards subs, removing and state
	subs     map[string]*dispatcher
	removing map[string]bool // ids being deleted through this node
	state    int             // 0 new, 1 running, 2 stopped

	sync syncer // applies record changes (sync.go)

	bg     sync.WaitGroup                         // background work (breaker trips, 410 removals)
	snips  sync.Pool                              // *[]byte of SnippetBytes, for response snippets
	jitter func(ceil time.Duration) time.Duration // the backoff's random part; tests replace it

	ctx    context.Context // cancelled by Stop after the drain
	cancel context.CancelFunc
}

func (c Config) withDefaults() Config {
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, 1<<20)
	c.MaxBatchEvents = cmp.Or(c.MaxBatchEvents, 1000)
	c.MaxSubscriptions = cmp.Or(c.MaxSubscriptions, 10_000)
	c.MaxConcurrency = cmp.Or(c.MaxConcurrency, 512)
	c.MaxAttemptsLimit = cmp.Or(c.MaxAttemptsLimit, 100)
	c.DefaultMaxAttempts = cmp.Or(c.DefaultMaxAttempts, 8)
	c.MaxPending = cmp.Or(c.MaxPending, 1_000_000)
	c.MaxDeadLetters = cmp.Or(c.MaxDeadLetters, 100_000)
	c.DeliveryLogSize = cmp.Or(c.DeliveryLogSize, 1000)
	c.SnippetBytes = cmp.Or(c.SnippetBytes, 1024)
	c.BreakerFailures = cmp.Or(c.BreakerFailures, 100)
	c.BreakerPeriod = cmp.Or(c.BreakerPeriod, 10*time.Minute)
	c.SecretGrace = cmp.Or(c.SecretGrace, 24*time.Hour)
	return c
}

// New validates cfg and returns a service that is not started.
func New(cfg Config) (*Service, error) {
	if cfg.Broker == nil {
		return nil, errors.New("webhook: Config.Broker is required")
	}
	for name, v := range map[string]int64{
		"MaxBodyBytes": cfg.MaxBodyBytes, "MaxBatchEvents": int64(cfg.MaxBatchEvents),
		"MaxSubscriptions": int64(cfg.MaxSubscriptions), "MaxConcurrency": int64(cfg.MaxConcurrency),
		"MaxAttemptsLimit": int64(cfg.MaxAttemptsLimit), "DefaultMaxAttempts": int64(cfg.DefaultMaxAttempts),
		"MaxPending": int64(cfg.MaxPending), "MaxDeadLetters": int64(cfg.MaxDeadLetters),
		"DeliveryLogSize": int64(cfg.DeliveryLogSize), "SnippetBytes": int64(cfg.SnippetBytes),
		"BreakerPeriod": int64(cfg.BreakerPeriod), "SecretGrace": int64(cfg.SecretGrace),
	} {
		if v < 0 {
			return nil, errors.New("webhook: Config." + name + " must not be negative")
		}
	}
	cfg = cfg.withDefaults()
	s := &Service{
		cfg:      cfg,
		b:        cfg.Broker,
		log:      cfg.Logger,
		guard:    NewTargetGuard(cfg.AllowPrivate),
		subs:     map[string]*dispatcher{},
		removing: map[string]bool{},
		jitter:   fullJitter,
	}
	s.sync.init()
	s.snips.New = func() any { b := make([]byte, cfg.SnippetBytes); return &b }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Guard returns the SSRF guard every delivery goes through.
func (s *Service) Guard() *TargetGuard { return s.guard }

func errNotRunning() error { return errs.New(errs.Unavailable, "webhook service is not running") }

// Mount registers the HTTP endpoints on mux: POST /v1/events/{vhost}/{exchange}
// and /v1/webhooks...
func (s *Service) Mount(mux *http.ServeMux) { s.mount(mux) }
