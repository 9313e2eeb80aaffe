package scim

import (
	"fmt"
	"strings"
	"time"

	"github.com/elimity-com/scim/schema"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// Wire form ↔ storage form. The stored resource (identity.Employee.Resource, "res") holds the
// SCIM attributes in canonical names, with two differences: extensions are stored under short
// keys (extensionKeys: URNs contain dots, which document databases read as path separators),
// and dateTime values are BSON dates (so filters compare instants). Never stored: id, meta,
// schemas, groups (read-only or derived), password (returned never; Offboard issues its own
// credentials), "$ref" sub-attributes (derived from ids), and unassigned values (null, "", []),
// so "pr" means "has a value". externalId lives outside res, in its own indexed field.

// toInput turns validated, normalised SCIM attributes (canonical names, extensions under their
// URN) into the lifecycle's user input. active is kept as current when absent (PUT without
// "active" must not re-hire or offboard anyone); current is nil on create (absent means true).
func toInput(attrs map[string]any, current *identity.Employee) (lifecycle.UserInput, error) {
	res, err := storageAttrs(attrs, userSchema)
	if err != nil {
		return lifecycle.UserInput{}, err
	}
	in := lifecycle.UserInput{Resource: res, Active: true}
	if current != nil {
		in.Active = current.Active
	}
	in.UserName, _ = res["userName"].(string)
	if strings.TrimSpace(in.UserName) == "" {
		return in, invalid("userName is required.")
	}
	if a, ok := res["active"].(bool); ok {
		in.Active = a
	}
	delete(res, "active") // kept in Employee.Active; rendered from there
	if ext, ok := attrs["externalId"].(string); ok {
		in.ExternalID = ext
	}
	in.LeaveDate = leaveDate(res)
	return in, nil
}

// storageAttrs converts wire attributes of resource schema rs into the stored form.
func storageAttrs(attrs map[string]any, rs *resourceSchema) (map[string]any, error) {
	res := map[string]any{}
	for k, v := range attrs {
		if e, ok := rs.extension(k); ok {
			m, _ := v.(map[string]any)
			stored, err := storeComplex(e.Attributes, m)
			if err != nil {
				return nil, err
			}
			if len(stored) > 0 {
				res[extensionKeys[e.ID]] = stored
			}
			continue
		}
		a, ok := rs.core.Attributes.ContainsAttribute(k)
		if !ok || a.Name() != k || dropOnWrite[k] || isReadOnly(a) {
			continue
		}
		sv, keep, err := storeValue(a, v)
		if err != nil {
			return nil, err
		}
		if keep {
			res[k] = sv
		}
	}
	return res, nil
}

// dropOnWrite are attributes never stored in res.
var dropOnWrite = map[string]bool{"id": true, "meta": true, "schemas": true, "groups": true, "password": true, "externalId": true}

func storeComplex(attrs schema.Attributes, m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range m {
		a, ok := attrs.ContainsAttribute(k)
		if !ok || strings.HasPrefix(a.Name(), "$") || isReadOnly(a) {
			continue
		}
		sv, keep, err := storeValue(a, v)
		if err != nil {
			return nil, err
		}
		if keep {
			out[a.Name()] = sv
		}
	}
	return out, nil
}

func storeValue(a schema.CoreAttribute, v any) (any, bool, error) {
	if isEmpty(v) {
		return nil, false, nil
	}
	if a.MultiValued() {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		out := make([]any, 0, len(list))
		for _, el := range list {
			sv, keep, err := storeSingle(a, el)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out = append(out, sv)
			}
		}
		return out, len(out) > 0, nil
	}
	return storeSingle(a, v)
}

func storeSingle(a schema.CoreAttribute, v any) (any, bool, error) {
	if isEmpty(v) {
		return nil, false, nil
	}
	switch a.AttributeType() {
	case "complex":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false, invalid(a.Name() + " must be an object.")
		}
		out, err := storeComplex(a.SubAttributes(), m)
		return out, len(out) > 0, err
	case "dateTime":
		switch t := v.(type) {
		case time.Time:
			return t.UTC(), true, nil
		case string:
			p, err := parseDateTime(t)
			if err != nil {
				return nil, false, invalid(a.Name() + " must be an xsd:dateTime such as 2026-12-31T17:00:00Z.")
			}
			return p, true, nil
		}
		return nil, false, invalid(a.Name() + " must be an xsd:dateTime.")
	}
	return v, true, nil
}

