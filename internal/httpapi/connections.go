package httpapi

import (
	"net"
	"net/http"
	"strconv"

	"github.com/heraldhq/herald/internal/broker"
)

// defaultCloseReason is what a client sees when the API closes its
// connection without an X-Reason header (RabbitMQ's text).
const defaultCloseReason = "Closed via management plugin"

type connectionJSON struct {
	Name             string         `json:"name"`
	Node             string         `json:"node"`
	Type             string         `json:"type"`
	State            string         `json:"state"`
	Protocol         string         `json:"protocol"`
	User             string         `json:"user"`
	VHost            string         `json:"vhost"`
	PeerHost         string         `json:"peer_host"`
	PeerPort         int            `json:"peer_port"`
	ClientProperties map[string]any `json:"client_properties"`
	Channels         int            `json:"channels"`
	ConnectedAt      int64          `json:"connected_at"` // Unix milliseconds
	RecvOct          int64          `json:"recv_oct"`
	SendOct          int64          `json:"send_oct"`
}

func connectionView(c broker.ConnInfo, node string) connectionJSON {
	out := connectionJSON{
		Name: c.Name, Node: node, Type: "network", State: "running",
		Protocol: c.Protocol, User: c.User, VHost: c.VHost,
		PeerHost:         c.Peer,
		ClientProperties: tableToJSON(c.ClientProperties),
		Channels:         c.Channels,
		RecvOct:          c.RecvOct, SendOct: c.SendOct,
	}
	out.PeerHost, out.PeerPort = splitPeer(c.Peer)
	if !c.ConnectedAt.IsZero() {
		out.ConnectedAt = c.ConnectedAt.UnixMilli()
	}
	return out
}

// splitPeer splits "host:port"; a peer without a port is all host.
func splitPeer(peer string) (string, int) {
	host, port, err := net.SplitHostPort(peer)
	if err != nil {
		return peer, 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// connVisible reports whether p may see a connection: monitoring users see
// all, others their own.
func connVisible(p *principal, c broker.ConnInfo) bool { return p.monitor || c.User == p.name }

func (a *API) listConnections(w http.ResponseWriter, r *http.Request, p *principal) error {
	return a.writeConnections(w, p, func(broker.ConnInfo) bool { return true })
}

func (a *API) listVHostConnections(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.readVHost(r, p)
	if err != nil {
		return err
	}
	return a.writeConnections(w, p, func(c broker.ConnInfo) bool { return c.VHost == vhost })
}

func (a *API) writeConnections(w http.ResponseWriter, p *principal, keep func(broker.ConnInfo) bool) error {
	conns := a.b.Connections()
	out := []connectionJSON{}
	if len(conns) > 0 {
		node := a.b.Overview().Node
		for _, c := range conns {
			if keep(c) && connVisible(p, c) {
				out = append(out, connectionView(c, node))
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// findConnection returns the {name} connection if p may see it.
func (a *API) findConnection(r *http.Request, p *principal) (broker.ConnInfo, error) {
	name := r.PathValue("name")
	for _, c := range a.b.Connections() {
		if c.Name == name && connVisible(p, c) {
			return c, nil
		}
	}
	return broker.ConnInfo{}, errNotFound
}

func (a *API) getConnection(w http.ResponseWriter, r *http.Request, p *principal) error {
	c, err := a.findConnection(r, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, connectionView(c, a.b.Overview().Node))
	return nil
}

// deleteConnection closes a connection; the X-Reason header is the reason
// the client is given. Administrators close any connection, other users
// their own (monitoring users see all but may close only theirs).
func (a *API) deleteConnection(w http.ResponseWriter, r *http.Request, p *principal) error {
	c, err := a.findConnection(r, p)
	if err != nil {
		return err
	}
	if !p.admin && c.User != p.name {
		return errAccessRefused("only administrators may close other users' connections")
	}
	reason := r.Header.Get("X-Reason")
	if reason == "" {
		reason = defaultCloseReason
	}
	if err := a.b.CloseConnection(c.Name, reason); err != nil {
		return notFoundAsRabbit(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listEmpty serves lists Herald does not track (channels).
func (a *API) listEmpty(w http.ResponseWriter, r *http.Request, p *principal) error {
	writeJSON(w, http.StatusOK, []any{})
	return nil
}
