package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/bodylimit"
	"github.com/offboard/offboard/internal/connectors"
	"github.com/offboard/offboard/internal/oidcauth"
	"github.com/offboard/offboard/internal/token"
	"github.com/offboard/offboard/mdm"
)

// maxSeats bounds a tenant's license pool.
const maxSeats = 10_000_000

func (s *Server) adminRoutes(r chi.Router) {
	r.Post("/tenants", s.operatorOnly(s.createTenant))
	r.Get("/tenants", s.operatorOnly(s.listTenants))
	r.Route("/tenants/{tenant}", func(r chi.Router) {
		r.Use(s.tenantAccess)
		r.Get("/", s.getTenant)
		r.Patch("/", s.operatorOnly(s.patchTenant))
		r.Put("/policy", s.putPolicy)
		r.Put("/oidc", s.putOIDC)
		r.Delete("/oidc", s.deleteOIDC)
		r.Post("/tokens", s.createToken)
		r.Get("/tokens", s.listTokens)
		r.Delete("/tokens/{id}", s.revokeToken)
		r.Post("/connectors", s.createConnector)
		r.Get("/connectors", s.listConnectors)
		r.Get("/connectors/{id}", s.getConnector)
		r.Delete("/connectors/{id}", s.deleteConnector)
		r.Post("/connectors/{id}/check", s.checkConnector)
		r.Get("/seats", s.seats)
		r.Get("/jobs", s.listJobs)
		r.Post("/brake/confirm", s.brake(true))
		r.Post("/brake/cancel", s.brake(false))
		r.Get("/audit", s.audit)
		r.Route("/employees/{id}", func(r chi.Router) {
			r.Get("/", s.getEmployee)
			r.Post("/credentials", s.rotateCredentials)
			r.Post("/devices", s.attachDevice)
			r.Post("/jobs/{job}/retry", s.jobAction("retry"))
			r.Post("/jobs/{job}/approve", s.jobAction("approve"))
			r.Post("/jobs/{job}/reject", s.jobAction("reject"))
		})
	})
}

// adminError maps domain errors to admin API statuses (the one table for this API).
func (s *Server) adminError(w http.ResponseWriter, err error) {
	var be *bodylimit.Error
	switch {
	case errors.As(err, &be) && errors.Is(err, bodylimit.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
	case errors.As(err, &be):
		writeError(w, http.StatusBadRequest, be.Error())
	case errors.Is(err, identity.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, identity.ErrConflict):
		writeError(w, http.StatusConflict, publicMessage(err))
	case errors.Is(err, identity.ErrInvalid):
		writeError(w, http.StatusBadRequest, publicMessage(err))
	case errors.Is(err, identity.ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden")
	case errors.Is(err, identity.ErrUnavailable), errors.Is(err, identity.ErrRetry):
		s.cfg.Log.Warn("admin request failed: store unavailable", "error", err)
		writeError(w, http.StatusServiceUnavailable, "service temporarily unavailable")
	default:
		s.cfg.Log.Error("admin request failed", "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// publicMessage is the part of a domain error written for the caller: what follows the
// sentinel ("invalid: seats must be ...").
func publicMessage(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{identity.ErrInvalid, identity.ErrConflict} {
		if i := strings.Index(msg, sentinel.Error()+": "); i >= 0 {
			return msg[i+len(sentinel.Error())+2:]
		}
	}
	if errors.Is(err, identity.ErrConflict) {
		return "conflict"
	}
	return "invalid request"
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := bodylimit.DecodeJSON(r.Body, s.cfg.MaxBody, v, bodylimit.RequireObject(), bodylimit.DisallowUnknownFields(), bodylimit.RejectUnsafeKeys()); err != nil {
		s.adminError(w, err)
		return false
	}
	return true
}

func (s *Server) operatorOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !adminFrom(r.Context()).Operator {
			writeError(w, http.StatusForbidden, "this action needs the operator's admin token")
			return
		}
		h(w, r)
	}
}

type tenantKey struct{}

// tenantAccess resolves {tenant} (id or name) and checks the caller may act on it: the
// operator on every tenant, a tenant admin token on its own only (others are 404, so their
// existence is not revealed).
func (s *Server) tenantAccess(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref := chi.URLParam(r, "tenant")
		t, err := s.cfg.Store.GetTenant(r.Context(), ref)
		if errors.Is(err, identity.ErrNotFound) {
			t, err = s.cfg.Store.GetTenantByName(r.Context(), ref)
		}
		who := adminFrom(r.Context())
		if err == nil && !who.Operator && who.Tenant != t.ID {
			err = identity.ErrNotFound
		}
		if err != nil {
			s.adminError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tenantKey{}, t)))
	})
}

