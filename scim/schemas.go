package scim

import (
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
