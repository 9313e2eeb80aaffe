package scim

import (
	"strings"

	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"
)

// Schema URNs.
const (
	UserSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	GroupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	// OffboardSchema is Offboard's user extension: the IdP's leave date. Its shape
	// (urn:ietf:params:scim:schemas:extension:<name>:2.0:User) is the one Entra ID accepts for
	// custom attribute mappings.
	OffboardSchema = "urn:ietf:params:scim:schemas:extension:offboard:2.0:User"
	PatchOpSchema  = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	ListSchema     = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
)

// extensionKeys maps each supported extension URN to the key it is stored under: URNs contain
// dots ("2.0"), which document databases treat as path separators.
var extensionKeys = map[string]string{
	EnterpriseSchema: "enterprise",
	OffboardSchema:   "offboard",
}

// OffboardExtension is the schema of the Offboard user extension.
func OffboardExtension() schema.Schema {
	return schema.Schema{
		ID:          OffboardSchema,
		Name:        optional.NewString("OffboardUser"),
		Description: optional.NewString("Offboard lifecycle attributes"),
		Attributes: []schema.CoreAttribute{
			schema.SimpleCoreAttribute(schema.SimpleDateTimeParams(schema.DateTimeParams{
				Name:        "leaveDate",
				Description: optional.NewString("When the employee leaves: offboarded at this time even without a deactivation."),
			})),
			schema.SimpleCoreAttribute(schema.SimpleDateTimeParams(schema.DateTimeParams{
				Name:        "employeeLeaveDateTime",
				Description: optional.NewString("Entra ID's name for the leave date; same meaning as leaveDate."),
			})),
		},
	}
}

func optionalString(s string) optional.String { return optional.NewString(s) }

// resourceSchema is the schema of one resource type as the SCIM layer resolves names against
// it: the core schema with the common attributes, and the extensions.
type resourceSchema struct {
	name       string // "User" or "Group"
	endpoint   string // "/Users"
	core       schema.Schema
	extensions []schema.Schema
}

var (
	userSchema = &resourceSchema{
		name: "User", endpoint: "/Users",
		core:       withCommon(schema.CoreUserSchema()),
		extensions: []schema.Schema{schema.ExtensionEnterpriseUser(), OffboardExtension()},
	}
	groupSchema = &resourceSchema{
		name: "Group", endpoint: "/Groups",
		core: withCommon(schema.CoreGroupSchema()),
	}
)

// withCommon adds id, externalId and meta (RFC 7643 §3.1) to a core schema.
func withCommon(s schema.Schema) schema.Schema {
	attrs := make([]schema.CoreAttribute, 0, len(s.Attributes)+4)
	attrs = append(attrs, s.Attributes...)
	for _, a := range schema.CommonAttributes() {
		if a.Name() != "schemas" {
			attrs = append(attrs, a)
		}
	}
	s.Attributes = attrs
	return s
}

// resolved is an attribute path resolved against a resource schema, in canonical spelling.
type resolved struct {
	urn  string // "" for the core schema, else the extension's URN
	attr schema.CoreAttribute
	sub  *schema.CoreAttribute
}

// path is the canonical attribute path: "name.givenName" or "<urn>:manager.value".
func (r resolved) path() string {
	p := r.attr.Name()
	if r.sub != nil {
		p += "." + r.sub.Name()
	}
	if r.urn != "" {
		p = r.urn + ":" + p
	}
	return p
}

// target is the attribute a path ends at.
func (r resolved) target() schema.CoreAttribute {
	if r.sub != nil {
		return *r.sub
	}
	return r.attr
}

// extension returns the extension schema with the URN (case-insensitively); ok is false for
// the core schema's URN and unknown URNs.
func (s *resourceSchema) extension(urn string) (schema.Schema, bool) {
	for _, e := range s.extensions {
		if strings.EqualFold(e.ID, urn) {
			return e, true
		}
	}
	return schema.Schema{}, false
}

// resolve finds the attribute named by uri (optional), name and sub (optional), all
// case-insensitively. An unqualified name that is not in the core schema resolves to the one
// extension defining it (Entra sends "manager" for the enterprise extension's manager).
func (s *resourceSchema) resolve(uri, name, sub string) (resolved, bool) {
	var r resolved
	var ok bool
	switch {
	case uri == "" || strings.EqualFold(uri, s.core.ID):
		r.attr, ok = s.core.Attributes.ContainsAttribute(name)
		if !ok && uri == "" {
			for _, e := range s.extensions {
				if a, found := e.Attributes.ContainsAttribute(name); found {
					r.urn, r.attr, ok = e.ID, a, true
					break
				}
			}
		}
	default:
		e, found := s.extension(uri)
		if !found {
			return r, false
		}
		r.urn = e.ID
		r.attr, ok = e.Attributes.ContainsAttribute(name)
	}
	if !ok {
		return r, false
	}
	if sub != "" {
		sa, found := r.attr.SubAttributes().ContainsAttribute(sub)
		if !found {
			return r, false
		}
		r.sub = &sa
	}
	return r, true
}
