package websub

import (
	"context"

	"github.com/heraldhq/herald/internal/webhook"
)

// owner marks the webhook subscriptions created by the hub.
const owner = "websub"

// WebhookDistributor distributes through the webhook service: each hub
// subscription is a webhook subscription with Format websub and Owner
// "websub", so retries, durability, signatures and the SSRF guard are the
// webhook face's. tmpl sets the delivery policy of every hub subscription
// (MaxAttempts, BackoffInitial, BackoffMax, Timeout, Concurrency; zero
// values mean the webhook defaults, except Concurrency, where 0 means 1 so
// that a callback receives a topic's updates in order).
func WebhookDistributor(svc *webhook.Service, tmpl webhook.Spec) Distributor {
	if tmpl.Concurrency == 0 {
		tmpl.Concurrency = 1
	}
	return &webhookDistributor{svc: svc, tmpl: tmpl}
}

type webhookDistributor struct {
	svc  *webhook.Service
	tmpl webhook.Spec
}

func (d *webhookDistributor) spec(t Target) webhook.Spec {
	s := d.tmpl
	s.URL, s.Secret, s.Topic, s.HubURL = t.Callback, t.Secret, t.Topic, t.HubURL
	s.VHost, s.Exchange, s.BindingKey = t.VHost, t.Exchange, ""
	s.Format, s.Owner, s.OrderingKey = webhook.FormatWebSub, owner, ""
	return s
}

func (d *webhookDistributor) Create(ctx context.Context, t Target) (string, error) {
	sub, err := d.svc.Create(ctx, d.spec(t))
	return sub.ID, err
}

func (d *webhookDistributor) Update(ctx context.Context, id string, t Target) error {
	_, err := d.svc.Update(ctx, id, d.spec(t))
	return err
}

func (d *webhookDistributor) Delete(ctx context.Context, id string) error {
	return d.svc.Delete(ctx, id)
}

func (d *webhookDistributor) List() []Sink {
	var out []Sink
	for _, s := range d.svc.List() {
		if s.Owner != owner || s.Format != webhook.FormatWebSub {
			continue
		}
		out = append(out, Sink{ID: s.ID, CreatedAt: s.CreatedAt, Target: Target{
			Callback: s.URL, Topic: s.Topic, HubURL: s.HubURL, Secret: s.Secret, VHost: s.VHost, Exchange: s.Exchange,
		}})
	}
	return out
}
