package workspaceone_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/mdmtest"
	"github.com/offboard/offboard/mdm/workspaceone"
	"github.com/offboard/offboard/mdm/workspaceone/workspaceonetest"
)

var jane = mdm.Person{ID: "emp-42", UserName: "jane.doe@example.com", Email: "jane.doe@example.com"}

var janesDevices = []mdm.Device{
	{ID: "12345", Platform: mdm.PlatformIOS, Ownership: mdm.OwnershipCompany},
	{ID: "12346", Platform: mdm.PlatformAndroid, Ownership: mdm.OwnershipPersonal},
}

func oauthConfig(f *workspaceonetest.WS1, secret string) workspaceone.Config {
	return workspaceone.Config{URL: f.URL(), TenantCode: workspaceonetest.TenantCode, ClientID: workspaceonetest.ClientID, ClientSecret: secret,
		TokenURL: f.URL() + "/connect/token", StripDomain: true}
}

func basicConfig(f *workspaceonetest.WS1, pass string) workspaceone.Config {
	return workspaceone.Config{URL: f.URL(), TenantCode: workspaceonetest.TenantCode, Auth: workspaceone.AuthBasic,
		Username: workspaceonetest.Username, Password: pass, StripDomain: true}
}

func open(t *testing.T, f *workspaceonetest.WS1, cfg workspaceone.Config) *workspaceone.Connector {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	c, err := workspaceone.Open(raw, mdm.Deps{HTTPClient: f.Client(), Now: func() time.Time { return mdmtest.Occurred }, ConnectorID: "ws1-1"})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*workspaceone.Connector)
}

func TestConformance(t *testing.T) {
	variants := []struct {
		name   string
		cfg    func(f *workspaceonetest.WS1, bad bool) workspaceone.Config
		tokens bool
	}{
		{"with OAuth and EnterpriseWipe", func(f *workspaceonetest.WS1, bad bool) workspaceone.Config {
			if bad {
				return oauthConfig(f, "not-the-secret")
			}
			return oauthConfig(f, workspaceonetest.ClientSecret)
		}, true},
		{"with basic auth and an app uninstall", func(f *workspaceonetest.WS1, bad bool) workspaceone.Config {
			c := basicConfig(f, workspaceonetest.Password)
			if bad {
				c.Password = "wrong-password"
			}
			c.AppID = workspaceonetest.AppID
			return c
		}, false},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			mdmtest.Run(t, mdmtest.Harness{
				New: func(t *testing.T, bad bool) (mdm.Connector, mdmtest.Fake) {
					f := workspaceonetest.New(t)
					return open(t, f, v.cfg(f, bad)), f
				},
				Person:  jane,
				Devices: janesDevices,
				Tokens:  v.tokens,
				Matches: []mdm.MatchAttribute{mdm.MatchUserName, mdm.MatchEmail},
				Config:  mdmtest.ConfigJSON(v.cfg(workspaceonetest.New(t), false)),
				Redact:  workspaceone.Redact,
				Secrets: []string{workspaceonetest.TenantCode, workspaceonetest.ClientSecret, workspaceonetest.Password, "not-the-secret", "wrong-password"},
			})
		})
	}
}

