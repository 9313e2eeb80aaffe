// Package mdmtest is the conformance suite every MDM connector passes: each vendor's test wires
// its httptest fake of the vendor API into a Harness and calls Run. The suite exercises only the
// capabilities a connector implements (Finder, AppRemover, Wiper, StatusReporter, Notifier,
// HealthChecker) and checks the behaviour the lifecycle runner relies on: devices with ownership,
// found by each person attribute the connector supports (the tenant's deviceMatch) and a
// permanent error for the others, commands that reach done, one vendor action per idempotency
// key, no full wipe of a personal device, retryable throttling with the vendor's delay,
// ErrDeviceGone for vanished devices, one token refresh on 401, bad credentials as a permanent
// failure, and secrets that never show in a redacted configuration or an error.
package mdmtest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
)

// Occurred is when the suite's leaver events happened. Fakes should stamp the actions they
// record at or after it (vendors' clocks run on after the event).
var Occurred = time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC)

// Fake steers a vendor fake from the suite.
type Fake interface {
	// FailNext makes the next API call (not a token request) answer status with header.
	FailNext(status int, header http.Header)
	// RevokeTokens makes every access token issued so far invalid, as an expiry or a key
	// rotation at the vendor would.
	RevokeTokens()
	// RemoveDevice makes the vendor forget a device.
	RemoveDevice(id string)
	// CompleteCommands has the device carry out everything queued for it.
	CompleteCommands(deviceID string)
	// Actions counts the effects the vendor applied to a target: a device ID, or a person's ID
	// for person-level connectors. Repeating an effect that is already in place does not count.
	Actions(target string) int
	// TokenRequests counts the access tokens the fake issued.
	TokenRequests() int
}

