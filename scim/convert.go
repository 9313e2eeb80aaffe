package scim

import (
	"fmt"
	"strings"
	"time"

	"github.com/elimity-com/scim"
	"github.com/elimity-com/scim/optional"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// dropOnWrite are attributes never stored from a client: read-only (id, meta, groups), the
// message envelope (schemas) and password (returned never; messenger credentials are issued
// by Offboard, not set over SCIM).
var dropOnWrite = map[string]bool{"id": true, "meta": true, "schemas": true, "groups": true, "password": true, "externalId": true}

// toInput turns validated SCIM attributes (canonical names, extensions under their URN) into
// the lifecycle's user input, with extensions under their storage keys.
func toInput(attrs scim.ResourceAttributes) (lifecycle.UserInput, error) {
	res := map[string]any{}
	for k, v := range attrs {
		if dropOnWrite[k] || v == nil {
			continue
		}
		if key, ok := extensionKeys[k]; ok {
			if m, ok := v.(map[string]any); ok && len(m) > 0 {
				res[key] = m
			}
			continue
		}
		res[k] = v
	}
	in := lifecycle.UserInput{Resource: res, Active: true}
	in.UserName, _ = res["userName"].(string)
	if strings.TrimSpace(in.UserName) == "" {
		return in, invalid("userName is required.")
	}
	if a, ok := res["active"].(bool); ok {
		in.Active = a
	}
	if ext, ok := attrs["externalId"].(string); ok {
		in.ExternalID = ext
	}
	ld, err := leaveDate(res)
	if err != nil {
		return in, err
	}
	in.LeaveDate = ld
	return in, nil
}

// leaveDate reads the Offboard extension's leave date (either name).
func leaveDate(res map[string]any) (*time.Time, error) {
	ext, _ := res["offboard"].(map[string]any)
	for _, k := range []string{"leaveDate", "employeeLeaveDateTime"} {
		v, ok := ext[k]
		if !ok || v == nil || v == "" {
			continue
		}
		switch t := v.(type) {
		case time.Time:
			u := t.UTC()
			return &u, nil
		case string:
			p, err := time.Parse(time.RFC3339Nano, t)
			if err != nil {
				return nil, invalid(fmt.Sprintf("%s must be an xsd:dateTime such as 2026-12-31T17:00:00Z.", k))
			}
			u := p.UTC()
			return &u, nil
		}
	}
	return nil, nil
}

// versionTag renders a resource version as a weak ETag.
func versionTag(v int64) string { return fmt.Sprintf(`W/"%d"`, v) }

// parseVersionTag reads an If-Match / If-None-Match value. ok is false for "*" or a malformed
// tag (which matches nothing).
func parseVersionTag(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.Trim(s, `"`)
	var v int64
	if _, err := fmt.Sscanf(s, "%d", &v); err != nil || fmt.Sprint(v) != s {
		return 0, false
	}
	return v, true
}

// toResource renders an employee as a SCIM User for the library to serialise.
func toResource(e *identity.Employee) scim.Resource {
	attrs := scim.ResourceAttributes{}
	for k, v := range e.Resource {
		attrs[k] = v
	}
	for urn, key := range extensionKeys {
		if v, ok := attrs[key]; ok {
			delete(attrs, key)
			attrs[urn] = formatTimes(v)
		}
	}
	attrs["active"] = e.Active
	if len(e.Groups) > 0 {
		groups := make([]any, 0, len(e.Groups))
		for _, g := range e.Groups {
			m := map[string]any{"value": g.ID, "type": "direct"}
			if g.Display != "" {
				m["display"] = g.Display
			}
			groups = append(groups, m)
		}
		attrs["groups"] = groups
	}
	created, modified := e.Created, e.Modified
	r := scim.Resource{
		ID:         e.ID,
		Attributes: attrs,
		Meta:       scim.Meta{Created: &created, LastModified: &modified, Version: versionTag(e.Version)},
	}
	if e.ExternalID != "" {
		r.ExternalID = optional.NewString(e.ExternalID)
	}
	return r
}

// formatTimes renders stored times in an extension as xsd:dateTime strings.
func formatTimes(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		if t, ok := x.(time.Time); ok {
			out[k] = t.UTC().Format(time.RFC3339Nano)
			continue
		}
		out[k] = x
	}
	return out
}
