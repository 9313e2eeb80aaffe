package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm/webhook"
)

const hookSecret = "0123456789abcdef-secret"

// receiver is a webhook endpoint that checks signatures and records deliveries.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []map[string]any
	bad int
	at  []time.Time
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if !webhook.Verify(hookSecret, body, r.Header.Get("X-Offboard-Signature")) {
			rc.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		if ev["action"] == "ping" {
			return
		}
		rc.got = append(rc.got, ev)
		rc.at = append(rc.at, time.Now())
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) deliveries() []map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string]any(nil), rc.got...)
}

func connectWebhook(t *testing.T, tn *testenv.Tenant, rc *receiver) {
	t.Helper()
	r := tn.Admin("POST", "/connectors", map[string]any{"type": "webhook", "name": "hr-mdm", "config": map[string]any{"url": rc.srv.URL, "secret": hookSecret}})
	if r.Status != 201 {
		t.Fatalf("connector: %d %s", r.Status, r.Raw)
	}
	if _, leaked := r.JSON["config"].(map[string]any)["secret"]; leaked {
		t.Fatal("the webhook secret is returned by the API")
	}
}

func patchActive(tn *testenv.Tenant, id string, value any) testenv.Response {
	return tn.SCIM("PATCH", "/Users/"+id, map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "Replace", "path": "active", "value": value}},
	})
}