// Harness wires one connector and its fake into the suite.
type Harness struct {
	// New opens a connector against a fresh fake; with badCredentials it is opened with
	// credentials the fake rejects.
	New func(t *testing.T, badCredentials bool) (mdm.Connector, Fake)
	// Person is someone the fake knows, with Devices (compared on ID, Platform and Ownership).
	Person  mdm.Person
	Devices []mdm.Device
	// Tokens says the connector authenticates with access tokens the fake can revoke.
	Tokens bool
	// Matches are the person attributes (the tenant policy's deviceMatch) the Finder can look
	// Person up by; the suite expects a permanent error for the others. Empty: userName only.
	Matches []mdm.MatchAttribute
	// OwnershipFromRequest says the vendor keeps no ownership record (NanoMDM), so the
	// connector trusts the ownership of the request (an administrator's attachment). Otherwise
	// the vendor's record must overrule a request that claims a personal device is the
	// company's.
	OwnershipFromRequest bool
	// Config is a working configuration of the connector and Redact its redaction; Secrets are
	// the strings (good and bad credentials) that must never appear in a redacted configuration
	// or in an error.
	Config  json.RawMessage
	Redact  func(json.RawMessage) json.RawMessage
	Secrets []string
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	ctx := context.Background()
	// probe makes one ordinary vendor call: a lookup, a notification or, for connectors that
	// only act on devices they are given, an app removal.
	probe := func(c mdm.Connector) error {
		switch c := c.(type) {
		case mdm.Finder:
			_, err := c.FindDevices(ctx, h.Person)
			return h.noSecrets(t, err)
		case mdm.Notifier:
			return h.noSecrets(t, c.Notify(ctx, h.request("probe", mdm.ActionWipeApp, nil)))
		case mdm.AppRemover:
			if len(h.Devices) == 0 {
				t.Fatal("harness of a device-only connector has no devices")
			}
			dev := h.Devices[0]
			_, err := c.RemoveApp(ctx, h.request("probe", mdm.ActionWipeApp, &dev))
			return h.noSecrets(t, err)
		}
		t.Fatal("connector is neither a Finder, a Notifier nor an AppRemover")
		return nil
	}

	t.Run("the redacted configuration holds no secret", func(t *testing.T) {
		if h.Redact == nil || len(h.Config) == 0 {
			t.Fatal("harness has no Config and Redact: every connector's secrets are write-only")
		}
		if len(h.Secrets) == 0 {
			t.Fatal("harness names no Secrets")
		}
		red := string(h.Redact(h.Config))
		for _, s := range h.Secrets {
			if strings.Contains(string(h.Config), s) && strings.Contains(red, s) {
				t.Fatalf("redacted configuration %s shows a secret", red)
			}
		}
		if red == "{}" {
			t.Fatalf("redaction dropped everything; the administrator should still see the non-secret fields")
		}
	})

	t.Run("finding devices of a known person returns them with ownership and platform", func(t *testing.T) {
		c, _ := h.New(t, false)
		f := must[mdm.Finder](t, c)
		got, err := f.FindDevices(ctx, h.Person)
		if err != nil {
			t.Fatal(err)
		}
		if want, have := summary(h.Devices), summary(got); !slices.Equal(want, have) {
			t.Fatalf("devices:\n got %v\nwant %v", have, want)
		}
	})

	matches := h.Matches
	if len(matches) == 0 {
		matches = []mdm.MatchAttribute{mdm.MatchUserName}
	}
	for _, a := range []mdm.MatchAttribute{mdm.MatchUserName, mdm.MatchEmail, mdm.MatchExternalID} {
		if slices.Contains(matches, a) {
			t.Run("finding devices by "+string(a)+" uses that attribute alone", func(t *testing.T) {
				c, _ := h.New(t, false)
				f := must[mdm.Finder](t, c)
				p := h.only(a)
				got, err := f.FindDevices(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if want, have := summary(h.Devices), summary(got); !slices.Equal(want, have) {
					t.Fatalf("devices of %+v:\n got %v\nwant %v", p, have, want)
				}
			})
			continue
		}
		t.Run("finding devices by "+string(a)+" is refused for good", func(t *testing.T) {
			c, _ := h.New(t, false)
			f := must[mdm.Finder](t, c)
			_, err := f.FindDevices(ctx, h.only(a))
			if err == nil || mdm.IsRetryable(err) {
				t.Fatalf("got %v, want a permanent error naming the supported attributes", err)
			}
		})
	}

	t.Run("finding devices of an unknown person returns none", func(t *testing.T) {
		c, _ := h.New(t, false)
		f := must[mdm.Finder](t, c)
		got, err := f.FindDevices(ctx, mdm.Person{ID: "nobody", UserName: "nobody@example.com", Email: "nobody@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Fatalf("got %v, want none", summary(got))
		}
	})

	t.Run("removing the app yields a command that reaches done", func(t *testing.T) {
		c, fake := h.New(t, false)
		r := must[mdm.AppRemover](t, c)
		dev := h.device(t, "")
		cmd, err := r.RemoveApp(ctx, h.request("remove-1", mdm.ActionWipeApp, &dev))
		if err != nil {
			t.Fatal(err)
		}
		h.reachesDone(t, c, fake, dev, cmd)
	})

	t.Run("removing the app twice with the same key acts once", func(t *testing.T) {
		c, fake := h.New(t, false)
		r := must[mdm.AppRemover](t, c)
		dev := h.device(t, "")
		req := h.request("remove-2", mdm.ActionWipeApp, &dev)
		first, err := r.RemoveApp(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		second, err := r.RemoveApp(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if got := fake.Actions(dev.ID); got != 1 {
			t.Fatalf("vendor actions = %d, want 1", got)
		}
		if first.ID != second.ID {
			t.Fatalf("command IDs differ: %q then %q", first.ID, second.ID)
		}
	})

	t.Run("wiping a company-owned device yields a command that reaches done", func(t *testing.T) {
		c, fake := h.New(t, false)
		w := must[mdm.Wiper](t, c)
		dev := h.device(t, mdm.OwnershipCompany)
		cmd, err := w.WipeDevice(ctx, h.request("wipe-1", mdm.ActionWipeDevice, &dev))
		if err != nil {
			t.Fatal(err)
		}
		h.reachesDone(t, c, fake, dev, cmd)
	})

	t.Run("wiping twice with the same key wipes once", func(t *testing.T) {
		c, fake := h.New(t, false)
		w := must[mdm.Wiper](t, c)
		dev := h.device(t, mdm.OwnershipCompany)
		req := h.request("wipe-2", mdm.ActionWipeDevice, &dev)
		if _, err := w.WipeDevice(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WipeDevice(ctx, req); err != nil {
			t.Fatal(err)
		}
		if got := fake.Actions(dev.ID); got != 1 {
			t.Fatalf("vendor wipes = %d, want 1", got)
		}
	})

	t.Run("wiping a personal device is refused for good without a vendor action", func(t *testing.T) {
		c, fake := h.New(t, false)
		w := must[mdm.Wiper](t, c)
		dev := h.device(t, mdm.OwnershipPersonal)
		claimed := dev
		if !h.OwnershipFromRequest {
			// Even if the caller believes the device is the company's, the vendor's record decides.
			claimed.Ownership = mdm.OwnershipCompany
		}
		_, err := w.WipeDevice(ctx, h.request("wipe-3", mdm.ActionWipeDevice, &claimed))
		if err == nil || mdm.IsRetryable(err) {
			t.Fatalf("got %v, want a non-retryable refusal", err)
		}
		if got := fake.Actions(dev.ID); got != 0 {
			t.Fatalf("vendor actions = %d, want 0", got)
		}
	})

	t.Run("notifying twice with the same key delivers one event", func(t *testing.T) {
		c, fake := h.New(t, false)
		n := must[mdm.Notifier](t, c)
		req := h.request("notify-1", mdm.ActionWipeApp, nil)
		for range 2 {
			if err := n.Notify(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		if got := fake.Actions(h.Person.ID); got != 1 {
			t.Fatalf("events = %d, want 1", got)
		}
	})

	t.Run("a device the vendor no longer knows is ErrDeviceGone", func(t *testing.T) {
		c, fake := h.New(t, false)
		dev := h.device(t, mdm.OwnershipCompany)
		fake.RemoveDevice(dev.ID)
		ran := false
		if r, ok := c.(mdm.AppRemover); ok {
			ran = true
			if _, err := r.RemoveApp(ctx, h.request("gone-1", mdm.ActionWipeApp, &dev)); !errors.Is(err, mdm.ErrDeviceGone) {
				t.Errorf("RemoveApp: got %v, want ErrDeviceGone", err)
			}
		}
		if w, ok := c.(mdm.Wiper); ok {
			ran = true
			if _, err := w.WipeDevice(ctx, h.request("gone-2", mdm.ActionWipeDevice, &dev)); !errors.Is(err, mdm.ErrDeviceGone) {
				t.Errorf("WipeDevice: got %v, want ErrDeviceGone", err)
			}
		}
		if !ran {
			t.Skip("no device capability")
		}
	})

	throttling := []struct {
		name       string
		status     int
		header     http.Header
		retryable  bool
		retryAfter time.Duration
	}{
		{"a 429 with Retry-After is retryable after that delay", http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, true, 7 * time.Second},
		{"a 503 is retryable", http.StatusServiceUnavailable, nil, true, 0},
		{"a 500 is retryable", http.StatusInternalServerError, nil, true, 0},
		{"a 403 is not retryable", http.StatusForbidden, nil, false, 0},
	}
	for _, tc := range throttling {
		t.Run(tc.name, func(t *testing.T) {
			c, fake := h.New(t, false)
			if err := probe(c); err != nil { // tokens, caches and one-time setup out of the way
				t.Fatalf("the call before the failure: %v", err)
			}
			fake.FailNext(tc.status, tc.header)
			err := probe(c)
			var ve *mdm.VendorError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *mdm.VendorError", err)
			}
			if ve.Retryable != tc.retryable || ve.RetryAfter != tc.retryAfter || ve.StatusCode != tc.status {
				t.Fatalf("got status %d retryable %v after %v, want %d %v %v",
					ve.StatusCode, ve.Retryable, ve.RetryAfter, tc.status, tc.retryable, tc.retryAfter)
			}
			if err := probe(c); err != nil {
				t.Fatalf("the call after the failure: %v", err)
			}
		})
	}

	t.Run("a revoked token is replaced once and the call succeeds", func(t *testing.T) {
		if !h.Tokens {
			t.Skip("connector does not use access tokens")
		}
		c, fake := h.New(t, false)
		if err := probe(c); err != nil {
			t.Fatal(err)
		}
		before := fake.TokenRequests()
		fake.RevokeTokens()
		if err := probe(c); err != nil {
			t.Fatal(err)
		}
		if got := fake.TokenRequests() - before; got != 1 {
			t.Fatalf("token requests after revocation = %d, want 1", got)
		}
		if err := probe(c); err != nil {
			t.Fatal(err)
		}
		if got := fake.TokenRequests() - before; got != 1 {
			t.Fatalf("the new token was not cached: %d token requests", got)
		}
	})

	t.Run("a healthy connector passes its health check", func(t *testing.T) {
		c, _ := h.New(t, false)
		hc := must[mdm.HealthChecker](t, c)
		if err := hc.CheckHealth(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("bad credentials fail the health check and every call for good", func(t *testing.T) {
		c, _ := h.New(t, true)
		hc := must[mdm.HealthChecker](t, c)
		if err := h.noSecrets(t, hc.CheckHealth(ctx)); err == nil || mdm.IsRetryable(err) {
			t.Fatalf("CheckHealth: got %v, want a non-retryable error", err)
		}
		if err := probe(c); err == nil || mdm.IsRetryable(err) {
			t.Fatalf("call: got %v, want a non-retryable error", err)
		}
	})
}

// only returns Person with Match a and every other attribute pointing at nobody, so that a
// Finder that looks at the wrong attribute finds nothing.
func (h Harness) only(a mdm.MatchAttribute) mdm.Person {
	const nobody = "nobody@example.com"
	p := mdm.Person{ID: h.Person.ID, UserName: nobody, Email: nobody, ExternalID: "00000000-0000-4000-8000-000000000000", Match: a}
	switch a {
	case mdm.MatchUserName:
		p.UserName = h.Person.UserName
	case mdm.MatchEmail:
		p.Email = h.Person.Email
	case mdm.MatchExternalID:
		p.ExternalID = h.Person.ExternalID
	}
	return p
}

// noSecrets fails the test if err's text shows one of the harness's secrets, and returns err.
func (h Harness) noSecrets(t *testing.T, err error) error {
	t.Helper()
	if err == nil {
		return nil
	}
	for _, s := range h.Secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q reveals a secret", err)
		}
	}
	return err
}

func (h Harness) request(key string, a mdm.Action, d *mdm.Device) mdm.Request {
	return mdm.Request{
		Key:      "conformance/" + key,
		Action:   a,
		Tenant:   "acme",
		Person:   h.Person,
		WorkID:   "WK7Q2P9X",
		Device:   d,
		Occurred: Occurred,
	}
}

// device returns the first of the harness's devices with ownership o ("" for any); the subtest
// is skipped when there is none.
func (h Harness) device(t *testing.T, o mdm.Ownership) mdm.Device {
	t.Helper()
	for _, d := range h.Devices {
		if o == "" || d.Ownership == o {
			return d
		}
	}
	t.Skipf("harness has no device with ownership %q", o)
	return mdm.Device{}
}

func (h Harness) reachesDone(t *testing.T, c mdm.Connector, fake Fake, dev mdm.Device, cmd mdm.Command) {
	t.Helper()
	if cmd.ID == "" {
		t.Fatal("command without ID")
	}
	if cmd.State == mdm.CommandFailed {
		t.Fatalf("command failed at once: %s", cmd.Detail)
	}
	sr, ok := c.(mdm.StatusReporter)
	if !ok {
		return
	}
	// A connector may follow up on a completed command (NanoMDM verifies a removal with a
	// ManagedApplicationList), so the device completes what is queued a few times over.
	var got mdm.Command
	for range 3 {
		fake.CompleteCommands(dev.ID)
		var err error
		got, err = sr.CommandStatus(context.Background(), dev, cmd)
		if errors.Is(err, mdm.ErrDeviceGone) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if got.State != mdm.CommandPending {
			break
		}
	}
	if got.State != mdm.CommandDone {
		t.Fatalf("command state after the device completed it = %q (%s), want done", got.State, got.Detail)
	}
}

func must[T any](t *testing.T, c mdm.Connector) T {
	t.Helper()
	v, ok := c.(T)
	if !ok {
		t.Skipf("%s connector does not implement %T", c.Type(), (*T)(nil))
	}
	return v
}

func summary(ds []mdm.Device) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, strings.Join([]string{d.ID, string(d.Platform), string(d.Ownership)}, "/"))
	}
	slices.Sort(out)
	return out
}

// ConfigJSON marshals a connector configuration for Harness.Config; a configuration that does
// not marshal is a bug in the test, so it panics.
func ConfigJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// RefusesConfig fails t unless open refuses cfg with an error that says want and does not echo
// secret: configuration errors are shown to the administrator, and secrets are write-only.
func RefusesConfig(t *testing.T, open mdm.Opener, cfg, want, secret string) {
	t.Helper()
	_, err := open(json.RawMessage(cfg), mdm.Deps{})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error about %s", err, want)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error echoes a secret: %v", err)
	}
}
