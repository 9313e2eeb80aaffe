package connectors_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm/intune/intunetest"
	"github.com/offboard/offboard/mdm/nanomdm/nanomdmtest"
)

func TestConnectorSecretsAreWriteOnly(t *testing.T) {
	graph := intunetest.New(t)
	nano := nanomdmtest.New(t, nanomdmtest.Options{})
	nano.Start("http://127.0.0.1:9/unused")
	logs := &testenv.LogBuffer{}
	env := testenv.Start(t, testenv.Options{Log: logs, ConnectorClient: trusting(graph.Server())})
	acme := env.CreateTenant("acme", 5)
	down := unreachable(t)

	// Every connector type with secrets that the vendor rejects or never sees, so that they
	// travel through creation, health checks, failed jobs and their errors.
	connectors := []struct {
		typ, name string
		cfg       map[string]any
		secrets   []string
	}{
		{"webhook", "hook", map[string]any{"url": down + "/hook", "secret": "webhook-secret-0001-xyz"},
			[]string{"webhook-secret-0001-xyz"}},
		{"nanomdm", "apple", map[string]any{"url": nano.URL, "apiKey": "nanomdm-api-key-0002", "appBundleId": bundleID},
			[]string{"nanomdm-api-key-0002"}},
		{"intune", "intune", map[string]any{"tenantId": intunetest.TenantID, "clientId": intunetest.ClientID,
			"clientSecret": "intune-secret-0003~xyz", "mode": "retire", "graphUrl": graph.URL(), "loginUrl": graph.URL()},
			[]string{"intune-secret-0003~xyz"}},
		{"jamf", "jamf", map[string]any{"url": down, "clientId": "jamf-client", "clientSecret": "jamf-secret-0004",
			"appId": 1, "groupId": 2}, []string{"jamf-secret-0004"}},
		{"workspaceone", "ws1-oauth", map[string]any{"url": down, "tenantCode": "ws1-api-key-0005", "clientId": "ws1-client",
			"clientSecret": "ws1-secret-0006", "tokenUrl": down + "/connect/token"}, []string{"ws1-api-key-0005", "ws1-secret-0006"}},
		{"workspaceone", "ws1-basic", map[string]any{"url": down, "tenantCode": "ws1-api-key-0007", "auth": "basic",
			"username": "svc-offboard", "password": "ws1-password-0008"}, []string{"ws1-api-key-0007", "ws1-password-0008"}},
		{"threemawork", "threema", map[string]any{"url": down + "/api/v1", "apiKey": "threema-api-key-0009"},
			[]string{"threema-api-key-0009"}},
	}
	var seen strings.Builder
	keep := func(r testenv.Response) { seen.Write(r.Raw); seen.WriteByte('\n') }
	for _, c := range connectors {
		r := connect(t, acme, c.typ, c.name, c.cfg)
		keep(r)
		cfg, _ := r.JSON["config"].(map[string]any)
		if len(cfg) == 0 {
			t.Errorf("%s: the redacted configuration shows nothing: %s", c.name, r.Raw)
		}
		keep(acme.Admin("GET", "/connectors/"+c.name, nil))
		keep(acme.Admin("POST", "/connectors/"+c.name+"/check", nil))
	}

	// A leaver whose effects fail against all of them, and an attached NanoMDM device.
	emp := hire(t, acme, "jane.doe@example.com", "jane.doe@example.com", "ext-1")
	if r := acme.Admin("POST", "/employees/"+emp+"/devices", map[string]any{"connector": "apple", "deviceId": "UDID-S", "ownership": "company"}); r.Status != http.StatusCreated {
		t.Fatalf("attach: %d %s", r.Status, r.Raw)
	}
	deactivate(t, acme, emp)
	testenv.Eventually(t, 5*time.Second, "every connector was tried", func() bool {
		tried := 0
		for _, j := range employee(t, acme, emp).Jobs {
			if j.LastError != "" || j.State == identity.JobDone && j.Connector != "" {
				tried++
			}
		}
		return tried >= len(connectors)
	})
	keep(acme.Admin("GET", "/employees/"+emp, nil))
	keep(acme.Admin("GET", "/connectors", nil))
	keep(acme.Admin("GET", "/jobs", nil))
	keep(acme.Admin("GET", "/audit", nil))

	for _, c := range connectors {
		for _, s := range c.secrets {
			if strings.Contains(seen.String(), s) {
				t.Errorf("%s: the admin API shows its secret %q", c.name, s)
			}
			if strings.Contains(logs.String(), s) {
				t.Errorf("%s: the log shows its secret %q", c.name, s)
			}
		}
	}
	if !strings.Contains(logs.String(), "msg=") {
		t.Fatal("nothing was logged; the log check proves nothing")
	}
}