func check(env *testenv.Env, user, pass string) (int, map[string]any) {
	req, _ := http.NewRequest("POST", env.URL+"/messenger/v1/check", nil)
	req.SetBasicAuth(user, pass)
	resp, err := env.HTTP.Do(req)
	if err != nil {
		env.T.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func employee(t *testing.T, tn *testenv.Tenant, id string) map[string]any {
	t.Helper()
	r := tn.Admin("GET", "/employees/"+id, nil)
	if r.Status != 200 {
		t.Fatalf("employee: %d %s", r.Status, r.Raw)
	}
	return r.JSON
}

func seats(t *testing.T, tn *testenv.Tenant) map[string]any {
	t.Helper()
	return tn.Admin("GET", "/seats", nil).JSON
}

func credentials(t *testing.T, tn *testenv.Tenant, id string) (string, string) {
	t.Helper()
	r := tn.Admin("POST", "/employees/"+id+"/credentials", nil)
	if r.Status != 201 {
		t.Fatalf("credentials: %d %s", r.Status, r.Raw)
	}
	return r.JSON["username"].(string), r.JSON["password"].(string)
}

func idStatus(t *testing.T, env *testenv.Env, msgToken, workID string) (int, string) {
	r := env.Do("GET", "/messenger/v1/ids/"+workID, msgToken, nil)
	s, _ := r.JSON["status"].(string)
	return r.Status, s
}

func TestAJoinerIsLicensedAndALeaverIsLockedOutRevokedFreedAndWiped(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 5)
	rc := newReceiver(t)
	connectWebhook(t, acme, rc)
	msg := acme.Admin("POST", "/tokens", map[string]any{"scope": "messenger"}).JSON["token"].(string)

	created := acme.SCIM("POST", "/Users", entraUser("leaver@contoso.com", "ext-1"))
	if created.Status != 201 {
		t.Fatalf("create: %d %s", created.Status, created.Raw)
	}
	id := created.JSON["id"].(string)
	e := employee(t, acme, id)
	workID := e["workId"].(string)
	if e["state"] != "active" || len(workID) != 8 || e["seat"] != true {
		t.Fatalf("joiner: %v", e)
	}
	if s := seats(t, acme); s["used"] != float64(1) || s["free"] != float64(4) {
		t.Fatalf("seats after join: %v", s)
	}
	user, pass := credentials(t, acme, id)
	if code, res := check(env, user, pass); code != 200 || res["status"] != "active" || res["workId"] != workID {
		t.Fatalf("check before leaving: %d %v", code, res)
	}
	if code, st := idStatus(t, env, msg, workID); code != 200 || st != "active" {
		t.Fatalf("id status: %d %s", code, st)
	}

	start := time.Now()
	if r := patchActive(acme, id, false); r.Status != 200 && r.Status != 204 {
		t.Fatalf("deactivate: %d %s", r.Status, r.Raw)
	}
	// The lock-out is in the same write as the deactivation.
	if code, _ := check(env, user, pass); code != 401 {
		t.Fatalf("check after leaving: %d, want 401", code)
	}
	if _, st := idStatus(t, env, msg, workID); st != "revoked" {
		t.Fatalf("id after leaving: %s", st)
	}
	if s := seats(t, acme); s["used"] != float64(0) {
		t.Fatalf("seat not freed: %v", s)
	}
	testenv.Eventually(t, 5*time.Second, "the signed webhook", func() bool { return len(rc.deliveries()) == 1 })
	// Latency is a benchmark (BENCHMARKS.md), not a test condition: a loaded CI machine must not
	// fail this test. Record it for the log.
	t.Logf("webhook delivered %s after the deactivation was sent", rc.at[0].Sub(start))
	ev := rc.deliveries()[0]
	if ev["action"] != "wipe_app" || ev["workId"] != workID || ev["id"] == "" {
		t.Fatalf("webhook body: %v", ev)
	}
	if emp, _ := ev["employee"].(map[string]any); emp["userName"] != "leaver@contoso.com" || emp["externalId"] != "ext-1" {
		t.Fatalf("webhook employee: %v", ev["employee"])
	}
	testenv.Eventually(t, 5*time.Second, "every job done", func() bool {
		e = employee(t, acme, id)
		for _, j := range e["jobs"].([]any) {
			if j.(map[string]any)["state"] != "done" {
				return false
			}
		}
		return e["state"] == "offboarded"
	})

	// Re-hire: a new messenger ID; the old one stays revoked forever.
	if r := patchActive(acme, id, true); r.Status != 200 && r.Status != 204 {
		t.Fatalf("reactivate: %d %s", r.Status, r.Raw)
	}
	e = employee(t, acme, id)
	newID, _ := e["workId"].(string)
	if e["state"] != "active" || newID == workID || len(newID) != 8 {
		t.Fatalf("rehire: state %v id %q (old %q)", e["state"], newID, workID)
	}
	if _, st := idStatus(t, env, msg, workID); st != "revoked" {
		t.Fatalf("old id after rehire: %s", st)
	}
	if code, _ := check(env, user, pass); code != 401 {
		t.Fatalf("old credentials after rehire: %d", code)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rc.deliveries()); n != 1 {
		t.Fatalf("%d deliveries, want exactly 1", n)
	}
}

func TestANoticePeriodRestrictsKeepsTheSeatAndCanBeUndone(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 5)
	rc := newReceiver(t)
	connectWebhook(t, acme, rc)
	if r := acme.Admin("PUT", "/policy", map[string]any{"noticePeriod": "336h", "wipe": "app"}); r.Status != 200 {
		t.Fatalf("policy: %d %s", r.Status, r.Raw)
	}
	id := acme.SCIM("POST", "/Users", entraUser("notice@contoso.com", "n1")).JSON["id"].(string)
	user, pass := credentials(t, acme, id)

	if r := patchActive(acme, id, false); r.Status >= 300 {
		t.Fatalf("deactivate: %d %s", r.Status, r.Raw)
	}
	e := employee(t, acme, id)
	if e["state"] != "restricted" || e["seat"] != true || e["restrictedUntil"] == nil {
		t.Fatalf("restricted: %v", e)
	}
	code, res := check(env, user, pass)
	if code != 200 || res["status"] != "restricted" || len(res["restrictions"].([]any)) == 0 {
		t.Fatalf("check while restricted: %d %v", code, res)
	}
	if s := seats(t, acme); s["used"] != float64(1) {
		t.Fatalf("seat during notice: %v", s)
	}

	if r := patchActive(acme, id, true); r.Status >= 300 {
		t.Fatalf("reactivate: %d %s", r.Status, r.Raw)
	}
	if e := employee(t, acme, id); e["state"] != "active" || e["workId"] == nil {
		t.Fatalf("restored: %v", e)
	}
	if code, res := check(env, user, pass); code != 200 || res["status"] != "active" {
		t.Fatalf("check after restore: %d %v", code, res)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.deliveries()); n != 0 {
		t.Fatalf("%d wipes during a notice period, want none", n)
	}
}