func tenantOf(r *http.Request) *identity.Tenant {
	return r.Context().Value(tenantKey{}).(*identity.Tenant)
}

// tenantView is the admin API's tenant.
type tenantView struct {
	ID          string               `json:"id"`
	Name        string               `json:"name"`
	Seats       int                  `json:"seats"`
	Used        int                  `json:"used"`
	Policy      identity.Policy      `json:"policy"`
	OIDC        *identity.OIDCConfig `json:"oidc,omitempty"`
	SCIMBaseURL string               `json:"scimBaseUrl"`
	SCIMToken   string               `json:"scimToken,omitempty"`
	Created     time.Time            `json:"created"`
}

func (s *Server) view(t *identity.Tenant) tenantView {
	return tenantView{ID: t.ID, Name: t.Name, Seats: t.Seats, Used: t.Used(), Policy: t.Policy, OIDC: t.OIDC,
		SCIMBaseURL: s.SCIMBaseURL(t.ID), Created: t.Created}
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name  string `json:"name"`
		Seats *int   `json:"seats"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	in.Name = strings.TrimSpace(in.Name)
	if !tenantNameOK(in.Name) {
		writeError(w, http.StatusBadRequest, "name must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
		return
	}
	if in.Seats == nil || *in.Seats < 0 || *in.Seats > maxSeats {
		writeError(w, http.StatusBadRequest, "seats must be a number from 0 to 10000000")
		return
	}
	t := &identity.Tenant{ID: lifecycle.NewID()[:20], Name: in.Name, Seats: *in.Seats,
		Policy: identity.DefaultPolicy(), Created: s.cfg.Now().UTC()}
	if err := s.cfg.Store.CreateTenant(r.Context(), t); err != nil {
		if errors.Is(err, identity.ErrConflict) {
			writeError(w, http.StatusConflict, "a tenant with this name exists")
			return
		}
		s.adminError(w, err)
		return
	}
	plain, err := s.newToken(r.Context(), t.ID, token.ScopeSCIM)
	if err != nil {
		s.adminError(w, err)
		return
	}
	s.auditAdmin(r, t.ID, "tenant.created", t.ID, nil, map[string]any{"name": t.Name, "seats": t.Seats})
	v := s.view(t)
	v.SCIMToken = plain
	w.Header().Set("Location", s.cfg.PublicURL+"/admin/v1/tenants/"+t.ID)
	writeJSON(w, http.StatusCreated, v)
}

func tenantNameOK(n string) bool {
	if n == "" || len(n) > 63 {
		return false
	}
	for i, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

func (s *Server) newToken(ctx context.Context, tenant string, scope token.Scope) (string, error) {
	plain, rec, err := token.New(scope, s.cfg.Now())
	if err != nil {
		return "", err
	}
	err = s.cfg.Store.CreateToken(ctx, &identity.Token{ID: rec.ID, Tenant: tenant, Scope: identity.Scope(scope), Hash: rec.Hash, Created: rec.CreatedAt})
	return plain, err
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) {
	ts, err := s.cfg.Store.ListTenants(r.Context())
	if err != nil {
		s.adminError(w, err)
		return
	}
	out := make([]tenantView, 0, len(ts))
	for _, t := range ts {
		out = append(out, s.view(t))
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": out})
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.view(tenantOf(r)))
}

func (s *Server) patchTenant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Seats *int `json:"seats"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	if in.Seats == nil || *in.Seats < 0 || *in.Seats > maxSeats {
		writeError(w, http.StatusBadRequest, "seats must be a number from 0 to 10000000")
		return
	}
	before := tenantOf(r)
	t, err := s.cfg.Store.UpdateTenant(r.Context(), before.ID, func(t *identity.Tenant) error { t.Seats = *in.Seats; return nil })
	if err != nil {
		s.adminError(w, err)
		return
	}
	s.cfg.Service.ForgetTenant(t.ID)
	s.auditAdmin(r, t.ID, "tenant.seats_changed", t.ID, map[string]any{"seats": before.Seats}, map[string]any{"seats": t.Seats})
	s.cfg.Service.ServeSeatQueue(r.Context(), t.ID)
	t, _ = s.cfg.Store.GetTenant(r.Context(), t.ID)
	writeJSON(w, http.StatusOK, s.view(t))
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	before := tenantOf(r)
	p := before.Policy
	if !s.decode(w, r, &p) {
		return
	}
	if err := p.Validate(); err != nil {
		s.adminError(w, err)
		return
	}
	t, err := s.cfg.Store.UpdateTenant(r.Context(), before.ID, func(t *identity.Tenant) error { t.Policy = p; return nil })
	if err != nil {
		s.adminError(w, err)
		return
	}
	s.cfg.Service.ForgetTenant(t.ID)
	s.auditAdmin(r, t.ID, "tenant.policy_changed", t.ID, before.Policy, t.Policy)
	writeJSON(w, http.StatusOK, t.Policy)
}

