// Package mdm owns the device model and the small capability interfaces through which Offboard
// removes the messenger app from, or wipes, the managed devices of a leaver. One package per
// vendor lives below it; the lifecycle runner discovers what a connector can do with type
// assertions on these one-method interfaces.
package mdm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Ownership says who owns a device. A full wipe is only ever sent to company-owned devices.
type Ownership string

// Ownership values.
const (
	OwnershipCompany  Ownership = "company"
	OwnershipPersonal Ownership = "personal"
	OwnershipUnknown  Ownership = ""
)

// Platform is the operating system family of a device.
type Platform string

// Platform values.
const (
	PlatformIOS     Platform = "ios"
	PlatformMacOS   Platform = "macos"
	PlatformAndroid Platform = "android"
	PlatformWindows Platform = "windows"
	PlatformUnknown Platform = ""
)

// Device is one managed device of an employee as one connector knows it.
type Device struct {
	// ID is the vendor's identifier: Intune managedDeviceId, Jamf mobile device id, Workspace ONE
	// device id, the NanoMDM enrollment id (UDID).
	ID        string    `json:"id" bson:"id"`
	Connector string    `json:"connector" bson:"connector"`
	Platform  Platform  `json:"platform,omitempty" bson:"platform,omitempty"`
	Ownership Ownership `json:"ownership,omitempty" bson:"ownership,omitempty"`
	Name      string    `json:"name,omitempty" bson:"name,omitempty"`
	Serial    string    `json:"serial,omitempty" bson:"serial,omitempty"`
	// Manual is true for devices an administrator attached by hand.
	Manual bool `json:"manual,omitempty" bson:"manual,omitempty"`
}

// Person identifies the employee whose devices are looked up or acted on.
type Person struct {
	ID         string `json:"id"`
	UserName   string `json:"userName"`
	ExternalID string `json:"externalId,omitempty"`
	Email      string `json:"email,omitempty"`
	// Match is the attribute a Finder looks the person up by: the tenant policy's deviceMatch.
	// Empty leaves the choice to the connector (its documented default).
	Match MatchAttribute `json:"match,omitempty"`
}

// MatchAttribute names the person attribute MDM devices are matched on.
type MatchAttribute string

// Match attributes (the values of the tenant policy's deviceMatch).
const (
	MatchUserName   MatchAttribute = "userName"
	MatchEmail      MatchAttribute = "email"
	MatchExternalID MatchAttribute = "externalId"
)

// MatchValue returns the attribute p.Match selects and its value; an empty Match selects
// userName. The value is empty when the person lacks that attribute.
func (p Person) MatchValue() (MatchAttribute, string) {
	switch p.Match {
	case MatchEmail:
		return MatchEmail, p.Email
	case MatchExternalID:
		return MatchExternalID, p.ExternalID
	}
	return MatchUserName, p.UserName
}

// UnsupportedMatch is the error a Finder returns for a match attribute its vendor cannot search
// by: permanent, so the discovery fails visibly instead of being retried.
func UnsupportedMatch(vendor string, a MatchAttribute, supported ...MatchAttribute) *VendorError {
	names := make([]string, len(supported))
	for i, s := range supported {
		names[i] = string(s)
	}
	return &VendorError{Vendor: vendor, Op: "find devices", Err: ErrUnsupported,
		Detail: fmt.Sprintf("cannot find devices by %s; set the tenant policy's deviceMatch to one of: %s", a, strings.Join(names, ", "))}
}

// Action is what an effect does.
type Action string

// Actions.
const (
	ActionWipeApp    Action = "wipe_app"
	ActionWipeDevice Action = "wipe_device"
)

// Request describes one external effect. Key is the idempotency key: the same on every retry of
// the same effect, different for every other effect.
type Request struct {
	Key      string
	Action   Action
	Tenant   string
	Person   Person
	WorkID   string
	Device   *Device // nil for person-level connectors such as the webhook
	Occurred time.Time
}

// CommandState is the progress of a command a vendor accepted.
type CommandState string

