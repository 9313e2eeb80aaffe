// Package server assembles Offboard's HTTP surface: the SCIM endpoint per tenant, the admin
// API, the built-in messenger API, inbound connector webhooks, health, readiness and metrics —
// with authentication, rate limits, body limits and request logging in front of each.
package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/bodylimit"
	"github.com/offboard/offboard/internal/connectors"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/oidcauth"
	"github.com/offboard/offboard/internal/ratelimit"
	"github.com/offboard/offboard/scim"
)

// Config holds the server's dependencies and limits.
type Config struct {
	Store      *mongostore.Store
	Service    *lifecycle.Service
	Connectors *connectors.Manager
	OIDC       *oidcauth.Verifier
	// PublicURL is the externally visible base URL (for scimBaseUrl, meta.location, webhook URLs).
	PublicURL string
	// OperatorToken, if set (OFFBOARD_ADMIN_TOKEN), is accepted as the operator's admin token.
	OperatorToken string
	Log           *slog.Logger
	Registry      *prometheus.Registry
	Now           func() time.Time

	MaxBody        int64 // default 1 MiB
	MaxHeaderBytes int   // default 64 KiB
	TrustedProxies []netip.Prefix
	// TokenRate/TokenBurst limit each credential, IPRate/IPBurst each client address,
	// LicenseRate/LicenseBurst the license checks of each license username (per second).
	TokenRate, IPRate, LicenseRate    float64
	TokenBurst, IPBurst, LicenseBurst int
	// AllowInsecureIssuer permits http://127.0.0.1 OIDC issuers (development only).
	AllowInsecureIssuer bool
	// Ready reports whether the database answers (GET /readyz).
	Ready func(ctx context.Context) error
}

// Defaults of the license-check limit per license username: an app checks its license at
// start-up, so a burst of 20 and one a second is far above any real device, while each check
// costs a bcrypt comparison on the server.
const (
	DefaultLicenseRate  = 1.0
	DefaultLicenseBurst = 20
)

// Server is the assembled HTTP handler.
type Server struct {
	cfg     Config
	router  chi.Router
	auth    *authn
	metrics *httpMetrics
}

