package server

import (
	"cmp"
	"context"
	"fmt"
	"net/http"

	"github.com/heraldhq/herald/internal/amqp"
	"github.com/heraldhq/herald/internal/httpapi"
	"github.com/heraldhq/herald/internal/realtime"
	"github.com/heraldhq/herald/internal/webhook"
	"github.com/heraldhq/herald/internal/websub"
)

// Version is reported by the faces (server properties, /api/overview).
var Version = "0.1.0-dev"

// startFaces starts every protocol face and mounts the HTTP ones on mux.
func (s *Server) startFaces(ctx context.Context, mux *http.ServeMux) error {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	httpapi.New(httpapi.Config{
		Broker:       s.Broker,
		Logger:       s.log.With("face", "httpapi"),
		MaxBodyBytes: s.cfg.Limits.MaxMessageBytes * 2,
		Version:      Version,
	}).Mount(mux)

	allow, err := s.cfg.WebhookAllowPrefixes()
	if err != nil {
		return err
	}
	var hub *websub.Hub // assigned before wh.Start, so OnGone sees it
	wh, err := webhook.New(webhook.Config{
		Broker:       s.Broker,
		Logger:       s.log.With("face", "webhook"),
		AllowPrivate: allow,
		OnGone:       func(sub webhook.Subscription) { hub.Gone(sub.ID) },
	})
	if err != nil {
		return fmt.Errorf("configuring webhook face: %w", err)
	}
	if hub, err = s.newWebSubHub(wh); err != nil {
		return err
	}
	if err := wh.Start(ctx); err != nil {
		return fmt.Errorf("starting webhook face: %w", err)
	}
	s.faces = append(s.faces, face{name: "webhook", stop: wh.Stop})
	wh.Mount(mux)
	if err := hub.Start(ctx); err != nil {
		return fmt.Errorf("starting websub hub: %w", err)
	}
	s.faces = append(s.faces, face{name: "websub", stop: hub.Stop})
	hub.Mount(mux)

	apps := make([]realtime.App, 0, len(s.cfg.PusherApps))
	for i, spec := range s.cfg.PusherApps {
		app, err := realtime.ParseApp(spec)
		if err != nil {
			return fmt.Errorf("pusher_apps[%d]: %w", i, err)
		}
		apps = append(apps, app)
	}
	if len(apps) > 0 {
		rt, err := realtime.New(realtime.Config{
			Broker:         s.Broker,
			Logger:         s.log.With("face", "realtime"),
			Apps:           apps,
			MaxConnections: s.cfg.Limits.MaxConnections,
		})
		if err != nil {
			return fmt.Errorf("configuring realtime face: %w", err)
		}
		if err := rt.Start(ctx); err != nil {
			return fmt.Errorf("starting realtime face: %w", err)
		}
		s.faces = append(s.faces, face{name: "realtime", stop: rt.Stop})
		rt.Mount(mux)

	}

	if s.cfg.AMQPListen != "" {
		srv, err := amqp.NewServer(amqp.Config{
			Broker:          s.Broker,
			Logger:          s.log.With("face", "amqp"),
			MaxConnections:  s.cfg.Limits.MaxConnections,
			MaxMessageBytes: s.cfg.Limits.MaxMessageBytes,
			ClusterName:     s.cfg.Cluster.Name,
			Version:         Version,
		})
		if err != nil {
			return fmt.Errorf("configuring amqp face: %w", err)
		}
		if err := srv.Start(ctx, s.cfg.AMQPListen); err != nil {
			return fmt.Errorf("listening on amqp_listen %s: %w", s.cfg.AMQPListen, err)
		}
		s.faces = append(s.faces, face{name: "amqp", stop: srv.Stop})
		s.log.Info("amqp listening", "addr", s.cfg.AMQPListen)
	}
	return nil
}

// newWebSubHub configures the WebSub hub; it distributes through wh.
func (s *Server) newWebSubHub(wh *webhook.Service) (*websub.Hub, error) {
	hub, err := websub.New(websub.Config{
		Broker:          s.Broker,
		Distributor:     websub.WebhookDistributor(wh, webhook.Spec{}),
		CheckURL:        wh.Guard().CheckURL,
		Client:          wh.Guard().Client(),
		Logger:          s.log.With("face", "websub"),
		HubURL:          s.cfg.WebSub.HubURL,
		LeaseDefault:    s.cfg.WebSub.LeaseDefault,
		LeaseMin:        s.cfg.WebSub.LeaseMin,
		LeaseMax:        s.cfg.WebSub.LeaseMax,
		MaxContentBytes: min(1<<20, cmp.Or(s.cfg.Limits.MaxMessageBytes, 16<<20)),
	})
	if err != nil {
		return nil, fmt.Errorf("configuring websub hub: %w", err)
	}
	return hub, nil
}
