package scim

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/scim2/filter-parser/v2"

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

// UserLookup answers SCIM user queries. The IdP hot paths (userName eq, externalId eq) have
// their own `_id`-addressed lookups; everything else goes through ListEmployees.
type UserLookup interface {
	FindEmployeeByUserName(ctx context.Context, tenant, userName string) (*identity.Employee, error)
	FindEmployeesByExternalID(ctx context.Context, tenant, ext string) ([]*identity.Employee, error)
	ListEmployees(ctx context.Context, tenant string, q identity.ListQuery) ([]*identity.Employee, int, error)
}

// users implements the library's ResourceHandler for /Users.
type users struct {
	svc    UserService
	lookup UserLookup
	log    *slog.Logger
}

func principal(r *http.Request) (Principal, error) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		return Principal{}, scimerrors.ScimError{Status: http.StatusUnauthorized, Detail: "Authentication required."}
	}
	return p, nil
}

// ifMatch reads If-Match; nil when absent or "*".
func ifMatch(r *http.Request) (*int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil, nil
	}
	v, ok := parseVersionTag(h)
	if !ok {
		return nil, scimerrors.ScimError{Status: http.StatusPreconditionFailed, Detail: "If-Match does not name a version of this resource."}
	}
	return &v, nil
}

func (u *users) Create(r *http.Request, attrs scim.ResourceAttributes) (scim.Resource, error) {
	p, err := principal(r)
	if err != nil {
		return scim.Resource{}, err
	}
	in, err := toInput(attrs)
	if err != nil {
		return scim.Resource{}, scimError(u.log, err)
	}
	e, err := u.svc.CreateUser(r.Context(), p.Actor, p.Tenant, in)
	if err != nil {
		return scim.Resource{}, scimError(u.log, err)
	}
	return toResource(e), nil
}

func (u *users) Get(r *http.Request, id string) (scim.Resource, error) {
	p, err := principal(r)
	if err != nil {
		return scim.Resource{}, err
	}
	e, err := u.svc.GetUser(r.Context(), p.Tenant, id)
	if err != nil {
		return scim.Resource{}, scimError(u.log, err)
	}
	return toResource(e), nil
}

func (u *users) GetAll(r *http.Request, params scim.ListRequestParams) (scim.Page, error) {
	p, err := principal(r)
	if err != nil {
		return scim.Page{}, err
	}
	var expr filter.Expression
	if params.FilterValidator != nil {
		expr = params.FilterValidator.GetFilter()
	}
	found, total, err := u.query(r.Context(), p.Tenant, identity.ListQuery{
		Filter: expr, StartIndex: params.StartIndex, Count: params.Count,
	})
	if err != nil {
		return scim.Page{}, scimError(u.log, err)
	}
	page := scim.Page{TotalResults: total, Resources: []scim.Resource{}}
	for _, e := range found {
		page.Resources = append(page.Resources, toResource(e))
	}
	return page, nil
}

// query answers a list request; `userName eq` and `externalId eq` use the key lookups.
func (u *users) query(ctx context.Context, tenant string, q identity.ListQuery) ([]*identity.Employee, int, error) {
	if attr, value, ok := equality(q.Filter); ok {
		var all []*identity.Employee
		switch attr {
		case "username":
			e, err := u.lookup.FindEmployeeByUserName(ctx, tenant, value)
			if err != nil && !errors.Is(err, identity.ErrNotFound) {
				return nil, 0, err
			}
			if e != nil {
				all = append(all, e)
			}
		case "externalid":
			es, err := u.lookup.FindEmployeesByExternalID(ctx, tenant, value)
			if err != nil {
				return nil, 0, err
			}
			all = es
		default:
			return u.lookup.ListEmployees(ctx, tenant, q)
		}
		return page(all, q.StartIndex, q.Count), len(all), nil
	}
	return u.lookup.ListEmployees(ctx, tenant, q)
}

// equality recognises `userName eq "x"` and `externalId eq "x"` (names case-insensitive, with
// or without the core schema URN).
func equality(e filter.Expression) (attr, value string, ok bool) {
	ae, isAttr := e.(*filter.AttributeExpression)
	if !isAttr || ae.Operator != filter.EQ || ae.AttributePath.SubAttribute != nil {
		return "", "", false
	}
	if uri := ae.AttributePath.URI(); uri != "" && !strings.EqualFold(uri, UserSchema) {
		return "", "", false
	}
	v, isString := ae.CompareValue.(string)
	if !isString {
		return "", "", false
	}
	name := strings.ToLower(ae.AttributePath.AttributeName)
	if name != "username" && name != "externalid" {
		return "", "", false
	}
	return name, v, true
}

func page(all []*identity.Employee, start, count int) []*identity.Employee {
	if start < 1 {
		start = 1
	}
	if start > len(all) || count <= 0 {
		return nil
	}
	end := min(start-1+count, len(all))
	return all[start-1 : end]
}

func (u *users) Replace(r *http.Request, id string, attrs scim.ResourceAttributes) (scim.Resource, error) {
	p, err := principal(r)
	if err != nil {
		return scim.Resource{}, err
	}
	match, err := ifMatch(r)
	if err != nil {
		return scim.Resource{}, err
	}
	in, err := toInput(attrs)
	if err != nil {
		return scim.Resource{}, scimError(u.log, err)
	}
	e, err := u.svc.UpdateUser(r.Context(), p.Actor, p.Tenant, id, match, func(e *identity.Employee) (bool, error) {
		return replaceUser(e, in), nil
	})
	if err != nil {
		return scim.Resource{}, scimError(u.log, err)
	}
	return toResource(e), nil
}

// replaceUser sets the SCIM side of e from a full resource; it reports whether anything changed.
func replaceUser(e *identity.Employee, in lifecycle.UserInput) bool {
	changed := e.UserName != in.UserName || e.ExternalID != in.ExternalID || e.Active != in.Active ||
		!equalTimes(e.LeaveDate, in.LeaveDate) || !deepEqual(e.Resource, in.Resource)
	if !changed {
		return false
	}
	e.UserName, e.UserNameKey = in.UserName, identity.FoldKey(in.UserName)
	e.ExternalID, e.Active, e.Resource, e.LeaveDate = in.ExternalID, in.Active, in.Resource, in.LeaveDate
	return true
}

func (u *users) Delete(r *http.Request, id string) error {
	p, err := principal(r)
	if err != nil {
		return err
	}
	match, err := ifMatch(r)
	if err != nil {
		return err
	}
	if err := u.svc.DeleteUser(r.Context(), p.Actor, p.Tenant, id, match); err != nil {
		return scimError(u.log, err)
	}
	return nil
}

func (u *users) Patch(r *http.Request, id string, ops []scim.PatchOperation) (scim.Resource, error) {
	p, err := principal(r)
	if err != nil {
		return scim.Resource{}, err
	}
	match, err := ifMatch(r)
	if err != nil {
		return scim.Resource{}, err
	}
	e, err := u.svc.UpdateUser(r.Context(), p.Actor, p.Tenant, id, match, func(e *identity.Employee) (bool, error) {
		return patchUser(e, ops)
	})
	if err != nil {
		return scim.Resource{}, scimError(u.log, err)
	}
	return toResource(e), nil
}
