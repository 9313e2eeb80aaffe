// Package threemawork bridges Offboard to the Threema Work API, for tenants whose messenger is
// Threema Work rather than Offboard's built-in registry: on the final offboarding it withdraws
// the leaver's app access by deleting their Threema Work credentials (the license is freed and
// the app is blocked at its next license check). Threema revokes the Threema ID itself in its
// cockpit; the API offers no call for that (see docs/CONNECTORS.md).
package threemawork

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/offboard/offboard/mdm"
)

// Type is the connector type name.
const Type = "threemawork"

// DefaultURL is the Threema Work API base.
const DefaultURL = "https://work.threema.ch/api/v1"

// Config is the connector configuration.
type Config struct {
	// URL of the API (default DefaultURL; https required except on loopback, for tests).
	URL string `json:"url,omitempty"`
	// APIKey is the Threema Work API key (X-Api-Key), write-only.
	APIKey string `json:"apiKey"`
	// Match chooses what the credential username is compared with: "userName" (default),
	// "localPart" (the userName before '@'), "email" or "externalId".
	Match string `json:"match,omitempty"`
}

// Validate checks a configuration without network calls.
func (c *Config) Validate() error {
	var errs []error
	if c.URL == "" {
		c.URL = DefaultURL
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil || u.Host == "":
		errs = append(errs, errors.New("url must be an absolute URL"))
	case u.Scheme != "https" && !(u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1")):
		errs = append(errs, errors.New("url must be https"))
	}
	if len(c.APIKey) < 8 {
		errs = append(errs, errors.New("apiKey is required"))
	}
	switch c.Match {
	case "":
		c.Match = "userName"
	case "userName", "localPart", "email", "externalId":
	default:
		errs = append(errs, errors.New(`match must be "userName", "localPart", "email" or "externalId"`))
	}
	return errors.Join(errs...)
}

// Open opens a connector from its JSON configuration (implements mdm.Opener).
func Open(raw json.RawMessage, deps mdm.Deps) (mdm.Connector, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("threemawork config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("threemawork config: %w", err)
	}
	client := deps.Client()
	now := deps.Clock()
	return &Connector{cfg: c, client: client, now: now}, nil
}

// Redact removes the API key from a configuration.
func Redact(raw json.RawMessage) json.RawMessage { return mdm.RedactFields(raw, "apiKey") }

// Connector talks to one Threema Work account.
type Connector struct {
	cfg    Config
	client *http.Client
	now    func() time.Time
}

// Type implements mdm.Connector.
func (*Connector) Type() string { return Type }

type credential struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// username is the credential username a person is matched by.
func (c *Connector) username(p mdm.Person) string {
	switch c.cfg.Match {
	case "localPart":
		u, _, _ := strings.Cut(p.UserName, "@")
		return u
	case "email":
		return p.Email
	case "externalId":
		return p.ExternalID
	}
	return p.UserName
}

// Notify withdraws the person's app access: every credential whose username matches is
// deleted. Deleting what is already gone counts as done, so retries are harmless.
func (c *Connector) Notify(ctx context.Context, req mdm.Request) error {
	name := c.username(req.Person)
	if name == "" {
		return &mdm.VendorError{Vendor: Type, Op: "find credentials", Detail: "the person has no value for match " + c.cfg.Match}
	}
	var found struct {
		Credentials []credential `json:"credentials"`
	}
	if err := c.call(ctx, "find credentials", http.MethodGet, "/credentials?filterUsername="+url.QueryEscape(name), &found); err != nil {
		return err
	}
	for _, cr := range found.Credentials {
		if !strings.EqualFold(cr.Username, name) {
			continue // the filter may match by prefix; delete exact matches only
		}
		err := c.call(ctx, "delete credential", http.MethodDelete, "/credentials/"+url.PathEscape(cr.ID), nil)
		var ve *mdm.VendorError
		if errors.As(err, &ve) && ve.StatusCode == http.StatusNotFound {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckHealth verifies the API key with a one-user listing.
func (c *Connector) CheckHealth(ctx context.Context) error {
	return c.call(ctx, "check health", http.MethodGet, "/users?pageSize=1&page=0", nil)
}

func (c *Connector) call(ctx context.Context, op, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.cfg.URL, "/")+path, nil)
	if err != nil {
		return &mdm.VendorError{Vendor: Type, Op: op, Err: err}
	}
	req.Header.Set("X-Api-Key", c.cfg.APIKey)
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return mdm.TransportError(Type, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ve := mdm.ResponseError(Type, op, resp, c.now())
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			ve.Detail = "the API key was refused"
		}
		return ve
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out); err != nil {
		return &mdm.VendorError{Vendor: Type, Op: op, Detail: "unreadable answer", Err: err}
	}
	return nil
}
