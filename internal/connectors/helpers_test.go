package connectors_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/testdb"
	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// scimUser is an Entra ID style user; Entra provisions userName as the UPN.
func scimUser(userName, email, externalID string) map[string]any {
	return map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"externalId": externalID,
		"userName":   userName,
		"active":     true,
		"emails":     []map[string]any{{"primary": true, "type": "work", "value": email}},
		"name":       map[string]any{"givenName": "Jane", "familyName": "Doe"},
	}
}

// hire creates an active user over SCIM and returns its id.
func hire(t *testing.T, tn *testenv.Tenant, userName, email, externalID string) string {
	t.Helper()
	r := tn.SCIM("POST", "/Users", scimUser(userName, email, externalID))
	if r.Status != http.StatusCreated {
		t.Fatalf("create user: %d %s", r.Status, r.Raw)
	}
	return r.JSON["id"].(string)
}

// deactivate sends the IdP's PATCH active=false.
func deactivate(t *testing.T, tn *testenv.Tenant, id string) {
	t.Helper()
	r := tn.SCIM("PATCH", "/Users/"+id, map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "Replace", "path": "active", "value": false}},
	})
	if r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Fatalf("deactivate: %d %s", r.Status, r.Raw)
	}
}

// employeeView is the part of GET /admin/v1/tenants/{t}/employees/{id} the tests read.
type employeeView struct {
	State    string         `json:"state"`
	Devices  []mdm.Device   `json:"devices"`
	Jobs     []identity.Job `json:"jobs"`
	Timeline []identity.Event
}

func employee(t *testing.T, tn *testenv.Tenant, id string) employeeView {
	t.Helper()
	r := tn.Admin("GET", "/employees/"+id, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("employee: %d %s", r.Status, r.Raw)
	}
	var v employeeView
	if err := json.Unmarshal(r.Raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// job returns the employee's job with action for device ("" for a job without device), or nil.
func (v employeeView) job(action, device string) *identity.Job {
	for i, j := range v.Jobs {
		if j.Action != action {
			continue
		}
		if device == "" && j.Device == nil || j.Device != nil && j.Device.ID == device {
			return &v.Jobs[i]
		}
	}
	return nil
}

func (v employeeView) String() string {
	var b strings.Builder
	b.WriteString(v.State)
	for _, j := range v.Jobs {
		dev := ""
		if j.Device != nil {
			dev = "@" + j.Device.ID
		}
		b.WriteString("\n  " + j.Action + dev + " " + string(j.State) + " attempts=" + itoa(j.Attempts) + " " + j.LastError)
	}
	return b.String()
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// waitJob polls the admin API until the job with action on device is in state.
func waitJob(t *testing.T, tn *testenv.Tenant, id, action, device string, state identity.JobState, within time.Duration) *identity.Job {
	t.Helper()
	var last employeeView
	var got *identity.Job
	deadline := time.Now().Add(within)
	for {
		last = employee(t, tn, id)
		if got = last.job(action, device); got != nil && got.State == state {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s on %q to be %s; employee: %s", within, action, device, state, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connect creates a connector through the admin API and returns the answer.
func connect(t *testing.T, tn *testenv.Tenant, typ, name string, cfg any) testenv.Response {
	t.Helper()
	r := tn.Admin("POST", "/connectors", map[string]any{"type": typ, "name": name, "config": cfg})
	if r.Status != http.StatusCreated {
		t.Fatalf("create %s connector: %d %s", typ, r.Status, r.Raw)
	}
	return r
}

// setPolicy replaces the tenant policy.
func setPolicy(t *testing.T, tn *testenv.Tenant, p map[string]any) {
	t.Helper()
	if r := tn.Admin("PUT", "/policy", p); r.Status != http.StatusOK {
		t.Fatalf("policy: %d %s", r.Status, r.Raw)
	}
}

// trusting returns an HTTP client that trusts the certificates of the given TLS test servers.
func trusting(servers ...*httptest.Server) *http.Client {
	pool := x509.NewCertPool()
	for _, s := range servers {
		pool.AddCert(s.Certificate())
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
