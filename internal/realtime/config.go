package realtime

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// App is a Pusher app: the ID names it in the HTTP API and in its exchange
// ("pusher.{ID}"), the Key is public (clients connect to /app/{Key}) and the
// Secret signs channel authorizations, HTTP API requests, SSE tokens and
// webhooks.
type App struct {
	ID     string
	Key    string
	Secret string
	// DisableClientEvents refuses client-* events on this app's channels
	// (Pusher's per-app switch). The zero value allows them.
	DisableClientEvents bool
	// Webhooks receive this app's channel_occupied, channel_vacated,
	// member_added, member_removed and client_event notifications.
	Webhooks []Webhook
}

// Webhook is an app webhook endpoint.
type Webhook struct {
	// URL receives POSTs of {"time_ms":..., "events":[...]}. Required.
	URL string
	// Events keeps only these event names; nil or empty means all.
	Events []string
}

// Config configures a Server. Every zero value is documented; defaults are
// applied by New.
type Config struct {
	// Broker carries events between faces and nodes. nil means in-process
	// only: events triggered here reach this server's subscribers, nothing is
	// bridged to AMQP.
	Broker *broker.Broker
	// VHost is the broker virtual host of the apps' exchanges; "" means "/".
	VHost string
	// Logger receives the face's logs; nil means slog.Default().
	Logger *slog.Logger
	// Apps are the Pusher apps served. At least one is required.
	Apps []App

	// MaxConnections bounds WebSocket plus SSE connections on this server;
	// 0 means 100,000. Beyond it a WebSocket gets pusher:error 4100 (over
	// capacity, pusher-js retries with backoff) and SSE gets 503.
	MaxConnections int
	// MaxMessageBytes bounds an event's data (HTTP trigger, client event,
	// broker message body) in bytes; 0 means 10 KiB, Pusher's limit. A
	// WebSocket frame may be at most MaxMessageBytes+4 KiB (envelope,
	// presence channel_data) or the connection is closed with 1009.
	MaxMessageBytes int
	// ClientEventsPerSecond bounds client-* events per connection (a token
	// bucket with a burst of the same size); 0 means 10, Pusher's limit.
	// Excess events are refused with pusher:error 4301.
	ClientEventsPerSecond int
	// SendQueue bounds the bytes queued for one connection (plus the batch
	// being written); 0 means 1 MiB. A connection over it is disconnected
	// with close code 4110 (pusher-js reconnects with backoff).
	SendQueue int
	// MaxChannelsPerConnection bounds subscriptions of one connection; 0
	// means 1,000.
	MaxChannelsPerConnection int
	// MaxPresenceMembers bounds distinct users in a presence channel; 0
	// means 100, Pusher's limit.
	MaxPresenceMembers int

	// HistorySize is how many recent events each channel keeps for resume
	// (SSE Last-Event-ID, the WebSocket resume extension); 0 means 100; a
	// negative value disables history (resume then always reports a gap).
	HistorySize int
	// HistoryTTL is how long an event stays in history; 0 means 5 minutes.
	HistoryTTL time.Duration
	// HistoryBytes bounds the memory (approximate: data, names and their
	// encodings) held in history per app; 0 means 64 MiB. A channel over it
	// gives up its own oldest events first; when other channels hold the
	// budget, new events are delivered but not kept until older ones expire.
	HistoryBytes int64
	// HistoryChannels bounds the channels per app holding history; 0 means
	// 100,000. Beyond it, channels without a record yet get none (their
	// events are delivered but not kept) until older records expire.
	HistoryChannels int

	// ActivityTimeout is sent to clients in connection_established (they ping
	// after that much silence); the server also pings a connection silent for
	// that long. 0 means 120 s, Pusher's value.
	ActivityTimeout time.Duration
	// PongTimeout is how long a pinged connection has to answer before it is
	// closed with 4201; 0 means 30 s.
	PongTimeout time.Duration
	// WriteTimeout bounds one write to a client; 0 means 10 s.
	WriteTimeout time.Duration
	// SSEKeepAlive is the interval of ": keep-alive" comments on SSE streams;
	// 0 means 20 s.
	SSEKeepAlive time.Duration
	// AuthTimestampWindow is how far an HTTP API request's auth_timestamp
	// may be from now; 0 means 600 s, Pusher's value.
	AuthTimestampWindow time.Duration

	// WebhookQueue bounds notifications waiting to be posted; 0 means
	// 10,000. Beyond it notifications are dropped (and logged).
	WebhookQueue int
	// WebhookTimeout bounds one webhook POST; 0 means 5 s. A failed POST is
	// retried twice (after 1 s and 2 s), then dropped.
	WebhookTimeout time.Duration

	// Now is the clock; nil means time.Now. Tests only.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.VHost = cmp.Or(c.VHost, "/")
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.MaxConnections = cmp.Or(c.MaxConnections, 100_000)
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, 10<<10)
	c.ClientEventsPerSecond = cmp.Or(c.ClientEventsPerSecond, 10)
	c.SendQueue = cmp.Or(c.SendQueue, 1<<20)
	c.MaxChannelsPerConnection = cmp.Or(c.MaxChannelsPerConnection, 1000)
	c.MaxPresenceMembers = cmp.Or(c.MaxPresenceMembers, 100)
	c.HistorySize = cmp.Or(c.HistorySize, 100)
	c.HistoryTTL = cmp.Or(c.HistoryTTL, 5*time.Minute)
	c.HistoryChannels = cmp.Or(c.HistoryChannels, 100_000)
	c.HistoryBytes = cmp.Or(c.HistoryBytes, 64<<20)
	c.ActivityTimeout = cmp.Or(c.ActivityTimeout, 120*time.Second)
	c.PongTimeout = cmp.Or(c.PongTimeout, 30*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 10*time.Second)
	c.SSEKeepAlive = cmp.Or(c.SSEKeepAlive, 20*time.Second)
	c.AuthTimestampWindow = cmp.Or(c.AuthTimestampWindow, 600*time.Second)
	c.WebhookQueue = cmp.Or(c.WebhookQueue, 10_000)
	c.WebhookTimeout = cmp.Or(c.WebhookTimeout, 5*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

var appIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c Config) validate() error {
	if len(c.Apps) == 0 {
		return fmt.Errorf("realtime: Config.Apps: at least one app is required")
	}
	ids, keys := map[string]bool{}, map[string]bool{}
	for i, a := range c.Apps {
		if err := a.validate(); err != nil {
			return fmt.Errorf("realtime: Config.Apps[%d]: %w", i, err)
		}
		if ids[a.ID] {
			return fmt.Errorf("realtime: Config.Apps[%d].ID: duplicate app id %q", i, a.ID)
		}
		if keys[a.Key] {
			return fmt.Errorf("realtime: Config.Apps[%d].Key: duplicate app key", i)
		}
		ids[a.ID], keys[a.Key] = true, true
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxConnections", int64(c.MaxConnections)},
		{"MaxMessageBytes", int64(c.MaxMessageBytes)},
		{"ClientEventsPerSecond", int64(c.ClientEventsPerSecond)},
		{"SendQueue", int64(c.SendQueue)},
		{"MaxChannelsPerConnection", int64(c.MaxChannelsPerConnection)},
		{"MaxPresenceMembers", int64(c.MaxPresenceMembers)},
		{"HistoryChannels", int64(c.HistoryChannels)},
		{"HistoryBytes", c.HistoryBytes},
		{"HistoryTTL", int64(c.HistoryTTL)},
		{"ActivityTimeout", int64(c.ActivityTimeout)},
		{"PongTimeout", int64(c.PongTimeout)},
		{"WriteTimeout", int64(c.WriteTimeout)},
		{"SSEKeepAlive", int64(c.SSEKeepAlive)},
		{"AuthTimestampWindow", int64(c.AuthTimestampWindow)},
		{"WebhookQueue", int64(c.WebhookQueue)},
		{"WebhookTimeout", int64(c.WebhookTimeout)},
	} {
		if f.v < 0 {
			return fmt.Errorf("realtime: Config.%s: must not be negative", f.name)
		}
	}
	if c.ActivityTimeout != 0 && c.ActivityTimeout < time.Second {
		return fmt.Errorf("realtime: Config.ActivityTimeout: must be at least 1s (it is sent in whole seconds)")
	}
	return nil
}

