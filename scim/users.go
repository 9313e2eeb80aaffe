package scim

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"sort"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// UserService is the lifecycle service as the SCIM layer uses it.
type UserService interface {
	CreateUser(ctx context.Context, actor, tenant string, in lifecycle.UserInput) (*identity.Employee, error)
	UpdateUser(ctx context.Context, actor, tenant, id string, ifMatch *int64, m lifecycle.Mutation) (*identity.Employee, error)
	DeleteUser(ctx context.Context, actor, tenant, id string, ifMatch *int64) error
	GetUser(ctx context.Context, tenant, id string) (*identity.Employee, error)
}

// UserLookup answers SCIM user queries. The IdP hot paths (userName eq, externalId eq, id eq)
// have their own `_id`-addressed lookups; everything else goes through ListEmployees.
type UserLookup interface {
	FindEmployeeByUserName(ctx context.Context, tenant, userName string) (*identity.Employee, error)
	FindEmployeesByExternalID(ctx context.Context, tenant, ext string) ([]*identity.Employee, error)
	ListEmployees(ctx context.Context, tenant string, q identity.ListQuery) ([]*identity.Employee, int, error)
}

// users is /Users: the library's ResourceHandler for writes and the front's resourceKind.
type users struct{ h *Handler }

func (u *users) endpoint() string { return "Users" }

// wire renders an employee for this request (group names read once per request).
func (u *users) wire(ctx context.Context, rq *request, e *identity.Employee) map[string]any {
	return userWire(e, rq.base, func(id string) (string, bool) { return rq.groupName(ctx, id) })
}

// groupName is what a user's "groups" shows of a group.
type groupName struct {
	name   string
	exists bool
}

// groupName is a group's displayName for a user's "groups" (one `_id` read per group and
// request); ok is false if the group no longer exists.
func (rq *request) groupName(ctx context.Context, id string) (string, bool) {
	if n, ok := rq.names[id]; ok {
		return n.name, n.exists
	}
	if rq.names == nil {
		rq.names = map[string]groupName{}
	}
	var n groupName
	if rq.h.cfg.Groups != nil {
		g, err := rq.h.cfg.Groups.GetGroup(ctx, rq.p.Tenant, id)
		switch {
		case err == nil:
			n = groupName{name: g.DisplayName, exists: true}
		case !errors.Is(err, identity.ErrNotFound):
			n = groupName{exists: true} // unreadable right now: shown without display
		}
	}
	rq.names[id] = n
	return n.name, n.exists
}

func (u *users) find(ctx context.Context, rq *request) (map[string]any, int64, error) {
	e, err := u.h.cfg.Users.GetUser(ctx, rq.p.Tenant, rq.id)
	if err != nil {
		return nil, 0, err
	}
	return u.wire(ctx, rq, e), e.Version, nil
}

func (u *users) query(ctx context.Context, rq *request, q listQuery) ([]map[string]any, int, error) {
	found, total, err := u.lookup(ctx, rq.p.Tenant, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]map[string]any, 0, len(found))
	for _, e := range found {
		out = append(out, u.wire(ctx, rq, e))
	}
	return out, total, nil
}

// lookup answers a list query; `userName eq`, `externalId eq` and `id eq` use key lookups.
func (u *users) lookup(ctx context.Context, tenant string, q listQuery) ([]*identity.Employee, int, error) {
	attr, value, ok := equality(q.filter, "userName", "externalId", "id")
	if !ok || q.sortBy != "" {
		return u.h.cfg.Lookup.ListEmployees(ctx, tenant, q.identity())
	}
	var all []*identity.Employee
	switch attr {
	case "userName":
		e, err := u.h.cfg.Lookup.FindEmployeeByUserName(ctx, tenant, value)
		if err != nil && !errors.Is(err, identity.ErrNotFound) {
			return nil, 0, err
		}
		if e != nil {
			all = append(all, e)
		}
	case "externalId":
		es, err := u.h.cfg.Lookup.FindEmployeesByExternalID(ctx, tenant, value)
		if err != nil {
			return nil, 0, err
		}
		all = es
		sort.Slice(all, func(i, j int) bool {
			if !all[i].Created.Equal(all[j].Created) {
				return all[i].Created.Before(all[j].Created)
			}
			return all[i].ID < all[j].ID
		})
	case "id":
		e, err := u.h.cfg.Users.GetUser(ctx, tenant, value)
		if err != nil && !errors.Is(err, identity.ErrNotFound) {
			return nil, 0, err
		}
		if e != nil {
			all = append(all, e)
		}
	}
	return pageOf(all, q.startIndex, q.count), len(all), nil
}

