package lifecycle_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/mdm"
)

// gateStore stalls the first call of a chosen kind until released (a slow database or a
// paused process), and passes everything else through.
type gateStore struct {
	lifecycle.Store
	match   func(call string) bool
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newGate(s lifecycle.Store, match func(string) bool) *gateStore {
	return &gateStore{Store: s, match: match, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateStore) stall(call string) {
	if !g.match(call) {
		return
	}
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
}

func (g *gateStore) ReleaseSeat(ctx context.Context, tenant, op, employee string) error {
	g.stall("ReleaseSeat")
	return g.Store.ReleaseSeat(ctx, tenant, op, employee)
}

func (g *gateStore) RevokeWorkID(ctx context.Context, id string, at time.Time) error {
	g.stall("RevokeWorkID")
	return g.Store.RevokeWorkID(ctx, id, at)
}

func (g *gateStore) AcquireSeat(ctx context.Context, tenant, op, employee string) (bool, error) {
	g.stall("AcquireSeat")
	return g.Store.AcquireSeat(ctx, tenant, op, employee)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func hire(t *testing.T, w *world, tenant, name string) *identity.Employee {
	t.Helper()
	svc, _ := w.service(w.store, "hr")
	e, err := svc.CreateUser(context.Background(), "token:idp", tenant, userInput(name, true))
	if err != nil || e.State != identity.StateActive {
		t.Fatalf("joiner %s: %v %+v", name, err, e)
	}
	return e
}

// TestTheRunnerDoesNotRunALocalJobTheRequestIsRunning: a deactivation's request executes its
// seat release while the runner of the same process, woken by the due mark, looks at the
// employee. Only one of them may execute it, or the second release lands after the first one's
// record was forgotten and frees a seat nobody held.
func TestTheRunnerDoesNotRunALocalJobTheRequestIsRunning(t *testing.T) {
	w := newWorld(t)
	tn := w.tenant("acme", 3, identity.DefaultPolicy())
	e := hire(t, w, tn.ID, "leaver@acme.test")
	ctx := context.Background()

	gate := newGate(w.store, func(c string) bool { return c == "ReleaseSeat" })
	svc, r := w.service(gate, "proc")
	done := make(chan error, 1)
	go func() {
		_, err := svc.UpdateUser(ctx, "token:idp", tn.ID, e.ID, nil, setActive(false))
		done <- err
	}()
	<-gate.entered // the request is inside its seat release

	if err := r.Process(ctx, tn.ID, e.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the runner's release forgotten", func() bool { return len(w.tenantDoc(tn.ID).SeatOps) == 0 })
	close(gate.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	svc.Close()
	if free := w.tenantDoc(tn.ID).Free; free != 3 {
		t.Fatalf("free seats %d of 3: the seat was released twice", free)
	}
}

// TestAWorkerWhoseLeaseExpiredDoesNotApplyItsSeatOperationLate: a process stalls inside its
// local effects past its lease; another process takes the job over, completes it and forgets
// the seat operation. The stalled one must not release the seat a second time when it wakes.
func TestAWorkerWhoseLeaseExpiredDoesNotApplyItsSeatOperationLate(t *testing.T) {
	w := newWorld(t)
	tn := w.tenant("acme", 3, identity.DefaultPolicy())
	e := hire(t, w, tn.ID, "leaver@acme.test")
	ctx := context.Background()

	gate := newGate(w.store, func(c string) bool { return c == "RevokeWorkID" || c == "ReleaseSeat" })
	a, _ := w.service(gate, "stalled")
	done := make(chan error, 1)
	go func() {
		_, err := a.UpdateUser(ctx, "token:idp", tn.ID, e.ID, nil, setActive(false))
		done <- err
	}()
	<-gate.entered

	w.clock.Advance(lifecycle.DefaultLeaseFor + time.Second)
	b, rb := w.service(w.store, "successor")
	if err := rb.Process(ctx, tn.ID, e.ID); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if tnd := w.tenantDoc(tn.ID); tnd.Free != 3 || len(tnd.SeatOps) != 0 {
		t.Fatalf("after the takeover: free %d, records %v", tnd.Free, tnd.SeatOps)
	}
	close(gate.release)
	<-done
	a.Close()
	if free := w.tenantDoc(tn.ID).Free; free != 3 {
		t.Fatalf("free seats %d of 3: the stalled worker released the seat again", free)
	}
	if e := w.load(e.ID); e.State != identity.StateOffboarded || e.Seat.State != identity.SeatNone {
		t.Fatalf("employee %s seat %+v", e.State, e.Seat)
	}
}

// TestAVendorCallOutlivingItsLeaseIsRepeatedUnderTheSameKey: a webhook call hangs past the
// lease; another runner takes over and delivers again. The receiver sees one key twice and
// accepts the effect once; the job is recorded once.
func TestAVendorCallOutlivingItsLeaseIsRepeatedUnderTheSameKey(t *testing.T) {
	w := newWorld(t)
	tn := w.tenant("acme", 3, identity.DefaultPolicy())
	e := hire(t, w, tn.ID, "leaver@acme.test")
	w.vendor.devices[e.ID] = []mdm.Device{{ID: "dev-1", Ownership: mdm.OwnershipCompany}}
	ctx := context.Background()

	a, ra := w.service(w.store, "slow")
	if _, err := a.UpdateUser(ctx, "token:idp", tn.ID, e.ID, nil, setActive(false)); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	entered, release := make(chan struct{}), make(chan struct{})
	w.vendor.mu.Lock()
	w.vendor.gate = func(string) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-release
		}
	}
	w.vendor.mu.Unlock()
	slow := make(chan error, 1)
	go func() { slow <- ra.Process(ctx, tn.ID, e.ID) }()
	<-entered

	w.clock.Advance(lifecycle.DefaultLeaseFor + time.Second)
	_, rb := w.service(w.store, "successor")
	w.settle(rb, time.Second)
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	w.settle(rb, time.Second)

	if got, want := w.vendor.effects(t), []string{"wipe_app@", "wipe_app@dev-1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("effects %v, want %v", got, want)
	}
	if d := w.vendor.duplicates(); d != 1 {
		t.Fatalf("%d duplicate calls, want the one repeat of the stalled call", d)
	}
	for _, j := range w.load(e.ID).Jobs {
		if j.State != identity.JobDone {
			t.Errorf("job %s %s", j.ID, j.State)
		}
	}
}

// TestTwoProcessesOnOneDatabaseRunEveryEffectOnce runs two services with their runners' loops
// on one database and deactivates employees through both at once.
func TestTwoProcessesOnOneDatabaseRunEveryEffectOnce(t *testing.T) {
	w := newWorld(t)
	const n = 24
	tn := w.tenant("acme", n, identity.DefaultPolicy())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ids []string
	for i := range n {
		e := hire(t, w, tn.ID, fmt.Sprintf("u%02d@acme.test", i))
		w.vendor.devices[e.ID] = []mdm.Device{{ID: "d-" + e.ID[:6], Ownership: mdm.OwnershipPersonal}}
		ids = append(ids, e.ID)
	}
	var procs []*lifecycle.Service
	var wg sync.WaitGroup
	for _, name := range []string{"proc-a", "proc-b"} {
		svc := lifecycle.NewService(w.store, w.conns, lifecycle.WithClock(w.clock.Now), lifecycle.WithLogger(w.log), lifecycle.WithOwner(name))
		r := lifecycle.NewRunner(svc, lifecycle.WithIntervals(20*time.Millisecond, 200*time.Millisecond), lifecycle.WithWorkers(4))
		procs = append(procs, svc)
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(ctx) }()
	}
	var reqs sync.WaitGroup
	for i, id := range ids {
		reqs.Add(1)
		go func() {
			defer reqs.Done()
			if _, err := procs[i%2].UpdateUser(ctx, "token:idp", tn.ID, id, nil, setActive(false)); err != nil {
				t.Errorf("deactivate %s: %v", id, err)
			}
			// The IdP's retry of the same request lands on the other process.
			if _, err := procs[(i+1)%2].UpdateUser(ctx, "token:idp", tn.ID, id, nil, setActive(false)); err != nil {
				t.Errorf("deactivate again %s: %v", id, err)
			}
		}()
	}
	reqs.Wait()
	settled := waitFor(t, 30*time.Second, "every job done", func() bool {
		for _, id := range ids {
			e := w.load(id)
			for _, j := range e.Jobs {
				if j.State != identity.JobDone {
					return false
				}
			}
			if e.State != identity.StateOffboarded || len(e.Jobs) < 5 {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	for _, p := range procs {
		p.Close()
	}
	if !settled {
		t.Fatalf("not every job finished; first employee: %s", jobSummary(w.load(ids[0])))
	}
	if got := len(w.vendor.effects(t)); got != 2*n {
		t.Fatalf("%d effects, want %d", got, 2*n)
	}
	if free := w.tenantDoc(tn.ID).Free; free != n {
		t.Fatalf("free seats %d, want %d", free, n)
	}
	t.Logf("%d duplicate calls deduplicated by key", w.vendor.duplicates())
}

// TestASlowVendorCallKeepsItsLeaseWhileItRuns: the runner renews the lease of a call that
// takes longer than the lease, so another runner does not repeat a call that is still running.
func TestASlowVendorCallKeepsItsLeaseWhileItRuns(t *testing.T) {
	w := newWorld(t)
	tn := w.tenant("acme", 3, identity.DefaultPolicy())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The clock runs at the speed of real time here.
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				w.clock.Advance(5 * time.Millisecond)
			}
		}
	}()
	const lease = 600 * time.Millisecond
	e := hire(t, w, tn.ID, "leaver@acme.test")
	a, ra := w.service(w.store, "slow", lifecycle.WithLeaseFor(lease))
	if _, err := a.UpdateUser(ctx, "token:idp", tn.ID, e.ID, nil, setActive(false)); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	entered := make(chan struct{})
	w.vendor.mu.Lock()
	w.vendor.gate = func(string) { // only the first call is slow
		once.Do(func() { close(entered); time.Sleep(2 * lease) })
	}
	w.vendor.mu.Unlock()
	slow := make(chan error, 1)
	go func() { slow <- ra.Process(ctx, tn.ID, e.ID) }()
	<-entered

	_, rb := w.service(w.store, "other", lifecycle.WithLeaseFor(lease))
	for deadline := time.Now().Add(2*lease + 200*time.Millisecond); time.Now().Before(deadline); {
		if err := rb.Process(ctx, tn.ID, e.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if d := w.vendor.duplicates(); d != 0 {
		t.Fatalf("%d repeated calls: the lease of the running call was taken over", d)
	}
	for _, j := range w.load(e.ID).Jobs {
		if j.State != identity.JobDone {
			t.Errorf("job %s %s", j.ID, j.State)
		}
	}
}
