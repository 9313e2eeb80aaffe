package identity

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Tenant is one company served by this deployment.
type Tenant struct {
	ID      string `bson:"_id"`
	Name    string `bson:"name"`
	NameKey string `bson:"nameKey"`
	// Seats is the size of the license pool; Free is how many are not held. Seats-Free is the
	// number in use (it can exceed Seats after the pool was shrunk).
	Seats int `bson:"seats"`
	Free  int `bson:"free"`
	// SeatOps records seat acquisitions and releases by operation id until the employee document
	// has recorded their outcome, which makes both idempotent without transactions.
	SeatOps map[string]SeatOp `bson:"seatOps,omitempty"`
	Policy  Policy            `bson:"policy"`
	OIDC    *OIDCConfig       `bson:"oidc,omitempty"`
	Created time.Time         `bson:"created"`
	Rev     int64             `bson:"rev"`
}

// Used is the number of seats held.
func (t *Tenant) Used() int { return t.Seats - t.Free }

// SeatOp is an in-flight seat operation.
type SeatOp struct {
	Kind     string    `bson:"kind"` // "acquire" | "release"
	Employee string    `bson:"employee"`
	At       time.Time `bson:"at"`
}

// WipeMode is what the final offboarding does to the leaver's devices.
type WipeMode string

// Wipe modes.
const (
	WipeApp    WipeMode = "app"    // remove the messenger app and its data
	WipeDevice WipeMode = "device" // full wipe of company-owned devices, each approved by an admin
	WipeNone   WipeMode = "none"
)

// Policy is a tenant's offboarding policy.
type Policy struct {
	// NoticePeriod > 0 restricts a deactivated user until it ends, then offboards.
	NoticePeriod Duration `bson:"noticePeriod" json:"noticePeriod"`
	Wipe         WipeMode `bson:"wipe" json:"wipe"`
	// Restrictions are reported by the messenger check while a user is restricted.
	Restrictions []string `bson:"restrictions,omitempty" json:"restrictions,omitempty"`
	// BrakeThreshold: more than this many final offboardings within BrakeWindow pause the
	// device effects until an admin confirms. 0 disables the brake.
	BrakeThreshold int      `bson:"brakeThreshold" json:"brakeThreshold"`
	BrakeWindow    Duration `bson:"brakeWindow" json:"brakeWindow"`
	// DeviceMatch selects the person attribute MDMs are searched by: "userName" (default),
	// "email" or "externalId".
	DeviceMatch string `bson:"deviceMatch,omitempty" json:"deviceMatch,omitempty"`
}

// DefaultPolicy is a new tenant's policy.
func DefaultPolicy() Policy {
	return Policy{
		NoticePeriod:   0,
		Wipe:           WipeApp,
		Restrictions:   []string{"no_new_conversations", "no_file_transfer"},
		BrakeThreshold: 25,
		BrakeWindow:    Duration(time.Hour),
		DeviceMatch:    "userName",
	}
}

// Validate checks a policy.
func (p Policy) Validate() error {
	switch p.Wipe {
	case WipeApp, WipeDevice, WipeNone:
	default:
		return fmt.Errorf("%w: wipe must be app, device or none", ErrInvalid)
	}
	if p.NoticePeriod < 0 || time.Duration(p.NoticePeriod) > 5*365*24*time.Hour {
		return fmt.Errorf("%w: noticePeriod out of range", ErrInvalid)
	}
	if p.BrakeThreshold < 0 || p.BrakeWindow < 0 {
		return fmt.Errorf("%w: brake settings must not be negative", ErrInvalid)
	}
	switch p.DeviceMatch {
	case "", "userName", "email", "externalId":
	default:
		return fmt.Errorf("%w: deviceMatch must be userName, email or externalId", ErrInvalid)
	}
	return nil
}

// OIDCConfig lets a tenant's IdP authenticate with its own JWTs instead of a static token.
type OIDCConfig struct {
	Issuer   string `bson:"issuer"`
	Audience string `bson:"audience"`
	// Claims are the claims a token must carry with exactly these values, sorted by name. They
	// are stored as name/value pairs rather than as a document: claim names are chosen by an
	// administrator or an IdP (often URLs with dots) and must never become database field names.
	Claims       []RequiredClaim `bson:"claims,omitempty"`
	DiscoveryURL string          `bson:"discoveryUrl,omitempty"`
}

// RequiredClaim is one claim an OIDC token must carry.
type RequiredClaim struct {
	Name  string `bson:"name"`
	Value string `bson:"value"`
}

// NewOIDCConfig builds a configuration from the API's form (required claims as an object).
func NewOIDCConfig(issuer, audience, discoveryURL string, claims map[string]string) *OIDCConfig {
	c := &OIDCConfig{Issuer: issuer, Audience: audience, DiscoveryURL: discoveryURL}
	for name, value := range claims {
		c.Claims = append(c.Claims, RequiredClaim{Name: name, Value: value})
	}
	slices.SortFunc(c.Claims, func(a, b RequiredClaim) int { return strings.Compare(a.Name, b.Name) })
	return c
}

// ClaimMap returns the required claims as the API shows them: an object of names and values.
func (c *OIDCConfig) ClaimMap() map[string]string {
	if len(c.Claims) == 0 {
		return nil
	}
	m := make(map[string]string, len(c.Claims))
	for _, cl := range c.Claims {
		m[cl.Name] = cl.Value
	}
	return m
}

// oidcJSON is the API's form of an OIDCConfig.
type oidcJSON struct {
	Issuer       string            `json:"issuer"`
	Audience     string            `json:"audience"`
	Claims       map[string]string `json:"claims,omitempty"`
	DiscoveryURL string            `json:"discoveryUrl,omitempty"`
}

// MarshalJSON renders the configuration with its required claims as an object.
func (c OIDCConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(oidcJSON{Issuer: c.Issuer, Audience: c.Audience, Claims: c.ClaimMap(), DiscoveryURL: c.DiscoveryURL})
}

// UnmarshalJSON reads the API's form.
func (c *OIDCConfig) UnmarshalJSON(b []byte) error {
	var j oidcJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*c = *NewOIDCConfig(j.Issuer, j.Audience, j.DiscoveryURL, j.Claims)
	return nil
}

// Duration is a time.Duration that reads and writes Go duration strings ("336h", "0s") in JSON
// and is stored as nanoseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: duration must be a string like \"336h\"", ErrInvalid)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%w: %q is not a duration like \"336h\"", ErrInvalid, s)
	}
	*d = Duration(v)
	return nil
}

// Scope says which API a token may reach.
type Scope string

// Token scopes.
const (
	ScopeSCIM      Scope = "scim"
	ScopeMessenger Scope = "messenger"
	ScopeAdmin     Scope = "admin"
)

// Token is a stored bearer token. The secret is kept only as a hash.
type Token struct {
	ID       string     `bson:"_id" json:"id"`
	Tenant   string     `bson:"tenant" json:"tenant,omitempty"` // empty: the operator's global admin token
	Scope    Scope      `bson:"scope" json:"scope"`
	Hash     string     `bson:"hash" json:"-"`
	Created  time.Time  `bson:"created" json:"created"`
	LastUsed *time.Time `bson:"lastUsed,omitempty" json:"lastUsed,omitempty"`
	Revoked  *time.Time `bson:"revoked,omitempty" json:"revoked,omitempty"`
}
