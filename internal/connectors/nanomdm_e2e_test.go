package connectors_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/server"
	"github.com/offboard/offboard/internal/testdb"
	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm/nanomdm/nanomdmtest"
)

const bundleID = "ch.threema.work.iapp"

// slowPolls makes the runner ask a vendor about an accepted command no sooner than after a
// minute, so that a job can only finish quickly if the device's answer, arriving on the
// NanoMDM webhook, wakes it.
var slowPolls = lifecycle.WithBackoff(100*time.Millisecond, time.Minute, 5)

// enrollAndAttach sets up a NanoMDM connector whose NanoMDM reports to Offboard, an enrolled
// device, and a hired employee the device is attached to.
func enrollAndAttach(t *testing.T, tn *testenv.Tenant, nano *nanomdmtest.Server, udid string) (emp string, dev *nanomdmtest.Device) {
	t.Helper()
	r := connect(t, tn, "nanomdm", "apple", map[string]any{"url": nano.URL, "apiKey": nano.APIKey, "appBundleId": bundleID})
	if strings.Contains(string(r.Raw), nano.APIKey) {
		t.Fatalf("the API key is returned by the API: %s", r.Raw)
	}
	hookURL, _ := r.JSON["webhookUrl"].(string)
	if !strings.Contains(hookURL, "/hooks/nanomdm/"+r.JSON["id"].(string)+"/") {
		t.Fatalf("webhookUrl = %q", hookURL)
	}
	nano.Start(hookURL) // nanomdm -webhook-url <webhookUrl>
	dev = nano.NewDevice(udid)
	dev.Enroll()

	emp = hire(t, tn, "jane.doe@example.com", "jane.doe@example.com", "ext-jane")
	a := tn.Admin("POST", "/employees/"+emp+"/devices", map[string]any{"connector": "apple", "deviceId": udid, "ownership": "company"})
	if a.Status != http.StatusCreated {
		t.Fatalf("attach device: %d %s", a.Status, a.Raw)
	}
	return emp, dev
}

// nextCommand has the device check in until NanoMDM hands it a command.
func nextCommand(t *testing.T, dev *nanomdmtest.Device, within time.Duration) *nanomdmtest.Command {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if cmd := dev.Idle(); cmd != nil {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device got no command within %s", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeAndConfirm plays the device's part once Offboard asked NanoMDM to remove the app: it
// fetches and acknowledges RemoveApplication, then answers the ManagedApplicationList that
// verifies the removal with a list that no longer has the app.
func removeAndConfirm(t *testing.T, dev *nanomdmtest.Device) {
	t.Helper()
	cmd := nextCommand(t, dev, 5*time.Second)
	if cmd.Command.RequestType != "RemoveApplication" || cmd.Command.Identifier != bundleID {
		t.Fatalf("device got %s for %q, want RemoveApplication for %s", cmd.Command.RequestType, cmd.Command.Identifier, bundleID)
	}
	if next := dev.Answer(cmd, "Acknowledged", nil); next != nil {
		t.Fatalf("device got %s right after the removal", next.Command.RequestType)
	}
	verify := nextCommand(t, dev, 5*time.Second)
	if verify.Command.RequestType != "ManagedApplicationList" || !slices.Equal(verify.Command.Identifiers, []string{bundleID}) {
		t.Fatalf("device got %s for %v, want ManagedApplicationList for [%s]", verify.Command.RequestType, verify.Command.Identifiers, bundleID)
	}
	dev.Answer(verify, "Acknowledged", map[string]any{"ManagedApplicationList": map[string]any{}})
}

func TestOffboardingOverSCIMRemovesTheAppFromANanoMDMDevice(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Runner: []lifecycle.RunnerOption{slowPolls}})
	acme := env.CreateTenant("acme", 5)
	nano := nanomdmtest.New(t, nanomdmtest.Options{})
	emp, dev := enrollAndAttach(t, acme, nano, "UDID-E2E-0001")

	deactivate(t, acme, emp)
	waitJob(t, acme, emp, identity.ActionWipeApp, dev.UDID, identity.JobWaiting, 5*time.Second)
	removeAndConfirm(t, dev)
	done := waitJob(t, acme, emp, identity.ActionWipeApp, dev.UDID, identity.JobDone, 5*time.Second)
	if done.Command == nil || !strings.Contains(done.Command.Detail, "no longer lists it") {
		t.Errorf("done job's command = %+v, want the ManagedApplicationList confirmation", done.Command)
	}
	if e := employee(t, acme, emp); e.State != string(identity.StateOffboarded) {
		t.Fatalf("employee state %s", e.State)
	}
	if got := dev.Received(); !slices.Equal(got, []string{"RemoveApplication", "ManagedApplicationList"}) {
		t.Fatalf("device received %v", got)
	}
	if cmd := dev.Idle(); cmd != nil {
		t.Fatalf("device got %s after the job was done", cmd.Command.RequestType)
	}
}

// front is the stable public URL of an Offboard that is restarted: NanoMDM's webhook keeps
// pointing at it while the process behind it changes, as behind a load balancer.
type front struct {
	srv    *httptest.Server
	target atomic.Pointer[url.URL]
}

