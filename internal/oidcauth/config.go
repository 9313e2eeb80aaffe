package oidcauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// EnvAllowInsecureIssuer is the environment variable with which the server turns
// on AllowInsecureIssuer ("1").
const EnvAllowInsecureIssuer = "OFFBOARD_ALLOW_INSECURE_ISSUER"

// Config is a tenant's JWT bearer configuration.
type Config struct {
	// Issuer must equal the tokens' iss claim exactly.
	Issuer string `json:"issuer"`
	// Audience must be one of the tokens' aud values.
	Audience string `json:"audience"`
	// Claims are further claims the token must carry as exactly these strings,
	// such as {"tid": "<entra directory id>"}.
	Claims map[string]string `json:"claims,omitempty"`
	// DiscoveryURL overrides where the OpenID configuration is fetched from
	// (default: Issuer + "/.well-known/openid-configuration"). The document must
	// still report Issuer.
	DiscoveryURL string `json:"discoveryUrl,omitempty"`
}

const (
	maxConfigString = 2048
	maxClaims       = 16
)

// ParseConfig decodes a Config from JSON strictly (unknown fields, such as a
// misspelt "audiance", are errors) and validates it with the given issuer policy.
func ParseConfig(data []byte, allowInsecure bool) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: trailing data", ErrConfig)
	}
	return c, c.Validate(allowInsecure)
}

// Validate checks the issuer URL policy and that audience and claims are usable.
func (c Config) Validate(allowInsecure bool) error {
	if err := checkURL(c.Issuer, allowInsecure, false); err != nil {
		return fmt.Errorf("%w: issuer: %w", ErrConfig, err)
	}
	if c.DiscoveryURL != "" {
		if err := checkURL(c.DiscoveryURL, allowInsecure, true); err != nil {
			return fmt.Errorf("%w: discoveryUrl: %w", ErrConfig, err)
		}
	}
	if c.Audience == "" || len(c.Audience) > maxConfigString {
		return fmt.Errorf("%w: audience is required", ErrConfig)
	}
	if len(c.Claims) > maxClaims {
		return fmt.Errorf("%w: at most %d required claims", ErrConfig, maxClaims)
	}
	for k, v := range c.Claims {
		if k == "" || len(k) > 256 || len(v) > maxConfigString {
			return fmt.Errorf("%w: bad required claim %q", ErrConfig, truncate(k))
		}
		switch k {
		case "iss", "aud", "exp", "nbf", "iat":
			return fmt.Errorf("%w: claim %q is checked by the verifier itself", ErrConfig, k)
		}
	}
	return nil
}

var errURL = errors.New("must be an https URL without user info or fragment (and, for an issuer, query)")

// checkURL enforces the issuer URL policy: https with a host, no user info or
// fragment, no query unless allowQuery (discovery and JWKS URLs may have one, an
// issuer identifier may not); http only for loopback hosts when allowInsecure.
func checkURL(raw string, allowInsecure, allowQuery bool) error {
	if raw == "" || len(raw) > maxConfigString {
		return errURL
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Fragment != "" || u.Host == "" || u.Hostname() == "" {
		return errURL
	}
	if !allowQuery && (u.RawQuery != "" || u.ForceQuery) {
		return errURL
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowInsecure && isLoopbackHost(u.Hostname()) {
			return nil
		}
		if isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("http on loopback needs %s=1", EnvAllowInsecureIssuer)
		}
		return errURL
	default:
		return errURL
	}
}

func isLoopbackHost(h string) bool {
	return h == "127.0.0.1" || h == "::1" || strings.EqualFold(h, "localhost")
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
