package intune_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/intune"
	"github.com/offboard/offboard/mdm/intune/intunetest"
	"github.com/offboard/offboard/mdm/mdmtest"
)

var jane = mdm.Person{ID: "emp-42", UserName: intunetest.JaneUPN, Email: intunetest.JaneUPN, ExternalID: intunetest.JaneObjectID}

var janesDevices = []mdm.Device{
	{ID: "705c034c-034c-705c-4c03-5c704c035c70", Platform: mdm.PlatformIOS, Ownership: mdm.OwnershipCompany},
	{ID: "2e9f5d8c-61a4-4d0b-b7e3-5a1c9f2d4e60", Platform: mdm.PlatformAndroid, Ownership: mdm.OwnershipPersonal},
}

func config(f *intunetest.Graph, mode, secret string) intune.Config {
	return intune.Config{
		TenantID: intunetest.TenantID, ClientID: intunetest.ClientID, ClientSecret: secret,
		AppID: intunetest.AppID, GroupID: intunetest.GroupID, Mode: mode,
		GraphURL: f.URL(), LoginURL: f.URL(),
	}
}

func open(t *testing.T, f *intunetest.Graph, cfg intune.Config) *intune.Connector {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	c, err := intune.Open(raw, mdm.Deps{HTTPClient: f.Client(), Now: f.Now, ConnectorID: "intune-1"})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*intune.Connector)
}

func TestConformance(t *testing.T) {
	for _, mode := range []string{intune.ModeUninstall, intune.ModeRetire} {
		t.Run("in "+mode+" mode", func(t *testing.T) {
			mdmtest.Run(t, mdmtest.Harness{
				New: func(t *testing.T, bad bool) (mdm.Connector, mdmtest.Fake) {
					f := intunetest.New(t)
					secret := intunetest.ClientSecret
					if bad {
						secret = "expired~secret"
					}
					return open(t, f, config(f, mode, secret)), f
				},
				Person:  jane,
				Devices: janesDevices,
				Tokens:  true,
				Matches: []mdm.MatchAttribute{mdm.MatchUserName, mdm.MatchEmail, mdm.MatchExternalID},
				Config: mdmtest.ConfigJSON(intune.Config{TenantID: intunetest.TenantID, ClientID: intunetest.ClientID,
					ClientSecret: intunetest.ClientSecret, AppID: intunetest.AppID, GroupID: intunetest.GroupID, Mode: mode}),
				Redact:  intune.Redact,
				Secrets: []string{intunetest.ClientSecret, "expired~secret"},
			})
		})
	}
}

func TestFindDevices(t *testing.T) {
	t.Run("quotes in a user principal name are doubled per OData", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeRetire, intunetest.ClientSecret))
		got, err := c.FindDevices(context.Background(), mdm.Person{UserName: "d'arcy.o'neil@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Platform != mdm.PlatformMacOS || got[0].Connector != "intune-1" || got[0].Serial != "C02ZK0ABMD6T" {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("a nextLink to another host is refused so the token stays with Graph", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeRetire, intunetest.ClientSecret))
		f.HijackNextLink("https://evil.example/v1.0/deviceManagement/managedDevices?$skiptoken=1")
		_, err := c.FindDevices(context.Background(), jane)
		if err == nil || !strings.Contains(err.Error(), "nextLink") {
			t.Fatalf("got %v, want a refused nextLink", err)
		}
	})
}

