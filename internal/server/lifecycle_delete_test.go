package server_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/testenv"
)

func TestADeleteOffboardsFreesTheUserNameAndKeepsTheHistory(t *testing.T) {
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	env := testenv.Start(t, testenv.Options{Clock: clock})
	acme := env.CreateTenant("acme", 2)
	rc := newReceiver(t)
	connectWebhook(t, acme, rc)
	msg := acme.Admin("POST", "/tokens", map[string]any{"scope": "messenger"}).JSON["token"].(string)

	id := hireUser(t, acme, "gone@acme.test")
	oldID := employee(t, acme, id)["workId"].(string)
	if r := acme.SCIM("DELETE", "/Users/"+id, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Raw)
	}
	if r := acme.SCIM("GET", "/Users/"+id, nil); r.Status != http.StatusNotFound {
		t.Fatalf("get after delete: %d", r.Status)
	}
	if r := acme.SCIM("GET", "/Users?filter="+url.QueryEscape(`userName eq "gone@acme.test"`), nil); r.JSON["totalResults"] != float64(0) {
		t.Fatalf("filter after delete: %s", r.Raw)
	}
	if r := acme.SCIM("DELETE", "/Users/"+id, nil); r.Status != http.StatusNotFound {
		t.Fatalf("second delete: %d", r.Status)
	}
	testenv.Eventually(t, 5*time.Second, "the wipe of the deleted user", func() bool { return len(rc.deliveries()) == 1 })

	// The history stays readable by the admin.
	e := employee(t, acme, id)
	if e["state"] != "offboarded" || e["deleted"] == nil || e["workIdStatus"] != "revoked" || e["seat"] != false {
		t.Fatalf("deleted employee: %v", e)
	}
	deleted, _ := time.Parse(time.RFC3339Nano, e["deleted"].(string))
	retain, _ := time.Parse(time.RFC3339Nano, e["retainUntil"].(string))
	if got := retain.Sub(deleted); got != lifecycle.DefaultRetention {
		t.Fatalf("retained for %s, want %s", got, lifecycle.DefaultRetention)
	}
	kinds := map[string]bool{}
	for _, ev := range e["timeline"].([]any) {
		kinds[ev.(map[string]any)["kind"].(string)] = true
	}
	if !kinds["deleted"] || !kinds["offboarded"] || !kinds["licensed"] {
		t.Fatalf("timeline kinds %v", kinds)
	}

	// The userName is free again; the newcomer is a new person with a new ID.
	again := hireUser(t, acme, "Gone@acme.test")
	if again == id {
		t.Fatal("the deleted resource came back")
	}
	if newID := employee(t, acme, again)["workId"]; newID == oldID || newID == nil {
		t.Fatalf("new person's ID %v, old %s", newID, oldID)
	}

	// After the retention the history is purged; the ID stays a tombstone.
	clock.Advance(lifecycle.DefaultRetention - time.Hour)
	if err := env.Runner.Housekeep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := acme.Admin("GET", "/employees/"+id, nil); r.Status != 200 {
		t.Fatalf("history purged before the retention ended: %d", r.Status)
	}
	clock.Advance(2 * time.Hour)
	if err := env.Runner.Housekeep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := acme.Admin("GET", "/employees/"+id, nil); r.Status != http.StatusNotFound {
		t.Fatalf("history after the retention: %d %s", r.Status, r.Raw)
	}
	if r := acme.Admin("GET", "/employees/"+again, nil); r.Status != 200 {
		t.Fatalf("the living employee was purged: %d", r.Status)
	}
	if code, st := idStatus(t, env, msg, oldID); code != 200 || st != "revoked" {
		t.Fatalf("the purged employee's ID: %d %s, want a revoked tombstone", code, st)
	}
	if es := auditFor(auditEntries(t, acme), "employee.purged", id); len(es) != 1 || es[0]["actor"] != "system" {
		t.Fatalf("purge audit: %v", es)
	}
}

