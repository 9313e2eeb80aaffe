package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm/webhook"
)

// flakyHook is a webhook receiver whose answers the test scripts.
type flakyHook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	header http.Header
	calls  int
	ids    map[string]int
}

func newFlakyHook(t *testing.T) *flakyHook {
	h := &flakyHook{status: 200, ids: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !webhook.Verify(hookSecret, body, r.Header.Get(webhook.HeaderSignature)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.Contains(string(body), `"action":"ping"`) {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls++
		h.ids[r.Header.Get(webhook.HeaderDelivery)]++
		for k, v := range h.header {
			w.Header()[k] = v
		}
		w.WriteHeader(h.status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *flakyHook) answer(status int, header ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status, h.header = status, http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.header.Set(header[i], header[i+1])
	}
}

func (h *flakyHook) count() (calls, keys int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls, len(h.ids)
}

func connectHook(t *testing.T, tn *testenv.Tenant, url string) {
	t.Helper()
	r := tn.Admin("POST", "/connectors", map[string]any{"type": "webhook", "name": "hr-mdm", "config": map[string]any{"url": url, "secret": hookSecret}})
	if r.Status != 201 {
		t.Fatalf("connector: %d %s", r.Status, r.Raw)
	}
}

func nextAt(t *testing.T, j map[string]any) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, j["nextAt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// TestRetriesBackOffHonourRetryAfterAndGiveUpForAnAdminToRetry drives the runner step by step
// on an injected clock: no sleeps, every delay read from the job and skipped by the clock.
func TestRetriesBackOffHonourRetryAfterAndGiveUpForAnAdminToRetry(t *testing.T) {
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	// testenv's runner: backoff 100ms doubling up to 2s, five attempts.
	env := testenv.Start(t, testenv.Options{Clock: clock, NoRunner: true})
	acme := env.CreateTenant("acme", 5)
	hook := newFlakyHook(t)
	connectHook(t, acme, hook.srv.URL)
	id := hireUser(t, acme, "leaver@acme.test")
	deactivateUser(t, acme, id)
	ctx := context.Background()
	process := func() map[string]any {
		t.Helper()
		if err := env.Runner.Process(ctx, acme.ID, id); err != nil {
			t.Fatal(err)
		}
		return jobsOf(t, acme, id)["wipe_app"]
	}

	hook.answer(503, "Retry-After", "120")
	j := process()
	if j["state"] != "pending" || j["attempts"] != float64(1) {
		t.Fatalf("after a 503: %v", j)
	}
	if wait := nextAt(t, j).Sub(clock.Now()); wait < 120*time.Second {
		t.Fatalf("retry in %s, want at least the 120s Retry-After (above the 2s backoff cap)", wait)
	}
	clock.Advance(119 * time.Second)
	if j := process(); j["attempts"] != float64(1) {
		t.Fatalf("retried before Retry-After: %v", j)
	}

	hook.answer(503)
	for attempt := 2; attempt <= 5; attempt++ {
		clock.Advance(nextAt(t, j).Sub(clock.Now()) + time.Millisecond)
		j = process()
		if j["attempts"] != float64(attempt) {
			t.Fatalf("attempt %d: %v", attempt, j)
		}
		if attempt == 5 {
			break
		}
		// Exponential with jitter: 100ms << (n-1), capped at 2s, drawn from [d/2, d].
		d := min(100*time.Millisecond<<(attempt-1), 2*time.Second)
		if wait := nextAt(t, j).Sub(clock.Now()); wait < d/2 || wait > d {
			t.Fatalf("attempt %d: retry in %s, want within [%s, %s]", attempt, wait, d/2, d)
		}
	}
	if j["state"] != "failed" || !strings.Contains(j["lastError"].(string), "503") {
		t.Fatalf("after the last attempt: %v", j)
	}
	if rows := listJobs(t, acme, "failed"); len(rows) != 1 || rows[0]["employee"] != id {
		t.Fatalf("failed jobs: %v", rows)
	}
	clock.Advance(time.Hour)
	process()
	if calls, _ := hook.count(); calls != 5 {
		t.Fatalf("%d calls, want 5: a failed job must wait for an admin", calls)
	}

	hook.answer(200)
	job := j["id"].(string)
	r := acme.Admin("POST", "/employees/"+id+"/jobs/"+job+"/retry", nil)
	if r.Status != 200 || r.JSON["state"] != "pending" || r.JSON["attempts"] != float64(0) {
		t.Fatalf("retry: %d %s", r.Status, r.Raw)
	}
	if j := process(); j["state"] != "done" {
		t.Fatalf("after the retry: %v", j)
	}
	if calls, keys := hook.count(); calls != 6 || keys != 1 {
		t.Fatalf("%d calls under %d keys, want 6 under one key", calls, keys)
	}
	if r := acme.Admin("POST", "/employees/"+id+"/jobs/"+job+"/retry", nil); r.Status != 409 {
		t.Fatalf("retrying a done job: %d %s", r.Status, r.Raw)
	}
	if es := auditFor(auditEntries(t, acme), "job.retried", id); len(es) != 1 ||
		es[0]["before"].(map[string]any)["state"] != "failed" || es[0]["after"].(map[string]any)["state"] != "pending" {
		t.Fatalf("audit of the retry: %v", es)
	}
}

func TestAPermanentRefusalFailsAtOnce(t *testing.T) {
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	env := testenv.Start(t, testenv.Options{Clock: clock, NoRunner: true})
	acme := env.CreateTenant("acme", 5)
	hook := newFlakyHook(t)
	connectHook(t, acme, hook.srv.URL)
	id := hireUser(t, acme, "leaver@acme.test")
	deactivateUser(t, acme, id)
	hook.answer(400)
	if err := env.Runner.Process(context.Background(), acme.ID, id); err != nil {
		t.Fatal(err)
	}
	j := jobsOf(t, acme, id)["wipe_app"]
	if j["state"] != "failed" || j["attempts"] != float64(1) {
		t.Fatalf("after a 400: %v", j)
	}
	e := employee(t, acme, id)
	found := false
	for _, ev := range e["timeline"].([]any) {
		found = found || ev.(map[string]any)["kind"] == "job_failed"
	}
	if !found {
		t.Fatalf("no job_failed event in the timeline: %v", e["timeline"])
	}
}

func TestBackoffIsExponentialWithJitterUpToItsCap(t *testing.T) {
	// A runner with a 1s base and a 1m cap, against a receiver that always answers 429.
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	env := testenv.Start(t, testenv.Options{Clock: clock, NoRunner: true,
		Runner: []lifecycle.RunnerOption{lifecycle.WithBackoff(time.Second, time.Minute, 12)}})
	acme := env.CreateTenant("acme", 5)
	hook := newFlakyHook(t)
	connectHook(t, acme, hook.srv.URL)
	id := hireUser(t, acme, "leaver@acme.test")
	deactivateUser(t, acme, id)
	hook.answer(429)
	seen := map[time.Duration]bool{}
	for attempt := 1; attempt <= 10; attempt++ {
		if err := env.Runner.Process(context.Background(), acme.ID, id); err != nil {
			t.Fatal(err)
		}
		j := jobsOf(t, acme, id)["wipe_app"]
		d := min(time.Second<<(attempt-1), time.Minute)
		wait := nextAt(t, j).Sub(clock.Now())
		if j["state"] != "pending" || wait < d/2 || wait > d {
			t.Fatalf("attempt %d: %v, retry in %s, want within [%s, %s]", attempt, j["state"], wait, d/2, d)
		}
		seen[wait] = true
		clock.Advance(wait)
	}
	if len(seen) < 8 {
		t.Fatalf("only %d distinct delays in 10 attempts: no jitter?", len(seen))
	}
}
