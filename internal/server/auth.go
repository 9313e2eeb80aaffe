package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/oidcauth"
	"github.com/offboard/offboard/internal/ratelimit"
	"github.com/offboard/offboard/internal/token"
	"github.com/offboard/offboard/scim"
)

// authn authenticates the three kinds of callers: IdPs (static SCIM tokens or per-tenant
// JWTs), administrators (the operator's token or tenant admin tokens) and messenger backends
// (messenger tokens). Tokens are looked up by id and compared by hash in constant time;
// revocation takes effect on the next request.
type authn struct {
	cfg      Config
	limiter  *ratelimit.Limiter
	licenses *ratelimit.Limiter

	mu      sync.Mutex
	touched map[string]time.Time
}

func newAuthn(cfg Config) *authn {
	return &authn{
		cfg:      cfg,
		limiter:  ratelimit.New(cfg.TokenRate, cfg.TokenBurst),
		licenses: ratelimit.New(cfg.LicenseRate, cfg.LicenseBurst),
		touched:  map[string]time.Time{},
	}
}

var errUnauthorized = errors.New("unauthorized")

// lookup verifies a presented static token of the wanted scope.
func (a *authn) lookup(ctx context.Context, raw string, want token.Scope) (*identity.Token, error) {
	scope, id, _, err := token.Parse(raw)
	if err != nil || scope != want {
		return nil, errUnauthorized
	}
	rec, err := a.cfg.Store.GetToken(ctx, id)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, errUnauthorized
	}
	if err != nil {
		return nil, err
	}
	if rec.Revoked != nil || string(rec.Scope) != string(want) {
		return nil, errUnauthorized
	}
	if err := token.Check(token.Record{ID: rec.ID, Scope: token.Scope(rec.Scope), Hash: rec.Hash}, raw, want); err != nil {
		return nil, errUnauthorized
	}
	a.touch(rec.ID)
	return rec, nil
}

// touch records a token's last use, at most once a minute per token, off the request path.
func (a *authn) touch(id string) {
	now := a.cfg.Now()
	a.mu.Lock()
	last, ok := a.touched[id]
	if ok && now.Sub(last) < time.Minute {
		a.mu.Unlock()
		return
	}
	a.touched[id] = now
	if len(a.touched) > 100000 {
		a.touched = map[string]time.Time{id: now}
	}
	a.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.cfg.Store.TouchToken(ctx, id, now)
	}()
}

// scimMiddleware authenticates an IdP for the tenant in the path. A static token must belong
// to that tenant; otherwise a JWT is verified against the tenant's OIDC configuration. Any
// failure is the same 401, so nothing tells whether a tenant exists.
func (a *authn) scimMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenant := chi.URLParam(r, "tenant")
		raw, ok := token.Bearer(r.Header.Get("Authorization"))
		if !ok || tenant == "" || len(tenant) > 64 {
			scimUnauthorized(w)
			return
		}
		var p scim.Principal
		if strings.HasPrefix(raw, "ob") && len(raw) == token.Len {
			rec, err := a.lookup(r.Context(), raw, token.ScopeSCIM)
			if err != nil || rec.Tenant != tenant {
				a.failed(w, r, err, true)
				return
			}
			p = scim.Principal{Tenant: tenant, Actor: "token:" + rec.ID}
		} else {
			t, err := a.cfg.Store.GetTenant(r.Context(), tenant)
			if err != nil || t.OIDC == nil || a.cfg.OIDC == nil {
				a.failed(w, r, ignoreNotFound(err), true)
				return
			}
			claims, err := a.cfg.OIDC.Verify(r.Context(), oidcauth.Config{
				Issuer: t.OIDC.Issuer, Audience: t.OIDC.Audience, Claims: t.OIDC.ClaimMap(), DiscoveryURL: t.OIDC.DiscoveryURL,
			}, raw)
			if err != nil {
				// oidcauth errors never contain the token; an unreachable issuer is the
				// operator's concern, a bad token only the caller's.
				level := slog.LevelInfo
				if errors.Is(err, oidcauth.ErrUnavailable) || errors.Is(err, oidcauth.ErrConfig) {
					level = slog.LevelWarn
				}
				a.cfg.Log.Log(r.Context(), level, "jwt rejected", "tenant", tenant, "reason", err.Error())
				scimUnauthorized(w)
				return
			}
			p = scim.Principal{Tenant: tenant, Actor: "oidc:" + claims.Subject}
		}
		next.ServeHTTP(w, r.WithContext(scim.WithPrincipal(r.Context(), p)))
	})
}

