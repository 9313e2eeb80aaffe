// Package bench drives a running Offboard the way identity providers, messenger apps and MDM
// receivers do, and measures it: the replayed IdP traffic (Entra ID's and Okta's initial
// cycles, group pushes), leaver storms timed until the license check fails, the messenger ID
// is revoked and the signed webhook arrives, and a webhook receiver that verifies signatures,
// counts duplicates and can answer with faults. `offboard bench` and the fault tests use it.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Client calls one Offboard server's SCIM, admin and messenger APIs and records every call.
type Client struct {
	// Base is the server's base URL, e.g. http://127.0.0.1:8080.
	Base string
	// AdminToken is the operator's admin token.
	AdminToken string
	// HTTP is the client used for every call.
	HTTP *http.Client
	// Rec receives a sample per call (kind, latency, status); nil records nothing.
	Rec *Recorder
	// ForwardedFor, if set, returns the X-Forwarded-For address a call of kind for user index i
	// carries: messenger apps call from their own addresses, so the server (with
	// --trusted-proxies covering the bench) limits them per device, not as one client.
	ForwardedFor func(kind string, i int) string
}

// NewClient returns a Client with a connection pool sized for conc concurrent calls.
func NewClient(base, adminToken string, conc int) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * conc,
		MaxIdleConnsPerHost: 4 * conc,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{
		Base: strings.TrimRight(base, "/"), AdminToken: adminToken,
		HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second},
	}
}

// Response is an answer with its body.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	Took   time.Duration
}

// JSON decodes the body into a map (nil if it is not a JSON object).
func (r *Response) JSON() map[string]any {
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return nil
	}
	return m
}

// Str returns a top-level string field of the JSON body.
func (r *Response) Str(key string) string {
	s, _ := r.JSON()[key].(string)
	return s
}

// Call is one request.
type Call struct {
	Kind   string // recorded under this name; "" records nothing
	Method string
	Path   string // relative to Base, or absolute
	Bearer string
	Basic  [2]string
	Body   any   // marshalled as JSON unless []byte
	Want   []int // statuses counted as success (default: any 2xx)
	Index  int   // user index, for ForwardedFor
	Header [][2]string
}

// Do sends a call and records it. A transport error is returned with a zero-status Response.
func (c *Client) Do(ctx context.Context, call Call) (*Response, error) {
	var rd io.Reader
	switch b := call.Body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	url := call.Path
	if strings.HasPrefix(url, "/") {
		url = c.Base + url
	}
	req, err := http.NewRequestWithContext(ctx, call.Method, url, rd)
	if err != nil {
		return nil, err
	}
	switch {
	case call.Bearer != "":
		req.Header.Set("Authorization", "Bearer "+call.Bearer)
	case call.Basic[0] != "":
		req.SetBasicAuth(call.Basic[0], call.Basic[1])
	}
	if call.Body != nil {
		ct := "application/json"
		if strings.Contains(url, "/scim/") {
			ct = "application/scim+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for _, h := range call.Header {
		req.Header.Set(h[0], h[1])
	}
	if c.ForwardedFor != nil {
		if ip := c.ForwardedFor(call.Kind, call.Index); ip != "" {
			req.Header.Set("X-Forwarded-For", ip)
		}
	}
	start := time.Now()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.record(call, start, time.Since(start), 0)
		return &Response{Took: time.Since(start)}, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	resp.Body.Close()
	took := time.Since(start)
	c.record(call, start, took, resp.StatusCode)
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: body, Took: took}
	if err != nil {
		return out, err
	}
	return out, nil
}

func (c *Client) record(call Call, start time.Time, took time.Duration, status int) {
	if c.Rec == nil || call.Kind == "" {
		return
	}
	c.Rec.Observe(call.Kind, start, took, status, wanted(call.Want, status))
}

func wanted(want []int, status int) bool {
	if len(want) == 0 {
		return status >= 200 && status < 300
	}
	for _, w := range want {
		if w == status {
			return true
		}
	}
	return false
}

// Admin calls the admin API as the operator and fails on an unexpected status.
func (c *Client) Admin(ctx context.Context, method, path string, body any, want int) (map[string]any, error) {
	r, err := c.Do(ctx, Call{Method: method, Path: "/admin/v1" + path, Bearer: c.AdminToken, Body: body})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if r.Status != want {
		return nil, fmt.Errorf("%s %s: status %d: %s", method, path, r.Status, truncate(r.Body))
	}
	return r.JSON(), nil
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Tenant is a tenant the bench set up, with its credentials.
type Tenant struct {
	ID, Name, SCIMBase, SCIMToken, MessengerToken string
}

// CreateTenant creates a tenant with seats and a messenger token, and sets its policy.
func (c *Client) CreateTenant(ctx context.Context, name string, seats int, policy map[string]any) (*Tenant, error) {
	m, err := c.Admin(ctx, "POST", "/tenants", map[string]any{"name": name, "seats": seats}, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	t := &Tenant{Name: name}
	t.ID, _ = m["id"].(string)
	t.SCIMBase, _ = m["scimBaseUrl"].(string)
	t.SCIMToken, _ = m["scimToken"].(string)
	if t.ID == "" || t.SCIMToken == "" {
		return nil, errors.New("create tenant: answer without id or scimToken")
	}
	// The tenant's scimBaseUrl uses the server's public URL; the bench talks to Base.
	t.SCIMBase = c.Base + "/scim/v2/" + t.ID
	if policy != nil {
		if _, err := c.Admin(ctx, "PUT", "/tenants/"+t.ID+"/policy", policy, http.StatusOK); err != nil {
			return nil, err
		}
	}
	tok, err := c.Admin(ctx, "POST", "/tenants/"+t.ID+"/tokens", map[string]any{"scope": "messenger"}, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	t.MessengerToken, _ = tok["token"].(string)
	return t, nil
}

// ConnectWebhook registers a webhook connector pointing at url.
func (c *Client) ConnectWebhook(ctx context.Context, t *Tenant, name, url, secret string) error {
	_, err := c.Admin(ctx, "POST", "/tenants/"+t.ID+"/connectors",
		map[string]any{"type": "webhook", "name": name, "config": map[string]any{"url": url, "secret": secret}}, http.StatusCreated)
	return err
}
