package jamf_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/jamf"
	"github.com/offboard/offboard/mdm/jamf/jamftest"
	"github.com/offboard/offboard/mdm/mdmtest"
)

var jane = mdm.Person{ID: "emp-42", UserName: "jane.doe@example.com", Email: "jane.doe@example.com"}

var janesDevices = []mdm.Device{
	{ID: "17", Platform: mdm.PlatformIOS, Ownership: mdm.OwnershipCompany},
	{ID: "23", Platform: mdm.PlatformIOS, Ownership: mdm.OwnershipPersonal},
}

func config(f *jamftest.Jamf, secret string) jamf.Config {
	return jamf.Config{URL: f.URL(), ClientID: jamftest.ClientID, ClientSecret: secret, AppID: jamftest.AppID, GroupID: jamftest.GroupID}
}

func open(t *testing.T, f *jamftest.Jamf, cfg jamf.Config, lims *mdm.Limiters) *jamf.Connector {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	c, err := jamf.Open(raw, mdm.Deps{HTTPClient: f.Client(), Now: f.Now, ConnectorID: "jamf-1", Limiters: lims})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*jamf.Connector)
}

func TestConformance(t *testing.T) {
	mdmtest.Run(t, mdmtest.Harness{
		New: func(t *testing.T, bad bool) (mdm.Connector, mdmtest.Fake) {
			f := jamftest.New(t)
			secret := jamftest.ClientSecret
			if bad {
				secret = "rotated-away-secret"
			}
			return open(t, f, config(f, secret), nil), f
		},
		Person:  jane,
		Devices: janesDevices,
		Tokens:  true,
		Matches: []mdm.MatchAttribute{mdm.MatchUserName, mdm.MatchEmail},
		Config: mdmtest.ConfigJSON(jamf.Config{URL: "https://acme.jamfcloud.com", ClientID: jamftest.ClientID,
			ClientSecret: jamftest.ClientSecret, AppID: jamftest.AppID, GroupID: jamftest.GroupID}),
		Redact:  jamf.Redact,
		Secrets: []string{jamftest.ClientSecret, "rotated-away-secret"},
	})
}

