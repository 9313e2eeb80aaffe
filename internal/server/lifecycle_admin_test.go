package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/internal/testenv"
)

var commandUUID = regexp.MustCompile(`<key>CommandUUID</key>\s*<string>([^<]+)</string>`)

// fakeNanoMDM answers NanoMDM's enqueue API and records the commands per device.
type fakeNanoMDM struct {
	srv  *httptest.Server
	mu   sync.Mutex
	cmds map[string][]string // udid -> request types, in order
}

func newFakeNanoMDM(t *testing.T) *fakeNanoMDM {
	f := &fakeNanoMDM{cmds: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		udid, ok := strings.CutPrefix(r.URL.Path, "/v1/enqueue/")
		if !ok || r.Method != http.MethodPut {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		kind := "other"
		for _, k := range []string{"EraseDevice", "RemoveApplication"} {
			if strings.Contains(string(body), k) {
				kind = k
			}
		}
		f.mu.Lock()
		f.cmds[udid] = append(f.cmds[udid], kind)
		f.mu.Unlock()
		uuid := ""
		if m := commandUUID.FindStringSubmatch(string(body)); m != nil {
			uuid = m[1]
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"status": map[string]any{udid: map[string]any{"push_result": "ok"}}, "command_uuid": uuid, "request_type": kind,
		})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeNanoMDM) commands(udid string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds[udid]...)
}

func connectNanoMDM(t *testing.T, tn *testenv.Tenant, f *fakeNanoMDM) string {
	t.Helper()
	r := tn.Admin("POST", "/connectors", map[string]any{"type": "nanomdm", "name": "apple",
		"config": map[string]any{"url": f.srv.URL, "apiKey": "nanomdm-api-key", "appBundleId": "ch.threema.work.iapp"}})
	if r.Status != 201 {
		t.Fatalf("nanomdm connector: %d %s", r.Status, r.Raw)
	}
	return r.JSON["id"].(string)
}

func setPolicy(t *testing.T, tn *testenv.Tenant, p map[string]any) {
	t.Helper()
	if r := tn.Admin("PUT", "/policy", p); r.Status != 200 {
		t.Fatalf("policy: %d %s", r.Status, r.Raw)
	}
}

func hireUser(t *testing.T, tn *testenv.Tenant, name string) string {
	t.Helper()
	r := tn.SCIM("POST", "/Users", entraUser(name, "ext-"+name))
	if r.Status != 201 {
		t.Fatalf("create %s: %d %s", name, r.Status, r.Raw)
	}
	return r.JSON["id"].(string)
}

func deactivateUser(t *testing.T, tn *testenv.Tenant, id string) {
	t.Helper()
	if r := patchActive(tn, id, false); r.Status >= 300 {
		t.Fatalf("deactivate: %d %s", r.Status, r.Raw)
	}
}

// jobsOf returns an employee's jobs by action (and device, for device jobs).
func jobsOf(t *testing.T, tn *testenv.Tenant, id string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, raw := range employee(t, tn, id)["jobs"].([]any) {
		j := raw.(map[string]any)
		key := j["action"].(string)
		if d, ok := j["device"].(map[string]any); ok {
			key += "@" + d["id"].(string)
		}
		out[key] = j
	}
	return out
}

func jobState(t *testing.T, tn *testenv.Tenant, id, key string) string {
	t.Helper()
	j := jobsOf(t, tn, id)[key]
	if j == nil {
		return ""
	}
	return j["state"].(string)
}

func listJobs(t *testing.T, tn *testenv.Tenant, state string) []map[string]any {
	t.Helper()
	r := tn.Admin("GET", "/jobs?state="+state, nil)
	if r.Status != 200 {
		t.Fatalf("jobs: %d %s", r.Status, r.Raw)
	}
	var out []map[string]any
	for _, j := range r.JSON["jobs"].([]any) {
		out = append(out, j.(map[string]any))
	}
	return out
}

