package lifecycle_test

import (
	"context"
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
