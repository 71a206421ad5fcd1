package server

import (
	"context"
	"net/http"
)

// startFaces starts every protocol face and mounts the HTTP ones on mux.
func (s *Server) startFaces(ctx context.Context, mux *http.ServeMux) error {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return nil
}
