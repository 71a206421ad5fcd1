package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

// compatVersion is the RabbitMQ version whose management API Herald follows;
// tools that branch on rabbitmq_version see a version they know.
const compatVersion = "3.13.0"

type exchangeType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Enabled     bool   `json:"enabled"`
}

var exchangeTypes = []exchangeType{
	{broker.Direct, "AMQP direct exchange, as per the AMQP specification", true},
	{broker.Fanout, "AMQP fanout exchange, as per the AMQP specification", true},
	{broker.Headers, "AMQP headers exchange, as per the AMQP specification", true},
	{broker.Topic, "AMQP topic exchange, as per the AMQP specification", true},
	{broker.Delayed, "Delayed message exchange (x-delay header, x-delayed-type argument)", true},
}

type rate struct {
	Rate float64 `json:"rate"`
}

type messageStats struct {
	Publish          uint64 `json:"publish"`
	PublishDetails   rate   `json:"publish_details"`
	DeliverGet       uint64 `json:"deliver_get"`
	DeliverGetDetail rate   `json:"deliver_get_details"`
	Ack              uint64 `json:"ack"`
	AckDetails       rate   `json:"ack_details"`
	Redeliver        uint64 `json:"redeliver"`
	RedeliverDetails rate   `json:"redeliver_details"`
}

type queueTotals struct {
	Messages        int `json:"messages"`
	MessagesReady   int `json:"messages_ready"`
	MessagesUnacked int `json:"messages_unacknowledged"`
}

type objectTotals struct {
	Channels    int `json:"channels"`
	Connections int `json:"connections"`
	Consumers   int `json:"consumers"`
	Exchanges   int `json:"exchanges"`
	Queues      int `json:"queues"`
}

type overviewJSON struct {
	ManagementVersion string         `json:"management_version"`
	RabbitMQVersion   string         `json:"rabbitmq_version"`
	ProductName       string         `json:"product_name"`
	ProductVersion    string         `json:"product_version"`
	GoVersion         string         `json:"go_version"`
	ClusterName       string         `json:"cluster_name"`
	Node              string         `json:"node"`
	RatesMode         string         `json:"rates_mode"`
	ExchangeTypes     []exchangeType `json:"exchange_types"`
	MessageStats      messageStats   `json:"message_stats"`
	QueueTotals       queueTotals    `json:"queue_totals"`
	ObjectTotals      objectTotals   `json:"object_totals"`
	Engine            *engineJSON    `json:"herald_engine,omitempty"`
	Listeners         []any          `json:"listeners"`
	Contexts          []any          `json:"contexts"`
}

// engineJSON is Herald's own addition to the overview (monitoring users
// only): the store's group commit since start, under --fsync=always
// (standalone): sync rounds, the fsyncs they made, and the writes that
// waited for one.
type engineJSON struct {
	SyncRounds    uint64 `json:"sync_rounds"`
	Fsyncs        uint64 `json:"fsyncs"`
	SyncedAppends uint64 `json:"synced_appends"`
}

// rateSample is the counters of the previous overview, for rates.
type rateSample struct {
	at                                 time.Time
	publish, deliver, ack, redelivered uint64
}

// rates derives per-second rates from the previous /api/overview request at
// least a second ago (at most ten minutes ago). Herald keeps no background
// sampler, so rates are only as fine as the polling.
func (a *API) rates(o broker.Overview) messageStats {
	now := a.cfg.Now()
	cur := rateSample{at: now, publish: o.Published, deliver: o.Delivered, ack: o.Acked, redelivered: o.Redelivered}
	ms := messageStats{Publish: o.Published, DeliverGet: o.Delivered, Ack: o.Acked, Redeliver: o.Redelivered}

	a.ratesMu.Lock()
	defer a.ratesMu.Unlock()
	prev := a.last
	elapsed := now.Sub(prev.at)
	switch {
	case prev.at.IsZero() || elapsed > 10*time.Minute || cur.publish < prev.publish:
		a.last = cur // first sample, stale, or the broker restarted
	case elapsed >= time.Second:
		per := func(c, p uint64) rate { return rate{Rate: float64(c-p) / elapsed.Seconds()} }
		ms.PublishDetails = per(cur.publish, prev.publish)
		ms.DeliverGetDetail = per(cur.deliver, prev.deliver)
		ms.AckDetails = per(cur.ack, prev.ack)
		ms.RedeliverDetails = per(cur.redelivered, prev.redelivered)
		a.last = cur
	}
	return ms
}