func TestADeleteEndsANoticePeriodAndDropsAWaitingJoiner(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 1)
	setPolicy(t, acme, map[string]any{"noticePeriod": "336h", "wipe": "none"})
	restricted := hireUser(t, acme, "notice@acme.test")
	waiting := hireUser(t, acme, "waiting@acme.test")
	deactivateUser(t, acme, restricted)
	if s := employee(t, acme, restricted)["state"]; s != "restricted" {
		t.Fatalf("restricted: %v", s)
	}
	if s := employee(t, acme, waiting)["state"]; s != "pending_seat" {
		t.Fatalf("waiting: %v", s)
	}
	if r := acme.SCIM("DELETE", "/Users/"+waiting, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete waiting: %d", r.Status)
	}
	if s := seats(t, acme); s["waiting"] != float64(0) {
		t.Fatalf("seat queue after deleting the waiting joiner: %v", s)
	}
	if r := acme.SCIM("DELETE", "/Users/"+restricted, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete restricted: %d", r.Status)
	}
	if e := employee(t, acme, restricted); e["state"] != "offboarded" || e["workIdStatus"] != "revoked" {
		t.Fatalf("deleted during notice: %v %v", e["state"], e["workIdStatus"])
	}
	if e := employee(t, acme, waiting); e["state"] != "inactive" {
		t.Fatalf("deleted while waiting: %v", e["state"])
	}
	if s := seats(t, acme); s["used"] != float64(0) {
		t.Fatalf("seats: %v", s)
	}
}

func TestTheAuditLogSaysWhoDidWhatWhenWithBeforeAndAfter(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 5)
	tenantAdmin := acme.Admin("POST", "/tokens", map[string]any{"scope": "admin"}).JSON
	adminToken, adminID := tenantAdmin["token"].(string), tenantAdmin["id"].(string)

	id := hireUser(t, acme, "audited@acme.test")
	deactivateUser(t, acme, id)
	if r := patchActive(acme, id, true); r.Status >= 300 {
		t.Fatalf("rehire: %d", r.Status)
	}
	if r := env.Do("POST", "/admin/v1/tenants/"+acme.ID+"/employees/"+id+"/credentials", adminToken, nil); r.Status != 201 {
		t.Fatalf("rotate as tenant admin: %d %s", r.Status, r.Raw)
	}
	if r := env.Do("PUT", "/admin/v1/tenants/"+acme.ID+"/policy", adminToken, map[string]any{"noticePeriod": "72h"}); r.Status != 200 {
		t.Fatalf("policy as tenant admin: %d %s", r.Status, r.Raw)
	}
	if r := acme.SCIM("DELETE", "/Users/"+id, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.Status)
	}

	entries := auditEntries(t, acme)
	var last time.Time
	for _, e := range entries {
		at, err := time.Parse(time.RFC3339Nano, e["at"].(string))
		if err != nil || at.Before(last) || e["id"] == nil || e["actor"] == "" {
			t.Fatalf("entry %v: not in order or incomplete", e)
		}
		last = at
	}
	scimActor := func(e map[string]any) bool { s, _ := e["actor"].(string); return len(s) > 6 && s[:6] == "token:" }
	transition := func(action string, nth int, before, after string) {
		t.Helper()
		es := auditFor(entries, action, id)
		if len(es) <= nth {
			t.Fatalf("no %s entry %d in %v", action, nth, entries)
		}
		e := es[nth]
		b, _ := e["before"].(map[string]any)
		a, _ := e["after"].(map[string]any)
		if !scimActor(e) || (before == "") != (b == nil) || before != "" && b["state"] != before || a["state"] != after {
			t.Fatalf("%s: actor %v before %v after %v, want %s -> %s by the SCIM token", action, e["actor"], b, a, before, after)
		}
	}
	// A joiner licensed in the hiring request is one entry with the outcome; only a joiner who
	// had to wait for a seat gets a later "employee.licensed" (see the seat queue test).
	transition("employee.hired", 0, "", "active")
	transition("employee.offboarded", 0, "active", "offboarded")
	transition("employee.hired", 1, "offboarded", "active")
	transition("employee.deleted", 0, "active", "offboarded")
	if es := auditFor(entries, "employee.licensed", id); len(es) != 0 {
		t.Fatalf("licensed entries for a joiner licensed at once: %v", es)
	}
	if es := auditFor(entries, "employee.credentials_rotated", id); len(es) != 1 || es[0]["actor"] != "token:"+adminID {
		t.Fatalf("rotation entry: %v (tenant admin token %s)", es, adminID)
	}
	es := auditFor(entries, "tenant.policy_changed", acme.ID)
	if len(es) != 1 || es[0]["actor"] != "token:"+adminID ||
		es[0]["before"].(map[string]any)["noticePeriod"] != "0s" || es[0]["after"].(map[string]any)["noticePeriod"] != "72h0m0s" {
		t.Fatalf("policy entry: %v", es)
	}
	if r := acme.Admin("DELETE", "/audit", nil); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE on the audit log: %d", r.Status)
	}
}
