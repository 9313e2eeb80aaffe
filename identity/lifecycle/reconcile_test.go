package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
)

// TestHousekeepingRepairsASeatCounterThatDrifted simulates the one drift the seat protocol can
// suffer — a worker stalled past its lease releasing a seat a second time after the operation's
// record was forgotten — and shows the sweep's housekeeping brings the counter back to the
// employees actually holding seats, but never while a seat operation is in flight.
func TestHousekeepingRepairsASeatCounterThatDrifted(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	tn := w.tenant("acme", 3, identity.DefaultPolicy())
	svc, r := w.service(w.store, "p1")
	defer svc.Close()
	for _, name := range []string{"a@x", "b@x"} {
		if e, err := svc.CreateUser(ctx, "token:idp", tn.ID, userInput(name, true)); err != nil || e.State != identity.StateActive {
			t.Fatalf("joiner %s: %v", name, err)
		}
	}
	w.clock.Advance(5 * time.Minute)
	if err := r.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.tenantDoc(tn.ID); got.Free != 1 || len(got.SeatOps) != 0 {
		t.Fatalf("before the drift: free %d, %d records", got.Free, len(got.SeatOps))
	}

	// The stale worker's second release: its record is still there, so housekeeping waits.
	w.clock.Advance(16 * time.Minute) // reconciliation runs every 15 minutes
	if err := w.store.ReleaseSeat(ctx, tn.ID, "stale-release", "b"); err != nil {
		t.Fatal(err)
	}
	if err := r.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.tenantDoc(tn.ID); got.Free != 2 {
		t.Fatalf("corrected while an operation was in flight: free %d", got.Free)
	}
	// Once the record is gone, the counter is repaired: 2 of 3 seats are held.
	if err := w.store.ForgetSeatOps(ctx, tn.ID, []string{"stale-release"}); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(16 * time.Minute)
	if err := r.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.tenantDoc(tn.ID); got.Free != 1 || got.Used() != 2 {
		t.Fatalf("after housekeeping: free %d used %d, want 1 and 2", got.Free, got.Used())
	}
}