func TestFindDevices(t *testing.T) {
	t.Run("quotes and backslashes in a user name are escaped for RSQL", func(t *testing.T) {
		f := jamftest.New(t)
		cfg := config(f, jamftest.ClientSecret)
		cfg.Match = jamf.MatchUsername
		c := open(t, f, cfg, nil)
		got, err := c.FindDevices(context.Background(), mdm.Person{UserName: `CORP\ann "al" lee`})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != "40" || got[0].Serial != "H7UAQ1R2P1GG" || got[0].Connector != "jamf-1" {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("an e-mail user name is used when the person has no e-mail", func(t *testing.T) {
		f := jamftest.New(t)
		c := open(t, f, config(f, jamftest.ClientSecret), nil)
		got, err := c.FindDevices(context.Background(), mdm.Person{UserName: "john.doe@example.com"})
		if err != nil || len(got) != 1 || got[0].ID != "31" {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
}

func TestRemoveApp(t *testing.T) {
	t.Run("the app's existing scope exclusions are kept", func(t *testing.T) {
		f := jamftest.New(t)
		c := open(t, f, config(f, jamftest.ClientSecret), nil)
		dev := janesDevices[0]
		if _, err := c.RemoveApp(context.Background(), request(&dev)); err != nil {
			t.Fatal(err)
		}
		if ex := f.Exclusions(); len(ex) != 2 || ex[0] != jamftest.KioskGroupID || ex[1] != jamftest.GroupID {
			t.Fatalf("exclusions = %+v", ex)
		}
		if m := f.Members(jamftest.GroupID); len(m) != 1 || m[0] != 17 {
			t.Fatalf("group members = %v", m)
		}
	})

	t.Run("a smart group is refused for good", func(t *testing.T) {
		f := jamftest.New(t)
		cfg := config(f, jamftest.ClientSecret)
		cfg.GroupID = jamftest.SmartGroupID
		c := open(t, f, cfg, nil)
		dev := janesDevices[0]
		if _, err := c.RemoveApp(context.Background(), request(&dev)); err == nil || mdm.IsRetryable(err) {
			t.Fatalf("got %v, want a non-retryable error", err)
		}
	})

	t.Run("the app stays pending until it leaves the device's inventory", func(t *testing.T) {
		f := jamftest.New(t)
		c := open(t, f, config(f, jamftest.ClientSecret), nil)
		dev := janesDevices[0]
		cmd, err := c.RemoveApp(context.Background(), request(&dev))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.CommandStatus(context.Background(), dev, cmd)
		if err != nil || got.State != mdm.CommandPending {
			t.Fatalf("before inventory update: %+v, %v", got, err)
		}
	})
}

func TestErase(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   mdm.CommandState
	}{
		{"a pending erase is pending", "Pending", mdm.CommandPending},
		{"an erase the device put off is pending", "NotNow", mdm.CommandPending},
		{"an acknowledged erase is done", "Acknowledged", mdm.CommandDone},
		{"an erase that errored failed", "Error", mdm.CommandFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := jamftest.New(t)
			c := open(t, f, config(f, jamftest.ClientSecret), nil)
			dev := janesDevices[0]
			cmd, err := c.WipeDevice(context.Background(), request(&dev))
			if err != nil {
				t.Fatal(err)
			}
			f.SetCommandStatus(0, tc.status)
			got, err := c.CommandStatus(context.Background(), dev, cmd)
			if err != nil || got.State != tc.want {
				t.Fatalf("got %+v, %v; want %s", got, err, tc.want)
			}
		})
	}

	t.Run("an erase that errored earlier is sent again", func(t *testing.T) {
		f := jamftest.New(t)
		c := open(t, f, config(f, jamftest.ClientSecret), nil)
		dev := janesDevices[0]
		c.WipeDevice(context.Background(), request(&dev))
		f.SetCommandStatus(0, "Error")
		if _, err := c.WipeDevice(context.Background(), request(&dev)); err != nil {
			t.Fatal(err)
		}
		if f.Actions("17") != 2 {
			t.Fatalf("erases = %d, want 2", f.Actions("17"))
		}
	})

	t.Run("an erase sent before the leaver event does not count as this one", func(t *testing.T) {
		f := jamftest.New(t)
		c := open(t, f, config(f, jamftest.ClientSecret), nil)
		dev := janesDevices[0]
		f.SetNow(mdmtest.Occurred.Add(-24 * time.Hour))
		c.WipeDevice(context.Background(), request(&dev))
		f.SetNow(mdmtest.Occurred.Add(time.Minute))
		c.WipeDevice(context.Background(), request(&dev))
		if f.Actions("17") != 2 {
			t.Fatalf("erases = %d, want 2", f.Actions("17"))
		}
	})
}

func TestConcurrency(t *testing.T) {
	t.Run("at most five requests are in flight to one server, across connectors of the process", func(t *testing.T) {
		f := jamftest.New(t)
		var lims mdm.Limiters
		a := open(t, f, config(f, jamftest.ClientSecret), &lims)
		b := open(t, f, config(f, jamftest.ClientSecret), &lims)
		for _, c := range []*jamf.Connector{a, b} {
			if err := c.CheckHealth(context.Background()); err != nil { // fetch tokens before the gate
				t.Fatal(err)
			}
		}
		gate, arrived := make(chan struct{}), make(chan struct{}, 40)
		f.Hold(gate, arrived)
		var wg sync.WaitGroup
		for i := range 20 {
			c := a
			if i%2 == 1 {
				c = b
			}
			wg.Go(func() {
				if _, err := c.FindDevices(context.Background(), jane); err != nil {
					t.Error(err)
				}
			})
		}
		for range 5 {
			<-arrived
		}
		// A bounded look for a sixth request (a negative can only be checked with a window;
		// without the cap the other 15 arrive within microseconds).
		select {
		case <-arrived:
			t.Error("a sixth request reached the server while five were held")
		case <-time.After(200 * time.Millisecond):
		}
		close(gate)
		wg.Wait()
		if p := f.Peak(); p != 5 {
			t.Fatalf("peak in flight = %d, want 5", p)
		}
	})
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want string
	}{
		{"a plain-http server is refused", `{"url":"http://acme.jamfcloud.com","clientId":"x","clientSecret":"hunter2-value","appId":12,"groupId":7}`, "https"},
		{"a missing secret is refused", `{"url":"https://acme.jamfcloud.com","clientId":"x","appId":12,"groupId":7}`, "clientSecret is required"},
		{"a missing app is refused", `{"url":"https://acme.jamfcloud.com","clientId":"x","clientSecret":"hunter2-value","groupId":7}`, "appId"},
		{"a missing group is refused", `{"url":"https://acme.jamfcloud.com","clientId":"x","clientSecret":"hunter2-value","appId":12}`, "groupId"},
		{"an unknown match is refused", `{"url":"https://acme.jamfcloud.com","clientId":"x","clientSecret":"hunter2-value","appId":12,"groupId":7,"match":"serial"}`, "match"},
		{"an app id given as a string is refused clearly", `{"url":"https://acme.jamfcloud.com","clientId":"x","clientSecret":"hunter2-value","appId":"12","groupId":7}`, "numbers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { mdmtest.RefusesConfig(t, jamf.Open, tc.cfg, tc.want, "hunter2") })
	}

	t.Run("redaction drops the client secret", func(t *testing.T) {
		got := string(jamf.Redact(json.RawMessage(`{"url":"https://acme.jamfcloud.com","clientId":"x","clientSecret":"hunter2-value"}`)))
		if strings.Contains(got, "hunter2") || !strings.Contains(got, "acme.jamfcloud.com") {
			t.Fatalf("Redact = %s", got)
		}
	})
}

func request(d *mdm.Device) mdm.Request {
	return mdm.Request{Key: "acme/emp-42/" + d.ID, Action: mdm.ActionWipeDevice, Tenant: "acme", Person: jane, Device: d, Occurred: mdmtest.Occurred}
}
