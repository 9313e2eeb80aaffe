// Package nanomdm owns the connector to a tenant's NanoMDM server (github.com/micromdm/nanomdm):
// it removes the messenger app from, or erases, an enrolled Apple device by enqueueing raw MDM
// commands through NanoMDM's API, and it learns their outcome from NanoMDM's webhook.
//
// Commands carry a CommandUUID derived from the request's idempotency key, so a retry re-sends
// the same UUID and NanoMDM's "command already exists" answer counts as already enqueued. The
// device's answer arrives asynchronously through the handler from NewWebhookHandler, which records
// it in the mdm.CommandLog that CommandStatus reads. An acknowledged RemoveApplication is only
// reported done once a ManagedApplicationList, asked for the bundle id alone, no longer lists
// the app as installed.
package nanomdm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/offboard/offboard/mdm"
)

// Type is the connector type name used in the admin API and the connector registry.
const Type = "nanomdm"

// vendor names the vendor in every *mdm.VendorError this package returns.
const vendor = "nanomdm"

// Config is the JSON configuration of a NanoMDM connector:
//
//	{"url": "https://nanomdm.example", "apiKey": "...", "appBundleId": "ch.threema.work.iapp"}
//
// apiKey is write-only: Redact removes it before a configuration is shown or logged.
type Config struct {
	// URL is the base URL of the NanoMDM server (the one that serves /v1/enqueue and /version).
	// It must be https unless the host is a loopback address.
	URL string `json:"url"`
	// APIKey is NanoMDM's -api key; it is sent as HTTP Basic password for the user "nanomdm".
	APIKey string `json:"apiKey"`
	// AppBundleID is the bundle identifier of the messenger app to remove.
	AppBundleID string `json:"appBundleId"`
}