func TestRemoveApp(t *testing.T) {
	t.Run("uninstall mode keeps the app's other assignments and adds the uninstall intent", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeUninstall, intunetest.ClientSecret))
		dev := janesDevices[0]
		if _, err := c.RemoveApp(context.Background(), request(&dev)); err != nil {
			t.Fatal(err)
		}
		as := f.Assignments()
		if len(as) != 2 {
			t.Fatalf("assignments: %v", as)
		}
		kept, added := as[0], as[1]
		if kept["intent"] != "required" || kept["target"].(map[string]any)["groupId"] != intunetest.RequiredGroup {
			t.Fatalf("existing assignment lost: %v", kept)
		}
		if added["intent"] != "uninstall" || added["target"].(map[string]any)["groupId"] != intunetest.GroupID {
			t.Fatalf("uninstall assignment wrong: %v", added)
		}
		if !f.IsMember(intunetest.JaneObjectID) {
			t.Fatal("leaver not added to the offboarding group")
		}
	})

	t.Run("an uninstall assignment that exists already is not sent again", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeUninstall, intunetest.ClientSecret))
		for i := range janesDevices {
			if _, err := c.RemoveApp(context.Background(), request(&janesDevices[i])); err != nil {
				t.Fatal(err)
			}
		}
		c2 := open(t, f, config(f, intune.ModeUninstall, intunetest.ClientSecret)) // a restarted process
		if _, err := c2.RemoveApp(context.Background(), request(&janesDevices[0])); err != nil {
			t.Fatal(err)
		}
		if n := f.Count("POST", "/assign"); n != 1 {
			t.Fatalf("assign sent %d times, want 1", n)
		}
	})

	t.Run("retire mode retires the device with an empty body", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeRetire, intunetest.ClientSecret))
		dev := janesDevices[1]
		cmd, err := c.RemoveApp(context.Background(), request(&dev))
		if err != nil {
			t.Fatal(err)
		}
		if cmd.State != mdm.CommandPending || f.DeviceField(dev.ID, "managementState") != "retirePending" {
			t.Fatalf("command %+v, device %v", cmd, f.DeviceField(dev.ID, "managementState"))
		}
	})

	t.Run("a throttled retire comes back retryable with Graph's delay and is not counted", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeRetire, intunetest.ClientSecret))
		dev := janesDevices[0]
		// Fail the POST, not the GET that precedes it.
		f.FailOn("POST", 429, "12")
		_, err := c.RemoveApp(context.Background(), request(&dev))
		var ve *mdm.VendorError
		if !errors.As(err, &ve) || !ve.Retryable || ve.RetryAfter.Seconds() != 12 {
			t.Fatalf("got %v, want retryable after 12s", err)
		}
		if f.Actions(dev.ID) != 0 {
			t.Fatal("throttled retire counted as sent")
		}
	})
}

func TestCommandStatus(t *testing.T) {
	tests := []struct {
		name  string
		state string
		want  mdm.CommandState
	}{
		{"a pending wipe is pending", "pending", mdm.CommandPending},
		{"an active wipe is pending", "active", mdm.CommandPending},
		{"a done wipe is done", "done", mdm.CommandDone},
		{"a failed wipe is failed", "failed", mdm.CommandFailed},
		{"a canceled wipe is failed", "canceled", mdm.CommandFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := intunetest.New(t)
			c := open(t, f, config(f, intune.ModeRetire, intunetest.ClientSecret))
			dev := janesDevices[0]
			cmd, err := c.WipeDevice(context.Background(), request(&dev))
			if err != nil {
				t.Fatal(err)
			}
			f.SetActionState(dev.ID, tc.state)
			got, err := c.CommandStatus(context.Background(), dev, cmd)
			if err != nil || got.State != tc.want {
				t.Fatalf("got %+v, %v; want %s", got, err, tc.want)
			}
		})
	}

	t.Run("a wiped device that disappeared is ErrDeviceGone", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeRetire, intunetest.ClientSecret))
		dev := janesDevices[0]
		cmd, _ := c.WipeDevice(context.Background(), request(&dev))
		f.RemoveDevice(dev.ID)
		if _, err := c.CommandStatus(context.Background(), dev, cmd); !errors.Is(err, mdm.ErrDeviceGone) {
			t.Fatalf("got %v, want ErrDeviceGone", err)
		}
	})

	t.Run("a failed earlier wipe does not stop a new one", func(t *testing.T) {
		f := intunetest.New(t)
		c := open(t, f, config(f, intune.ModeRetire, intunetest.ClientSecret))
		dev := janesDevices[0]
		c.WipeDevice(context.Background(), request(&dev))
		f.SetActionState(dev.ID, "failed")
		if _, err := c.WipeDevice(context.Background(), request(&dev)); err != nil {
			t.Fatal(err)
		}
		if f.Actions(dev.ID) != 2 {
			t.Fatalf("wipes = %d, want 2 (the first failed)", f.Actions(dev.ID))
		}
	})
}