func TestNoticePeriodEndAndLeaveDateOffboardOnTheClock(t *testing.T) {
	clock := testenv.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	env := testenv.Start(t, testenv.Options{Clock: clock, NoRunner: true})
	acme := env.CreateTenant("acme", 5)
	if r := acme.Admin("PUT", "/policy", map[string]any{"noticePeriod": "72h", "wipe": "none"}); r.Status != 200 {
		t.Fatalf("policy: %d", r.Status)
	}
	notice := acme.SCIM("POST", "/Users", entraUser("n@x.com", "n")).JSON["id"].(string)
	leaver := entraUser("l@x.com", "l")
	leaver["urn:ietf:params:scim:schemas:extension:offboard:2.0:User"] = map[string]any{"leaveDate": "2026-03-02T17:00:00Z"}
	leaverID := acme.SCIM("POST", "/Users", leaver).JSON["id"].(string)
	patchActive(acme, notice, false)

	process := func() {
		for _, id := range []string{notice, leaverID} {
			if err := env.Runner.Process(t.Context(), acme.ID, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	clock.Advance(24 * time.Hour) // 2026-03-02 09:00
	process()
	if s := employee(t, acme, leaverID)["state"]; s != "active" {
		t.Fatalf("before the leave date: %v", s)
	}
	clock.Advance(9 * time.Hour) // 18:00, past the leave date
	process()
	if s := employee(t, acme, leaverID)["state"]; s != "offboarded" {
		t.Fatalf("after the leave date: %v", s)
	}
	if s := employee(t, acme, notice)["state"]; s != "restricted" {
		t.Fatalf("during notice: %v", s)
	}
	clock.Advance(48 * time.Hour)
	process()
	if s := employee(t, acme, notice)["state"]; s != "offboarded" {
		t.Fatalf("after notice: %v", s)
	}
	if s := seats(t, acme); s["used"] != float64(0) {
		t.Fatalf("seats: %v", s)
	}
}

func TestAJoinerWithoutAFreeSeatWaitsAndIsServedFirstCome(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 1)
	first := acme.SCIM("POST", "/Users", entraUser("first@x.com", "1")).JSON["id"].(string)
	second := acme.SCIM("POST", "/Users", entraUser("second@x.com", "2"))
	if second.Status != 201 {
		t.Fatalf("joiner without seat must still be created: %d", second.Status)
	}
	third := acme.SCIM("POST", "/Users", entraUser("third@x.com", "3")).JSON["id"].(string)
	secondID := second.JSON["id"].(string)
	if s := employee(t, acme, secondID)["state"]; s != "pending_seat" {
		t.Fatalf("second: %v", s)
	}
	if s := seats(t, acme); s["waiting"] != float64(2) {
		t.Fatalf("seats: %v", s)
	}
	patchActive(acme, first, false)
	testenv.Eventually(t, 5*time.Second, "the first waiting joiner gets the seat", func() bool {
		return employee(t, acme, secondID)["state"] == "active"
	})
	if s := employee(t, acme, third)["state"]; s != "pending_seat" {
		t.Fatalf("third jumped the queue: %v", s)
	}
	if es := auditFor(auditEntries(t, acme), "employee.licensed", secondID); len(es) != 1 || es[0]["actor"] != "system" {
		t.Fatalf("the waiting joiner's licensing is audited once by the system: %v", es)
	}
	if r := acme.Admin("PATCH", "/", map[string]any{"seats": 2}); r.Status != 200 {
		t.Fatalf("resize: %d %s", r.Status, r.Raw)
	}
	testenv.Eventually(t, 5*time.Second, "the next joiner after a resize", func() bool {
		return employee(t, acme, third)["state"] == "active"
	})
}
