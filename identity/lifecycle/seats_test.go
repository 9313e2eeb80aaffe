package lifecycle_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// rounds runs the runner over the given employees n times, advancing the clock each time.
func rounds(t *testing.T, w *world, r *lifecycle.Runner, tenant string, n int, step time.Duration, ids ...string) {
	t.Helper()
	for range n {
		for _, id := range ids {
			if err := r.Process(context.Background(), tenant, id); err != nil {
				t.Fatal(err)
			}
		}
		w.clock.Advance(step)
	}
}

func TestAJoinerWhoseQueueEntryACrashLostKeepsItsPlaceInLine(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	acme := w.tenant("acme", 1, identity.DefaultPolicy())
	holder := hire(t, w, acme.ID, "holder@acme.test")

	// The process dies right after writing the joiner, before it queued it for a seat.
	cs := &crashStore{Store: w.store, limit: 2}
	doomed, _ := w.service(cs, "doomed")
	first, err := doomed.CreateUser(ctx, "token:idp", acme.ID, userInput("first@acme.test", true))
	if err != nil || first.State != identity.StatePendingSeat || cs.trace[1] != "InsertEmployee" {
		t.Fatalf("first joiner: %v %+v %v", err, first, cs.trace)
	}

	w.clock.Advance(time.Second)
	svc, r := w.service(w.store, "restarted")
	second, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("second@acme.test", true))
	if err != nil || second.State != identity.StatePendingSeat {
		t.Fatalf("second joiner: %v %+v", err, second)
	}
	rounds(t, w, r, acme.ID, 3, lifecycle.DefaultLeaseFor, first.ID, second.ID)

	if _, err := svc.UpdateUser(ctx, "token:idp", acme.ID, holder.ID, nil, setActive(false)); err != nil {
		t.Fatal(err)
	}
	rounds(t, w, r, acme.ID, 2, time.Minute, holder.ID, first.ID, second.ID)
	if a, b := w.load(first.ID).State, w.load(second.ID).State; a != identity.StateActive || b != identity.StatePendingSeat {
		t.Fatalf("first joiner %s, second %s: the later joiner jumped the queue", a, b)
	}
}

func TestAJoinerHoldingItsSeatIsNotHeldBackByTheQueue(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	acme := w.tenant("acme", 1, identity.DefaultPolicy())
	gen := &scripted{pool: []string{"ALWAYS01"}, rng: rand.New(rand.NewPCG(1, 2))}
	svc, r := w.service(w.store, "proc", lifecycle.WithWorkIDGenerator(gen.next))

	gen.push("ALWAYS01")
	if _, err := svc.CreateUser(ctx, "token:idp", w.tenant("beta", 1, identity.DefaultPolicy()).ID, userInput("other@beta.test", true)); err != nil {
		t.Fatal(err)
	}
	// Every draw collides: the first joiner takes the only seat but gets no ID yet.
	first, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("first@acme.test", true))
	if err != nil || first.State != identity.StatePendingSeat || first.Seat.State != identity.SeatHeld {
		t.Fatalf("first joiner: %v %+v", err, first)
	}
	second, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("second@acme.test", true))
	if err != nil || second.State != identity.StatePendingSeat {
		t.Fatalf("second joiner: %v %+v", err, second)
	}
	gen.mu.Lock()
	gen.pool = []string{"FRESH001", "FRESH002", "FRESH003"}
	gen.mu.Unlock()
	rounds(t, w, r, acme.ID, 3, time.Minute, first.ID, second.ID)
	if e := w.load(first.ID); e.State != identity.StateActive || e.WorkID == "" {
		t.Fatalf("first joiner %s %q: it holds the tenant's only seat but waits behind the second", e.State, e.WorkID)
	}
	if tn := w.tenantDoc(acme.ID); tn.Free != 0 {
		t.Fatalf("free %d", tn.Free)
	}
}

// TestAnAcquisitionOvertakenByAReHireLeaksNoSeat: a joiner's seat acquisition stalls; the IdP
// deactivates and reactivates the user meanwhile, and the new generation gets a seat of its
// own. When the stalled acquisition lands, the employee holds two seats for a moment: one must
// be given back, and the employee must end up holding exactly one.
func TestAnAcquisitionOvertakenByAReHireLeaksNoSeat(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	acme := w.tenant("acme", 3, identity.DefaultPolicy())
	gate := newGate(w.store, func(c string) bool { return c == "AcquireSeat" })
	slow, _ := w.service(gate, "slow")
	fast, r := w.service(w.store, "fast")

	created := make(chan *identity.Employee, 1)
	go func() {
		e, err := slow.CreateUser(ctx, "token:idp", acme.ID, userInput("flap@acme.test", true))
		if err != nil {
			t.Error(err)
		}
		created <- e
	}()
	<-gate.entered
	id := w.employeeByName(acme.ID, "flap@acme.test")
	if _, err := fast.UpdateUser(ctx, "token:idp", acme.ID, id, nil, setActive(false)); err != nil {
		t.Fatal(err)
	}
	e, err := fast.UpdateUser(ctx, "token:idp", acme.ID, id, nil, setActive(true))
	if err != nil || e.State != identity.StateActive || e.Generation != 2 {
		t.Fatalf("re-hired: %v %+v", err, e)
	}
	close(gate.release)
	<-created
	rounds(t, w, r, acme.ID, 3, time.Minute, id)

	e = w.load(id)
	if e.State != identity.StateActive || e.Seat.State != identity.SeatHeld {
		t.Fatalf("employee %s seat %+v jobs %s", e.State, e.Seat, jobSummary(e))
	}
	if free := w.tenantDoc(acme.ID).Free; free != 2 {
		t.Fatalf("free seats %d, want 2: one employee holds one seat (jobs %s)", free, jobSummary(e))
	}
}