// New assembles the HTTP handler.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	if cfg.TokenRate <= 0 {
		cfg.TokenRate, cfg.TokenBurst = ratelimit.DefaultTokenRate, ratelimit.DefaultTokenBurst
	}
	if cfg.IPRate <= 0 {
		cfg.IPRate, cfg.IPBurst = ratelimit.DefaultIPRate, ratelimit.DefaultIPBurst
	}
	if cfg.LicenseRate <= 0 {
		cfg.LicenseRate, cfg.LicenseBurst = DefaultLicenseRate, DefaultLicenseBurst
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	s := &Server{cfg: cfg, metrics: newHTTPMetrics(cfg.Registry)}
	s.auth = newAuthn(cfg)
	s.router = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// SCIMBaseURL is a tenant's SCIM base URL.
func (s *Server) SCIMBaseURL(tenant string) string { return s.cfg.PublicURL + "/scim/v2/" + tenant }

func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(s.recoverer, s.logRequests, secureHeaders)
	ips := ratelimit.NewIPResolver(s.cfg.TrustedProxies...)
	perIP := ratelimit.New(s.cfg.IPRate, s.cfg.IPBurst)

	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", s.readyz)
	r.Handle("/metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))

	// SCIM: per-IP limit, failed-auth throttle per IP and tenant (IdPs share cloud egress
	// addresses: one tenant's stale token must not lock out the others), authentication,
	// per-credential limit, body limit (buffered, so chunked bodies get 413 too), filter and
	// PATCH limits.
	scimDeny := func(w http.ResponseWriter, _ *http.Request, status int) {
		scim.WriteError(w, status, "", http.StatusText(status)+".")
	}
	scimThrottle := ratelimit.NewAuthThrottle(20, time.Minute, 5*time.Minute)
	scimHandler := scim.NewHandler(scim.Config{
		Users: s.cfg.Service, Lookup: s.cfg.Store, BaseURL: s.SCIMBaseURL, Log: s.cfg.Log,
		MaxBody: s.cfg.MaxBody, Now: s.cfg.Now,
	})
	r.Route("/scim/v2/{tenant}", func(r chi.Router) {
		r.Use(s.api("scim"))
		r.Use(perIP.Middleware(ips.Key, scimDeny))
		r.Use(scimThrottle.Middleware(func(req *http.Request) (string, bool) {
			ip, ok := ips.Key(req)
			return ip + "|" + chi.URLParam(req, "tenant"), ok
		}, scimDeny))
		r.Use(s.auth.scimMiddleware)
		r.Use(s.auth.perCredential(scimDeny))
		r.Use(bodylimit.Middleware(s.cfg.MaxBody, scimDeny, bodylimit.MaxHeaderBytes(s.cfg.MaxHeaderBytes), bodylimit.Buffer()))
		r.Use(scimGuard)
		h := func(w http.ResponseWriter, req *http.Request) {
			prefix := "/scim/v2/" + chi.URLParam(req, "tenant")
			http.StripPrefix(prefix, scimHandler).ServeHTTP(w, req)
		}
		r.HandleFunc("/", h)
		r.HandleFunc("/*", h)
	})

	jsonDeny := func(w http.ResponseWriter, _ *http.Request, status int) {
		writeError(w, status, http.StatusText(status))
	}
	adminThrottle := ratelimit.NewAuthThrottle(20, time.Minute, 5*time.Minute)
	r.Route("/admin/v1", func(r chi.Router) {
		r.Use(s.api("admin"))
		r.Use(perIP.Middleware(ips.Key, jsonDeny))
		r.Use(adminThrottle.Middleware(ips.Key, jsonDeny))
		r.Use(s.auth.adminMiddleware)
		r.Use(s.auth.perCredential(jsonDeny))
		r.Use(bodylimit.Middleware(s.cfg.MaxBody, jsonDeny, bodylimit.MaxHeaderBytes(s.cfg.MaxHeaderBytes)))
		s.adminRoutes(r)
	})

	msgThrottle := ratelimit.NewAuthThrottle(50, time.Minute, 5*time.Minute)
	r.Route("/messenger/v1", func(r chi.Router) {
		r.Use(s.api("messenger"))
		r.Use(perIP.Middleware(ips.Key, jsonDeny))
		r.Use(msgThrottle.Middleware(ips.Key, jsonDeny))
		r.Use(bodylimit.Middleware(64<<10, jsonDeny, bodylimit.MaxHeaderBytes(s.cfg.MaxHeaderBytes)))
		s.messengerRoutes(r, jsonDeny)
	})

	r.Route("/hooks", func(r chi.Router) {
		r.Use(s.api("hooks"))
		r.Use(perIP.Middleware(ips.Key, jsonDeny))
		r.Use(bodylimit.Middleware(s.cfg.MaxBody, jsonDeny))
		r.Post("/{type}/{connector}/{secret}", s.hook)
	})

	r.NotFound(func(w http.ResponseWriter, _ *http.Request) { writeError(w, http.StatusNotFound, "not found") })
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	})
	return r
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(ctx); err != nil {
			s.cfg.Log.Warn("not ready", "error", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "detail": "database does not answer"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// hook serves a connector's inbound webhook (NanoMDM results): the URL carries the connector
// id and an unguessable secret; anything that does not match is a plain 404.
func (s *Server) hook(w http.ResponseWriter, r *http.Request) {
	h, err := s.cfg.Connectors.Hook(r.Context(), chi.URLParam(r, "connector"), chi.URLParam(r, "secret"))
	if err != nil {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	h.ServeHTTP(w, r)
}

// errorBody is the admin and messenger APIs' error format.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
