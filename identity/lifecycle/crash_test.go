package lifecycle_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/mdm"
)

// crashRun is one life of a process that deactivates an employee and runs its jobs until it
// dies after write number limit (0: it never dies). It reports whether the deactivation was
// answered with success and the writes it made.
func crashRun(t *testing.T, w *world, tenant, id string, limit int) (answered bool, trace []string) {
	t.Helper()
	ctx := context.Background()
	cs := &crashStore{Store: w.store, limit: limit}
	svc, r := w.service(cs, "doomed")
	_, err := svc.UpdateUser(ctx, "token:idp", tenant, id, nil, setActive(false))
	answered = err == nil
	for round := 0; round < 20 && !cs.isDead(); round++ {
		open, err := w.store.EmployeesWithOpenWork(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(open) == 0 {
			break
		}
		for _, d := range open {
			_ = r.Process(ctx, d.Tenant, d.Employee)
		}
		w.clock.Advance(time.Second)
	}
	if !cs.isDead() {
		svc.Close() // a clean life ends with the batcher flushed
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return answered, append([]string(nil), cs.trace...)
}

// TestACrashAtEveryWriteOfADeactivationLosesAndDoublesNoEffect kills the process right after
// each write of the deactivation path in turn (the SCIM request's and the runner's), restarts
// on the same database, and checks that every effect happened exactly once.
func TestACrashAtEveryWriteOfADeactivationLosesAndDoublesNoEffect(t *testing.T) {
	setup := func(t *testing.T) (*world, string, string) {
		w := newWorld(t)
		tn := w.tenant("acme", 3, identity.DefaultPolicy())
		svc, _ := w.service(w.store, "setup")
		e, err := svc.CreateUser(context.Background(), "token:idp", tn.ID, userInput("leaver@acme.test", true))
		if err != nil || e.State != identity.StateActive {
			t.Fatalf("joiner: %v %+v", err, e)
		}
		w.vendor.devices[e.ID] = []mdm.Device{
			{ID: "dev-c", Ownership: mdm.OwnershipCompany, Platform: mdm.PlatformIOS},
			{ID: "dev-p", Ownership: mdm.OwnershipPersonal, Platform: mdm.PlatformAndroid},
		}
		svc.Close()
		return w, tn.ID, e.ID
	}
	want := []string{"wipe_app@", "wipe_app@dev-c", "wipe_app@dev-p"}

	// A clean run counts the write points.
	w, tenant, id := setup(t)
	answered, trace := crashRun(t, w, tenant, id, 0)
	if !answered {
		t.Fatal("the deactivation failed without a crash")
	}
	if got := w.vendor.effects(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("clean run effects %v, want %v", got, want)
	}
	total := len(trace)
	t.Logf("the deactivation path makes %d writes: %s", total, strings.Join(trace, " "))
	if total < 10 {
		t.Fatalf("only %d writes: the path was not exercised", total)
	}

	for n := 1; n <= total; n++ {
		t.Run(fmt.Sprintf("crash after write %02d %s", n, trace[n-1]), func(t *testing.T) {
			w, tenant, id := setup(t)
			ctx := context.Background()
			answered, _ := crashRun(t, w, tenant, id, n)

			// Restart: a new process on the same database. The IdP re-sends a deactivation
			// whose answer it never got; an answered one must need nothing from it.
			svc, r := w.service(w.store, "restarted")
			if !answered {
				if _, err := svc.UpdateUser(ctx, "token:idp", tenant, id, nil, setActive(false)); err != nil {
					t.Fatalf("re-sent deactivation: %v", err)
				}
			}
			rounds := w.settle(r, time.Minute)
			svc.Close()
			// The sweep's housekeeping collects seat-operation records the dead process
			// never got to forget.
			w.clock.Advance(5 * time.Minute)
			if err := r.Housekeep(ctx); err != nil {
				t.Fatal(err)
			}

			e := w.load(id)
			if e.State != identity.StateOffboarded || e.Credentials != nil || e.Seat.State != identity.SeatNone {
				t.Fatalf("crash after write %d (%s), answered %v: state %s seat %+v cred %v jobs %s",
					n, trace[n-1], answered, e.State, e.Seat, e.Credentials, jobSummary(e))
			}
			for _, j := range e.Jobs {
				if j.State != identity.JobDone {
					t.Errorf("job %s is %s (%s)", j.ID, j.State, j.LastError)
				}
			}
			if got := w.vendor.effects(t); !reflect.DeepEqual(got, want) {
				t.Errorf("effects %v, want %v", got, want)
			}
			tn := w.tenantDoc(tenant)
			if tn.Free != 3 {
				t.Errorf("free seats %d, want 3 (the seat was released %d times)", tn.Free, tn.Free-2)
			}
			rec, err := w.store.GetWorkID(ctx, e.WorkID)
			if err != nil || rec.Status != identity.WorkIDRevoked {
				t.Errorf("messenger ID %s: %+v %v, want a revoked tombstone", e.WorkID, rec, err)
			}
			if len(tn.SeatOps) != 0 {
				t.Errorf("seat operation records left behind: %v", tn.SeatOps)
			}
			if d := w.vendor.duplicates(); d > 0 {
				t.Logf("crash after write %d (%s): %d duplicate deliveries deduplicated by key", n, trace[n-1], d)
			}
			t.Logf("crash after write %d (%s), answered %v: settled in %d rounds", n, trace[n-1], answered, rounds)
		})
	}
}