func ignoreNotFound(err error) error {
	if errors.Is(err, identity.ErrNotFound) {
		return nil
	}
	return err
}

// failed answers an authentication failure: 401, or 503 when the store could not be asked.
func (a *authn) failed(w http.ResponseWriter, r *http.Request, err error, scimAPI bool) {
	if err != nil && !errors.Is(err, errUnauthorized) {
		a.cfg.Log.Warn("authentication unavailable", "route", routePattern(r), "error", err)
		if scimAPI {
			scim.WriteError(w, http.StatusServiceUnavailable, "", "The service is temporarily unavailable; retry later.")
		} else {
			writeError(w, http.StatusServiceUnavailable, "service temporarily unavailable")
		}
		return
	}
	if scimAPI {
		scimUnauthorized(w)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="offboard"`)
		writeError(w, http.StatusUnauthorized, "unauthorized")
	}
}

func scimUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="offboard-scim"`)
	scim.WriteError(w, http.StatusUnauthorized, "", "Authentication failed: missing, malformed, unknown or revoked bearer token.")
}

// admin is who calls the admin API: the operator (every tenant) or a tenant's admin token.
type admin struct {
	Operator bool
	Tenant   string
	Actor    string
}

type adminKey struct{}

func adminFrom(ctx context.Context) admin {
	a, _ := ctx.Value(adminKey{}).(admin)
	return a
}

// adminMiddleware authenticates the operator token (OFFBOARD_ADMIN_TOKEN or the bootstrap
// token) or a tenant-scoped admin token.
func (a *authn) adminMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := token.Bearer(r.Header.Get("Authorization"))
		if !ok {
			a.failed(w, r, nil, false)
			return
		}
		var who admin
		switch {
		case a.cfg.OperatorToken != "" && token.Equal(a.cfg.OperatorToken, raw):
			who = admin{Operator: true, Actor: "operator"}
		default:
			rec, err := a.lookup(r.Context(), raw, token.ScopeAdmin)
			if err != nil {
				a.failed(w, r, err, false)
				return
			}
			who = admin{Operator: rec.Tenant == "", Tenant: rec.Tenant, Actor: "token:" + rec.ID}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), adminKey{}, who)))
	})
}

// messengerCaller is an authenticated messenger backend: the tenant its token belongs to.
type messengerCaller struct {
	Tenant string
	Actor  string
}

type messengerKey struct{}

func messengerFrom(ctx context.Context) messengerCaller {
	m, _ := ctx.Value(messengerKey{}).(messengerCaller)
	return m
}

// messengerMiddleware authenticates a messenger-scope token.
func (a *authn) messengerMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := token.Bearer(r.Header.Get("Authorization"))
		if !ok {
			a.failed(w, r, nil, false)
			return
		}
		rec, err := a.lookup(r.Context(), raw, token.ScopeMessenger)
		if err != nil {
			a.failed(w, r, err, false)
			return
		}
		m := messengerCaller{Tenant: rec.Tenant, Actor: "token:" + rec.ID}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), messengerKey{}, m)))
	})
}

// credentialKey is the rate-limit key of an authenticated request: the tenant and the
// credential (two tenants' IdPs may well use the same JWT subject).
func credentialKey(r *http.Request) (string, bool) {
	if p, ok := scim.PrincipalFrom(r.Context()); ok {
		return "scim|" + p.Tenant + "|" + p.Actor, true
	}
	if ad := adminFrom(r.Context()); ad.Actor != "" {
		return "admin|" + ad.Tenant + "|" + ad.Actor, true
	}
	if m := messengerFrom(r.Context()); m.Actor != "" {
		return "messenger|" + m.Tenant + "|" + m.Actor, true
	}
	return "", false
}

// perCredential rate-limits each authenticated credential.
func (a *authn) perCredential(deny ratelimit.DenyFunc) func(http.Handler) http.Handler {
	return a.limiter.Middleware(credentialKey, deny)
}

// perLicense rate-limits license checks per presented license username: every check costs a
// bcrypt comparison, so one leaked credential must not be able to burn the server's CPU.
func (a *authn) perLicense(deny ratelimit.DenyFunc) func(http.Handler) http.Handler {
	return a.licenses.Middleware(func(r *http.Request) (string, bool) {
		user, _, ok := r.BasicAuth()
		return "license|" + user, ok
	}, deny)
}