func (s *Server) putOIDC(w http.ResponseWriter, r *http.Request) {
	body, err := readLimited(r, s.cfg.MaxBody)
	if err != nil {
		s.adminError(w, err)
		return
	}
	cfg, err := oidcauth.ParseConfig(body, s.cfg.AllowInsecureIssuer)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.cfg.OIDC != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		err := s.cfg.OIDC.Probe(ctx, cfg)
		cancel()
		if err != nil {
			s.cfg.Log.Info("oidc probe failed", "tenant", tenantOf(r).ID, "issuer", cfg.Issuer, "error", err)
			writeError(w, http.StatusBadRequest, "issuer discovery failed: "+probeDetail(err))
			return
		}
	}
	oc := identity.NewOIDCConfig(cfg.Issuer, cfg.Audience, cfg.DiscoveryURL, cfg.Claims)
	before := tenantOf(r)
	t, err := s.cfg.Store.UpdateTenant(r.Context(), before.ID, func(t *identity.Tenant) error { t.OIDC = oc; return nil })
	if err != nil {
		s.adminError(w, err)
		return
	}
	s.auditAdmin(r, t.ID, "tenant.oidc_changed", t.ID, before.OIDC, t.OIDC)
	writeJSON(w, http.StatusOK, t.OIDC)
}

// probeDetail is what a tenant administrator is told about a failed issuer probe. The probe
// fetches URLs the administrator chose from inside the deployment's network, so network-level
// failures are reported without their cause (resolver addresses, dial errors, internal host
// names); the issuer-level ones (status, issuer mismatch, bad document) are kept.
func probeDetail(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		host := ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host
		}
		return "could not connect to " + host
	}
	return err.Error()
}