// Command states.
const (
	CommandPending CommandState = "pending"
	CommandDone    CommandState = "done"
	CommandFailed  CommandState = "failed"
)

// Command is a vendor's handle on an accepted action, to poll until it completes.
type Command struct {
	ID     string       `json:"id" bson:"id"`
	State  CommandState `json:"state" bson:"state"`
	Detail string       `json:"detail,omitempty" bson:"detail,omitempty"`
}

// Finder looks up the managed devices of a person.
type Finder interface {
	FindDevices(ctx context.Context, p Person) ([]Device, error)
}

// AppRemover removes the messenger app, and with it its local data, from one device.
type AppRemover interface {
	RemoveApp(ctx context.Context, req Request) (Command, error)
}

// Wiper erases a whole device. Only called for company-owned devices an administrator approved.
type Wiper interface {
	WipeDevice(ctx context.Context, req Request) (Command, error)
}

// StatusReporter reports the progress of a command returned by AppRemover or Wiper.
type StatusReporter interface {
	CommandStatus(ctx context.Context, d Device, cmd Command) (Command, error)
}

// Notifier delivers a person-level event (no device), as the signed webhook does.
type Notifier interface {
	Notify(ctx context.Context, req Request) error
}

// HealthChecker verifies that a connector's configuration can work (credentials, reachability).
type HealthChecker interface {
	CheckHealth(ctx context.Context) error
}

// Connector is an opened, configured connector. What it can do is discovered through the
// capability interfaces above.
type Connector interface {
	Type() string
}

// Deps are what the wiring hands to every connector when it opens one.
type Deps struct {
	// HTTPClient is the client for vendor calls; connectors must not use http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock.
	Now func() time.Time
	// Commands records command results that arrive asynchronously (NanoMDM webhooks).
	Commands CommandLog
	// ConnectorID is the stable identifier of this connector configuration.
	ConnectorID string
	// Tenant is the owning tenant.
	Tenant string
	// Limiters shares rate and concurrency limiters between the connectors of this process (one
	// per process, from the wiring). Nil gives every opened connector its own limiter.
	Limiters *Limiters
}

// CommandLog stores the outcome of commands reported asynchronously by a vendor.
type CommandLog interface {
	// Record stores the latest known state of a command.
	Record(ctx context.Context, connectorID string, cmd Command) error
	// Lookup returns the latest known state of a command, or ok false if nothing was reported.
	Lookup(ctx context.Context, connectorID, commandID string) (cmd Command, ok bool, err error)
}

// Opener opens a connector of one type from its JSON configuration.
type Opener func(cfg json.RawMessage, deps Deps) (Connector, error)

// VendorError is the error every connector returns for a failed vendor call. The runner decides
// on retries with errors.As, never by matching strings.
type VendorError struct {
	Vendor     string
	Op         string
	StatusCode int           // HTTP status, 0 for transport errors
	Retryable  bool          // worth trying again later
	RetryAfter time.Duration // the vendor's Retry-After, 0 if none
	Detail     string        // vendor message, safe to show an administrator (no secrets)
	Err        error
}

func (e *VendorError) Error() string {
	s := fmt.Sprintf("%s %s", e.Vendor, e.Op)
	if e.StatusCode != 0 {
		s += fmt.Sprintf(": HTTP %d", e.StatusCode)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *VendorError) Unwrap() error { return e.Err }

// ErrDeviceGone means the device no longer exists at the vendor; for a wipe that counts as done.
var ErrDeviceGone = errors.New("device no longer managed")

// ErrUnsupported means the connector cannot perform the requested action.
var ErrUnsupported = errors.New("action not supported by this connector")

// Client returns the HTTP client for vendor calls: Deps.HTTPClient, or a client with a 30 s
// timeout when none was given.
func (d Deps) Client() *http.Client {
	if d.HTTPClient != nil {
		return d.HTTPClient
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// Clock returns Deps.Now, or time.Now when none was given.
func (d Deps) Clock() func() time.Time {
	if d.Now != nil {
		return d.Now
	}
	return time.Now
}
