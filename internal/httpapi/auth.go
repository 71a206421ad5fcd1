package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"slices"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// guestUser is the user RabbitMQ's loopback_users refuses from remote clients.
const guestUser = "guest"

// accessLevel is what a user's tags must grant to reach an endpoint.
type accessLevel int

const (
	levelManagement accessLevel = iota // any management tag
	levelAdmin                         // "administrator"
)

// principal is the authenticated user of a request.
type principal struct {
	name string
	tags []string
	// mgmt: may use the management API at all (management, policymaker,
	// monitoring or administrator). monitor: may see every vhost and
	// connection read-only (monitoring or administrator). admin: administrator.
	mgmt, monitor, admin bool
}

func newPrincipal(u broker.User) *principal {
	p := &principal{name: u.Name, tags: u.Tags}
	for _, t := range u.Tags {
		switch t {
		case "administrator":
			p.admin, p.monitor, p.mgmt = true, true, true
		case "monitoring":
			p.monitor, p.mgmt = true, true
		case "management", "policymaker":
			p.mgmt = true
		}
	}
	return p
}

func (p *principal) require(l accessLevel) error {
	switch {
	case !p.mgmt:
		return errs.New(errs.AccessRefused, "Not management user")
	case l == levelAdmin && !p.admin:
		return errs.New(errs.AccessRefused, "Not administrator user")
	}
	return nil
}

// authenticate checks the request's basic-auth credentials.
func (a *API) authenticate(r *http.Request) (*principal, error) {
	u, err := Authenticate(a.b, r, a.cfg.AllowRemoteGuest)
	if err != nil {
		return nil, err
	}
	return newPrincipal(u), nil
}

// Authenticate checks a request's basic-auth credentials against the
// broker's users, as the management API does (the user "guest" only from
// loopback unless allowRemoteGuest). Other HTTP faces use it.
func Authenticate(b *broker.Broker, r *http.Request, allowRemoteGuest bool) (broker.User, error) {
	name, pass, ok := r.BasicAuth()
	if !ok {
		return broker.User{}, errs.New(errs.Unauthorized, "Not_Authorized")
	}
	if name == guestUser && !allowRemoteGuest && !isLoopback(r.RemoteAddr) {
		return broker.User{}, errs.New(errs.Unauthorized, "User can only log in via localhost")
	}
	u, err := b.Authenticate(name, pass)
	if err != nil {
		if errs.Is(err, errs.Unauthorized) {
			// Say nothing about whether the user exists.
			return broker.User{}, errs.New(errs.Unauthorized, "Login failed")
		}
		return broker.User{}, err
	}
	return u, nil
}

// isLoopback reports whether a request's RemoteAddr is a loopback address.
// Anything that is not an IP (a Unix socket peer, "") is treated as remote.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// vhostExists reports whether the broker has the vhost.
func (a *API) vhostExists(name string) bool {
	return slices.ContainsFunc(a.b.VHosts(), func(v broker.VHostInfo) bool { return v.Name == name })
}

// pathVHost returns the {vhost} of the request after checking that it is a
// valid name and exists (404 otherwise).
func (a *API) pathVHost(r *http.Request) (string, error) {
	vhost := r.PathValue("vhost")
	if err := checkName("vhost", vhost); err != nil {
		return "", err
	}
	if !a.vhostExists(vhost) {
		return "", errNotFound
	}
	return vhost, nil
}

// readVHost resolves {vhost} for a read: it must exist, and p must have
// access to it (monitoring and administrator users read every vhost).
func (a *API) readVHost(r *http.Request, p *principal) (string, error) {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return "", err
	}
	if err := a.canRead(p, vhost); err != nil {
		return "", err
	}
	return vhost, nil
}

// canRead checks that p may read vhost: monitoring users read every vhost,
// others need a permission entry on it (any entry grants vhost access, as in
// RabbitMQ; the regular expressions only govern resources).
func (a *API) canRead(p *principal, vhost string) error {
	if p.monitor || a.hasVHostAccess(p.name, vhost) {
		return nil
	}
	return errs.New(errs.AccessRefused, "access to vhost '%s' refused for user '%s'", vhost, p.name)
}

func (a *API) hasVHostAccess(user, vhost string) bool {
	return slices.ContainsFunc(a.b.Permissions(), func(perm broker.Permission) bool {
		return perm.User == user && perm.VHost == vhost
	})
}

// visible returns a filter for the vhosts p may list.
func (a *API) visible(p *principal) func(vhost string) bool {
	if p.monitor {
		return func(string) bool { return true }
	}
	mine := map[string]bool{}
	for _, perm := range a.b.Permissions() {
		if perm.User == p.name {
			mine[perm.VHost] = true
		}
	}
	return func(vhost string) bool { return mine[vhost] }
}

// authorize checks p's permission on a resource. Administrators are checked
// like everyone else, as in RabbitMQ: tags never grant resource access.
func (a *API) authorize(p *principal, vhost string, access broker.Access, resource string) error {
	return a.b.Authorize(p.name, vhost, access, resource)
}

// exchangeResource is the name permissions are matched against for an
// exchange: RabbitMQ checks the default exchange as "amq.default".
func exchangeResource(name string) string {
	if name == "" {
		return defaultExchangeAlias
	}
	return name
}

// defaultExchangeAlias names the default exchange ("") in paths.
const defaultExchangeAlias = "amq.default"

// pathExchange returns the exchange named by path value key, mapping
// "amq.default" to the default exchange "".
func pathExchange(r *http.Request, key string) (string, error) {
	name := r.PathValue(key)
	if err := checkName("exchange", name); err != nil {
		return "", err
	}
	if name == defaultExchangeAlias {
		return "", nil
	}
	return name, nil
}
