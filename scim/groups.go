package scim

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/schema"
	"github.com/scim2/filter-parser/v2"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// GroupStore stores groups and their memberships (implemented by internal/mongostore). A
// membership is its own record, so changing one member of a large group never reads or writes
// the others; only listing a group's members reads them all.
type GroupStore interface {
	CreateGroup(ctx context.Context, g *identity.Group, members []identity.Member) error
	GetGroup(ctx context.Context, tenant, id string) (*identity.Group, error)
	FindGroupsByDisplayName(ctx context.Context, tenant, name string) ([]*identity.Group, error)
	FindGroupsByExternalID(ctx context.Context, tenant, ext string) ([]*identity.Group, error)
	ListGroups(ctx context.Context, tenant string, q identity.ListQuery) ([]*identity.Group, int, error)
	GroupMembers(ctx context.Context, tenant string, g *identity.Group) ([]identity.Member, error)
	IsMember(ctx context.Context, group, member string) (bool, error)
	// UpdateGroup applies fn (edit the copy, return the membership change and whether the
	// group's own attributes changed) with a compare-and-swap, re-running fn on a lost race.
	UpdateGroup(ctx context.Context, tenant, id string, fn func(g *identity.Group) (identity.MemberChange, bool, error)) (*identity.Group, error)
	DeleteGroup(ctx context.Context, tenant, id string, ifMatch func(version int64) error) error
	// RemoveFromGroups removes a deleted member from the groups it was in.
	RemoveFromGroups(ctx context.Context, tenant, member string, groups []string) error
	// RenameMember sets a renamed member's display in the groups it is in.
	RenameMember(ctx context.Context, tenant, member, display string, groups []string) error
}

// groups is /Groups: the library's ResourceHandler for writes and the front's resourceKind.
type groups struct{ h *Handler }

func (g *groups) endpoint() string { return "Groups" }

func (g *groups) store() GroupStore { return g.h.cfg.Groups }

// wire renders a group, reading its members only if the response includes them.
func (g *groups) wire(ctx context.Context, rq *request, grp *identity.Group) (map[string]any, error) {
	var members []identity.Member
	if rq.proj.wants("members") {
		var err error
		if members, err = g.store().GroupMembers(ctx, rq.p.Tenant, grp); err != nil {
			return nil, err
		}
	}
	return groupWire(grp, rq.base, members), nil
}

func (g *groups) find(ctx context.Context, rq *request) (map[string]any, int64, error) {
	grp, err := g.store().GetGroup(ctx, rq.p.Tenant, rq.id)
	if err != nil {
		return nil, 0, err
	}
	w, err := g.wire(ctx, rq, grp)
	return w, grp.Version, err
}

func (g *groups) query(ctx context.Context, rq *request, q listQuery) ([]map[string]any, int, error) {
	found, total, err := g.lookup(ctx, rq.p.Tenant, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]map[string]any, 0, len(found))
	for _, grp := range found {
		w, err := g.wire(ctx, rq, grp)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, w)
	}
	return out, total, nil
}

