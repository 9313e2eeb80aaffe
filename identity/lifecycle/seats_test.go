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
