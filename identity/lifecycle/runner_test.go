package lifecycle_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// countingStore counts how often the runner looks at an employee's due mark (once per pass).
type countingStore struct {
	lifecycle.Store
	passes atomic.Int64
}

func (c *countingStore) GetDue(ctx context.Context, employee string) (time.Time, bool, error) {
	c.passes.Add(1)
	return c.Store.GetDue(ctx, employee)
}

// TestTheRunnerDoesNotSpinOnAnEmployeeWhoseWorkIsInTheFuture: a restricted employee owes its
// offboarding in two weeks; one wake-up must cost one pass, not a loop until then.
func TestTheRunnerDoesNotSpinOnAnEmployeeWhoseWorkIsInTheFuture(t *testing.T) {
	w := newWorld(t)
	p := identity.DefaultPolicy()
	p.NoticePeriod = identity.Duration(336 * time.Hour)
	tn := w.tenant("acme", 3, p)
	e := hire(t, w, tn.ID, "notice@acme.test")
	cs := &countingStore{Store: w.store}
	svc, _ := w.service(cs, "proc")
	r := lifecycle.NewRunner(svc, lifecycle.WithIntervals(20*time.Millisecond, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if _, err := svc.UpdateUser(ctx, "token:idp", tn.ID, e.ID, nil, setActive(false)); err != nil {
		t.Fatal(err)
	}
	if st := w.load(e.ID).State; st != identity.StateRestricted {
		t.Fatalf("state %s", st)
	}
	r.Wake(tn.ID, e.ID)
	time.Sleep(500 * time.Millisecond)
	if n := cs.passes.Load(); n > 4 {
		t.Fatalf("%d runner passes over one restricted employee in half a second", n)
	}
}

// outageStore fails seat acquisitions, employee updates and the runner's reads while down, as
// an unreachable database does.
type outageStore struct {
	lifecycle.Store
	down   atomic.Bool
	misses atomic.Int64
}

var errUnreachable = errors.New("store unavailable: server selection error")

func (o *outageStore) AcquireSeat(ctx context.Context, tenant, op, employee string) (bool, error) {
	if o.down.Load() {
		return false, errUnreachable
	}
	return o.Store.AcquireSeat(ctx, tenant, op, employee)
}

func (o *outageStore) UpdateEmployee(ctx context.Context, tenant, id string, fn func(*identity.Employee) error) (*identity.Employee, error) {
	if o.down.Load() {
		return nil, errUnreachable
	}
	return o.Store.UpdateEmployee(ctx, tenant, id, fn)
}

func (o *outageStore) GetDue(ctx context.Context, employee string) (time.Time, bool, error) {
	if o.down.Load() {
		o.misses.Add(1)
		return time.Time{}, false, errUnreachable
	}
	return o.Store.GetDue(ctx, employee)
}

func (o *outageStore) ListDue(ctx context.Context, now time.Time, limit int) ([]identity.Due, error) {
	if o.down.Load() {
		return nil, errUnreachable
	}
	return o.Store.ListDue(ctx, now, limit)
}

// TestAJoinerCutOffByAnOutageIsLicensedWithoutWaitingForTheSweep: the database goes away
// between a joiner's insert and its seat, and is still away when the request wakes the
// runner. The joiner has no due mark (the request meant to finish its own local jobs), so
// unless the runner tries again by itself only the sweep (minutes later) would license it.
// Found by the devdb outage fault test.
func TestAJoinerCutOffByAnOutageIsLicensedWithoutWaitingForTheSweep(t *testing.T) {
	w := newWorld(t)
	tn := w.tenant("acme", 3, identity.DefaultPolicy())
	os := &outageStore{Store: w.store}
	svc, _ := w.service(os, "proc")
	r := lifecycle.NewRunner(svc, lifecycle.WithIntervals(20*time.Millisecond, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	os.down.Store(true)
	e, err := svc.CreateUser(ctx, "token:idp", tn.ID, userInput("cutoff@acme.test", true))
	if err != nil {
		t.Fatal(err)
	}
	if e.State == identity.StateActive {
		t.Fatal("the joiner was licensed although its seat could not be taken")
	}
	if !waitFor(t, 5*time.Second, "the runner meets the outage", func() bool { return os.misses.Load() > 0 }) {
		t.Fatal("the request did not wake the runner")
	}
	w.clock.Advance(time.Minute) // the request's lease on the seat job has ended
	os.down.Store(false)
	if !waitFor(t, 5*time.Second, "licensed", func() bool { return w.load(e.ID).State == identity.StateActive }) {
		t.Fatalf("joiner still %s (%s) 5 s after the database came back", w.load(e.ID).State, jobSummary(w.load(e.ID)))
	}
}