// lookup answers a list query; `displayName eq`, `externalId eq` and `id eq` use key lookups.
func (g *groups) lookup(ctx context.Context, tenant string, q listQuery) ([]*identity.Group, int, error) {
	attr, value, ok := equality(q.filter, "displayName", "externalId", "id")
	if !ok || q.sortBy != "" {
		return g.store().ListGroups(ctx, tenant, q.identity())
	}
	var all []*identity.Group
	var err error
	switch attr {
	case "displayName":
		all, err = g.store().FindGroupsByDisplayName(ctx, tenant, value)
	case "externalId":
		all, err = g.store().FindGroupsByExternalID(ctx, tenant, value)
	case "id":
		var grp *identity.Group
		grp, err = g.store().GetGroup(ctx, tenant, value)
		if errors.Is(err, identity.ErrNotFound) {
			err = nil
		} else if err == nil {
			all = append(all, grp)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	return pageOf(all, q.startIndex, q.count), len(all), nil
}

func (g *groups) remove(ctx context.Context, rq *request, ifMatch ifMatchFunc) error {
	return g.store().DeleteGroup(ctx, rq.p.Tenant, rq.id, ifMatch)
}

// Create creates a group with its initial members.
func (g *groups) Create(r *http.Request, attrs scim.ResourceAttributes) (scim.Resource, error) {
	rq := requestFrom(r.Context())
	ctx := r.Context()
	name, _ := attrs["displayName"].(string)
	if strings.TrimSpace(name) == "" {
		return rq.failed(invalid("displayName is required."))
	}
	now := g.h.cfg.Now().UTC()
	grp := &identity.Group{ID: lifecycle.NewID(), Tenant: rq.p.Tenant, DisplayName: name, Version: 1, Created: now, Modified: now}
	grp.ExternalID, _ = attrs["externalId"].(string)
	plan := newMemberPlan(ctx, rq, grp)
	if err := plan.addAll(attrs["members"]); err != nil {
		return rq.failed(err)
	}
	ch, err := plan.change()
	if err != nil {
		return rq.failed(err)
	}
	if err := g.store().CreateGroup(ctx, grp, ch.Add); err != nil {
		return rq.failed(err)
	}
	rq.id = grp.ID
	w, err := g.wire(ctx, rq, grp)
	if err != nil {
		return rq.failed(err)
	}
	return rq.done(http.StatusCreated, w)
}

// Replace replaces a group (PUT): name, externalId and the whole member list.
func (g *groups) Replace(r *http.Request, _ string, attrs scim.ResourceAttributes) (scim.Resource, error) {
	rq := requestFrom(r.Context())
	ctx := r.Context()
	check := ifMatchHeader(r)
	grp, err := g.store().UpdateGroup(ctx, rq.p.Tenant, rq.id, func(grp *identity.Group) (identity.MemberChange, bool, error) {
		if check != nil {
			if err := check(grp.Version); err != nil {
				return identity.MemberChange{}, false, err
			}
		}
		name, _ := attrs["displayName"].(string)
		if strings.TrimSpace(name) == "" {
			return identity.MemberChange{}, false, invalid("displayName is required.")
		}
		ext, _ := attrs["externalId"].(string)
		changed := grp.DisplayName != name || grp.ExternalID != ext
		grp.DisplayName, grp.ExternalID = name, ext
		plan := newMemberPlan(ctx, rq, grp)
		if err := plan.removeAll(grp); err != nil {
			return identity.MemberChange{}, false, err
		}
		if err := plan.addAll(attrs["members"]); err != nil {
			return identity.MemberChange{}, false, err
		}
		ch, err := plan.change()
		return ch, changed, err
	})
	if err != nil {
		return rq.failed(err)
	}
	w, err := g.wire(ctx, rq, grp)
	if err != nil {
		return rq.failed(err)
	}
	return rq.done(http.StatusOK, w)
}

// Patch applies PATCH operations. It answers 204 (Entra's documented answer for groups; a
// group's members are not read) unless attributes or excludedAttributes ask for the group.
func (g *groups) Patch(r *http.Request, _ string, ops []scim.PatchOperation) (scim.Resource, error) {
	rq := requestFrom(r.Context())
	ops, err := rq.restoreValueFilters(ops)
	if err != nil {
		return rq.failed(err)
	}
	ctx := r.Context()
	check := ifMatchHeader(r)
	grp, err := g.store().UpdateGroup(ctx, rq.p.Tenant, rq.id, func(grp *identity.Group) (identity.MemberChange, bool, error) {
		if check != nil {
			if err := check(grp.Version); err != nil {
				return identity.MemberChange{}, false, err
			}
		}
		before := *grp
		plan := newMemberPlan(ctx, rq, grp)
		if err := applyGroupPatch(grp, plan, ops); err != nil {
			return identity.MemberChange{}, false, err
		}
		ch, err := plan.change()
		return ch, grp.DisplayName != before.DisplayName || grp.ExternalID != before.ExternalID, err
	})
	if err != nil {
		return rq.failed(err)
	}
	if rq.proj.empty() {
		rq.status, rq.version = http.StatusNoContent, grp.Version
		return scim.Resource{}, nil
	}
	w, err := g.wire(ctx, rq, grp)
	if err != nil {
		return rq.failed(err)
	}
	return rq.done(http.StatusOK, w)
}

// Get is served by the front.
func (g *groups) Get(*http.Request, string) (scim.Resource, error) {
	return scim.Resource{}, errNotServed
}

// GetAll is served by the front.
func (g *groups) GetAll(*http.Request, scim.ListRequestParams) (scim.Page, error) {
	return scim.Page{}, errNotServed
}

// Delete is served by the front.
func (g *groups) Delete(*http.Request, string) error { return errNotServed }

// applyGroupPatch applies validated PATCH operations to a group: its attributes in place,
// its members into plan.
func applyGroupPatch(grp *identity.Group, plan *memberPlan, ops []scim.PatchOperation) error {
	for i, op := range ops {
		var err error
		if op.Path == nil {
			m, ok := op.Value.(map[string]any)
			if !ok {
				err = patchError(scimerrors.ScimTypeInvalidValue, "an operation without a path needs an object value")
			}
			for _, k := range sortedKeys(m) {
				if err != nil {
					break
				}
				p, perr := keyPath(k)
				if perr != nil {
					err = patchError(scimerrors.ScimTypeInvalidPath, "%q is not an attribute path", k)
					break
				}
				err = groupOp(grp, plan, op.Op, p, m[k])
			}
		} else {
			err = groupOp(grp, plan, op.Op, *op.Path, op.Value)
		}
		if err != nil {
			var se scimerrors.ScimError
			if asScimError(err, &se) {
				se.Detail = "Operation " + strconv.Itoa(i+1) + ": " + se.Detail
				return se
			}
			return err
		}
	}
	return nil
}

// groupOp applies one operation on one path of a group.
func groupOp(grp *identity.Group, plan *memberPlan, op string, p filter.Path, value any) error {
	if uri := p.AttributePath.URI(); uri != "" && !strings.EqualFold(uri, GroupSchema) {
		return patchError(scimerrors.ScimTypeInvalidPath, "%s names no group attribute", p)
	}
	sub := p.AttributePath.SubAttributeName() != "" || p.SubAttribute != nil
	switch strings.ToLower(p.AttributePath.AttributeName) {
	case "displayname":
		if sub || p.ValueExpression != nil {
			return patchError(scimerrors.ScimTypeInvalidPath, "displayName has no sub-attributes")
		}
		if op == scim.PatchOperationRemove {
			return patchError(scimerrors.ScimTypeInvalidValue, "displayName is required and cannot be removed")
		}
		s, ok := value.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return patchError(scimerrors.ScimTypeInvalidValue, "displayName must be a non-empty string")
		}
		grp.DisplayName = s
		return nil
	case "externalid":
		if sub || p.ValueExpression != nil {
			return patchError(scimerrors.ScimTypeInvalidPath, "externalId has no sub-attributes")
		}
		if op == scim.PatchOperationRemove {
			grp.ExternalID = ""
			return nil
		}
		s, ok := value.(string)
		if !ok {
			return patchError(scimerrors.ScimTypeInvalidValue, "externalId must be a string")
		}
		grp.ExternalID = s
		return nil
	case "members":
	default:
		return patchError(scimerrors.ScimTypeInvalidPath, "%s names no group attribute", p)
	}
	if sub {
		return patchError(scimerrors.ScimTypeMutability, "the sub-attributes of members are immutable; remove and add the member")
	}
	if p.ValueExpression != nil {
		ids, err := plan.matching(p.ValueExpression)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if op != scim.PatchOperationAdd {
				plan.remove(id)
			}
		}
		if op == scim.PatchOperationRemove {
			return nil // nothing matched: nothing to remove (Okta's remove+add in one request)
		}
		return plan.addAll(value)
	}
	switch op {
	case scim.PatchOperationAdd:
		return plan.addAll(value)
	case scim.PatchOperationReplace:
		if err := plan.removeAll(nil); err != nil {
			return err
		}
		return plan.addAll(value)
	case scim.PatchOperationRemove:
		if value == nil {
			return plan.removeAll(nil)
		}
		// Entra: remove the listed members only.
		list, _ := value.([]any)
		if list == nil {
			list = []any{value}
		}
		for _, el := range list {
			if id := memberValue(el); id != "" {
				plan.remove(id)
			}
		}
		return nil
	}
	return patchError(scimerrors.ScimTypeInvalidValue, "unknown op %q", op)
}