func TestConfig(t *testing.T) {
	base := `"tenantId":"contoso.onmicrosoft.com","clientId":"6731de76-14a6-49ae-97bc-6eba6914391e","clientSecret":"hunter2-secret-value"`
	tests := []struct {
		name string
		cfg  string
		want string
	}{
		{"uninstall mode needs the app id", `{` + base + `,"groupId":"7c6b5a49-3827-4165-9e8d-7c6b5a493827"}`, "appId"},
		{"uninstall mode needs the group id", `{` + base + `,"appId":"9a2e6c1d-3b4f-4e5a-8c7d-1f0e2d3c4b5a"}`, "groupId"},
		{"an unknown mode is refused", `{` + base + `,"mode":"wipe"}`, "mode"},
		{"a tenant id with a slash is refused", `{"tenantId":"a/b","clientId":"6731de76-14a6-49ae-97bc-6eba6914391e","clientSecret":"hunter2-secret-value","mode":"retire"}`, "tenantId"},
		{"a missing secret is refused", `{"tenantId":"contoso.onmicrosoft.com","clientId":"6731de76-14a6-49ae-97bc-6eba6914391e","mode":"retire"}`, "clientSecret is required"},
		{"a plain-http Graph URL is refused", `{` + base + `,"mode":"retire","graphUrl":"http://graph.example"}`, "graphUrl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { mdmtest.RefusesConfig(t, intune.Open, tc.cfg, tc.want, "hunter2") })
	}

	t.Run("retire mode needs neither app nor group", func(t *testing.T) {
		if _, err := intune.Open(json.RawMessage(`{`+base+`,"mode":"retire"}`), mdm.Deps{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("redaction drops the client secret", func(t *testing.T) {
		got := string(intune.Redact(json.RawMessage(`{` + base + `,"mode":"retire"}`)))
		if strings.Contains(got, "hunter2") || !strings.Contains(got, `"tenantId"`) {
			t.Fatalf("Redact = %s", got)
		}
	})
}

func request(d *mdm.Device) mdm.Request {
	return mdm.Request{Key: "acme/emp-42/" + d.ID, Action: mdm.ActionWipeApp, Tenant: "acme", Person: jane, Device: d, Occurred: mdmtest.Occurred}
}

func TestWriteBudget(t *testing.T) {
	t.Run("writes beyond the tenant's budget come back retryable without reaching Graph", func(t *testing.T) {
		f := intunetest.New(t)
		var lims mdm.Limiters
		// The budget is shared per tenant through the process's Limiters; shrink it to one write.
		lims.Get("intune "+intunetest.TenantID, func() *mdm.Limiter {
			return mdm.NewLimiter("intune", mdm.Limits{Writes: 1, Per: time.Hour}, f.Now)
		})
		raw, _ := json.Marshal(config(f, intune.ModeRetire, intunetest.ClientSecret))
		conn, err := intune.Open(raw, mdm.Deps{HTTPClient: f.Client(), Now: f.Now, Limiters: &lims})
		if err != nil {
			t.Fatal(err)
		}
		c := conn.(*intune.Connector)
		if _, err := c.RemoveApp(context.Background(), request(&janesDevices[0])); err != nil {
			t.Fatal(err)
		}
		_, err = c.RemoveApp(context.Background(), request(&janesDevices[1]))
		var ve *mdm.VendorError
		if !errors.As(err, &ve) || !ve.Retryable || ve.RetryAfter != time.Hour {
			t.Fatalf("got %v, want retryable after 1h", err)
		}
		if f.Actions(janesDevices[1].ID) != 0 {
			t.Fatal("the over-budget retire reached Graph")
		}
	})
}