func (u *users) remove(ctx context.Context, rq *request, ifMatch ifMatchFunc) error {
	e, err := u.h.cfg.Users.GetUser(ctx, rq.p.Tenant, rq.id)
	if err != nil {
		return err
	}
	var match *int64
	if ifMatch != nil {
		if err := ifMatch(e.Version); err != nil {
			return err
		}
		match = &e.Version
	}
	if err := u.h.cfg.Users.DeleteUser(ctx, rq.p.Actor, rq.p.Tenant, rq.id, match); err != nil {
		return err
	}
	if len(e.Groups) > 0 && u.h.cfg.Groups != nil {
		ids := make([]string, len(e.Groups))
		for i, g := range e.Groups {
			ids[i] = g.ID
		}
		if err := u.h.cfg.Groups.RemoveFromGroups(ctx, rq.p.Tenant, rq.id, ids); err != nil {
			u.h.cfg.Log.Warn("deleted user left in groups", "tenant", rq.p.Tenant, "user", rq.id, "error", err)
		}
	}
	return nil
}

// The library's ResourceHandler: Create, Replace and Patch receive validated input; the
// result is recorded on the request and rendered by the front.

// Create creates a user (a joiner when active).
func (u *users) Create(r *http.Request, attrs scim.ResourceAttributes) (scim.Resource, error) {
	rq := requestFrom(r.Context())
	in, err := toInput(attrs, nil)
	if err != nil {
		return rq.failed(err)
	}
	e, err := u.h.cfg.Users.CreateUser(r.Context(), rq.p.Actor, rq.p.Tenant, in)
	if err != nil {
		return rq.failed(err)
	}
	rq.id = e.ID
	return rq.done(http.StatusCreated, u.wire(r.Context(), rq, e))
}

// Replace replaces a user (PUT): attributes not sent are cleared, read-only ones ignored.
func (u *users) Replace(r *http.Request, _ string, attrs scim.ResourceAttributes) (scim.Resource, error) {
	rq := requestFrom(r.Context())
	e, err := u.update(r, rq, func(e *identity.Employee) (bool, error) {
		in, err := toInput(attrs, e)
		if err != nil {
			return false, err
		}
		return replaceUser(e, in), nil
	})
	if err != nil {
		return rq.failed(err)
	}
	return rq.done(http.StatusOK, u.wire(r.Context(), rq, e))
}

// Patch applies PATCH operations (all or nothing). It answers 204 with the new ETag (the
// answer Entra ID, Okta and Microsoft's SCIM test collection all accept; RFC 7644 §3.5.2
// allows it) unless attributes or excludedAttributes ask for the user: then 200 with it.
func (u *users) Patch(r *http.Request, _ string, ops []scim.PatchOperation) (scim.Resource, error) {
	rq := requestFrom(r.Context())
	ops, err := rq.restoreValueFilters(ops)
	if err != nil {
		return rq.failed(err)
	}
	e, err := u.update(r, rq, func(e *identity.Employee) (bool, error) { return patchUser(e, ops) })
	if err != nil {
		return rq.failed(err)
	}
	if rq.proj.empty() {
		rq.status, rq.version = http.StatusNoContent, e.Version
		return scim.Resource{}, nil
	}
	return rq.done(http.StatusOK, u.wire(r.Context(), rq, e))
}