func auditEntries(t *testing.T, tn *testenv.Tenant) []map[string]any {
	t.Helper()
	r := tn.Admin("GET", "/audit?limit=5000", nil)
	if r.Status != 200 {
		t.Fatalf("audit: %d %s", r.Status, r.Raw)
	}
	var out []map[string]any
	for _, e := range r.JSON["entries"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

func auditFor(entries []map[string]any, action, target string) []map[string]any {
	var out []map[string]any
	for _, e := range entries {
		if e["action"] == action && (target == "" || strings.HasPrefix(fmt.Sprint(e["target"]), target)) {
			out = append(out, e)
		}
	}
	return out
}

func TestTheMassOffboardingBrakeHoldsDeviceEffectsUntilAnAdminDecides(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 20)
	rc := newReceiver(t)
	connectWebhook(t, acme, rc)
	setPolicy(t, acme, map[string]any{"noticePeriod": "0s", "wipe": "app", "brakeThreshold": 2, "brakeWindow": "1h"})

	var ids []string
	for i := range 5 {
		ids = append(ids, hireUser(t, acme, fmt.Sprintf("u%d@acme.test", i)))
	}
	for _, id := range ids {
		deactivateUser(t, acme, id)
	}
	testenv.Eventually(t, 5*time.Second, "the two leavers under the threshold delivered", func() bool { return len(rc.deliveries()) == 2 })
	for i, id := range ids {
		want := "done"
		if i >= 2 {
			want = "braked"
		}
		if s := jobState(t, acme, id, "wipe_app"); s != want {
			t.Fatalf("leaver %d: webhook job %s, want %s", i, s, want)
		}
		// The brake holds device effects only: lock-out, ID and seat happen at once.
		if e := employee(t, acme, id); e["state"] != "offboarded" || e["workIdStatus"] != "revoked" || e["seat"] != false {
			t.Fatalf("leaver %d: %v %v %v", i, e["state"], e["workIdStatus"], e["seat"])
		}
	}
	if held := listJobs(t, acme, "braked"); len(held) != 3 || held[0]["employee"] == nil || held[0]["userName"] == nil {
		t.Fatalf("braked jobs listed: %v", held)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rc.deliveries()); n != 2 {
		t.Fatalf("%d deliveries while braked, want 2", n)
	}

	r := acme.Admin("POST", "/brake/confirm", nil)
	if r.Status != 200 || r.JSON["jobs"] != float64(3) {
		t.Fatalf("confirm: %d %s", r.Status, r.Raw)
	}
	testenv.Eventually(t, 5*time.Second, "the confirmed deliveries", func() bool { return len(rc.deliveries()) == 5 })
	if held := listJobs(t, acme, "braked"); len(held) != 0 {
		t.Fatalf("still braked: %v", held)
	}

	// The confirmation reset the count: two more leavers pass, the third is held and cancelled.
	var more []string
	for i := range 3 {
		more = append(more, hireUser(t, acme, fmt.Sprintf("v%d@acme.test", i)))
	}
	for _, id := range more {
		deactivateUser(t, acme, id)
	}
	testenv.Eventually(t, 5*time.Second, "two more deliveries", func() bool { return len(rc.deliveries()) == 7 })
	if s := jobState(t, acme, more[2], "wipe_app"); s != "braked" {
		t.Fatalf("third leaver after the reset: %s", s)
	}
	r = acme.Admin("POST", "/brake/cancel", nil)
	if r.Status != 200 || r.JSON["jobs"] != float64(1) {
		t.Fatalf("cancel: %d %s", r.Status, r.Raw)
	}
	j := jobsOf(t, acme, more[2])["wipe_app"]
	if j["state"] != "cancelled" || !strings.Contains(fmt.Sprint(j["lastError"]), "brake") {
		t.Fatalf("cancelled job: %v", j)
	}
	if cancelled := listJobs(t, acme, "cancelled"); len(cancelled) != 1 {
		t.Fatalf("cancelled jobs listed: %v", cancelled)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rc.deliveries()); n != 7 {
		t.Fatalf("%d deliveries after the cancel, want 7", n)
	}

	audit := auditEntries(t, acme)
	for _, action := range []string{"brake.confirmed", "brake.cancelled"} {
		es := auditFor(audit, action, "")
		if len(es) != 1 || es[0]["actor"] != "operator" || es[0]["at"] == nil {
			t.Fatalf("audit %s: %v", action, es)
		}
	}
}

func TestAFullDeviceWipeWaitsForAnAdminsApproval(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 10)
	mdmFake := newFakeNanoMDM(t)
	conn := connectNanoMDM(t, acme, mdmFake)
	setPolicy(t, acme, map[string]any{"noticePeriod": "0s", "wipe": "device", "brakeThreshold": 0})
	attach := func(t *testing.T, id, udid, ownership string) {
		t.Helper()
		r := acme.Admin("POST", "/employees/"+id+"/devices", map[string]any{"connector": conn, "deviceId": udid, "ownership": ownership, "platform": "ios"})
		if r.Status != 201 {
			t.Fatalf("attach: %d %s", r.Status, r.Raw)
		}
	}
	waitState := func(t *testing.T, id, key, want string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, key+" "+want, func() bool { return jobState(t, acme, id, key) == want })
	}

	t.Run("an approved full wipe of a company device runs", func(t *testing.T) {
		id := hireUser(t, acme, "approved@acme.test")
		attach(t, id, "UDID-COMPANY-1", "company")
		deactivateUser(t, acme, id)
		waitState(t, id, "wipe_device@UDID-COMPANY-1", "approval")
		time.Sleep(200 * time.Millisecond)
		if cmds := mdmFake.commands("UDID-COMPANY-1"); len(cmds) != 0 {
			t.Fatalf("commands before the approval: %v", cmds)
		}
		if rows := listJobs(t, acme, "approval"); len(rows) != 1 {
			t.Fatalf("jobs waiting for approval: %v", rows)
		}
		job := jobsOf(t, acme, id)["wipe_device@UDID-COMPANY-1"]["id"].(string)
		if r := acme.Admin("POST", "/employees/"+id+"/jobs/"+job+"/approve", nil); r.Status != 200 || r.JSON["state"] != "pending" {
			t.Fatalf("approve: %d %s", r.Status, r.Raw)
		}
		testenv.Eventually(t, 5*time.Second, "EraseDevice enqueued", func() bool {
			return len(mdmFake.commands("UDID-COMPANY-1")) == 1
		})
		if cmds := mdmFake.commands("UDID-COMPANY-1"); cmds[0] != "EraseDevice" {
			t.Fatalf("commands %v", cmds)
		}
		waitState(t, id, "wipe_device@UDID-COMPANY-1", "waiting") // until the device reports
		if r := acme.Admin("POST", "/employees/"+id+"/jobs/"+job+"/approve", nil); r.Status != 409 {
			t.Fatalf("approving twice: %d %s", r.Status, r.Raw)
		}
	})

	t.Run("a rejected full wipe is cancelled and a retry asks for approval again", func(t *testing.T) {
		id := hireUser(t, acme, "rejected@acme.test")
		attach(t, id, "UDID-COMPANY-2", "company")
		attach(t, id, "UDID-PERSONAL-2", "personal")
		deactivateUser(t, acme, id)
		waitState(t, id, "wipe_device@UDID-COMPANY-2", "approval")
		// A personal device only loses the app, without an approval.
		testenv.Eventually(t, 5*time.Second, "RemoveApplication on the personal device", func() bool {
			c := mdmFake.commands("UDID-PERSONAL-2")
			return len(c) == 1 && c[0] == "RemoveApplication"
		})
		job := jobsOf(t, acme, id)["wipe_device@UDID-COMPANY-2"]["id"].(string)
		if r := acme.Admin("POST", "/employees/"+id+"/jobs/"+job+"/reject", nil); r.Status != 200 || r.JSON["state"] != "cancelled" {
			t.Fatalf("reject: %d %s", r.Status, r.Raw)
		}
		if r := acme.Admin("POST", "/employees/"+id+"/jobs/"+job+"/retry", nil); r.Status != 200 || r.JSON["state"] != "approval" {
			t.Fatalf("retry of a rejected full wipe: %d %s, want it back in approval", r.Status, r.Raw)
		}
		time.Sleep(300 * time.Millisecond)
		if cmds := mdmFake.commands("UDID-COMPANY-2"); len(cmds) != 0 {
			t.Fatalf("a rejected full wipe ran: %v", cmds)
		}
	})

	t.Run("a device attached after the offboarding gets its job at once", func(t *testing.T) {
		id := hireUser(t, acme, "late@acme.test")
		deactivateUser(t, acme, id)
		waitState(t, id, "discover_devices", "done")
		attach(t, id, "UDID-COMPANY-3", "company")
		waitState(t, id, "wipe_device@UDID-COMPANY-3", "approval")
	})

	t.Run("a braked full wipe still needs its approval after the brake is confirmed", func(t *testing.T) {
		setPolicy(t, acme, map[string]any{"brakeThreshold": 1, "brakeWindow": "1h"})
		a, b := hireUser(t, acme, "brake-a@acme.test"), hireUser(t, acme, "brake-b@acme.test")
		attach(t, b, "UDID-COMPANY-4", "company")
		deactivateUser(t, acme, a)
		deactivateUser(t, acme, b)
		waitState(t, b, "discover_devices", "braked")
		if r := acme.Admin("POST", "/brake/confirm", nil); r.Status != 200 {
			t.Fatalf("confirm: %d %s", r.Status, r.Raw)
		}
		waitState(t, b, "wipe_device@UDID-COMPANY-4", "approval")
		time.Sleep(300 * time.Millisecond)
		if cmds := mdmFake.commands("UDID-COMPANY-4"); len(cmds) != 0 {
			t.Fatalf("a full wipe ran without approval: %v", cmds)
		}
	})

	audit := auditEntries(t, acme)
	for _, action := range []string{"job.approved", "job.rejected", "employee.device_attached"} {
		if len(auditFor(audit, action, "")) == 0 {
			t.Errorf("no audit entry %s", action)
		}
	}
}

