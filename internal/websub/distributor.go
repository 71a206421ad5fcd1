package websub

import (
	"context"
	"time"
)

// Target is what a hub subscription asks the distributor to deliver: every
// message routed to Exchange (a topic's fanout exchange) goes to Callback
// as a WebSub content distribution request (raw body with the message's
// Content-Type, Link rel="hub" HubURL and rel="self" Topic, X-Hub-Signature
// when Secret is set; 410 Gone ends the subscription).
type Target struct {
	Callback string
	Topic    string
	HubURL   string
	Secret   string // "" sends no signature
	VHost    string
	Exchange string
}

// Sink is a Target held by the distributor.
type Sink struct {
	ID string
	Target
	CreatedAt time.Time
}

// Distributor delivers topic content to callbacks durably, with retries.
// Herald's is the webhook service (WebhookDistributor); the hub never
// delivers by itself.
type Distributor interface {
	// Create starts delivering to t and returns the sink's id.
	Create(ctx context.Context, t Target) (id string, err error)
	// Update replaces the target of sink id (re-subscription: new secret,
	// topic moved to another vhost).
	Update(ctx context.Context, id string, t Target) error
	// Delete stops delivering to sink id and drops what it had queued. A
	// missing sink is not an error.
	Delete(ctx context.Context, id string) error
	// List returns the sinks created for the hub (and only those).
	List() []Sink
}