func (a App) validate() error {
	if !appIDRe.MatchString(a.ID) {
		return fieldError("ID", fmt.Sprintf("%q must be 1-64 characters of [A-Za-z0-9_-]", a.ID))
	}
	if a.Key == "" || strings.ContainsAny(a.Key, ":/?# ") {
		return fieldError("Key", "must be non-empty without ':', '/', '?', '#' or spaces")
	}
	if a.Secret == "" {
		return fieldError("Secret", "must be non-empty")
	}
	for i, w := range a.Webhooks {
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return fmt.Errorf("Webhooks[%d].URL: %q is not an http(s) URL", i, w.URL)
		}
		for _, e := range w.Events {
			switch e {
			case hookOccupied, hookVacated, hookMemberAdded, hookMemberRemoved, hookClientEvent:
			default:
				return fmt.Errorf("Webhooks[%d].Events: unknown event %q", i, e)
			}
		}
	}
	return nil
}

// fieldError names the invalid field of an App.
func fieldError(field, msg string) error { return errors.New(field + ": " + msg) }

// ParseApp parses the --pusher-app flag value "ID:KEY:SECRET". The secret
// is everything after the second colon.
func ParseApp(s string) (App, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return App{}, fmt.Errorf("pusher app %q: want ID:KEY:SECRET", redact(s))
	}
	a := App{ID: parts[0], Key: parts[1], Secret: parts[2]}
	if err := a.validate(); err != nil {
		return App{}, fmt.Errorf("pusher app %q: %w", redact(s), err)
	}
	return a, nil
}

// redact hides the secret part of an ID:KEY:SECRET string.
func redact(s string) string {
	if i := strings.Index(s, ":"); i >= 0 {
		if j := strings.Index(s[i+1:], ":"); j >= 0 {
			return s[:i+1+j+1] + "***"
		}
	}
	return s
}
