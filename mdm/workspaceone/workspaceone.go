// Package workspaceone is the Omnissa (VMware) Workspace ONE UEM connector: it finds a leaver's
// devices through the MDM REST API v1, removes the messenger app with an EnterpriseWipe (which
// removes managed apps, their data and profiles and unenrolls, keeping personal data) or, when
// an appId is configured, with an app uninstall, and wipes approved company-owned devices with
// DeviceWipe.
//
// Every call carries aw-tenant-code and Accept: application/json;version=1 and authenticates
// with an OAuth client-credentials token (auth "oauth", refreshed once on 401) or HTTP Basic
// (auth "basic").
//
// Status: Workspace ONE's v1 API has no per-command status for device commands, so the connector
// polls the device record: EnterpriseWipePending/DeviceWipePending is pending, an unenrolled or
// vanished device is done (mdm.ErrDeviceGone), anything else is pending. The app uninstall
// endpoint reports nothing per device either, so an accepted uninstall is reported done.
//
// Idempotency: a device already in EnterpriseWipePending/DeviceWipePending is not sent the
// command again, and an unenrolled one is mdm.ErrDeviceGone; this survives restarts. A repeated
// app uninstall is only suppressed within one process (by Request.Key); a second uninstall
// command after a restart is harmless, as the app is already gone.
package workspaceone

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/internal/clientcreds"
)

// Type is the connector type name.
const Type = "workspaceone"

// Authentication modes.
const (
	AuthOAuth = "oauth"
	AuthBasic = "basic"
)

// Config configures a Workspace ONE UEM connector.
type Config struct {
	// URL is the API server, e.g. https://as1506.awmdm.com.
	URL string `json:"url"`
	// TenantCode is the REST API key sent as aw-tenant-code.
	TenantCode string `json:"tenantCode"`
	// Auth is "oauth" (default) or "basic".
	Auth         string `json:"auth,omitempty"`
	ClientID     string `json:"clientId,omitempty"`
	ClientSecret string `json:"clientSecret,omitempty"`
	// TokenURL is the regional token endpoint, e.g. https://na.uemauth.vmwservices.com/connect/token.
	TokenURL string `json:"tokenUrl,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// AppID, when set, is the public app whose uninstall replaces EnterpriseWipe.
	AppID int `json:"appId,omitempty"`
	// StripDomain matches devices on the part of the person's userName before "@".
	StripDomain bool `json:"stripDomain,omitempty"`
}

// secretFields are write-only.
var secretFields = []string{"tenantCode", "clientSecret", "password"}

// Validate checks the configuration and fills in defaults. Its errors name fields, never values.
func (c *Config) Validate() error {
	var errs []error
	if !httpsURL(c.URL) {
		errs = append(errs, errors.New("url must be the https URL of the Workspace ONE API server"))
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.TenantCode == "" {
		errs = append(errs, errors.New("tenantCode (the REST API key) is required"))
	}
	if c.Auth == "" {
		c.Auth = AuthOAuth
	}
	switch c.Auth {
	case AuthOAuth:
		if c.ClientID == "" || c.ClientSecret == "" {
			errs = append(errs, errors.New("clientId and clientSecret are required with oauth"))
		}
		if !httpsURL(c.TokenURL) {
			errs = append(errs, errors.New("tokenUrl must be the https URL of the regional token endpoint with oauth"))
		}
	case AuthBasic:
		if c.Username == "" || c.Password == "" {
			errs = append(errs, errors.New("username and password are required with basic"))
		}
	default:
		errs = append(errs, errors.New(`auth must be "oauth" or "basic"`))
	}
	if c.AppID < 0 {
		errs = append(errs, errors.New("appId must be a positive number"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("workspaceone: %w", errors.Join(errs...))
	}
	return nil
}

func httpsURL(s string) bool {
	u, err := url.Parse(s)
	return s != "" && err == nil && u.Scheme == "https" && u.Host != "" && u.RawQuery == "" && u.User == nil
}

// Open opens a Workspace ONE connector from its JSON configuration; it matches mdm.Opener.
func Open(cfg json.RawMessage, deps mdm.Deps) (mdm.Connector, error) {
	var c Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, errors.New("workspaceone: config is not a JSON object of the documented fields")
	}
	return c.Open(deps)
}

// Redact returns cfg without the API key, client secret and password.
func Redact(cfg json.RawMessage) json.RawMessage { return mdm.RedactFields(cfg, secretFields...) }

// Open validates c and returns the connector.
func (c Config) Open(deps mdm.Deps) (*Connector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	client := deps.Client()
	now := deps.Clock()
	conn := &Connector{cfg: c, id: deps.ConnectorID, client: client, now: now}
	if c.Auth == AuthOAuth {
		conn.tokens = clientcreds.New(clientcreds.Config{
			Vendor: Type, TokenURL: c.TokenURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		}, client, now)
	}
	return conn, nil
}

// Connector talks to one Workspace ONE UEM environment. It implements mdm.Finder,
// mdm.AppRemover, mdm.Wiper, mdm.StatusReporter and mdm.HealthChecker.
type Connector struct {
	cfg    Config
	id     string
	client *http.Client
	tokens *clientcreds.Source // nil with basic auth
	now    func() time.Time

	uninstalled sync.Map // Request.Key -> mdm.Command, for app uninstalls
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
