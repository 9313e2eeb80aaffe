package server

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/ratelimit"
)

// messengerRoutes serves the built-in messenger registry's API: the app's license check and
// the messenger ID status.
func (s *Server) messengerRoutes(r chi.Router, deny ratelimit.DenyFunc) {
	r.With(s.auth.perLicense(deny)).Post("/check", s.check)
	r.With(s.auth.messengerMiddleware, s.auth.perCredential(deny)).Get("/ids/{workId}", s.idStatus)
}

// check answers the app's start-up license check (HTTP Basic license credentials).
func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="offboard-license"`)
		writeError(w, http.StatusUnauthorized, "license credentials required")
		return
	}
	res, err := s.cfg.Service.Check(r.Context(), user, pass)
	switch {
	case errors.Is(err, identity.ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Basic realm="offboard-license"`)
		writeError(w, http.StatusUnauthorized, "license credentials unknown or revoked")
	case err != nil:
		s.adminError(w, err)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func (s *Server) idStatus(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "workId")
	st, err := s.cfg.Service.IDStatus(r.Context(), messengerFrom(r.Context()).Tenant, id)
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"workId": id, "status": string(st)})
}
