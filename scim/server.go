package scim

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/elimity-com/scim"
	"github.com/elimity-com/scim/schema"
)

// Config configures the SCIM handler.
type Config struct {
	Users  UserService
	Lookup UserLookup
	// BaseURL returns the absolute SCIM base URL of a tenant (for meta.location and Location).
	BaseURL func(tenant string) string
	Log     *slog.Logger
	// MaxResults caps the page size (advertised as filter.maxResults).
	MaxResults int
}

// Handler serves SCIM for the tenant of the authenticated Principal. Mount it with the tenant's
// base path stripped, behind the authentication middleware.
type Handler struct {
	cfg   Config
	types []scim.ResourceType
}

// NewHandler returns the SCIM handler.
func NewHandler(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxResults <= 0 {
		cfg.MaxResults = 200
	}
	h := &Handler{cfg: cfg}
	h.types = []scim.ResourceType{{
		ID:          optionalString("User"),
		Name:        "User",
		Description: optionalString("User Account"),
		Endpoint:    "/Users",
		Schema:      schema.CoreUserSchema(),
		SchemaExtensions: []scim.SchemaExtension{
			{Schema: schema.ExtensionEnterpriseUser()},
			{Schema: OffboardExtension()},
		},
		Handler: &users{svc: cfg.Users, lookup: cfg.Lookup, log: cfg.Log},
	}}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		WriteError(w, http.StatusUnauthorized, "", "Authentication required.")
		return
	}
	srv, err := scim.NewServer(&scim.ServerArgs{
		ServiceProviderConfig: &scim.ServiceProviderConfig{
			MaxResults: h.cfg.MaxResults, SupportFiltering: true, SupportPatch: true,
		},
		ResourceTypes: h.types,
	}, scim.WithBaseURL(strings.TrimRight(h.cfg.BaseURL(p.Tenant), "/")))
	if err != nil {
		h.cfg.Log.Error("scim server not built", "error", err)
		WriteError(w, http.StatusInternalServerError, "", "Internal error.")
		return
	}
	srv.ServeHTTP(w, r)
}
