// Package intune is the Microsoft Intune connector: it finds a leaver's managed devices through
// Microsoft Graph v1.0, removes the messenger app (an "uninstall" assignment of the app to an
// offboarding group the leaver is added to, or a retire of the device), wipes approved
// company-owned devices, and reports progress from the device's deviceActionResults.
//
// The app registration needs the Graph application permissions
// DeviceManagementManagedDevices.Read.All, DeviceManagementManagedDevices.PrivilegedOperations.All,
// DeviceManagementApps.ReadWrite.All and GroupMember.ReadWrite.All.
//
// Uninstall mode works per user, not per device: the leaver joins the offboarding group, and
// Intune removes the managed app (and its data container) from all the leaver's devices at their
// next check-in. The app's "required" assignments must exclude that group (Intune resolves a
// required/uninstall conflict in favour of required), and a returning employee must be taken out
// of the group. Graph v1.0 has no per-device install status, so the command is reported done once
// the intent is in place.
//
// Idempotency: before a wipe or retire the device's deviceActionResults are read; an action of
// the same kind started at or after Request.Occurred that has not failed is the one this request
// already sent, and is not sent again. Adding a member twice is refused by Graph and counts as
// done. Both survive restarts.
//
// Graph allows about 200 writes per 20 s per tenant for Intune; the connector keeps to that per
// process through an mdm.Limiter keyed by tenant, and honours 429 Retry-After.
package intune

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/internal/clientcreds"
)

// Type is the connector type name.
const Type = "intune"

// Modes of app removal.
const (
	ModeUninstall = "uninstall"
	ModeRetire    = "retire"
)

// Default endpoints.
const (
	DefaultGraphURL = "https://graph.microsoft.com"
	DefaultLoginURL = "https://login.microsoftonline.com"
)

// GraphLimits is Intune's write budget per tenant.
var GraphLimits = mdm.Limits{Writes: 200, Per: 20 * time.Second}

// Config configures an Intune connector.
type Config struct {
	TenantID     string `json:"tenantId"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	// AppID is the messenger's Intune mobileApp id (uninstall mode).
	AppID string `json:"appId,omitempty"`
	// GroupID is the Entra group the uninstall assignment targets and leavers join (uninstall mode).
	GroupID string `json:"groupId,omitempty"`
	// Mode is "uninstall" (default) or "retire".
	Mode     string `json:"mode,omitempty"`
	GraphURL string `json:"graphUrl,omitempty"`
	LoginURL string `json:"loginUrl,omitempty"`
}

var (
	guidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$`)
)

// Validate checks the configuration and fills in defaults. Its errors name fields, never values.
func (c *Config) Validate() error {
	var errs []error
	if !tenantRE.MatchString(c.TenantID) {
		errs = append(errs, errors.New("tenantId must be the directory's GUID or primary domain"))
	}
	if !guidRE.MatchString(c.ClientID) {
		errs = append(errs, errors.New("clientId must be the app registration's GUID"))
	}
	if c.ClientSecret == "" {
		errs = append(errs, errors.New("clientSecret is required"))
	}
	if c.Mode == "" {
		c.Mode = ModeUninstall
	}
	switch c.Mode {
	case ModeUninstall:
		if !guidRE.MatchString(c.AppID) {
			errs = append(errs, errors.New("appId must be the messenger's Intune mobileApp id (a GUID) in uninstall mode"))
		}
		if !guidRE.MatchString(c.GroupID) {
			errs = append(errs, errors.New("groupId must be the offboarding group's object id (a GUID) in uninstall mode"))
		}
	case ModeRetire:
	default:
		errs = append(errs, errors.New(`mode must be "uninstall" or "retire"`))
	}
	var err error
	if c.GraphURL, err = baseURL(c.GraphURL, DefaultGraphURL); err != nil {
		errs = append(errs, fmt.Errorf("graphUrl %w", err))
	}
	if c.LoginURL, err = baseURL(c.LoginURL, DefaultLoginURL); err != nil {
		errs = append(errs, fmt.Errorf("loginUrl %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("intune: %w", errors.Join(errs...))
	}
	return nil
}

func baseURL(s, def string) (string, error) {
	if s == "" {
		return def, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return "", errors.New("must be an https URL without query or credentials")
	}
	return strings.TrimRight(s, "/"), nil
}

// Open opens an Intune connector from its JSON configuration; it matches mdm.Opener.
func Open(cfg json.RawMessage, deps mdm.Deps) (mdm.Connector, error) {
	var c Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, errors.New("intune: config is not a JSON object of the documented fields")
	}
	return c.Open(deps)
}

// Redact returns cfg without the client secret.
func Redact(cfg json.RawMessage) json.RawMessage { return mdm.RedactFields(cfg, "clientSecret") }

// Open validates c and returns the connector.
func (c Config) Open(deps mdm.Deps) (*Connector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	client := deps.Client()
	now := deps.Clock()
	lim := deps.Limiters.Get("intune "+strings.ToLower(c.TenantID), func() *mdm.Limiter {
		return mdm.NewLimiter(Type, GraphLimits, now)
	})
	return &Connector{
		cfg:   c,
		id:    deps.ConnectorID,
		graph: lim.Client(client),
		now:   now,
		tokens: clientcreds.New(clientcreds.Config{
			Vendor:       Type,
			TokenURL:     c.LoginURL + "/" + url.PathEscape(c.TenantID) + "/oauth2/v2.0/token",
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
			Scope:        c.GraphURL + "/.default",
		}, client, now),
	}, nil
}

// Connector talks to one tenant's Intune. It implements mdm.Finder, mdm.AppRemover, mdm.Wiper,
// mdm.StatusReporter and mdm.HealthChecker.
type Connector struct {
	cfg    Config
	id     string
	graph  *http.Client // rate-limited
	tokens *clientcreds.Source
	now    func() time.Time

	assigned assignmentOnce
}

// Type implements mdm.Connector.
func (*Connector) Type() string { return Type }

var (
	_ mdm.Opener         = Open
	_ mdm.Finder         = (*Connector)(nil)
	_ mdm.AppRemover     = (*Connector)(nil)
	_ mdm.Wiper          = (*Connector)(nil)
	_ mdm.StatusReporter = (*Connector)(nil)
	_ mdm.HealthChecker  = (*Connector)(nil)
)