// parseDateTime reads an xsd:dateTime (RFC 3339, any fractional digits; no zone means UTC).
func parseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not an xsd:dateTime: %q", s)
}

// leaveDate reads the Offboard extension's leave date (either name) from a stored resource.
func leaveDate(res map[string]any) *time.Time {
	ext, _ := res["offboard"].(map[string]any)
	for _, k := range []string{"leaveDate", "employeeLeaveDateTime"} {
		if t, ok := ext[k].(time.Time); ok {
			u := t.UTC()
			return &u
		}
	}
	return nil
}

// wireAttrs converts a stored resource into wire attributes: extensions under their URN,
// dates as xsd:dateTime strings. The result is a deep copy.
func wireAttrs(res map[string]any) map[string]any {
	out := make(map[string]any, len(res))
	for k, v := range res {
		if urn, ok := extensionURNs[k]; ok {
			out[urn] = wireValue(v)
			continue
		}
		out[k] = wireValue(v)
	}
	return out
}

func wireValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = wireValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = wireValue(e)
		}
		return out
	case time.Time:
		return formatTime(x)
	}
	return v
}

// formatTime renders an xsd:dateTime in UTC with millisecond precision at most.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.999Z07:00") }

// versionTag renders a resource version as a weak ETag.
func versionTag(v int64) string { return fmt.Sprintf(`W/"%d"`, v) }

// parseVersionTag reads one entity-tag of If-Match / If-None-Match (weak or strong; we only
// issue weak ones and compare weakly, RFC 7232 §2.3.2). ok is false for a malformed tag, which
// matches no version.
func parseVersionTag(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	s = s[1 : len(s)-1]
	var v int64
	if _, err := fmt.Sscanf(s, "%d", &v); err != nil || fmt.Sprint(v) != s {
		return 0, false
	}
	return v, true
}

// userWire renders an employee as a full SCIM User (before projection). groupName returns a
// group's current displayName ("" if it is gone).
func userWire(e *identity.Employee, base string, groupName func(id string) (string, bool)) map[string]any {
	attrs := wireAttrs(e.Resource)
	delete(attrs, "password")
	attrs["userName"] = e.UserName
	attrs["active"] = e.Active
	attrs["id"] = e.ID
	if e.ExternalID != "" {
		attrs["externalId"] = e.ExternalID
	}
	// Always present (Okta's create example expects "groups": []): read-only, derived from
	// the groups the user is a member of.
	groups := make([]any, 0, len(e.Groups))
	{
		for _, g := range e.Groups {
			name, ok := groupName(g.ID)
			if !ok {
				continue // deleted meanwhile
			}
			m := map[string]any{"value": g.ID, "$ref": base + "/Groups/" + g.ID, "type": "direct"}
			if name != "" {
				m["display"] = name
			}
			groups = append(groups, m)
		}
	}
	attrs["groups"] = groups
	schemas := []any{UserSchema}
	for _, x := range userSchema.extensions {
		if _, ok := attrs[x.ID]; ok {
			schemas = append(schemas, x.ID)
		}
	}
	attrs["schemas"] = schemas
	attrs["meta"] = meta("User", base+"/Users/"+e.ID, e.Created, e.Modified, e.Version)
	return attrs
}

// groupWire renders a group; members is nil when they were not read (projected away).
func groupWire(g *identity.Group, base string, members []identity.Member) map[string]any {
	attrs := wireAttrs(g.Resource)
	attrs["id"] = g.ID
	attrs["displayName"] = g.DisplayName
	if g.ExternalID != "" {
		attrs["externalId"] = g.ExternalID
	}
	if members != nil {
		list := make([]any, 0, len(members))
		for _, m := range members {
			typ := m.Type
			if typ == "" {
				typ = "User"
			}
			el := map[string]any{"value": m.Value, "type": typ, "$ref": base + "/" + typ + "s/" + m.Value}
			if m.Display != "" {
				el["display"] = m.Display
			}
			list = append(list, el)
		}
		attrs["members"] = list
	}
	attrs["schemas"] = []any{GroupSchema}
	attrs["meta"] = meta("Group", base+"/Groups/"+g.ID, g.Created, g.Modified, g.Version)
	return attrs
}

func meta(resourceType, location string, created, modified time.Time, version int64) map[string]any {
	return map[string]any{
		"resourceType": resourceType,
		"created":      formatTime(created),
		"lastModified": formatTime(modified),
		"location":     location,
		"version":      versionTag(version),
	}
}
