package httpapi

import (
	"cmp"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// Config configures an API.
type Config struct {
	// Broker serves every request. Required.
	Broker *broker.Broker
	// Logger receives internal errors (HTTP 500s); nil means slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body in bytes; 0 means 16 MiB. Larger
	// bodies are refused with 413 before anything changes.
	MaxBodyBytes int
	// MaxGetCount bounds "count" of POST /api/queues/{vhost}/{name}/get;
	// 0 means 1,000. Larger counts are refused with 400.
	MaxGetCount int
	// AllowRemoteGuest accepts the user "guest" from non-loopback clients.
	// false (the default) refuses it, as RabbitMQ's loopback_users does.
	AllowRemoteGuest bool
	// Version is Herald's version, shown as product_version in /api/overview;
	// "" means "dev".
	Version string
	// Now is the clock; nil means time.Now. Tests only.
	Now func() time.Time
}

// API is the management HTTP face. It is an http.Handler for the paths under
// /api/; it holds no goroutines and needs no Start or Stop, but it must only
// receive requests while its broker is started.
type API struct {
	cfg Config
	b   *broker.Broker
	log *slog.Logger
	mux *http.ServeMux

	ratesMu sync.Mutex // guards last
	last    rateSample
}

// New returns an API serving cfg.Broker. It panics if cfg.Broker is nil or a
// limit is negative (programming errors, like http.Handle with a nil handler).
func New(cfg Config) *API {
	switch {
	case cfg.Broker == nil:
		panic("httpapi: Config.Broker is required")
	case cfg.MaxBodyBytes < 0:
		panic("httpapi: Config.MaxBodyBytes must not be negative")
	case cfg.MaxGetCount < 0:
		panic("httpapi: Config.MaxGetCount must not be negative")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, 16<<20)
	cfg.MaxGetCount = cmp.Or(cfg.MaxGetCount, 1000)
	cfg.Version = cmp.Or(cfg.Version, "dev")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &API{cfg: cfg, b: cfg.Broker, log: cfg.Logger, mux: http.NewServeMux()}
	a.routes()
	return a
}

// Handler returns the handler for the paths under /api/ (the API itself).
func (a *API) Handler() http.Handler { return a }

// Mount registers the API on mux at "/api/", next to other faces' handlers.
func (a *API) Mount(mux *http.ServeMux) { mux.Handle("/api/", a) }

// ServeHTTP routes r. Unknown paths and methods get the JSON error envelope
// (404, 405 with Allow) rather than the mux's plain-text answers.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = protectSlashSegments(r)
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		// RabbitMQ (cowboy) ignores one trailing slash: "/api/connections/"
		// is "/api/connections".
		if r2 := trimTrailingSlash(r); r2 != nil {
			if h2, p2 := a.mux.Handler(r2); p2 != "" {
				r, h, pattern = r2, h2, p2
			}
		}
	}
	if pattern == "" {
		// The mux's own 404 or 405: run it against a recorder for its status
		// and Allow header, then answer in our envelope.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeErrorBody(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method Not Allowed")
			return
		}
		writeErrorBody(w, http.StatusNotFound, errNotFoundTitle, errNotFoundReason)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// slashSentinel stands for a path segment that is exactly "%2F" (the vhost
// "/" in every RabbitMQ URL) while the mux routes the request. Go's ServeMux
// unescapes such a segment to "/", which it then takes for a trailing slash
// that no {wildcard} matches (Go 1.22-1.26), so "/api/queues/%2F/q" would be a
// 404. The sentinel holds a control character, which no valid name has.
const slashSentinel = "\x00/"