// TestABrakedWebhookFullWipeNeedsItsApprovalAfterTheBrake: with the device policy the webhook
// event is a full wipe waiting for approval; the brake must not turn it into one that runs.
func TestABrakedWebhookFullWipeNeedsItsApprovalAfterTheBrake(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 10)
	rc := newReceiver(t)
	connectWebhook(t, acme, rc)
	setPolicy(t, acme, map[string]any{"noticePeriod": "0s", "wipe": "device", "brakeThreshold": 1, "brakeWindow": "1h"})
	a, b := hireUser(t, acme, "a@acme.test"), hireUser(t, acme, "b@acme.test")
	deactivateUser(t, acme, a)
	deactivateUser(t, acme, b)
	if s := jobState(t, acme, a, "wipe_device"); s != "approval" {
		t.Fatalf("first leaver: %s", s)
	}
	if s := jobState(t, acme, b, "wipe_device"); s != "braked" {
		t.Fatalf("second leaver: %s", s)
	}
	if r := acme.Admin("POST", "/brake/confirm", nil); r.Status != 200 {
		t.Fatalf("confirm: %d", r.Status)
	}
	if s := jobState(t, acme, b, "wipe_device"); s != "approval" {
		t.Fatalf("after the brake: %s, want approval", s)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(rc.deliveries()); n != 0 {
		t.Fatalf("%d full wipes delivered without approval", n)
	}
}
