package connectors_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm/intune/intunetest"
	"github.com/offboard/offboard/mdm/webhook"
)

const hookSecret = "0123456789abcdef-receiver-secret"

// receiver is a webhook endpoint that checks signatures and records deliveries.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []map[string]any
	bad int
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if !webhook.Verify(hookSecret, body, r.Header.Get(webhook.HeaderSignature)) {
			rc.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		if ev["action"] != "ping" {
			rc.got = append(rc.got, ev)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) deliveries() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// unreachable returns an https URL on which nothing listens.
func unreachable(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr
}

// hanging is an MDM that accepts connections and never answers, until the test ends.
func hanging(t *testing.T) *httptest.Server {
	stop := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv
}

type healthView struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

func TestABrokenConnectorIsShownUnhealthyAndBlocksNothing(t *testing.T) {
	graph := intunetest.New(t)
	hang := hanging(t)
	rc := newReceiver(t)
	env := testenv.Start(t, testenv.Options{ConnectorClient: trusting(graph.Server(), hang)})
	acme := env.CreateTenant("acme", 5)

	connect(t, acme, "intune", "bad-credentials", map[string]any{"tenantId": intunetest.TenantID, "clientId": intunetest.ClientID,
		"clientSecret": "an-expired-client-secret", "mode": "retire", "graphUrl": graph.URL(), "loginUrl": graph.URL()})
	connect(t, acme, "jamf", "unreachable", map[string]any{"url": unreachable(t), "clientId": "c", "clientSecret": "jamf-secret-value",
		"appId": 1, "groupId": 2})
	connect(t, acme, "workspaceone", "hanging", map[string]any{"url": hang.URL, "tenantCode": "ws1-api-key",
		"auth": "basic", "username": "svc", "password": "ws1-password-value"})
	connect(t, acme, "webhook", "hr-webhook", map[string]any{"url": rc.srv.URL, "secret": hookSecret})

	for name, want := range map[string]bool{"bad-credentials": false, "unreachable": false, "hr-webhook": true} {
		r := acme.Admin("POST", "/connectors/"+name+"/check", nil)
		var h healthView
		_ = json.Unmarshal(r.Raw, &h)
		if r.Status != http.StatusOK || h.OK != want || !want && h.Error == "" {
			t.Fatalf("check %s: %d %s, want ok=%v", name, r.Status, r.Raw, want)
		}
		if strings.Contains(string(r.Raw), "an-expired-client-secret") || strings.Contains(string(r.Raw), "jamf-secret-value") {
			t.Fatalf("check %s shows a secret: %s", name, r.Raw)
		}
	}
	var list struct {
		Connectors []struct {
			Name   string      `json:"name"`
			Health *healthView `json:"health"`
		} `json:"connectors"`
	}
	_ = json.Unmarshal(acme.Admin("GET", "/connectors", nil).Raw, &list)
	shown := map[string]string{}
	for _, c := range list.Connectors {
		if c.Health != nil {
			shown[c.Name] = map[bool]string{true: "healthy", false: "unhealthy"}[c.Health.OK]
		}
	}
	if shown["bad-credentials"] != "unhealthy" || shown["unreachable"] != "unhealthy" || shown["hr-webhook"] != "healthy" {
		t.Fatalf("GET /connectors shows health %v", shown)
	}

	// With one MDM refusing its credentials, one unreachable and one that never answers, SCIM
	// answers at once and the webhook still delivers within a second.
	start := time.Now()
	emp := hire(t, acme, "jane.doe@example.com", "jane.doe@example.com", "ext-1")
	deactivate(t, acme, emp)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("SCIM took %s", took)
	}
	testenv.Eventually(t, 2*time.Second, "the webhook delivery", func() bool { return rc.deliveries() == 1 })
	waitJob(t, acme, emp, identity.ActionWipeApp, "", identity.JobDone, 2*time.Second)
	if r := acme.SCIM("GET", "/Users/"+emp, nil); r.Status != http.StatusOK {
		t.Fatalf("SCIM GET while the MDMs are broken: %d", r.Status)
	}
	v := employee(t, acme, emp)
	if v.State != string(identity.StateOffboarded) {
		t.Fatalf("state %s", v.State)
	}
	for _, j := range v.Jobs {
		if j.Action == identity.ActionDiscover && j.State == identity.JobDone {
			t.Errorf("a broken connector's dispatch is done: %+v", j)
		}
	}
}
