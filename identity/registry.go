package identity

import "time"

// WorkIDStatus is the status of a messenger ID in the registry.
type WorkIDStatus string

// Registry statuses. A revoked ID is a tombstone: it is never deleted and never issued again.
const (
	WorkIDActive  WorkIDStatus = "active"
	WorkIDRevoked WorkIDStatus = "revoked"
)

// WorkIDRecord is one messenger ID ever issued, in any tenant.
type WorkIDRecord struct {
	ID         string       `bson:"_id" json:"workId"`
	Tenant     string       `bson:"tenant" json:"-"`
	Employee   string       `bson:"employee" json:"-"`
	Generation int          `bson:"gen" json:"-"`
	Status     WorkIDStatus `bson:"status" json:"status"`
	Issued     time.Time    `bson:"issued" json:"-"`
	Revoked    *time.Time   `bson:"revoked,omitempty" json:"-"`
}

// AuditEntry is one append-only audit record: who (which token), what, when, before/after.
type AuditEntry struct {
	ID     string    `bson:"_id" json:"id"`
	Tenant string    `bson:"tenant" json:"tenant,omitempty"`
	At     time.Time `bson:"at" json:"at"`
	Actor  string    `bson:"actor" json:"actor"` // "token:<id>", "oidc:<sub>", "system", "operator"
	Action string    `bson:"action" json:"action"`
	Target string    `bson:"target,omitempty" json:"target,omitempty"`
	Before any       `bson:"before,omitempty" json:"before,omitempty"`
	After  any       `bson:"after,omitempty" json:"after,omitempty"`
}

// Due is an employee the job runner should look at from At on.
type Due struct {
	Employee string
	Tenant   string
	At       time.Time
}
