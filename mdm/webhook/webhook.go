// Package webhook is the generic MDM connector: it delivers each leaver effect as a signed JSON
// POST to a URL the tenant runs (an MDM script, an ITSM flow), and exports Verify for receivers.
//
// Wire format:
//
//	POST <url>
//	Content-Type: application/json
//	X-Offboard-Delivery: <id>
//	X-Offboard-Event: <action>
//	X-Offboard-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the secret>
//
//	{"id":"<idempotency key>","action":"wipe_app","tenant":"acme",
//	 "employee":{"id":"…","userName":"…","externalId":"…"},"workId":"…",
//	 "device":{…},"occurredAt":"2026-11-28T04:00:00Z"}
//
// The id is the same on every retry of one effect, and so are the body bytes: receivers
// deduplicate on it. 2xx means delivered; 408, 425, 429, 5xx and no answer are retried (honouring
// Retry-After); other statuses, redirects included, fail for good. CheckHealth sends a signed
// event with action "ping" that receivers must answer 2xx.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
const Type = "webhook"

// Header names.
const (
	HeaderSignature = "X-Offboard-Signature"
	HeaderDelivery  = "X-Offboard-Delivery"
	HeaderEvent     = "X-Offboard-Event"
)

// ActionPing is the action of the health-check event.
const ActionPing mdm.Action = "ping"

// MinSecretLen is the shortest secret accepted.
const MinSecretLen = 16

// Config configures a webhook connector.
type Config struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// Validate checks the configuration. Its errors never contain the secret or the URL (which may
// carry a token of its own).
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("webhook: url is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("webhook: url must be an absolute http or https URL")
	}
	if c.Secret == "" {
		return errors.New("webhook: secret is required")
	}
	if len(c.Secret) < MinSecretLen {
		return fmt.Errorf("webhook: secret must be at least %d characters", MinSecretLen)
	}
	return nil
}

// Open opens a webhook connector from its JSON configuration; it matches mdm.Opener.
func Open(cfg json.RawMessage, deps mdm.Deps) (mdm.Connector, error) {
	var c Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, errors.New("webhook: config is not a JSON object with url and secret")
	}
	return c.Open(deps)
}

// Redact returns cfg without the secret, for showing a configuration to an administrator. The
// URL stays recognisable, but its user info and query values, which may carry a receiver's own
// credentials (basic auth, an Azure Functions ?code=), are replaced.
func Redact(cfg json.RawMessage) json.RawMessage {
	out := mdm.RedactFields(cfg, "secret")
	var m map[string]json.RawMessage
	if json.Unmarshal(out, &m) != nil {
		return json.RawMessage(`{}`)
	}
	for k, v := range m {
		if !strings.EqualFold(k, "url") {
			continue
		}
		var raw string
		if json.Unmarshal(v, &raw) != nil {
			delete(m, k)
			continue
		}
		m[k], _ = json.Marshal(redactURL(raw))
	}
	b, err := json.Marshal(m)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"redacted"}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// Open validates c and returns the connector.
func (c Config) Open(deps mdm.Deps) (*Connector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	client := deps.Client()
	// Never follow redirects: the signed body would go to a host nobody configured.
	cp := *client
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	now := deps.Clock()
	return &Connector{url: c.URL, secret: []byte(c.Secret), client: &cp, now: now}, nil
}

// Connector delivers signed events. It implements mdm.Notifier and mdm.HealthChecker.
type Connector struct {
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
}

// Type implements mdm.Connector.
func (*Connector) Type() string { return Type }

// Event is the JSON body of a delivery. Field order is fixed, so the same Request always
// marshals to the same bytes.
type Event struct {
	ID         string    `json:"id"`
	Action     string    `json:"action"`
	Tenant     string    `json:"tenant"`
	Employee   Employee  `json:"employee"`
	WorkID     string    `json:"workId,omitempty"`
	Device     *DeviceV1 `json:"device,omitempty"`
	OccurredAt string    `json:"occurredAt"`
}

// Employee identifies the leaver in an Event.
type Employee struct {
	ID         string `json:"id"`
	UserName   string `json:"userName"`
	ExternalID string `json:"externalId,omitempty"`
	Email      string `json:"email,omitempty"`
}

// DeviceV1 is the device an effect targets, when there is one.
type DeviceV1 struct {
	ID        string `json:"id"`
	Platform  string `json:"platform,omitempty"`
	Ownership string `json:"ownership,omitempty"`
	Serial    string `json:"serial,omitempty"`
}

// Body returns the exact bytes delivered for req.
func Body(req mdm.Request) ([]byte, error) {
	ev := Event{
		ID:     req.Key,
		Action: string(req.Action),
		Tenant: req.Tenant,
		Employee: Employee{
			ID:         req.Person.ID,
			UserName:   req.Person.UserName,
			ExternalID: req.Person.ExternalID,
			Email:      req.Person.Email,
		},
		WorkID:     req.WorkID,
		OccurredAt: req.Occurred.UTC().Format(time.RFC3339),
	}
	if d := req.Device; d != nil {
		ev.Device = &DeviceV1{ID: d.ID, Platform: string(d.Platform), Ownership: string(d.Ownership), Serial: d.Serial}
	}
	return json.Marshal(ev)
}

// Sign returns the X-Offboard-Signature value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header, an X-Offboard-Signature value, is the signature of body with
// secret. It compares in constant time.
func Verify(secret string, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// Notify implements mdm.Notifier: it delivers req once per call; the runner retries.
func (c *Connector) Notify(ctx context.Context, req mdm.Request) error {
	if req.Key == "" {
		return &mdm.VendorError{Vendor: Type, Op: "notify", Detail: "request without idempotency key"}
	}
	body, err := Body(req)
	if err != nil {
		return &mdm.VendorError{Vendor: Type, Op: "notify", Err: err}
	}
	return c.deliver(ctx, "notify", req.Key, string(req.Action), body)
}

// CheckHealth implements mdm.HealthChecker with a signed ping event.
func (c *Connector) CheckHealth(ctx context.Context) error {
	now := c.now().UTC().Truncate(time.Second)
	body, err := Body(mdm.Request{Key: "ping-" + now.Format("20060102T150405Z"), Action: ActionPing, Occurred: now})
	if err != nil {
		return err
	}
	return c.deliver(ctx, "ping", "ping-"+now.Format("20060102T150405Z"), string(ActionPing), body)
}

func (c *Connector) deliver(ctx context.Context, op, id, action string, body []byte) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return &mdm.VendorError{Vendor: Type, Op: op, Detail: "invalid url"}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "Offboard-Webhook/1")
	hreq.Header.Set(HeaderDelivery, id)
	hreq.Header.Set(HeaderEvent, action)
	hreq.Header.Set(HeaderSignature, Sign(c.secret, body))
	resp, err := c.client.Do(hreq)
	if err != nil {
		// The URL may carry a token of its own: keep it out of the error.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return mdm.TransportError(Type, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	return mdm.ResponseError(Type, op, resp, c.now())
}

var (
	_ mdm.Opener        = Open
	_ mdm.Notifier      = (*Connector)(nil)
	_ mdm.HealthChecker = (*Connector)(nil)
)
