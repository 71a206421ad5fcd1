package websub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// Config configures a Hub. Every zero value is documented; defaults are
// applied by New.
type Config struct {
	// Broker routes topic content to the subscriptions and stores the hub's
	// state (topic exchanges, leases). Required.
	Broker *broker.Broker
	// Distributor delivers to callbacks: durable queue, retries, signatures,
	// 410 handling. Required; in Herald it is WebhookDistributor(webhook
	// service).
	Distributor Distributor
	// CheckURL refuses callback and topic URLs the hub must not reach (the
	// webhook service's SSRF guard). Required.
	CheckURL func(ctx context.Context, rawURL string) error
	// Client makes verification, denial and topic fetch requests. It must
	// refuse disallowed addresses at dial time (the guard's client), since
	// a name can resolve differently after CheckURL. Required.
	Client *http.Client
	// Logger receives the hub's logs; nil means slog.Default().
	Logger *slog.Logger

	// VHost is where topics without an exchange binding live (their fanout
	// exchange herald.websub.t.<hash>) and where the lease records are
	// kept; "" means "/".
	VHost string
	// HubURL is the public URL of the hub, sent as Link rel="hub" on
	// distribution. "" derives it from each subscription request
	// (scheme://Host/websub/hub); set it behind a proxy.
	HubURL string

	// LeaseDefault is the lease granted when hub.lease_seconds is absent;
	// 0 means 10 days.
	LeaseDefault time.Duration
	// LeaseMin and LeaseMax bound a requested lease (a request outside is
	// clamped, and the granted value is sent as hub.lease_seconds in the
	// verification request); 0 means 5 minutes and 30 days.
	LeaseMin, LeaseMax time.Duration

	// MaxSubscriptions bounds the hub's subscriptions; 0 means 10,000.
	// MaxSubscriptionsPerTopic bounds one topic's; 0 means 1,000. A new
	// subscription over either is denied (hub.mode=denied to the callback);
	// re-subscriptions are always accepted.
	MaxSubscriptions, MaxSubscriptionsPerTopic int
	// MaxURLBytes bounds hub.callback and hub.topic; 0 means 2,048. Longer
	// URLs are refused with 400.
	MaxURLBytes int
	// MaxContentBytes bounds topic content fetched after a publish
	// notification; 0 means 1 MiB (never more than the broker's message
	// size). Larger content is not distributed (logged).
	MaxContentBytes int
	// MaxRequestBytes bounds a hub request body; 0 means 64 KiB (413 over).
	MaxRequestBytes int
	// MaxPending bounds verifications, denials and fetches waiting for a
	// worker; 0 means 1,000. A request beyond it gets 503 with Retry-After.
	MaxPending int
	// Workers is how many verifications, denials and fetches run at once; 0
	// means 8.
	Workers int
	// RequestTimeout bounds one verification, denial or fetch request; 0
	// means 10 s.
	RequestTimeout time.Duration
	// ReconcileInterval is how often leases are checked against the
	// distributor's subscriptions (removing the leases of subscriptions it
	// ended, e.g. on 410 Gone); 0 means 1 minute. Lease expiry itself is
	// timed exactly.
	ReconcileInterval time.Duration

	// AllowTopic, if set, may refuse a topic for a subscription: a non-nil
	// error denies it (hub.mode=denied, hub.reason = the error text).
	AllowTopic func(topic string) error
	// AllowRemoteGuest lets the user "guest" use the admin API from
	// non-loopback clients (false: loopback only, like RabbitMQ).
	AllowRemoteGuest bool
	// Now is the clock; nil means time.Now. Tests only.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.VHost = cmp.Or(c.VHost, "/")
	c.LeaseDefault = cmp.Or(c.LeaseDefault, 10*24*time.Hour)
	c.LeaseMin = cmp.Or(c.LeaseMin, 5*time.Minute)
	c.LeaseMax = cmp.Or(c.LeaseMax, 30*24*time.Hour)
	c.MaxSubscriptions = cmp.Or(c.MaxSubscriptions, 10_000)
	c.MaxSubscriptionsPerTopic = cmp.Or(c.MaxSubscriptionsPerTopic, 1_000)
	c.MaxURLBytes = cmp.Or(c.MaxURLBytes, 2048)
	c.MaxContentBytes = cmp.Or(c.MaxContentBytes, 1<<20)
	c.MaxRequestBytes = cmp.Or(c.MaxRequestBytes, 64<<10)
	c.MaxPending = cmp.Or(c.MaxPending, 1000)
	c.Workers = cmp.Or(c.Workers, 8)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, 10*time.Second)
	c.ReconcileInterval = cmp.Or(c.ReconcileInterval, time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Broker == nil:
		return errors.New("websub: Config.Broker is required")
	case c.Distributor == nil:
		return errors.New("websub: Config.Distributor is required")
	case c.CheckURL == nil:
		return errors.New("websub: Config.CheckURL is required")
	case c.Client == nil:
		return errors.New("websub: Config.Client is required")
	case c.LeaseMin < time.Second || c.LeaseDefault < c.LeaseMin || c.LeaseMax < c.LeaseDefault:
		return fmt.Errorf("websub: need 1s <= Config.LeaseMin (%s) <= LeaseDefault (%s) <= LeaseMax (%s)", c.LeaseMin, c.LeaseDefault, c.LeaseMax)
	}
	for name, v := range map[string]int{
		"MaxSubscriptions": c.MaxSubscriptions, "MaxSubscriptionsPerTopic": c.MaxSubscriptionsPerTopic,
		"MaxURLBytes": c.MaxURLBytes, "MaxContentBytes": c.MaxContentBytes, "MaxRequestBytes": c.MaxRequestBytes,
		"MaxPending": c.MaxPending, "Workers": c.Workers,
	} {
		if v < 0 {
			return fmt.Errorf("websub: Config.%s must not be negative", name)
		}
	}
	if c.RequestTimeout < 0 || c.ReconcileInterval < 0 {
		return errors.New("websub: Config.RequestTimeout and ReconcileInterval must not be negative")
	}
	return nil
}
