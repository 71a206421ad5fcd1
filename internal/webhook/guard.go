package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/errs"
)

// refused are the address ranges a webhook may not target unless an
// AllowPrivate prefix covers the address: they reach the host itself, its
// private networks or cloud metadata services (server-side request forgery).
var refused = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",      // "this network", unspecified
		"10.0.0.0/8",     // RFC 1918
		"100.64.0.0/10",  // CGNAT (Alibaba metadata 100.100.100.200)
		"127.0.0.0/8",    // loopback
		"169.254.0.0/16", // link-local (cloud metadata 169.254.169.254)
		"172.16.0.0/12",  // RFC 1918
		"192.0.0.0/24",   // IETF protocol assignments
		"192.168.0.0/16", // RFC 1918
		"198.18.0.0/15",  // benchmarking
		"224.0.0.0/4",    // multicast
		"240.0.0.0/4",    // reserved, broadcast
		"::/128",         // unspecified
		"::1/128",        // loopback
		"64:ff9b::/96",   // NAT64 (embeds IPv4, may reach the ranges above)
		"64:ff9b:1::/48", // local-use NAT64
		"fc00::/7",       // unique local (AWS metadata fd00:ec2::254)
		"fe80::/10",      // link-local
		"ff00::/8",       // multicast
		"2001:db8::/32",  // documentation
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// TargetGuard refuses webhook targets in loopback, private (RFC 1918,
// fc00::/7), link-local, CGNAT, unspecified, multicast and metadata ranges,
// unless an allowed prefix covers them. CheckURL checks a URL when a
// subscription is created; the client's dialer checks the address actually
// connected to on every delivery, which defeats DNS rebinding (a name that
// resolved to a public address at creation and to a private one later).
type TargetGuard struct {
	allow  []netip.Prefix
	client *http.Client
	// lookup resolves host names for CheckURL; tests replace it.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// NewTargetGuard returns a guard allowing the given prefixes in addition to
// public addresses.
func NewTargetGuard(allow []netip.Prefix) *TargetGuard {
	g := &TargetGuard{allow: allow, lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}}
	g.client = g.newClient()
	return g
}

// Allowed reports whether a is a permitted target address.
func (g *TargetGuard) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.allow {
		if p.Contains(a) {
			return true
		}
	}
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range refused {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// CheckURL checks that rawURL is an absolute http or https URL whose host
// resolves only to allowed addresses; the error is errs.BadArgument with a
// reason fit for a 400 answer.
func (g *TargetGuard) CheckURL(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return errs.New(errs.BadArgument, "url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errs.New(errs.BadArgument, "url: scheme must be http or https")
	}
	host := u.Hostname()
	if host == "" {
		return errs.New(errs.BadArgument, "url: no host")
	}
	if u.User != nil {
		return errs.New(errs.BadArgument, "url: user information is not allowed")
	}
	addrs := []netip.Addr(nil)
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = append(addrs, a)
	} else {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err = g.lookup(lctx, host)
		cancel()
		if err != nil {
			return errs.New(errs.BadArgument, "url: resolving %s: %v", host, err)
		}
	}
	for _, a := range addrs {
		if g.Allowed(a) {
			continue
		}
		what := host + " resolves to " + a.Unmap().String() + ","
		if a.Unmap().String() == host || a.String() == host {
			what = host + " is"
		}
		return errs.New(errs.BadArgument, "url: %s a refused address (loopback, private, link-local or metadata); see --webhook-allow-private-targets", what)
	}
	if len(addrs) == 0 {
		return errs.New(errs.BadArgument, "url: %s has no address", host)
	}
	return nil
}

// ErrRefusedTarget is returned (wrapped) by the guard's client when a
// connection would reach a refused address.
var ErrRefusedTarget = errors.New("webhook: refused target address")

// control is the dialer's Control hook: it runs after the name is resolved,
// on the address about to be connected, for every connection.
func (g *TargetGuard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrRefusedTarget, address, err)
	}
	if !g.Allowed(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrRefusedTarget, ap.Addr().Unmap())
	}
	return nil
}

// Dialer returns a dialer that refuses disallowed addresses.
func (g *TargetGuard) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
}

func (g *TargetGuard) newClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would hide the target address from the guard
		DialContext:           g.Dialer().DialContext,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true, // the response is only sampled
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0, // bounded per request by the attempt's context
	}
	return &http.Client{
		Transport: tr,
		// Redirects are not followed: a 3xx is a failed attempt, and the
		// target stays the one that was checked.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Client returns the guard's HTTP client: it refuses disallowed addresses at
// dial time, uses no proxy and follows no redirects. Bound each request with
// a context deadline.
func (g *TargetGuard) Client() *http.Client { return g.client }

// Close closes the client's idle connections.
func (g *TargetGuard) Close() { g.client.CloseIdleConnections() }