func memberValue(el any) string {
	switch x := el.(type) {
	case map[string]any:
		v, _ := lookupFold(x, "value")
		s, _ := v.(string)
		return s
	case string:
		return x
	}
	return ""
}

// memberPlan is the membership of one group as a PATCH or PUT changes it: the desired
// presence of each member touched so far over the stored membership, read member by member
// (`_id` reads) unless an operation needs the whole list.
type memberPlan struct {
	ctx     context.Context
	rq      *request
	group   string
	empty   bool                        // the group has no stored members (new, or count 0)
	desired map[string]*identity.Member // id → member to have, or nil to not have
	stored  map[string]bool             // stored membership, as far as read
	all     []identity.Member           // every stored member, once loaded
	loaded  bool
	order   []string
}

// newMemberPlan plans grp's membership. A member count of 0 means no stored members (the
// store only ever leaves the count too high, never too low), so a group's first members need
// no membership reads.
func newMemberPlan(ctx context.Context, rq *request, grp *identity.Group) *memberPlan {
	return &memberPlan{ctx: ctx, rq: rq, group: grp.ID, empty: grp.MemberCount <= 0,
		desired: map[string]*identity.Member{}, stored: map[string]bool{}}
}

func (p *memberPlan) touch(id string) {
	if _, seen := p.desired[id]; !seen {
		p.order = append(p.order, id)
	}
}