func TestFindDevices(t *testing.T) {
	t.Run("a loose search match for another user is dropped", func(t *testing.T) {
		f := workspaceonetest.New(t)
		c := open(t, f, oauthConfig(f, workspaceonetest.ClientSecret))
		got, err := c.FindDevices(context.Background(), jane)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range got {
			if d.ID == "22001" {
				t.Fatal("jane.doe2's iPad returned for jane.doe")
			}
		}
		if len(got) != 2 || got[0].Name != "jane.doe iPhone iOS 17.5 N72J" || got[0].Connector != "ws1-1" {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("shared corporate devices count as the company's", func(t *testing.T) {
		f := workspaceonetest.New(t)
		c := open(t, f, oauthConfig(f, workspaceonetest.ClientSecret))
		got, err := c.FindDevices(context.Background(), mdm.Person{UserName: "jane.doe2@example.com"})
		if err != nil || len(got) != 1 || got[0].Ownership != mdm.OwnershipCompany {
			t.Fatalf("got %+v, %v", got, err)
		}
	})

	t.Run("a missing aw-tenant-code is refused for good", func(t *testing.T) {
		f := workspaceonetest.New(t)
		cfg := oauthConfig(f, workspaceonetest.ClientSecret)
		cfg.TenantCode = "wrong-api-key"
		c := open(t, f, cfg)
		if _, err := c.FindDevices(context.Background(), jane); err == nil || mdm.IsRetryable(err) {
			t.Fatalf("got %v, want a non-retryable error", err)
		}
	})
}

func TestActions(t *testing.T) {
	t.Run("an enterprise wipe is pending until the device unenrolls", func(t *testing.T) {
		f := workspaceonetest.New(t)
		c := open(t, f, oauthConfig(f, workspaceonetest.ClientSecret))
		dev := janesDevices[1] // personal devices get an enterprise wipe too: it keeps personal data
		cmd, err := c.RemoveApp(context.Background(), request(&dev))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.CommandStatus(context.Background(), dev, cmd)
		if err != nil || got.State != mdm.CommandPending || got.Detail != "EnterpriseWipePending" {
			t.Fatalf("got %+v, %v", got, err)
		}
		f.CompleteCommands(dev.ID)
		if _, err := c.CommandStatus(context.Background(), dev, cmd); !errors.Is(err, mdm.ErrDeviceGone) {
			t.Fatalf("after unenrolment: %v, want ErrDeviceGone (done)", err)
		}
	})

	t.Run("an app uninstall after a restart is sent again, harmlessly", func(t *testing.T) {
		f := workspaceonetest.New(t)
		cfg := basicConfig(f, workspaceonetest.Password)
		cfg.AppID = workspaceonetest.AppID
		dev := janesDevices[0]
		for range 2 {
			c := open(t, f, cfg)
			if _, err := c.RemoveApp(context.Background(), request(&dev)); err != nil {
				t.Fatal(err)
			}
		}
		if f.Uninstalls(dev.ID) != 2 {
			t.Fatalf("uninstalls = %d; the in-process memo is all there is", f.Uninstalls(dev.ID))
		}
	})
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want string
	}{
		{"oauth needs a token URL", `{"url":"https://as1.awmdm.com","tenantCode":"k-hunter2","clientId":"a","clientSecret":"hunter2"}`, "tokenUrl"},
		{"oauth needs client credentials", `{"url":"https://as1.awmdm.com","tenantCode":"k-hunter2","tokenUrl":"https://na.uemauth.vmwservices.com/connect/token"}`, "clientId and clientSecret"},
		{"basic needs a password", `{"url":"https://as1.awmdm.com","tenantCode":"k-hunter2","auth":"basic","username":"svc"}`, "username and password"},
		{"the API key is required", `{"url":"https://as1.awmdm.com","auth":"basic","username":"svc","password":"hunter2"}`, "tenantCode"},
		{"an unknown auth is refused", `{"url":"https://as1.awmdm.com","tenantCode":"k-hunter2","auth":"cert"}`, "auth must be"},
		{"a plain-http server is refused", `{"url":"http://as1.awmdm.com","tenantCode":"k-hunter2","auth":"basic","username":"svc","password":"hunter2"}`, "https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { mdmtest.RefusesConfig(t, workspaceone.Open, tc.cfg, tc.want, "hunter2") })
	}

	t.Run("redaction drops the API key, client secret and password", func(t *testing.T) {
		got := string(workspaceone.Redact(json.RawMessage(
			`{"url":"https://as1.awmdm.com","tenantCode":"k-hunter2","clientSecret":"hunter2","password":"hunter2","username":"svc"}`)))
		if strings.Contains(got, "hunter2") || !strings.Contains(got, `"username":"svc"`) {
			t.Fatalf("Redact = %s", got)
		}
	})
}

func request(d *mdm.Device) mdm.Request {
	return mdm.Request{Key: "acme/emp-42/" + d.ID, Action: mdm.ActionWipeApp, Tenant: "acme", Person: jane, Device: d, Occurred: mdmtest.Occurred}
}
