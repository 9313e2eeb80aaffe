package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Sentinel errors. Every error Verify returns wraps exactly one of them, and
// every one of them means 401 to the client.
var (
	// ErrInvalidToken: the token is malformed, badly signed, expired, not yet
	// valid, for another issuer or audience, or lacks a required claim.
	ErrInvalidToken = errors.New("oidcauth: invalid token")
	// ErrUnavailable: the issuer's discovery document or keys could not be had.
	// Log it as a warning (it may be an outage or a misconfigured issuer), answer
	// 401, never 500.
	ErrUnavailable = errors.New("oidcauth: issuer unavailable")
	// ErrConfig: the tenant's Config is invalid under the Verifier's policy.
	ErrConfig = errors.New("oidcauth: invalid configuration")
)

// Defaults of the Verifier's timing.
const (
	DefaultFetchTimeout    = 10 * time.Second
	DefaultDiscoveryTTL    = 24 * time.Hour
	DefaultRetryAfterError = 30 * time.Second
	DefaultKeyRefreshMin   = 1 * time.Minute
	DefaultKeyMaxAge       = 1 * time.Hour
	maxDocumentSize        = 1 << 20
	discoveryWellKnownPath = "/.well-known/openid-configuration"
)

// Claims is what a verified token says.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	Expiry   time.Time
	IssuedAt time.Time
	// All holds every claim of the payload.
	All map[string]any
}

