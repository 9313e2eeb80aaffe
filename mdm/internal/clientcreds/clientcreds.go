// Package clientcreds fetches and caches OAuth 2.0 client-credentials access tokens for the vendor
// connectors, and sends requests with them: a cached token is used until shortly before it
// expires, and a request the vendor answers 401 is sent once more with a freshly fetched token.
// Tokens and secrets never appear in its errors.
package clientcreds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/offboard/offboard/mdm"
)

// Config says where and how to fetch tokens.
type Config struct {
	// Vendor names the vendor in errors.
	Vendor string
	// TokenURL is the token endpoint.
	TokenURL     string
	ClientID     string
	ClientSecret string
	// Scope is sent as the scope parameter when set.
	Scope string
}

// Source hands out access tokens. It is safe for concurrent use; concurrent callers that find no
// valid token wait for a single fetch.
type Source struct {
	cfg    Config
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
	fetches int
}

// New returns a Source that fetches with client and reads time from now.
func New(cfg Config, client *http.Client, now func() time.Time) *Source {
	if now == nil {
		now = time.Now
	}
	return &Source{cfg: cfg, client: client, now: now}
}

// defaultLifetime is assumed when the token endpoint does not say how long a token lives.
const defaultLifetime = 5 * time.Minute

// maxSkew is how long before its expiry a token is replaced.
const maxSkew = time.Minute

// Token returns a valid access token, fetching a new one when none is cached or the cached one
// expires within a minute (or within half its lifetime, for short-lived tokens).
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.expires) {
		return s.token, nil
	}
	tok, lifetime, err := s.fetch(ctx)
	if err != nil {
		return "", err
	}
	skew := min(maxSkew, lifetime/2)
	s.token, s.expires = tok, s.now().Add(lifetime-skew)
	return tok, nil
}

// Invalidate forgets token if it is still the cached one, so the next Token call fetches anew.
func (s *Source) Invalidate(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == token {
		s.token = ""
	}
}

// Fetches reports how many tokens were fetched so far (for tests and metrics).
func (s *Source) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"` // a number; some endpoints send a string
}

type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (s *Source) fetch(ctx context.Context) (string, time.Duration, error) {
	s.fetches++
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.cfg.ClientID},
		"client_secret": {s.cfg.ClientSecret},
	}
	if s.cfg.Scope != "" {
		form.Set("scope", s.cfg.Scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, &mdm.VendorError{Vendor: s.cfg.Vendor, Op: "token", Err: errors.New("invalid token URL")}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", 0, mdm.TransportError(s.cfg.Vendor, "token", redactURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ve := &mdm.VendorError{
			Vendor:     s.cfg.Vendor,
			Op:         "token",
			StatusCode: resp.StatusCode,
			Retryable:  mdm.RetryableStatus(resp.StatusCode),
			RetryAfter: mdm.ParseRetryAfter(resp.Header.Get("Retry-After"), s.now()),
		}
		// Keep only the OAuth error code and description: never echo anything else.
		var te tokenError
		if json.Unmarshal(body, &te) == nil && te.Error != "" {
			ve.Detail = truncate(strings.TrimSpace(te.Error+": "+te.Description), 300)
		}
		return "", 0, ve
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", 0, &mdm.VendorError{Vendor: s.cfg.Vendor, Op: "token", StatusCode: resp.StatusCode,
			Retryable: true, Detail: "token response without access_token"}
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, &mdm.VendorError{Vendor: s.cfg.Vendor, Op: "token", StatusCode: resp.StatusCode,
			Detail: fmt.Sprintf("unsupported token type %q", truncate(tr.TokenType, 20))}
	}
	return tr.AccessToken, parseExpiresIn(tr.ExpiresIn), nil
}

func parseExpiresIn(raw json.RawMessage) time.Duration {
	s := strings.Trim(string(raw), `"`)
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return defaultLifetime
	}
	return time.Duration(n) * time.Second
}

// Do sends the request that build makes with the current bearer token. If the vendor answers 401
// it fetches a new token and sends a freshly built request once more; a second 401 is returned
// to the caller as it came. Transport failures become retryable *mdm.VendorErrors named op.
func (s *Source) Do(ctx context.Context, client *http.Client, op string, build func(context.Context) (*http.Request, error)) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		tok, err := s.Token(ctx)
		if err != nil {
			return nil, err
		}
		req, err := build(ctx)
		if err != nil {
			return nil, &mdm.VendorError{Vendor: s.cfg.Vendor, Op: op, Err: err}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return nil, mdm.TransportError(s.cfg.Vendor, op, redactURLError(err))
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			s.Invalidate(tok)
			continue
		}
		return resp, nil
	}
}

// redactURLError drops the URL from a *url.Error: query strings can carry user names.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		var ve *mdm.VendorError
		if errors.As(ue.Err, &ve) {
			return ve
		}
		return fmt.Errorf("%s request: %w", ue.Op, ue.Err)
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