// update runs a mutation through the lifecycle service with If-Match. A user shown under a
// new name is renamed in its groups' member lists too (displays are stored with the
// memberships, so listing a group never reads its users).
func (u *users) update(r *http.Request, rq *request, m lifecycle.Mutation) (*identity.Employee, error) {
	check := ifMatchHeader(r)
	var before string
	e, err := u.h.cfg.Users.UpdateUser(r.Context(), rq.p.Actor, rq.p.Tenant, rq.id, nil, func(e *identity.Employee) (bool, error) {
		if check != nil {
			if err := check(e.Version); err != nil {
				return false, err
			}
		}
		before = memberDisplay(e)
		return m(e)
	})
	if err != nil || len(e.Groups) == 0 || u.h.cfg.Groups == nil || memberDisplay(e) == before {
		return e, err
	}
	ids := make([]string, len(e.Groups))
	for i, g := range e.Groups {
		ids[i] = g.ID
	}
	if err := u.h.cfg.Groups.RenameMember(r.Context(), rq.p.Tenant, rq.id, memberDisplay(e), ids); err != nil {
		u.h.cfg.Log.Warn("renamed user keeps its old name in group member lists", "tenant", rq.p.Tenant, "user", rq.id, "error", err)
	}
	return e, nil
}

// Get, GetAll and Delete are served by the front (see Handler); the library never calls them.
func (u *users) Get(*http.Request, string) (scim.Resource, error) {
	return scim.Resource{}, errNotServed
}

// GetAll is served by the front.
func (u *users) GetAll(*http.Request, scim.ListRequestParams) (scim.Page, error) {
	return scim.Page{}, errNotServed
}

// Delete is served by the front.
func (u *users) Delete(*http.Request, string) error { return errNotServed }

var errNotServed = scimerrors.ScimError{Status: http.StatusNotImplemented, Detail: "Not served by the library."}

// patchUser applies PATCH operations to the wire form of an employee's resource and stores
// the result as a full replacement. It reports whether anything changed.
func patchUser(e *identity.Employee, ops []scim.PatchOperation) (bool, error) {
	wire := wireAttrs(e.Resource)
	wire["userName"] = e.UserName
	wire["active"] = e.Active
	if e.ExternalID != "" {
		wire["externalId"] = e.ExternalID
	}
	if err := applyPatch(userSchema, wire, ops); err != nil {
		return false, err
	}
	if _, ok := wire["active"]; !ok {
		return false, patchError(scimerrors.ScimTypeInvalidValue, "active cannot be removed; replace it with false")
	}
	in, err := toInput(wire, e)
	if err != nil {
		return false, err
	}
	return replaceUser(e, in), nil
}

// replaceUser sets the SCIM side of e from a full resource; it reports whether anything changed.
func replaceUser(e *identity.Employee, in lifecycle.UserInput) bool {
	changed := e.UserName != in.UserName || e.ExternalID != in.ExternalID || e.Active != in.Active ||
		!equalTimes(e.LeaveDate, in.LeaveDate) || !reflect.DeepEqual(normalizeStored(e.Resource), normalizeStored(in.Resource))
	if !changed {
		return false
	}
	e.UserName, e.UserNameKey = in.UserName, identity.FoldKey(in.UserName)
	e.ExternalID, e.Active, e.Resource, e.LeaveDate = in.ExternalID, in.Active, in.Resource, in.LeaveDate
	return true
}

// normalizeStored makes two stored resources comparable (numbers as float64, "active" aside).
func normalizeStored(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k == "active" {
			continue
		}
		out[k] = normalizeNumber(v)
	}
	return out
}

func normalizeNumber(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeNumber(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeNumber(e)
		}
		return out
	}
	if n, ok := number(v); ok {
		return n
	}
	return v
}

func equalTimes[T interface{ Equal(T) bool }](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return (*a).Equal(*b)
}
