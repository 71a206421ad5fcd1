package httpapi

import (
	"net/http"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

type exchangeJSON struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
	// UserWhoPerformedAction is always "" (Herald does not record it).
	UserWhoPerformedAction string `json:"user_who_performed_action"`
}

func exchangeView(e broker.ExchangeInfo) exchangeJSON {
	return exchangeJSON{
		Name: e.Name, VHost: e.VHost, Type: e.Type,
		Durable: e.Durable, AutoDelete: e.AutoDelete, Internal: e.Internal,
		Arguments: tableToJSON(e.Arguments),
	}
}

// listExchanges serves /api/exchanges and /api/exchanges/{vhost}.
func (a *API) listExchanges(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, ok, err := a.listScope(r, p)
	if err != nil {
		return err
	}
	out := []exchangeJSON{}
	for _, e := range a.b.Exchanges(vhost) {
		if ok(e.VHost) {
			out = append(out, exchangeView(e))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listScope resolves the optional {vhost} of a list endpoint: with it, the
// vhost must exist and be readable; without it, the list is filtered to the
// vhosts p may see.
func (a *API) listScope(r *http.Request, p *principal) (vhost string, ok func(string) bool, err error) {
	if r.PathValue("vhost") == "" {
		return "", a.visible(p), nil
	}
	vhost, err = a.readVHost(r, p)
	if err != nil {
		return "", nil, err
	}
	return vhost, func(string) bool { return true }, nil
}

func (a *API) getExchange(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.readVHost(r, p)
	if err != nil {
		return err
	}
	name, err := pathExchange(r, "name")
	if err != nil {
		return err
	}
	e, err := a.b.Exchange(vhost, name)
	if err != nil {
		return notFoundAsRabbit(err)
	}
	writeJSON(w, http.StatusOK, exchangeView(e))
	return nil
}

// notFoundAsRabbit turns the broker's NotFound for the object a request
// names into RabbitMQ's exact 404 body.
func notFoundAsRabbit(err error) error {
	if errs.Is(err, errs.NotFound) {
		return errNotFound
	}
	return err
}

// exchangeBody is PUT /api/exchanges/{vhost}/{name}. Absent fields take the
// AMQP exchange.declare defaults, as in RabbitMQ (type "direct", the flags
// false).
type exchangeBody struct {
	Type       *string        `json:"type"`
	Durable    optBool        `json:"durable"`
	AutoDelete optBool        `json:"auto_delete"`
	Internal   optBool        `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

func (a *API) putExchange(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := checkName("exchange", name); err != nil {
		return err
	}
	if name == defaultExchangeAlias {
		return errs.New(errs.AccessRefused, "the default exchange cannot be redeclared")
	}
	var body exchangeBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	typ := broker.Direct
	if body.Type != nil {
		typ = *body.Type
	}
	if typ == "" {
		return errs.New(errs.BadArgument, "exchange type must not be empty")
	}
	args, err := tableFromJSON(body.Arguments)
	if err != nil {
		return err
	}
	if err := a.authorize(p, vhost, broker.AccessConfigure, name); err != nil {
		return err
	}
	_, lookupErr := a.b.Exchange(vhost, name)
	if _, err := a.b.DeclareExchange(r.Context(), vhost, broker.ExchangeSpec{
		Name: name, Type: typ,
		Durable: body.Durable.or(false), AutoDelete: body.AutoDelete.or(false), Internal: body.Internal.or(false),
		Arguments: args,
	}, false); err != nil {
		return err
	}
	writeCreated(w, lookupErr != nil)
	return nil
}

func (a *API) deleteExchange(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return err
	}
	name, err := pathExchange(r, "name")
	if err != nil {
		return err
	}
	if _, err := a.b.Exchange(vhost, name); err != nil {
		return notFoundAsRabbit(err)
	}
	if err := a.authorize(p, vhost, broker.AccessConfigure, exchangeResource(name)); err != nil {
		return err
	}
	if err := a.b.DeleteExchange(r.Context(), vhost, name, queryBool(r, "if-unused")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listExchangeBindingsSource(w http.ResponseWriter, r *http.Request, p *principal) error {
	return a.listExchangeBindings(w, r, p, func(b broker.BindingInfo, name string) bool {
		return b.Source == name
	})
}

func (a *API) listExchangeBindingsDestination(w http.ResponseWriter, r *http.Request, p *principal) error {
	return a.listExchangeBindings(w, r, p, func(b broker.BindingInfo, name string) bool {
		return b.DestinationIsExchange && b.Destination == name
	})
}

func (a *API) listExchangeBindings(w http.ResponseWriter, r *http.Request, p *principal, keep func(broker.BindingInfo, string) bool) error {
	vhost, err := a.readVHost(r, p)
	if err != nil {
		return err
	}
	name, err := pathExchange(r, "name")
	if err != nil {
		return err
	}
	if _, err := a.b.Exchange(vhost, name); err != nil {
		return notFoundAsRabbit(err)
	}
	out := []bindingJSON{}
	for _, b := range a.b.Bindings(vhost) {
		if keep(b, name) {
			out = append(out, bindingView(b))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