func (a *API) getOverview(w http.ResponseWriter, r *http.Request, p *principal) error {
	o := a.b.Overview()
	out := overviewJSON{
		ManagementVersion: compatVersion,
		RabbitMQVersion:   compatVersion,
		ProductName:       "Herald",
		ProductVersion:    a.cfg.Version,
		GoVersion:         runtime.Version(),
		ClusterName:       o.Node,
		Node:              o.Node,
		RatesMode:         "basic",
		ExchangeTypes:     exchangeTypes,
		MessageStats:      a.rates(o),
		Listeners:         []any{},
		Contexts:          []any{},
	}
	if p.monitor {
		es := o.Engine
		out.Engine = &engineJSON{SyncRounds: es.SyncRounds, Fsyncs: es.Fsyncs, SyncedAppends: es.SyncedAppends}
		out.QueueTotals = queueTotals{Messages: o.Messages, MessagesReady: o.Ready, MessagesUnacked: o.Unacked}
		out.ObjectTotals = objectTotals{
			Connections: o.Connections, Consumers: o.Consumers,
			Exchanges: o.Exchanges, Queues: o.Queues,
		}
	} else {
		// Plain management users see totals of their own vhosts only.
		ok := a.visible(p)
		for _, q := range a.b.Queues("") {
			if !ok(q.VHost) {
				continue
			}
			out.QueueTotals.Messages += q.Messages
			out.QueueTotals.MessagesReady += q.MessagesReady
			out.QueueTotals.MessagesUnacked += q.MessagesUnacked
			out.ObjectTotals.Queues++
			out.ObjectTotals.Consumers += q.Consumers
		}
		for _, e := range a.b.Exchanges("") {
			if ok(e.VHost) {
				out.ObjectTotals.Exchanges++
			}
		}
		for _, c := range a.b.Connections() {
			if c.User == p.name {
				out.ObjectTotals.Connections++
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type whoamiJSON struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func (a *API) getWhoami(w http.ResponseWriter, r *http.Request, p *principal) error {
	writeJSON(w, http.StatusOK, whoamiJSON{Name: p.name, Tags: nonNil(p.tags)})
	return nil
}

type statusJSON struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

func (a *API) getHealthcheck(w http.ResponseWriter, r *http.Request, p *principal) error {
	if len(a.b.VHosts()) == 0 {
		// The broker always has "/" once started.
		writeJSON(w, http.StatusServiceUnavailable, statusJSON{Status: "failed", Reason: "broker not ready"})
		return nil
	}
	writeJSON(w, http.StatusOK, statusJSON{Status: "ok"})
	return nil
}

// alivenessQueue is the queue RabbitMQ's aliveness test uses; like RabbitMQ,
// Herald leaves it declared.
const alivenessQueue = "aliveness-test"

// getAliveness declares a queue, publishes a message to it and gets it back.
func (a *API) getAliveness(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		access   broker.Access
		resource string
	}{
		{broker.AccessConfigure, alivenessQueue},
		{broker.AccessWrite, defaultExchangeAlias},
		{broker.AccessRead, alivenessQueue},
	} {
		if err := a.authorize(p, vhost, c.access, c.resource); err != nil {
			return err
		}
	}
	ctx := r.Context()
	if _, err := a.b.DeclareQueue(ctx, vhost, broker.QueueSpec{Name: alivenessQueue}, false); err != nil {
		return err
	}
	body := []byte("test_message")
	if _, err := a.b.Publish(ctx, broker.Publishing{
		VHost: vhost, RoutingKey: alivenessQueue, User: p.name,
		Message: &broker.Message{Body: body},
	}); err != nil {
		return err
	}
	d, err := a.b.Get(ctx, vhost, alivenessQueue, true, "")
	if err != nil {
		return err
	}
	if d == nil || !bytes.Equal(d.Message.Body, body) {
		writeJSON(w, http.StatusServiceUnavailable, statusJSON{Status: "failed", Reason: "message did not round-trip"})
		return nil
	}
	writeJSON(w, http.StatusOK, statusJSON{Status: "ok"})
	return nil
}

// ---- vhosts

type vhostJSON struct {
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	Tags            []string `json:"tags"`
	Tracing         bool     `json:"tracing"`
	Messages        int      `json:"messages"`
	MessagesReady   int      `json:"messages_ready"`
	MessagesUnacked int      `json:"messages_unacknowledged"`
}

func (a *API) vhostView(v broker.VHostInfo) vhostJSON {
	out := vhostJSON{Name: v.Name, Tags: []string{}}
	for _, q := range a.b.Queues(v.Name) {
		out.Messages += q.Messages
		out.MessagesReady += q.MessagesReady
		out.MessagesUnacked += q.MessagesUnacked
	}
	return out
}

func (a *API) listVHosts(w http.ResponseWriter, r *http.Request, p *principal) error {
	ok := a.visible(p)
	out := []vhostJSON{}
	for _, v := range a.b.VHosts() {
		if ok(v.Name) {
			out = append(out, a.vhostView(v))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getVHost(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.readVHost(r, p)
	if err != nil {
		return err
	}
	for _, v := range a.b.VHosts() {
		if v.Name == vhost {
			writeJSON(w, http.StatusOK, a.vhostView(v))
			return nil
		}
	}
	return errNotFound
}

// vhostBody is PUT /api/vhosts/{vhost}. Description, tags and tracing are
// accepted for compatibility and not stored.
type vhostBody struct {
	Description string  `json:"description"`
	Tags        any     `json:"tags"`
	Tracing     optBool `json:"tracing"`
}

func (a *API) putVHost(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("vhost")
	if err := checkName("vhost", name); err != nil {
		return err
	}
	var body vhostBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	if a.vhostExists(name) {
		writeCreated(w, false)
		return nil
	}
	if err := a.b.AddVHost(r.Context(), name); err != nil {
		return err
	}
	// Like RabbitMQ, the creating user gets full permissions on the new vhost.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := a.b.SetPermission(ctx, broker.Permission{
		User: p.name, VHost: name, Configure: ".*", Write: ".*", Read: ".*",
	}); err != nil {
		return errs.Wrap(errs.KindOf(err), err, "vhost %q created, but granting permissions to %q failed: %s", name, p.name, errs.Message(err))
	}
	writeCreated(w, true)
	return nil
}

func (a *API) deleteVHost(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return err
	}
	if err := a.b.DeleteVHost(r.Context(), vhost); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
