package httpapi

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/errs"
)

type bindingJSON struct {
	Source          string         `json:"source"`
	VHost           string         `json:"vhost"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
	PropertiesKey   string         `json:"properties_key"`
}

func bindingView(b broker.BindingInfo) bindingJSON {
	dt := "queue"
	if b.DestinationIsExchange {
		dt = "exchange"
	}
	return bindingJSON{
		Source: b.Source, VHost: b.VHost,
		Destination: b.Destination, DestinationType: dt,
		RoutingKey: b.RoutingKey, Arguments: tableToJSON(b.Arguments),
		PropertiesKey: propertiesKey(b.RoutingKey, b.Arguments),
	}
}

// listBindings serves /api/bindings and /api/bindings/{vhost}.
func (a *API) listBindings(w http.ResponseWriter, r *http.Request, p *principal) error {
	vhost, ok, err := a.listScope(r, p)
	if err != nil {
		return err
	}
	out := []bindingJSON{}
	for _, b := range a.b.Bindings(vhost) {
		if ok(b.VHost) {
			out = append(out, bindingView(b))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// bindingEnds are the source and destination named by a
// /api/bindings/{vhost}/e/{source}/{q|e}/{destination} path.
type bindingEnds struct {
	vhost, source, destination string
	toExchange                 bool
}

// pathBindingEnds resolves and validates the ends of a binding path; both
// ends must exist (404 otherwise).
func (a *API) pathBindingEnds(r *http.Request) (bindingEnds, error) {
	vhost, err := a.pathVHost(r)
	if err != nil {
		return bindingEnds{}, err
	}
	source, err := pathExchange(r, "source")
	if err != nil {
		return bindingEnds{}, err
	}
	ends := bindingEnds{vhost: vhost, source: source}
	// The pattern is .../e/{source}/q/{destination} or .../e/{source}/e/{destination}.
	ends.toExchange = strings.HasSuffix(strings.TrimSuffix(r.Pattern, "/{props}"), "/e/{destination}")
	if ends.toExchange {
		ends.destination, err = pathExchange(r, "destination")
	} else {
		ends.destination = r.PathValue("destination")
		err = checkName("queue", ends.destination)
	}
	if err != nil {
		return bindingEnds{}, err
	}
	if _, err := a.b.Exchange(vhost, source); err != nil {
		return bindingEnds{}, notFoundAsRabbit(err)
	}
	if ends.toExchange {
		_, err = a.b.Exchange(vhost, ends.destination)
	} else {
		_, err = a.b.Queue(vhost, ends.destination)
	}
	if err != nil {
		return bindingEnds{}, notFoundAsRabbit(err)
	}
	return ends, nil
}

// between lists the bindings from ends.source to ends.destination.
func (a *API) between(ends bindingEnds) []broker.BindingInfo {
	var out []broker.BindingInfo
	for _, b := range a.b.Bindings(ends.vhost) {
		if b.Source == ends.source && b.Destination == ends.destination && b.DestinationIsExchange == ends.toExchange {
			out = append(out, b)
		}
	}
	return out
}

func (a *API) listBindingsBetween(w http.ResponseWriter, r *http.Request, p *principal) error {
	ends, err := a.pathBindingEnds(r)
	if err != nil {
		return err
	}
	if err := a.canRead(p, ends.vhost); err != nil {
		return err
	}
	out := []bindingJSON{}
	for _, b := range a.between(ends) {
		out = append(out, bindingView(b))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// authorizeBinding checks RabbitMQ's rights for (un)binding: write on the
// destination, read on the source.
func (a *API) authorizeBinding(p *principal, ends bindingEnds) error {
	dest := ends.destination
	if ends.toExchange {
		dest = exchangeResource(dest)
	}
	if err := a.authorize(p, ends.vhost, broker.AccessWrite, dest); err != nil {
		return err
	}
	return a.authorize(p, ends.vhost, broker.AccessRead, exchangeResource(ends.source))
}

type bindingBody struct {
	RoutingKey string         `json:"routing_key"`
	Arguments  map[string]any `json:"arguments"`
}

// postBinding creates a binding and answers 201 with its URL in Location.
func (a *API) postBinding(w http.ResponseWriter, r *http.Request, p *principal) error {
	ends, err := a.pathBindingEnds(r)
	if err != nil {
		return err
	}
	var body bindingBody
	if err := a.decodeBody(w, r, &body); err != nil {
		return err
	}
	if len(body.RoutingKey) > maxNameBytes {
		return errs.New(errs.BadArgument, "routing_key is %d bytes, longer than %d", len(body.RoutingKey), maxNameBytes)
	}
	args, err := tableFromJSON(body.Arguments)
	if err != nil {
		return err
	}
	if err := a.authorizeBinding(p, ends); err != nil {
		return err
	}
	if err := a.b.Bind(r.Context(), ends.vhost, broker.Binding{
		Source: ends.source, Destination: ends.destination, DestinationIsExchange: ends.toExchange,
		RoutingKey: body.RoutingKey, Arguments: args,
	}); err != nil {
		return err
	}
	w.Header().Set("Location", bindingLocation(ends, propertiesKey(body.RoutingKey, args)))
	w.WriteHeader(http.StatusCreated)
	return nil
}

// bindingLocation is the absolute path of one binding. The properties key is
// escaped once more, so the path decodes back to the key itself.
func bindingLocation(ends bindingEnds, key string) string {
	kind := "q"
	dest := ends.destination
	if ends.toExchange {
		kind = "e"
		dest = pathExchangeName(dest)
	}
	return "/api/bindings/" + url.PathEscape(ends.vhost) +
		"/e/" + url.PathEscape(pathExchangeName(ends.source)) +
		"/" + kind + "/" + url.PathEscape(dest) +
		"/" + url.PathEscape(key)
}

// pathExchangeName names an exchange in a path ("" is amq.default).
func pathExchangeName(name string) string {
	if name == "" {
		return defaultExchangeAlias
	}
	return name
}

// findBinding returns the binding between ends named by the {props} path
// value (see matchesPropertiesKey), preferring an exact key match.
func (a *API) findBinding(r *http.Request, ends bindingEnds) (broker.BindingInfo, error) {
	props := r.PathValue("props")
	candidates := a.between(ends)
	for _, b := range candidates {
		if propertiesKey(b.RoutingKey, b.Arguments) == props {
			return b, nil
		}
	}
	for _, b := range candidates {
		if matchesPropertiesKey(props, propertiesKey(b.RoutingKey, b.Arguments)) {
			return b, nil
		}
	}
	return broker.BindingInfo{}, errNotFound
}

func (a *API) getBinding(w http.ResponseWriter, r *http.Request, p *principal) error {
	ends, err := a.pathBindingEnds(r)
	if err != nil {
		return err
	}
	if err := a.canRead(p, ends.vhost); err != nil {
		return err
	}
	b, err := a.findBinding(r, ends)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, bindingView(b))
	return nil
}

func (a *API) deleteBinding(w http.ResponseWriter, r *http.Request, p *principal) error {
	ends, err := a.pathBindingEnds(r)
	if err != nil {
		return err
	}
	b, err := a.findBinding(r, ends)
	if err != nil {
		return err
	}
	if err := a.authorizeBinding(p, ends); err != nil {
		return err
	}
	if err := a.b.Unbind(r.Context(), ends.vhost, b.Binding); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