// protectSlashSegments returns r, or a shallow copy whose path has each
// segment that is exactly "%2F" replaced by the escaped sentinel.
func protectSlashSegments(r *http.Request) *http.Request {
	raw := r.URL.EscapedPath()
	if !strings.Contains(raw, "%2F") && !strings.Contains(raw, "%2f") {
		return r
	}
	segs := strings.Split(raw, "/")
	changed := false
	for i, s := range segs {
		if strings.EqualFold(s, "%2F") {
			segs[i] = "%00%2F"
			changed = true
		}
	}
	if !changed {
		return r
	}
	newRaw := strings.Join(segs, "/")
	path, err := url.PathUnescape(newRaw)
	if err != nil {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = path, newRaw
	r2.URL = &u
	return r2
}

// trimTrailingSlash returns a shallow copy of r without the one trailing
// slash of its path, or nil when the path has none (or is "/").
func trimTrailingSlash(r *http.Request) *http.Request {
	if len(r.URL.Path) < 2 || !strings.HasSuffix(r.URL.Path, "/") {
		return nil
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	r2.URL = &u
	return r2
}

// pathKeys are the wildcard names of the routes.
var pathKeys = []string{"vhost", "name", "source", "destination", "props", "user"}

// restoreSlashSegments turns sentinel path values back into "/".
func restoreSlashSegments(r *http.Request) {
	for _, k := range pathKeys {
		if r.PathValue(k) == slashSentinel {
			r.SetPathValue(k, "/")
		}
	}
}

// statusRecorder keeps the status and headers a handler writes, discarding
// the body.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }

// routes registers every endpoint. The level is the least a user's tags must
// grant; vhost and resource permissions are checked inside the handlers.
func (a *API) routes() {
	// Node-wide.
	a.handle("GET /api/overview", levelManagement, a.getOverview)
	a.handle("GET /api/whoami", levelManagement, a.getWhoami)
	a.handle("GET /api/healthchecks/node", levelManagement, a.getHealthcheck)
	a.handle("GET /api/aliveness-test/{vhost}", levelManagement, a.getAliveness)

	// Virtual hosts.
	a.handle("GET /api/vhosts", levelManagement, a.listVHosts)
	a.handle("GET /api/vhosts/{vhost}", levelManagement, a.getVHost)
	a.handle("PUT /api/vhosts/{vhost}", levelAdmin, a.putVHost)
	a.handle("DELETE /api/vhosts/{vhost}", levelAdmin, a.deleteVHost)
	a.handle("GET /api/vhosts/{vhost}/permissions", levelAdmin, a.listVHostPermissions)

	// Exchanges.
	a.handle("GET /api/exchanges", levelManagement, a.listExchanges)
	a.handle("GET /api/exchanges/{vhost}", levelManagement, a.listExchanges)
	a.handle("GET /api/exchanges/{vhost}/{name}", levelManagement, a.getExchange)
	a.handle("PUT /api/exchanges/{vhost}/{name}", levelManagement, a.putExchange)
	a.handle("DELETE /api/exchanges/{vhost}/{name}", levelManagement, a.deleteExchange)
	a.handle("GET /api/exchanges/{vhost}/{name}/bindings/source", levelManagement, a.listExchangeBindingsSource)
	a.handle("GET /api/exchanges/{vhost}/{name}/bindings/destination", levelManagement, a.listExchangeBindingsDestination)
	a.handle("POST /api/exchanges/{vhost}/{name}/publish", levelManagement, a.publish)

	// Queues.
	a.handle("GET /api/queues", levelManagement, a.listQueues)
	a.handle("GET /api/queues/{vhost}", levelManagement, a.listQueues)
	a.handle("GET /api/queues/{vhost}/{name}", levelManagement, a.getQueue)
	a.handle("PUT /api/queues/{vhost}/{name}", levelManagement, a.putQueue)
	a.handle("DELETE /api/queues/{vhost}/{name}", levelManagement, a.deleteQueue)
	a.handle("GET /api/queues/{vhost}/{name}/bindings", levelManagement, a.listQueueBindings)
	a.handle("DELETE /api/queues/{vhost}/{name}/contents", levelManagement, a.purgeQueue)
	a.handle("POST /api/queues/{vhost}/{name}/get", levelManagement, a.getMessages)

	// Bindings.
	a.handle("GET /api/bindings", levelManagement, a.listBindings)
	a.handle("GET /api/bindings/{vhost}", levelManagement, a.listBindings)
	for _, kind := range []string{"q", "e"} {
		base := "/api/bindings/{vhost}/e/{source}/" + kind + "/{destination}"
		a.handle("GET "+base, levelManagement, a.listBindingsBetween)
		a.handle("POST "+base, levelManagement, a.postBinding)
		a.handle("GET "+base+"/{props}", levelManagement, a.getBinding)
		a.handle("DELETE "+base+"/{props}", levelManagement, a.deleteBinding)
	}

	// Connections, channels, consumers.
	a.handle("GET /api/connections", levelManagement, a.listConnections)
	a.handle("GET /api/connections/{name}", levelManagement, a.getConnection)
	a.handle("DELETE /api/connections/{name}", levelManagement, a.deleteConnection)
	a.handle("GET /api/vhosts/{vhost}/connections", levelManagement, a.listVHostConnections)
	a.handle("GET /api/channels", levelManagement, a.listEmpty)
	a.handle("GET /api/consumers", levelManagement, a.listConsumers)
	a.handle("GET /api/consumers/{vhost}", levelManagement, a.listConsumers)

	// Users and permissions.
	a.handle("GET /api/users", levelAdmin, a.listUsers)
	a.handle("GET /api/users/{user}", levelAdmin, a.getUser)
	a.handle("PUT /api/users/{user}", levelAdmin, a.putUser)
	a.handle("DELETE /api/users/{user}", levelAdmin, a.deleteUser)
	a.handle("GET /api/users/{user}/permissions", levelAdmin, a.listUserPermissions)
	a.handle("GET /api/permissions", levelAdmin, a.listPermissions)
	a.handle("GET /api/permissions/{vhost}/{user}", levelAdmin, a.getPermission)
	a.handle("PUT /api/permissions/{vhost}/{user}", levelAdmin, a.putPermission)
	a.handle("DELETE /api/permissions/{vhost}/{user}", levelAdmin, a.deletePermission)
}

// handlerFunc serves an authenticated request; a returned error is written
// as the JSON error envelope.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *principal) error

func (a *API) handle(pattern string, level accessLevel, h handlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		restoreSlashSegments(r)
		p, err := a.authenticate(r)
		if err == nil {
			err = p.require(level)
		}
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			a.writeError(w, r, err)
		}
	})
}
