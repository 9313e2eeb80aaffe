package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// TestConcurrentTogglesKeepSeatsAndIDsConsistent: an IdP flapping a few users on and off from
// two processes at once, with both runners working, must leave the seat counter equal to the
// seats the employees hold, give every employee at most one seat, and never issue an ID twice.
func TestConcurrentTogglesKeepSeatsAndIDsConsistent(t *testing.T) {
	w := newWorld(t)
	const seats = 2
	tn := w.tenant("acme", seats, identity.DefaultPolicy())
	ctx, cancel := context.WithCancel(context.Background())
	var procs []*lifecycle.Service
	var runners sync.WaitGroup
	for _, name := range []string{"proc-a", "proc-b"} {
		svc := lifecycle.NewService(w.store, w.conns, lifecycle.WithClock(w.clock.Now), lifecycle.WithLogger(w.log), lifecycle.WithOwner(name))
		r := lifecycle.NewRunner(svc, lifecycle.WithIntervals(10*time.Millisecond, 100*time.Millisecond))
		procs = append(procs, svc)
		runners.Add(1)
		go func() { defer runners.Done(); r.Run(ctx) }()
	}
	var ids []string
	for i := range 3 {
		e, err := procs[0].CreateUser(ctx, "token:idp", tn.ID, userInput(fmt.Sprintf("flap%d@acme.test", i), true))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 15 {
				id := ids[(g+k)%len(ids)]
				_, err := procs[(g+k)%2].UpdateUser(ctx, "token:idp", tn.ID, id, nil, setActive(k%2 == 1))
				if err != nil && !errors.Is(err, identity.ErrRetry) {
					t.Errorf("toggle: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	// The IdP's final word: everyone active.
	for _, id := range ids {
		if _, err := procs[0].UpdateUser(ctx, "token:idp", tn.ID, id, nil, setActive(true)); err != nil {
			t.Fatal(err)
		}
	}
	stable := waitFor(t, 20*time.Second, "a stable state", func() bool {
		held, active, pending := 0, 0, 0
		for _, id := range ids {
			e := w.load(id)
			for _, j := range e.Jobs {
				if j.State == identity.JobRunning || (localJob(j) && j.State == identity.JobPending && !j.NextAt.After(w.clock.Now())) {
					return false
				}
			}
			if e.Seat.State == identity.SeatHeld {
				held++
			}
			switch e.State {
			case identity.StateActive:
				active++
			case identity.StatePendingSeat:
				pending++
			}
		}
		return active == seats && pending == len(ids)-seats && held == seats && w.tenantDoc(tn.ID).Free == 0
	})
	cancel()
	runners.Wait()
	for _, p := range procs {
		p.Close()
	}
	free := w.tenantDoc(tn.ID).Free
	var report []string
	held := 0
	for _, id := range ids {
		e := w.load(id)
		if e.Seat.State == identity.SeatHeld {
			held++
		}
		report = append(report, fmt.Sprintf("%s gen %d seat %+v jobs %s", e.State, e.Generation, e.Seat, jobSummary(e)))
	}
	if !stable || free != seats-held {
		t.Fatalf("free %d, held %d of %d seats:\n%v", free, held, seats, report)
	}
	// IDs: every one ever issued belongs to one employee and is revoked unless held now.
	reg := registry(t, w)
	for wid, rec := range reg {
		e := w.load(rec.Employee)
		if rec.Status == identity.WorkIDActive && (e.WorkID != wid || e.State != identity.StateActive) {
			// An ID drawn for an acquisition whose outcome was overtaken is never the
			// employee's; the status API reports it revoked.
			st, err := procs[0].IDStatus(context.Background(), tn.ID, wid)
			if err != nil || st != identity.WorkIDRevoked {
				t.Errorf("ID %s of %s (%s, holds %s): status %s %v", wid, rec.Employee, e.State, e.WorkID, st, err)
			}
		}
	}
}

func localJob(j *identity.Job) bool {
	return j.Action == identity.ActionAcquireSeat || j.Action == identity.ActionReleaseSeat || j.Action == identity.ActionRevokeID
}