// Verifier verifies tokens against per-tenant Configs, caching discovery and keys
// per issuer. The cache has one entry per configured issuer and discovery URL,
// which come from tenant configuration and never from a presented token, so it
// is bounded by the number of tenants. It is safe for concurrent use; build one
// per process.
type Verifier struct {
	client          *http.Client
	now             func() time.Time
	allowInsecure   bool
	logger          *slog.Logger
	fetchTimeout    time.Duration
	discoveryTTL    time.Duration
	retryAfterError time.Duration
	keyRefreshMin   time.Duration
	keyMaxAge       time.Duration

	mu      sync.Mutex
	issuers map[string]*issuerEntry
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithHTTPClient sets the client for discovery and JWKS fetches (default: a
// client with a 10 s timeout).
func WithHTTPClient(c *http.Client) Option { return func(v *Verifier) { v.client = c } }

// WithClock sets the time source for token validity and cache timing.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// WithLogger sets the logger for issuer outages (default: discard).
func WithLogger(l *slog.Logger) Option { return func(v *Verifier) { v.logger = l } }

// AllowInsecureIssuer accepts http:// issuers, discovery and JWKS URLs on
// loopback hosts, for local development (OFFBOARD_ALLOW_INSECURE_ISSUER=1).
func AllowInsecureIssuer() Option { return func(v *Verifier) { v.allowInsecure = true } }

// WithKeyRefresh sets the minimum interval between JWKS refetches of one issuer
// triggered by unknown keys (default 1 min) and the maximum age of cached keys
// (default 1 h).
func WithKeyRefresh(minInterval, maxAge time.Duration) Option {
	return func(v *Verifier) { v.keyRefreshMin, v.keyMaxAge = minInterval, maxAge }
}

// New returns a Verifier.
func New(opts ...Option) *Verifier {
	v := &Verifier{
		now:             time.Now,
		logger:          slog.New(slog.DiscardHandler),
		fetchTimeout:    DefaultFetchTimeout,
		discoveryTTL:    DefaultDiscoveryTTL,
		retryAfterError: DefaultRetryAfterError,
		keyRefreshMin:   DefaultKeyRefreshMin,
		keyMaxAge:       DefaultKeyMaxAge,
		issuers:         map[string]*issuerEntry{},
	}
	for _, o := range opts {
		o(v)
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: v.fetchTimeout}
	}
	return v
}

// Validate checks cfg under this Verifier's issuer policy; the admin API calls it
// before storing a tenant's configuration.
func (v *Verifier) Validate(cfg Config) error { return cfg.Validate(v.allowInsecure) }

// Probe validates cfg and fetches the issuer's discovery document and keys, so a
// misconfiguration shows when it is saved rather than at the first SCIM request.
func (v *Verifier) Probe(ctx context.Context, cfg Config) error {
	if err := v.Validate(cfg); err != nil {
		return err
	}
	ks, err := v.keySetFor(ctx, cfg)
	if err != nil {
		return err
	}
	if err := ks.ensure(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Verify checks raw (the bearer token without "Bearer ") against cfg and returns
// its claims. Any error means 401.
func (v *Verifier) Verify(ctx context.Context, cfg Config, raw string) (*Claims, error) {
	if err := v.Validate(cfg); err != nil {
		return nil, err
	}
	if _, err := precheck(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	ks, err := v.keySetFor(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Fetch keys before go-oidc runs: it flattens key set errors into text, and
	// an unreachable issuer must stay distinguishable from a forged token.
	if err := ks.ensure(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	tok, err := oidc.NewVerifier(cfg.Issuer, ks, &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: allowedAlgs,
		Now:                  v.now,
	}).Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var all map[string]any
	if err := tok.Claims(&all); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	for name, want := range cfg.Claims {
		if got, ok := all[name].(string); !ok || got != want {
			return nil, fmt.Errorf("%w: required claim %q missing or different", ErrInvalidToken, name)
		}
	}
	return &Claims{
		Issuer:   tok.Issuer,
		Subject:  tok.Subject,
		Audience: tok.Audience,
		Expiry:   tok.Expiry,
		IssuedAt: tok.IssuedAt,
		All:      all,
	}, nil
}

// issuerEntry caches one issuer's discovery result.
type issuerEntry struct {
	sem       chan struct{}
	keys      *keySet
	fetchedAt time.Time
	err       error
	errAt     time.Time
}

func (v *Verifier) entry(key string) *issuerEntry {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.issuers[key]
	if !ok {
		e = &issuerEntry{sem: make(chan struct{}, 1)}
		v.issuers[key] = e
	}
	return e
}

// keySetFor returns the issuer's key set, running discovery when it was never
// done or is older than the discovery TTL. A failed discovery is remembered for
// retryAfterError so a dead issuer is not hammered by every request; a failed
// rediscovery keeps the previous result.
func (v *Verifier) keySetFor(ctx context.Context, cfg Config) (*keySet, error) {
	discovery := cfg.DiscoveryURL
	if discovery == "" {
		discovery = strings.TrimSuffix(cfg.Issuer, "/") + discoveryWellKnownPath
	}
	e := v.entry(cfg.Issuer + "\n" + discovery)
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	defer func() { <-e.sem }()

	now := v.now()
	if e.keys != nil && now.Sub(e.fetchedAt) < v.discoveryTTL {
		return e.keys, nil
	}
	if e.err != nil && now.Sub(e.errAt) < v.retryAfterError {
		if e.keys != nil {
			return e.keys, nil
		}
		return nil, e.err
	}
	jwksURL, err := v.discover(ctx, cfg.Issuer, discovery)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		if ctx.Err() == nil {
			e.err, e.errAt = err, now
		}
		if e.keys != nil {
			v.logger.Warn("OIDC rediscovery failed, keeping the previous result", "issuer", cfg.Issuer, "error", err)
			return e.keys, nil
		}
		return nil, err
	}
	if e.keys == nil || e.keys.url != jwksURL {
		e.keys = newKeySet(jwksURL, v.fetch, v.now, v.keyRefreshMin, v.keyMaxAge)
	}
	e.fetchedAt, e.err = now, nil
	return e.keys, nil
}

// discover fetches the OpenID configuration and returns its jwks_uri, after
// checking that it names exactly the configured issuer and that the JWKS URL
// obeys the same URL policy.
func (v *Verifier) discover(ctx context.Context, issuer, discoveryURL string) (string, error) {
	body, err := v.fetch(ctx, discoveryURL)
	if err != nil {
		return "", fmt.Errorf("discovery for issuer %s: %w", issuer, err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery for issuer %s: decode: %w", issuer, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discovery for issuer %s: document names issuer %q", issuer, truncate(doc.Issuer))
	}
	if err := checkURL(doc.JWKSURI, v.allowInsecure, true); err != nil {
		return "", fmt.Errorf("discovery for issuer %s: jwks_uri: %w", issuer, err)
	}
	return doc.JWKSURI, nil
}

// fetch GETs a small JSON document with a timeout and a size bound, refusing an
// answer that came (after redirects) from a URL outside the policy.
func (v *Verifier) fetch(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, v.fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := checkURL(resp.Request.URL.String(), v.allowInsecure, true); err != nil {
		return nil, fmt.Errorf("redirected to a URL outside the issuer policy: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxDocumentSize {
		return nil, fmt.Errorf("GET %s: document larger than %d bytes", url, maxDocumentSize)
	}
	return body, nil
}