func newFront(t *testing.T) *front {
	f := &front{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := f.target.Load()
		if u == nil {
			http.Error(w, "no Offboard behind the front", http.StatusBadGateway)
			return
		}
		p := httputil.NewSingleHostReverseProxy(u)
		p.ErrorLog = log.New(io.Discard, "", 0) // NanoMDM's events while Offboard is down are lost
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *front) to(env *testenv.Env) {
	u, _ := url.Parse(env.URL)
	f.target.Store(u)
}

func TestARetryAfterACrashSendsNoSecondRemoveApplication(t *testing.T) {
	store := testdb.New(t)
	fr := newFront(t)
	publicURL := func(c *server.Config) { c.PublicURL = fr.srv.URL }
	first := testenv.Start(t, testenv.Options{Store: store, Server: publicURL,
		Runner:  []lifecycle.RunnerOption{slowPolls},
		Service: []lifecycle.Option{lifecycle.WithLeaseFor(2 * time.Second)}})
	fr.to(first)
	acme := first.CreateTenant("acme", 5)

	// NanoMDM stores the first RemoveApplication, and then the process dies before it hears
	// the answer.
	nano := nanomdmtest.New(t, nanomdmtest.Options{})
	stored := make(chan struct{})
	var once sync.Once
	nano.Intercept(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/enqueue/") {
				once.Do(func() {
					close(stored)
					<-r.Context().Done() // the answer never reaches the dying process
				})
			}
		})
	})
	emp, dev := enrollAndAttach(t, acme, nano, "UDID-E2E-CRASH")
	deactivate(t, acme, emp)
	select {
	case <-stored:
	case <-time.After(5 * time.Second):
		t.Fatal("Offboard did not enqueue RemoveApplication")
	}
	first.Stop()
	if got := nano.Enqueued(dev.UDID); !slices.Equal(got, []string{"RemoveApplication"}) {
		t.Fatalf("NanoMDM stored %v before the crash", got)
	}
	e, err := store.LoadEmployee(t.Context(), emp)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range e.Jobs {
		if j.Action == identity.ActionWipeApp && j.State != identity.JobRunning {
			t.Fatalf("after the crash the job is %s, want running under the dead process's lease", j.State)
		}
	}

	second := testenv.Start(t, testenv.Options{Store: store, Keys: first.Keys, Server: publicURL,
		Runner: []lifecycle.RunnerOption{slowPolls}})
	fr.to(second)
	acme2 := acme.On(second)

	// Once the dead process's lease ran out, the new one retries with the same CommandUUID.
	waitJob(t, acme2, emp, identity.ActionWipeApp, dev.UDID, identity.JobWaiting, 10*time.Second)
	removeAndConfirm(t, dev)
	done := waitJob(t, acme2, emp, identity.ActionWipeApp, dev.UDID, identity.JobDone, 5*time.Second)
	if done.Attempts < 2 {
		t.Errorf("job attempts = %d, want the retry after the crash counted", done.Attempts)
	}
	if got := nano.Enqueued(dev.UDID); !slices.Equal(got, []string{"RemoveApplication", "ManagedApplicationList"}) {
		t.Fatalf("NanoMDM stored %v, want one RemoveApplication and its verification", got)
	}
	if got := dev.Received(); !slices.Equal(got, []string{"RemoveApplication", "ManagedApplicationList"}) {
		t.Fatalf("device received %v, want exactly one RemoveApplication", got)
	}
}

func TestADeviceAnswerThatArrivesDuringAStatusPollIsNotLost(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Runner: []lifecycle.RunnerOption{slowPolls}})
	acme := env.CreateTenant("acme", 5)
	nano := nanomdmtest.New(t, nanomdmtest.Options{})
	var dev atomic.Pointer[nanomdmtest.Device]
	var emp atomic.Value
	// While Offboard's poll still waits for NanoMDM to confirm the ManagedApplicationList it
	// enqueued, the device fetches it and answers, and the answer reaches the job (running).
	nano.Intercept(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			d := dev.Load()
			if d != nil && strings.HasPrefix(r.URL.Path, "/v1/enqueue/") && slices.Contains(nano.Enqueued(d.UDID), "ManagedApplicationList") {
				if cmd := d.Idle(); cmd != nil && cmd.Command.RequestType == "ManagedApplicationList" {
					d.Answer(cmd, "Acknowledged", map[string]any{"ManagedApplicationList": map[string]any{}})
					reached := func() bool {
						e, err := env.Store.LoadEmployee(t.Context(), emp.Load().(string))
						if err != nil {
							return false
						}
						for _, j := range e.Jobs {
							if j.Action == identity.ActionWipeApp && j.State == identity.JobRunning && j.NextAt.After(j.Updated) {
								return true
							}
						}
						return false
					}
					for deadline := time.Now().Add(5 * time.Second); !reached(); time.Sleep(10 * time.Millisecond) {
						if time.Now().After(deadline) {
							t.Error("the answer did not reach the running job")
							break
						}
					}
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	})
	id, d := enrollAndAttach(t, acme, nano, "UDID-E2E-RACE")
	emp.Store(id)
	dev.Store(d)

	deactivate(t, acme, id)
	cmd := nextCommand(t, d, 5*time.Second)
	if cmd.Command.RequestType != "RemoveApplication" {
		t.Fatalf("device got %s", cmd.Command.RequestType)
	}
	waitJob(t, acme, id, identity.ActionWipeApp, d.UDID, identity.JobWaiting, 5*time.Second)
	d.Answer(cmd, "Acknowledged", nil)
	waitJob(t, acme, id, identity.ActionWipeApp, d.UDID, identity.JobDone, 5*time.Second)
}
