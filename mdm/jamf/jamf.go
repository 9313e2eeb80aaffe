// Package jamf is the Jamf Pro connector: it finds a leaver's mobile devices through the Jamf Pro
// API, removes the messenger app by taking the device out of the app's scope (a static mobile
// device group that the app's scope excludes, over the Classic API), erases approved
// company-owned devices with the ERASE_DEVICE MDM command, and polls command status.
//
// The API client's role needs: Read Mobile Devices, Read/Update Mobile Device Apps, Read/Update
// Static Mobile Device Groups, View MDM command information, Send Mobile Device Remote Wipe
// Command. The app must be deployed as a managed app with "Remove app when MDM profile is
// removed"/removal on leaving scope, so that leaving the scope deletes the app and its data.
//
// Concurrency: Jamf Pro asks integrations to keep to 5 concurrent connections. The connector
// enforces at most 5 requests in flight per Jamf server and per process (an mdm.Limiter keyed by
// the server URL, shared through mdm.Deps.Limiters); several Offboard replicas each hold 5.
//
// Idempotency: before ERASE_DEVICE the device's command history is read; an ERASE_DEVICE sent at
// or after Request.Occurred that did not fail is the one this request already sent. Group
// membership is checked before a device is added. Both survive restarts.
package jamf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/internal/clientcreds"
)

// Type is the connector type name.
const Type = "jamf"

// Match modes: which user attribute of the device record identifies the leaver.
const (
	MatchEmail    = "email"
	MatchUsername = "username"
)

// ServerLimits is the per-process cap for one Jamf Pro server.
var ServerLimits = mdm.Limits{Concurrency: 5}

// Config configures a Jamf Pro connector.
type Config struct {
	// URL is the Jamf Pro server, e.g. https://acme.jamfcloud.com.
	URL          string `json:"url"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	// AppID is the Classic API id of the messenger's mobile device app.
	AppID int `json:"appId"`
	// GroupID is the static mobile device group the app's scope excludes; leavers' devices join it.
	GroupID int `json:"groupId"`
	// Match is "email" (default: userAndLocation.emailAddress) or "username".
	Match string `json:"match,omitempty"`
}

// Validate checks the configuration and fills in defaults. Its errors name fields, never values.
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	if c.URL == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil {
		errs = append(errs, errors.New("url must be the https URL of the Jamf Pro server"))
	} else {
		c.URL = strings.TrimRight(c.URL, "/")
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("clientId is required"))
	}
	if c.ClientSecret == "" {
		errs = append(errs, errors.New("clientSecret is required"))
	}
	if c.AppID <= 0 {
		errs = append(errs, errors.New("appId must be the mobile device app's id (a positive number)"))
	}
	if c.GroupID <= 0 {
		errs = append(errs, errors.New("groupId must be the offboarding static group's id (a positive number)"))
	}
	if c.Match == "" {
		c.Match = MatchEmail
	}
	if c.Match != MatchEmail && c.Match != MatchUsername {
		errs = append(errs, errors.New(`match must be "email" or "username"`))
	}
	if len(errs) > 0 {
		return fmt.Errorf("jamf: %w", errors.Join(errs...))
	}
	return nil
}

// Open opens a Jamf Pro connector from its JSON configuration; it matches mdm.Opener.
func Open(cfg json.RawMessage, deps mdm.Deps) (mdm.Connector, error) {
	var c Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, errors.New("jamf: config is not a JSON object of the documented fields (appId and groupId are numbers)")
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
	lim := deps.Limiters.Get("jamf "+strings.ToLower(c.URL), func() *mdm.Limiter {
		return mdm.NewLimiter(Type, ServerLimits, now)
	})
	limited := lim.Client(client) // token requests count against the server's 5 too
	return &Connector{
		cfg:    c,
		id:     deps.ConnectorID,
		client: limited,
		now:    now,
		tokens: clientcreds.New(clientcreds.Config{
			Vendor:       Type,
			TokenURL:     c.URL + "/api/oauth/token",
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
		}, limited, now),
	}, nil
}

// Connector talks to one Jamf Pro server. It implements mdm.Finder, mdm.AppRemover, mdm.Wiper,
// mdm.StatusReporter and mdm.HealthChecker.
type Connector struct {
	cfg    Config
	id     string
	client *http.Client
	tokens *clientcreds.Source
	now    func() time.Time

	scope scopeOnce
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
