package httpapi

import (
	"net/http"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

type queueJSON struct {
	Name            string         `json:"name"`
	VHost           string         `json:"vhost"`
	Type            string         `json:"type"`
	Durable         bool           `json:"durable"`
	AutoDelete      bool           `json:"auto_delete"`
	Exclusive       bool           `json:"exclusive"`
	Arguments       map[string]any `json:"arguments"`
	Node            string         `json:"node"`
	State           string         `json:"state"`
	Messages        int            `json:"messages"`
	MessagesReady   int            `json:"messages_ready"`
	MessagesUnacked int            `json:"messages_unacknowledged"`
	MessageBytes    int64          `json:"message_bytes"`
	Consumers       int            `json:"consumers"`
	IdleSince       string         `json:"idle_since,omitempty"`
	// OwnerPIDDetails names the owning connection of an exclusive queue.
	OwnerPIDDetails *ownerJSON `json:"owner_pid_details,omitempty"`
}

type ownerJSON struct {
	Name string `json:"name"`
}

// idleSinceLayout is the timestamp format of RabbitMQ 3.12+ ("2024-05-01T10:00:00.000+00:00").
const idleSinceLayout = "2006-01-02T15:04:05.000-07:00"

func queueView(q broker.QueueInfo) queueJSON {
	out := queueJSON{
		Name: q.Name, VHost: q.VHost, Type: "classic",
		Durable: q.Durable, AutoDelete: q.AutoDelete, Exclusive: q.Exclusive,
		Arguments: tableToJSON(q.Arguments),
		Node:      q.Node, State: "running",
		Messages: q.Messages, MessagesReady: q.MessagesReady, MessagesUnacked: q.MessagesUnacked,
		MessageBytes: q.MessageBytes, Consumers: q.Consumers,
	}
	if t, ok := q.Arguments["x-queue-type"].(string); ok && t != "" {
		out.Type = t
	}
	if !q.IdleSince.IsZero() {
		out.IdleSince = q.IdleSince.UTC().Format(idleSinceLayout)
	}
	if q.Owner != "" {
		out.OwnerPIDDetails = &ownerJSON{Name: q.Owner}
	}
	return out
}

// listQueues serves /api/queues and /api/queues/{vhost}.
func (a *API) listQueues(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, ok, err := a.listScope(r, p)
	if err != nil {
		return err
	}
	out := []queueJSON{}
	for _, q := range a.b.Queues(vhost) {
		if ok(q.VHost) {
			out = append(out, queueView(q))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// pathQueue returns the {name} queue name after validating it.
func pathQueue(r *http.Request) (string, error) {
	name := r.PathValue("name")
	return name, checkName("queue", name)
}

// pathVHostQueue is the {vhost} and {name} of a queue's path.
func (a *API) pathVHostQueue(r *http.Request) (vhost, name string, err error) {
	if vhost, err = a.pathVHost(r); err != nil {
		return "", "", err
	}
	if name, err = pathQueue(r); err != nil {
		return "", "", err
	}
	return vhost, name, nil
}

// existingQueue is the queue of r's path when it exists (404 otherwise) and
// p holds access to it.
func (a *API) existingQueue(r *http.Request, p *principal, access broker.Access) (vhost, name string, err error) {
	if vhost, name, err = a.pathVHostQueue(r); err != nil {
		return "", "", err
	}
	if _, err := a.b.Queue(vhost, name); err != nil {
		return "", "", notFoundAsRabbit(err)
	}
	if err := a.authorize(p, vhost, access, name); err != nil {
		return "", "", err
	}
	return vhost, name, nil
}

func (a *API) getQueue(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.readVHost(r, p)
	if err != nil {
		return err
	}
	name, err := pathQueue(r)
	if err != nil {
		return err
	}
	q, err := a.b.Queue(vhost, name)
	if err != nil {
		return notFoundAsRabbit(err)
	}
	writeJSON(w, http.StatusOK, queueView(q))
	return nil
}

// queueBody is PUT /api/queues/{vhost}/{name}. Absent flags take the AMQP
// queue.declare defaults, as in RabbitMQ (all false). "node" is accepted and
// ignored: the broker places queues.
type queueBody struct {
	Durable    optBool        `json:"durable"`
	AutoDelete optBool        `json:"auto_delete"`
	Exclusive  optBool        `json:"exclusive"`
	Arguments  map[string]any `json:"arguments"`
	Node       string         `json:"node"`
}

func (a *API) putQueue(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, name, err := a.pathVHostQueue(r)
	if err != nil {
		return err
	}
	var body queueBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.Exclusive.or(false) {
		return errs.New(errs.BadArgument, "exclusive queues cannot be declared over HTTP (they belong to a connection)")
	}
	args, err := tableFromJSON(body.Arguments)
	if err != nil {
		return err
	}
	if err := a.authorize(p, vhost, broker.AccessConfigure, name); err != nil {
		return err
	}
	_, lookupErr := a.b.Queue(vhost, name)
	if _, err := a.b.DeclareQueue(r.Context(), vhost, broker.QueueSpec{
		Name: name, Durable: body.Durable.or(false), AutoDelete: body.AutoDelete.or(false),
		Arguments: args,
	}, false); err != nil {
		return err
	}
	writeCreated(w, lookupErr != nil)
	return nil
}

func (a *API) deleteQueue(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, name, err := a.existingQueue(r, p, broker.AccessConfigure)
	if err != nil {
		return err
	}
	if _, err := a.b.DeleteQueue(r.Context(), vhost, name, queryBool(r, "if-unused"), queryBool(r, "if-empty"), ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) purgeQueue(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, name, err := a.existingQueue(r, p, broker.AccessRead)
	if err != nil {
		return err
	}
	if _, err := a.b.PurgeQueue(r.Context(), vhost, name, ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listQueueBindings(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.readVHost(r, p)
	if err != nil {
		return err
	}
	name, err := pathQueue(r)
	if err != nil {
		return err
	}
	if _, err := a.b.Queue(vhost, name); err != nil {
		return notFoundAsRabbit(err)
	}
	out := []bindingJSON{}
	for _, b := range a.b.Bindings(vhost) {
		if !b.DestinationIsExchange && b.Destination == name {
			out = append(out, bindingView(b))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
