package identity

import "time"

// Connector is a tenant's configured MDM (or messenger) connector. Its configuration is stored
// sealed (AES-256-GCM, bound to tenant and connector id); only a redacted copy is readable.
type Connector struct {
	ID       string    `bson:"_id" json:"id"`
	Tenant   string    `bson:"tenant" json:"-"`
	Name     string    `bson:"name" json:"name"`
	Type     string    `bson:"type" json:"type"`
	Sealed   string    `bson:"sealed" json:"-"`   // secretbox envelope of the full config JSON
	Redacted string    `bson:"redacted" json:"-"` // config JSON with secrets removed
	Created  time.Time `bson:"created" json:"created"`
	// HookSecret is the sealed secret of the connector's inbound webhook URL (NanoMDM).
	HookSecret string           `bson:"hookSecret,omitempty" json:"-"`
	Health     *ConnectorHealth `bson:"health,omitempty" json:"health,omitempty"`
	Rev        int64            `bson:"rev" json:"-"`
}

// ConnectorHealth is the outcome of the last configuration check.
type ConnectorHealth struct {
	OK      bool      `bson:"ok" json:"ok"`
	Checked time.Time `bson:"checked" json:"checked"`
	Error   string    `bson:"error,omitempty" json:"error,omitempty"`
}