func (p *memberPlan) remove(id string) {
	p.touch(id)
	p.desired[id] = nil
}

// isStored reports whether id is a stored member.
func (p *memberPlan) isStored(id string) (bool, error) {
	if p.empty {
		return false, nil
	}
	if v, ok := p.stored[id]; ok || p.loaded {
		return v, nil
	}
	v, err := p.rq.h.cfg.Groups.IsMember(p.ctx, p.group, id)
	if err != nil {
		return false, err
	}
	p.stored[id] = v
	return v, nil
}

// load reads every stored member (replace, remove all, or a filter other than value eq).
func (p *memberPlan) load(grp *identity.Group) error {
	if p.loaded || p.empty {
		return nil
	}
	if grp == nil {
		var err error
		if grp, err = p.rq.h.cfg.Groups.GetGroup(p.ctx, p.rq.p.Tenant, p.group); err != nil {
			return err
		}
	}
	all, err := p.rq.h.cfg.Groups.GroupMembers(p.ctx, p.rq.p.Tenant, grp)
	if err != nil {
		return err
	}
	p.all, p.loaded = all, true
	for _, m := range all {
		p.stored[m.Value] = true
	}
	return nil
}

// current is the membership as planned so far.
func (p *memberPlan) current() []identity.Member {
	var out []identity.Member
	for _, m := range p.all {
		if d, touched := p.desired[m.Value]; !touched || d != nil {
			out = append(out, m)
		}
	}
	for _, id := range p.order {
		if d := p.desired[id]; d != nil && !p.stored[id] {
			out = append(out, *d)
		}
	}
	return out
}

func (p *memberPlan) removeAll(grp *identity.Group) error {
	if err := p.load(grp); err != nil {
		return err
	}
	for _, m := range p.current() {
		p.remove(m.Value)
	}
	return nil
}

// matching returns the ids of the members a value filter selects: directly for value eq terms
// (joined by or), else by evaluating the filter on every member.
func (p *memberPlan) matching(f filter.Expression) ([]string, error) {
	if ids, ok := valueEqualities(f); ok {
		var out []string
		for _, id := range ids {
			if d, touched := p.desired[id]; touched {
				if d != nil {
					out = append(out, id)
				}
				continue
			}
			ok, err := p.isStored(id)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, id)
			}
		}
		return out, nil
	}
	match, err := elementMatcher(groupSchema.membersAttr(), f)
	if err != nil {
		return nil, err
	}
	if err := p.load(nil); err != nil {
		return nil, err
	}
	var out []string
	for _, m := range p.current() {
		el := map[string]any{"value": m.Value, "type": m.Type, "display": m.Display}
		if match(el) {
			out = append(out, m.Value)
		}
	}
	return out, nil
}