func (s *Server) deleteOIDC(w http.ResponseWriter, r *http.Request) {
	before := tenantOf(r)
	if _, err := s.cfg.Store.UpdateTenant(r.Context(), before.ID, func(t *identity.Tenant) error { t.OIDC = nil; return nil }); err != nil {
		s.adminError(w, err)
		return
	}
	s.auditAdmin(r, before.ID, "tenant.oidc_removed", before.ID, before.OIDC, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Scope string `json:"scope"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	scope, err := token.ParseScope(in.Scope)
	if err != nil {
		writeError(w, http.StatusBadRequest, `scope must be "scim", "messenger" or "admin"`)
		return
	}
	t := tenantOf(r)
	plain, err := s.newToken(r.Context(), t.ID, scope)
	if err != nil {
		s.adminError(w, err)
		return
	}
	_, id, _, _ := token.Parse(plain)
	s.auditAdmin(r, t.ID, "token.created", id, nil, map[string]any{"scope": scope})
	writeJSON(w, http.StatusCreated, map[string]any{"id": id, "scope": scope, "token": plain})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := s.cfg.Store.ListTokens(r.Context(), tenantOf(r).ID)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if ts == nil {
		ts = []*identity.Token{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	t, id := tenantOf(r), chi.URLParam(r, "id")
	if err := s.cfg.Store.RevokeToken(r.Context(), t.ID, id); err != nil {
		s.adminError(w, err)
		return
	}
	s.auditAdmin(r, t.ID, "token.revoked", id, nil, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createConnector(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Type   string          `json:"type"`
		Name   string          `json:"name"`
		Config json.RawMessage `json:"config"`
	}
	// Connector configs are vendor-shaped: only the envelope is strict.
	if err := bodylimit.DecodeJSON(r.Body, s.cfg.MaxBody, &in, bodylimit.RequireObject(), bodylimit.RejectUnsafeKeys()); err != nil {
		s.adminError(w, err)
		return
	}
	if in.Name == "" {
		in.Name = in.Type
	}
	t := tenantOf(r)
	c, err := s.cfg.Connectors.Create(r.Context(), t.ID, in.Name, in.Type, in.Config)
	if err != nil {
		if errors.Is(err, identity.ErrConflict) {
			writeError(w, http.StatusConflict, "a connector with this name exists")
			return
		}
		s.adminError(w, err)
		return
	}
	s.auditAdmin(r, t.ID, "connector.created", c.Connector.ID, nil, map[string]any{"name": c.Connector.Name, "type": c.Connector.Type, "config": json.RawMessage(c.Connector.Redacted)})
	out := map[string]any{}
	v := connectors.ViewOf(c.Connector)
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &out)
	if c.HookSecret != "" {
		out["webhookUrl"] = s.cfg.PublicURL + "/hooks/" + c.Connector.Type + "/" + c.Connector.ID + "/" + c.HookSecret
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) listConnectors(w http.ResponseWriter, r *http.Request) {
	cs, err := s.cfg.Store.ListConnectors(r.Context(), tenantOf(r).ID)
	if err != nil {
		s.adminError(w, err)
		return
	}
	out := make([]connectors.View, 0, len(cs))
	for _, c := range cs {
		out = append(out, connectors.ViewOf(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"connectors": out})
}

func (s *Server) getConnector(w http.ResponseWriter, r *http.Request) {
	c, err := s.cfg.Store.GetConnector(r.Context(), tenantOf(r).ID, chi.URLParam(r, "id"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, connectors.ViewOf(c))
}

func (s *Server) deleteConnector(w http.ResponseWriter, r *http.Request) {
	t := tenantOf(r)
	if err := s.cfg.Connectors.Delete(r.Context(), t.ID, chi.URLParam(r, "id")); err != nil {
		s.adminError(w, err)
		return
	}
	s.auditAdmin(r, t.ID, "connector.deleted", chi.URLParam(r, "id"), nil, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) checkConnector(w http.ResponseWriter, r *http.Request) {
	h, err := s.cfg.Connectors.Check(r.Context(), tenantOf(r).ID, chi.URLParam(r, "id"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) seats(w http.ResponseWriter, r *http.Request) {
	t, err := s.cfg.Store.GetTenant(r.Context(), tenantOf(r).ID)
	if err != nil {
		s.adminError(w, err)
		return
	}
	waiting, err := s.cfg.Store.SeatQueue(r.Context(), t.ID, 100000)
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"total": t.Seats, "used": t.Used(), "free": max(t.Free, 0), "waiting": len(waiting)})
}

// employeeView is the admin API's view of an employee's lifecycle.
type employeeView struct {
	ID              string           `json:"id"`
	UserName        string           `json:"userName"`
	ExternalID      string           `json:"externalId,omitempty"`
	Active          bool             `json:"active"`
	State           identity.State   `json:"state"`
	Generation      int              `json:"generation"`
	WorkID          string           `json:"workId,omitempty"`
	WorkIDStatus    string           `json:"workIdStatus,omitempty"`
	PastWorkIDs     []string         `json:"pastWorkIds,omitempty"`
	Seat            bool             `json:"seat"`
	Username        string           `json:"licenseUsername,omitempty"`
	PasswordSet     bool             `json:"passwordSet"`
	RestrictedUntil *time.Time       `json:"restrictedUntil,omitempty"`
	LeaveDate       *time.Time       `json:"leaveDate,omitempty"`
	Offboarded      *time.Time       `json:"offboarded,omitempty"`
	Deleted         *time.Time       `json:"deleted,omitempty"`
	RetainUntil     *time.Time       `json:"retainUntil,omitempty"`
	Devices         []mdm.Device     `json:"devices"`
	Jobs            []*identity.Job  `json:"jobs"`
	Timeline        []identity.Event `json:"timeline"`
}

func (s *Server) employeeView(ctx context.Context, e *identity.Employee) employeeView {
	v := employeeView{
		ID: e.ID, UserName: e.UserName, ExternalID: e.ExternalID, Active: e.Active, State: e.State,
		Generation: e.Generation, WorkID: e.WorkID, PastWorkIDs: e.PastWorkIDs,
		Seat: e.Seat.State == identity.SeatHeld, RestrictedUntil: e.RestrictedUntil, LeaveDate: e.LeaveDate,
		Offboarded: e.Offboarded, Deleted: e.Deleted, RetainUntil: e.RetainUntil,
		Devices: e.Devices, Jobs: lifecycle.SortedJobs(e), Timeline: e.Timeline,
	}
	if e.Credentials != nil {
		v.Username, v.PasswordSet = e.Credentials.Username, e.Credentials.Hash != ""
	}
	if e.WorkID != "" {
		if st, err := s.cfg.Service.IDStatus(ctx, e.Tenant, e.WorkID); err == nil {
			v.WorkIDStatus = string(st)
		}
	}
	if v.Devices == nil {
		v.Devices = []mdm.Device{}
	}
	if v.Timeline == nil {
		v.Timeline = []identity.Event{}
	}
	return v
}

// employee loads a tenant's employee including SCIM-deleted ones (their history is kept).
func (s *Server) employee(r *http.Request) (*identity.Employee, error) {
	e, err := s.cfg.Store.LoadEmployee(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return nil, err
	}
	if e.Tenant != tenantOf(r).ID {
		return nil, identity.ErrNotFound
	}
	return e, nil
}

func (s *Server) getEmployee(w http.ResponseWriter, r *http.Request) {
	e, err := s.employee(r)
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.employeeView(r.Context(), e))
}

func (s *Server) rotateCredentials(w http.ResponseWriter, r *http.Request) {
	user, pass, err := s.cfg.Service.RotateCredentials(r.Context(), adminFrom(r.Context()).Actor, tenantOf(r).ID, chi.URLParam(r, "id"))
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"username": user, "password": pass})
}

func (s *Server) attachDevice(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Connector string        `json:"connector"`
		DeviceID  string        `json:"deviceId"`
		Ownership mdm.Ownership `json:"ownership"`
		Platform  mdm.Platform  `json:"platform"`
		Name      string        `json:"name"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	e, err := s.cfg.Service.AttachDevice(r.Context(), adminFrom(r.Context()).Actor, tenantOf(r).ID, chi.URLParam(r, "id"),
		mdm.Device{ID: in.DeviceID, Connector: in.Connector, Ownership: in.Ownership, Platform: in.Platform, Name: in.Name})
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.employeeView(r.Context(), e))
}

