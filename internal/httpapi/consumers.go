package httpapi

import (
	"net/http"

	"github.com/heraldhq/herald/internal/broker"
)

// consumerJSON is RabbitMQ's /api/consumers element. Herald does not track
// channel numbers outside the AMQP face, so channel_details names the
// connection only.
type consumerJSON struct {
	Arguments      map[string]any  `json:"arguments"`
	AckRequired    bool            `json:"ack_required"`
	Active         bool            `json:"active"`
	ActivityStatus string          `json:"activity_status"`
	ChannelDetails *channelDetails `json:"channel_details,omitempty"`
	ConsumerTag    string          `json:"consumer_tag"`
	Exclusive      bool            `json:"exclusive"`
	PrefetchCount  int             `json:"prefetch_count"`
	Priority       int64           `json:"priority"`
	Unacked        int             `json:"messages_unacknowledged"`
	Queue          queueRef        `json:"queue"`
}

type channelDetails struct {
	ConnectionName string `json:"connection_name"`
	Node           string `json:"node"`
	PeerHost       string `json:"peer_host"`
	PeerPort       int    `json:"peer_port"`
	User           string `json:"user"`
}

type queueRef struct {
	Name  string `json:"name"`
	VHost string `json:"vhost"`
}

func (a *API) listConsumers(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, ok, err := a.listScope(r, p)
	if err != nil {
		return err
	}
	byID := map[string]broker.ConnInfo{}
	for _, c := range a.b.Connections() {
		if c.ID != "" {
			byID[c.ID] = c
		}
	}
	node := a.b.Overview().Node
	out := []consumerJSON{}
	for _, c := range a.b.Consumers(vhost) {
		if !ok(c.VHost) {
			continue
		}
		v := consumerJSON{
			Arguments: tableToJSON(c.Args), AckRequired: c.AckRequired, Active: c.Active,
			ActivityStatus: "up", ConsumerTag: c.Tag, Exclusive: c.Exclusive,
			PrefetchCount: c.Prefetch, Priority: c.Priority, Unacked: c.Unacked,
			Queue: queueRef{Name: c.Queue, VHost: c.VHost},
		}
		if !c.Active {
			v.ActivityStatus = "waiting"
		}
		if conn, found := byID[c.Owner]; found {
			d := &channelDetails{ConnectionName: conn.Name, Node: node, User: conn.User}
			d.PeerHost, d.PeerPort = splitPeer(conn.Peer)
			v.ChannelDetails = d
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