// valueEqualities recognises value eq "a" [or value eq "b" ...].
func valueEqualities(f filter.Expression) ([]string, bool) {
	switch e := f.(type) {
	case *filter.AttributeExpression:
		s, ok := e.CompareValue.(string)
		if e.Operator != filter.EQ || !ok || !strings.EqualFold(e.AttributePath.AttributeName, "value") || e.AttributePath.SubAttribute != nil {
			return nil, false
		}
		return []string{unescape(s)}, true
	case *filter.LogicalExpression:
		if e.Operator != filter.OR {
			return nil, false
		}
		l, lok := valueEqualities(e.Left)
		r, rok := valueEqualities(e.Right)
		return append(l, r...), lok && rok
	}
	return nil, false
}

// addAll adds the members of a members value: resolved to users or groups of the tenant.
// Members that name nothing are ignored (decided lenient: the MS collection adds
// "string id 1" and expects 204; storing a dangling member would be worse).
func (p *memberPlan) addAll(value any) error {
	if value == nil {
		return nil
	}
	list, ok := value.([]any)
	if !ok {
		list = []any{value}
	}
	for _, el := range list {
		id := memberValue(el)
		if id == "" {
			continue
		}
		if d, touched := p.desired[id]; touched && d != nil {
			continue // already being added
		}
		m, found, err := p.resolve(id, el)
		if err != nil {
			return err
		}
		if !found {
			p.rq.h.cfg.Log.Debug("group member names no user or group; ignored", "group", p.group, "member", id)
			continue
		}
		p.touch(id)
		p.desired[id] = &m
	}
	return nil
}

// resolve finds the user (or nested group) a member value names, in the request's tenant.
func (p *memberPlan) resolve(id string, el any) (identity.Member, bool, error) {
	var given, typ string
	if m, ok := el.(map[string]any); ok {
		v, _ := lookupFold(m, "display")
		given, _ = v.(string)
		t, _ := lookupFold(m, "type")
		typ, _ = t.(string)
	}
	if !strings.EqualFold(typ, "Group") {
		e, err := p.rq.h.cfg.Users.GetUser(p.ctx, p.rq.p.Tenant, id)
		switch {
		case err == nil:
			display := given
			if display == "" {
				display = memberDisplay(e)
			}
			return identity.Member{Value: id, Type: "User", Display: display}, true, nil
		case !errors.Is(err, identity.ErrNotFound):
			return identity.Member{}, false, err
		}
	}
	if id == p.group {
		return identity.Member{}, false, patchError(scimerrors.ScimTypeInvalidValue, "a group cannot be its own member")
	}
	g, err := p.rq.h.cfg.Groups.GetGroup(p.ctx, p.rq.p.Tenant, id)
	switch {
	case err == nil:
		display := given
		if display == "" {
			display = g.DisplayName
		}
		return identity.Member{Value: id, Type: "Group", Display: display}, true, nil
	case errors.Is(err, identity.ErrNotFound):
		return identity.Member{}, false, nil
	}
	return identity.Member{}, false, err
}

// change is the difference between the plan and the stored membership.
func (p *memberPlan) change() (identity.MemberChange, error) {
	var ch identity.MemberChange
	for _, id := range p.order {
		stored, err := p.isStored(id)
		if err != nil {
			return ch, err
		}
		switch d := p.desired[id]; {
		case d != nil && !stored:
			ch.Add = append(ch.Add, *d)
		case d == nil && stored:
			ch.Remove = append(ch.Remove, id)
		}
	}
	return ch, nil
}

// membersAttr is the Group schema's members attribute.
func (s *resourceSchema) membersAttr() schema.CoreAttribute {
	a, _ := s.core.Attributes.ContainsAttribute("members")
	return a
}

// memberDisplay is how a user is shown among a group's members: its displayName, else its
// userName.
func memberDisplay(e *identity.Employee) string {
	if d, _ := e.Resource["displayName"].(string); d != "" {
		return d
	}
	return e.UserName
}