func (s *Server) jobAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		actor, t, id, job := adminFrom(r.Context()).Actor, tenantOf(r).ID, chi.URLParam(r, "id"), chi.URLParam(r, "job")
		var (
			j   *identity.Job
			err error
		)
		switch action {
		case "retry":
			j, err = s.cfg.Service.RetryJob(r.Context(), actor, t, id, job)
		case "approve":
			j, err = s.cfg.Service.ApproveJob(r.Context(), actor, t, id, job)
		default:
			j, err = s.cfg.Service.RejectJob(r.Context(), actor, t, id, job)
		}
		if err != nil {
			s.adminError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, j)
	}
}

func (s *Server) brake(confirm bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := s.cfg.Service.ReleaseBrake(r.Context(), adminFrom(r.Context()).Actor, tenantOf(r).ID, confirm)
		if err != nil {
			s.adminError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"jobs": n})
	}
}

// jobRow is one job in the tenant-wide listing.
type jobRow struct {
	Employee string `json:"employee"`
	UserName string `json:"userName"`
	*identity.Job
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	state := identity.JobState(r.URL.Query().Get("state"))
	if state == "" {
		state = identity.JobFailed
	}
	t := tenantOf(r)
	ids, err := s.cfg.Store.EmployeesWithState(r.Context(), t.ID, state)
	if err != nil {
		s.adminError(w, err)
		return
	}
	rows := []jobRow{}
	for _, id := range ids {
		e, err := s.cfg.Store.LoadEmployee(r.Context(), id)
		if err != nil {
			continue
		}
		for _, j := range lifecycle.SortedJobs(e) {
			if j.State == state {
				rows = append(rows, jobRow{Employee: e.ID, UserName: e.UserName, Job: j})
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": rows})
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	since := time.Time{}
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be an RFC 3339 time")
			return
		}
		since = t
	}
	limit := 500
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			writeError(w, http.StatusBadRequest, "limit must be 1 to 5000")
			return
		}
		limit = n
	}
	entries, err := s.cfg.Store.ListAudit(r.Context(), tenantOf(r).ID, since, limit)
	if err != nil {
		s.adminError(w, err)
		return
	}
	if entries == nil {
		entries = []*identity.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}

func (s *Server) auditAdmin(r *http.Request, tenant, action, target string, before, after any) {
	e := &identity.AuditEntry{ID: lifecycle.NewID(), Tenant: tenant, At: s.cfg.Now().UTC(),
		Actor: adminFrom(r.Context()).Actor, Action: action, Target: target, Before: jsonShape(before), After: jsonShape(after)}
	if err := s.cfg.Store.AppendAudit(r.Context(), e); err != nil {
		s.cfg.Log.Warn("audit entry not written", "action", action, "error", err)
	}
}

// jsonShape stores a value as the admin API shows it (a policy's durations as "72h0m0s", not
// as BSON nanoseconds), so the audit log reads like the API it records.
func jsonShape(v any) any {
	if v == nil {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return v
	}
	return out
}

func readLimited(r *http.Request, limit int64) ([]byte, error) {
	var raw json.RawMessage
	if err := bodylimit.DecodeJSON(r.Body, limit, &raw, bodylimit.RequireObject(), bodylimit.RejectUnsafeKeys()); err != nil {
		return nil, err
	}
	return raw, nil
}