// bundleIDPattern accepts reverse-DNS bundle identifiers: letters, digits and hyphens in at least
// two dot-separated parts.
var bundleIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`)

// parseConfig decodes and validates raw. Unknown fields are rejected so that a misspelt key
// ("apikey") fails loudly instead of being ignored.
func parseConfig(raw json.RawMessage) (Config, *url.URL, error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, nil, fmt.Errorf("nanomdm config: %w", err)
	}
	if dec.More() {
		return Config{}, nil, errors.New("nanomdm config: trailing data after the JSON object")
	}
	var problems []string
	base, err := validateURL(cfg.URL)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if cfg.APIKey == "" {
		problems = append(problems, `"apiKey" is required (the key NanoMDM was started with, -api)`)
	}
	switch {
	case cfg.AppBundleID == "":
		problems = append(problems, `"appBundleId" is required (e.g. "ch.threema.work.iapp")`)
	case !bundleIDPattern.MatchString(cfg.AppBundleID):
		problems = append(problems, fmt.Sprintf(`"appBundleId" %q is not a bundle identifier like "ch.threema.work.iapp"`, cfg.AppBundleID))
	}
	if len(problems) > 0 {
		return Config{}, nil, fmt.Errorf("nanomdm config: %s", strings.Join(problems, "; "))
	}
	return cfg, base, nil
}

// validateURL checks the NanoMDM base URL: absolute, http(s), no credentials, query or fragment,
// and https unless the host is a loopback address (the API key travels in every request).
func validateURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New(`"url" is required (the base URL of the NanoMDM server)`)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf(`"url" is not a URL: %v`, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf(`"url" %q must be an absolute http(s) URL`, raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New(`"url" must not contain credentials, a query or a fragment`)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf(`"url" %q must use https: the API key is sent with every request`, raw)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Redact returns cfg without its secret: the "apiKey" member is removed in any letter case (Open
// accepts any, as encoding/json does), everything else is kept as it was. Input that is not a
// JSON object yields "{}" so that nothing secret can slip through.
func Redact(cfg json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cfg, &m); err != nil || m == nil {
		return json.RawMessage(`{}`)
	}
	for k := range m {
		if strings.EqualFold(k, "apiKey") {
			delete(m, k)
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return out
}

// Connector talks to one NanoMDM server. It implements mdm.AppRemover, mdm.Wiper,
// mdm.StatusReporter and mdm.HealthChecker.
type Connector struct {
	cfg         Config
	client      *httpClient
	commands    mdm.CommandLog
	connectorID string
	tenant      string
}

// Compile-time checks of the capabilities the lifecycle runner discovers.
var (
	_ mdm.AppRemover     = (*Connector)(nil)
	_ mdm.Wiper          = (*Connector)(nil)
	_ mdm.StatusReporter = (*Connector)(nil)
	_ mdm.HealthChecker  = (*Connector)(nil)
	_ mdm.Opener         = Open
)

// Open validates cfg and returns a NanoMDM connector. deps.HTTPClient and deps.Commands are
// required: the first carries every API call, the second holds the results that the webhook
// handler records for this connector (deps.ConnectorID).
func Open(cfg json.RawMessage, deps mdm.Deps) (mdm.Connector, error) {
	c, base, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	if deps.HTTPClient == nil {
		return nil, errors.New("nanomdm: deps.HTTPClient is required")
	}
	if deps.Commands == nil {
		return nil, errors.New("nanomdm: deps.Commands is required: command results arrive through the webhook")
	}
	if deps.ConnectorID == "" {
		return nil, errors.New("nanomdm: deps.ConnectorID is required: webhook results are recorded under it")
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Connector{
		cfg:         c,
		client:      &httpClient{base: strings.TrimSuffix(base.String(), "/"), apiKey: c.APIKey, http: deps.HTTPClient, now: now},
		commands:    deps.Commands,
		connectorID: deps.ConnectorID,
		tenant:      deps.Tenant,
	}, nil
}

// Type returns "nanomdm".
func (c *Connector) Type() string { return Type }

// RemoveApp enqueues RemoveApplication for the configured bundle id on req.Device. The command
// is pending until the device answers; see CommandStatus.
func (c *Connector) RemoveApp(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	const op = "remove app"
	udid, err := requestTarget(op, req)
	if err != nil {
		return mdm.Command{}, err
	}
	id := commandUUID(kindRemoveApp, c.tenant+"\x00"+req.Key+"\x00"+c.cfg.AppBundleID)
	return c.start(ctx, op, udid, id, removeApplication(id, c.cfg.AppBundleID))
}

// WipeDevice enqueues EraseDevice on req.Device. It refuses devices that are not known to be
// company-owned, whatever the caller checked before.
func (c *Connector) WipeDevice(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	const op = "erase device"
	udid, err := requestTarget(op, req)
	if err != nil {
		return mdm.Command{}, err
	}
	if req.Device.Ownership != mdm.OwnershipCompany {
		return mdm.Command{}, &mdm.VendorError{Vendor: vendor, Op: op, Err: mdm.ErrUnsupported,
			Detail: fmt.Sprintf("refusing to erase device %s: it is not marked company-owned", udid)}
	}
	id := commandUUID(kindErase, c.tenant+"\x00"+req.Key)
	return c.start(ctx, op, udid, id, eraseDevice(id))
}

// start makes sure command id is enqueued for udid and returns its current status. A command that
// already has a final result in the command log is not enqueued again (a backend that does not
// reject duplicate CommandUUIDs would otherwise hand it to the device a second time).
func (c *Connector) start(ctx context.Context, op, udid, id string, payload []byte) (mdm.Command, error) {
	rec, ok, err := c.lookup(ctx, op, resultID(id, udid))
	if err != nil {
		return mdm.Command{}, err
	}
	if ok && rec.State != mdm.CommandPending {
		return c.CommandStatus(ctx, mdm.Device{ID: udid, Connector: c.connectorID}, mdm.Command{ID: id})
	}
	if err := c.checkEnrolled(ctx, op, udid); err != nil {
		return mdm.Command{}, err
	}
	note, err := c.client.enqueue(ctx, op, udid, id, payload, true)
	if err != nil {
		return mdm.Command{}, err
	}
	cmd := mdm.Command{ID: id, State: mdm.CommandPending, Detail: note}
	if ok && rec.Detail != "" {
		cmd.Detail = rec.Detail
	}
	return cmd, nil
}

// CommandStatus reports the state of a command returned by RemoveApp or WipeDevice from what the
// webhook recorded. For RemoveApp an acknowledged removal is followed by a ManagedApplicationList
// for the bundle id (enqueued here, with a UUID derived from the removal's); the removal is done
// once that list no longer shows the app installed.
//
// A command that is still pending when the webhook has seen the device check out (its MDM
// profile removed) fails with an error wrapping mdm.ErrDeviceGone: the device will never answer,
// and iOS removes managed apps together with the profile.
func (c *Connector) CommandStatus(ctx context.Context, d mdm.Device, cmd mdm.Command) (mdm.Command, error) {
	st, err := c.commandStatus(ctx, d, cmd)
	if err != nil || st.State != mdm.CommandPending {
		return st, err
	}
	if err := c.checkEnrolled(ctx, "command status", d.ID); err != nil {
		return mdm.Command{}, err
	}
	return st, nil
}

func (c *Connector) commandStatus(ctx context.Context, d mdm.Device, cmd mdm.Command) (mdm.Command, error) {
	const op = "command status"
	k, ok := commandKind(cmd.ID)
	if !ok || k == kindVerify || k == kindCheckOut {
		return mdm.Command{}, &mdm.VendorError{Vendor: vendor, Op: op,
			Detail: fmt.Sprintf("%q is not a command id issued by this connector", cmd.ID)}
	}
	udid, err := checkDeviceID(op, d.ID)
	if err != nil {
		return mdm.Command{}, err
	}
	rec, found, err := c.lookup(ctx, op, resultID(cmd.ID, udid))
	if err != nil {
		return mdm.Command{}, err
	}
	if !found {
		return mdm.Command{ID: cmd.ID, State: mdm.CommandPending, Detail: "waiting for the device to fetch the command"}, nil
	}
	rec.ID = cmd.ID
	if k == kindErase || rec.State != mdm.CommandDone {
		return rec, nil
	}

	// The device acknowledged RemoveApplication: verify with ManagedApplicationList.
	vid := commandUUID(kindVerify, cmd.ID)
	vrec, found, err := c.lookup(ctx, op, resultID(vid, udid))
	if err != nil {
		return mdm.Command{}, err
	}
	if !found {
		// The webhook wakes the app for the removal, the command its job waits on, when the
		// verification is answered; the link is written before the device can answer.
		if err := c.commands.Record(ctx, c.connectorID, mdm.Command{ID: verifiesID(vid), State: mdm.CommandPending, Detail: cmd.ID}); err != nil {
			return mdm.Command{}, &mdm.VendorError{Vendor: vendor, Op: op, Retryable: true,
				Detail: "writing the command log failed", Err: err}
		}
		// Enqueued again on every poll until the device answers: a duplicate is cheap, and this
		// way a crash right after the acknowledgement cannot lose the check. No push then, so
		// polling an offline device does not become a push storm.
		if _, err := c.client.enqueue(ctx, "verify app removal", udid, vid, managedApplicationList(vid, c.cfg.AppBundleID), false); err != nil {
			return mdm.Command{}, err
		}
		return mdm.Command{ID: cmd.ID, State: mdm.CommandPending,
			Detail: "device acknowledged RemoveApplication; waiting for ManagedApplicationList to confirm the app is gone"}, nil
	}
	switch vrec.State {
	case mdm.CommandDone:
		return mdm.Command{ID: cmd.ID, State: mdm.CommandDone,
			Detail: fmt.Sprintf("app %s removed; ManagedApplicationList no longer lists it as installed", c.cfg.AppBundleID)}, nil
	case mdm.CommandFailed:
		return mdm.Command{ID: cmd.ID, State: mdm.CommandFailed,
			Detail: "RemoveApplication was acknowledged but the check failed: " + vrec.Detail}, nil
	default:
		d := "device acknowledged RemoveApplication; waiting for ManagedApplicationList to confirm the app is gone"
		if vrec.Detail != "" {
			d += " (" + vrec.Detail + ")"
		}
		return mdm.Command{ID: cmd.ID, State: mdm.CommandPending, Detail: d}, nil
	}
}

// CheckHealth verifies that NanoMDM answers /version and accepts the API key.
func (c *Connector) CheckHealth(ctx context.Context) error {
	return c.client.checkHealth(ctx)
}

// checkEnrolled fails with mdm.ErrDeviceGone when the webhook recorded that udid checked out
// and did not enroll again.
func (c *Connector) checkEnrolled(ctx context.Context, op, udid string) error {
	rec, ok, err := c.lookup(ctx, op, checkOutID(udid))
	if err != nil || !ok || rec.State != mdm.CommandDone {
		return err
	}
	return &mdm.VendorError{Vendor: vendor, Op: op, Err: mdm.ErrDeviceGone,
		Detail: fmt.Sprintf("device %s %s", udid, rec.Detail)}
}

func (c *Connector) lookup(ctx context.Context, op, id string) (mdm.Command, bool, error) {
	rec, ok, err := c.commands.Lookup(ctx, c.connectorID, id)
	if err != nil {
		return mdm.Command{}, false, &mdm.VendorError{Vendor: vendor, Op: op, Retryable: true,
			Detail: "reading the command log failed", Err: err}
	}
	return rec, ok, nil
}

// requestTarget returns the enrollment id a request acts on, or a non-retryable error when the
// request cannot be carried out at all.
func requestTarget(op string, req mdm.Request) (string, error) {
	if req.Key == "" {
		return "", &mdm.VendorError{Vendor: vendor, Op: op, Detail: "request has no idempotency key"}
	}
	if req.Device == nil {
		return "", &mdm.VendorError{Vendor: vendor, Op: op, Detail: "request names no device", Err: mdm.ErrUnsupported}
	}
	return checkDeviceID(op, req.Device.ID)
}

// checkDeviceID rejects enrollment ids that NanoMDM's API would misread: its enqueue path takes a
// comma-separated list of ids, so a comma would address several devices.
func checkDeviceID(op, id string) (string, error) {
	if id == "" || strings.ContainsAny(id, ",/?#%\\") || strings.IndexFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "", &mdm.VendorError{Vendor: vendor, Op: op,
			Detail: fmt.Sprintf("%q is not a NanoMDM enrollment id", id)}
	}
	return id, nil
}
