package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/offboard/offboard/identity"
)

// Housekeep is the runner's periodic tidying, run by every sweep (exported for tests that drive
// the runner step by step):
//
//   - it forgets seat-operation records the batcher never got to (the process died, or the
//     write failed), once the job that applied the operation is finished and no worker can
//     hold a lease on it any more;
//   - it purges the document, history included, of every SCIM-deleted employee whose
//     retention ended and who owes nothing; messenger ID tombstones and the audit log stay.
func (r *Runner) Housekeep(ctx context.Context) error {
	errs := []error{r.svc.collectSeatOps(ctx), r.svc.purgeExpired(ctx)}
	// Reconciling counts every tenant's seat holders (a scan): rarely, drift is rare.
	if now := r.svc.now(); now.Sub(r.reconciled) >= reconcileEvery {
		r.reconciled = now
		errs = append(errs, r.svc.reconcileSeats(ctx))
	}
	return errors.Join(errs...)
}

// collectSeatOps forgets the settled seat operation records of every tenant. A record is
// settled when the employee document holds the outcome (the job is terminal, or the employee
// is gone) and it is older than two leases, so no stale worker can still retry it.
func (s *Service) collectSeatOps(ctx context.Context) error {
	ts, err := s.store.ListTenants(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	var errs []error
	for _, t := range ts {
		var forget []string
		for op, rec := range t.SeatOps {
			if now.Sub(rec.At) < 2*s.leaseFor {
				continue
			}
			e, err := s.store.LoadEmployee(ctx, rec.Employee)
			switch {
			case errors.Is(err, identity.ErrNotFound):
				forget = append(forget, op)
			case err != nil:
				errs = append(errs, err)
			case seatOpSettled(e, op):
				forget = append(forget, op)
			}
		}
		if len(forget) == 0 {
			continue
		}
		if err := s.store.ForgetSeatOps(ctx, t.ID, forget); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("seat operation records collected", "tenant", t.ID, "count", len(forget))
	}
	return errors.Join(errs...)
}

// reconcileEvery is how often housekeeping reconciles the seat counters.
const reconcileEvery = 15 * time.Minute

// reconcileSeats makes each tenant's free-seat counter agree with the employees holding a seat,
// whenever no seat operation is in flight. The seat protocol keeps them equal; this repairs the
// one way they can drift: a worker stalled past its lease applying a seat operation after
// another worker completed it and the operation's record was forgotten.
func (s *Service) reconcileSeats(ctx context.Context) error {
	ts, err := s.store.ListTenants(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range ts {
		if len(t.SeatOps) > 0 {
			continue // operations in flight: the next sweep looks again
		}
		held, err := s.store.CountSeatsHeld(ctx, t.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cur, err := s.store.GetTenant(ctx, t.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		want := cur.Seats - held
		if cur.Free == want || len(cur.SeatOps) > 0 {
			continue
		}
		ok, err := s.store.CorrectFree(ctx, t.ID, cur.Free, want)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			s.log.Warn("seat counter corrected", "tenant", t.ID, "free_was", cur.Free, "free", want, "held", held)
			s.auditAdmin(ctx, t.ID, "system", "tenant.seats_reconciled", t.ID,
				map[string]any{"free": cur.Free}, map[string]any{"free": want, "held": held})
		}
	}
	return errors.Join(errs...)
}

// seatOpSettled reports whether no job of e can apply op again.
func seatOpSettled(e *identity.Employee, op string) bool {
	for _, j := range e.Jobs {
		if j.SeatOp == op {
			return j.State.Terminal()
		}
	}
	return true
}

// purgeExpired deletes the employees whose retention after a SCIM DELETE has ended.
func (s *Service) purgeExpired(ctx context.Context) error {
	now := s.now()
	ids, err := s.store.ExpiredEmployees(ctx, now)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		e, err := s.store.LoadEmployee(ctx, id)
		if errors.Is(err, identity.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !purgeable(e, now) {
			continue
		}
		if err := s.store.PurgeEmployee(ctx, e.ID, e.Rev); err != nil {
			if !errors.Is(err, identity.ErrRetry) {
				errs = append(errs, err)
			}
			continue
		}
		s.auditAdmin(ctx, e.Tenant, "system", "employee.purged", e.ID, nil,
			map[string]any{"deleted": e.Deleted, "retainUntil": e.RetainUntil, "workIds": append(e.PastWorkIDs, e.WorkID)})
		s.log.Info("employee history purged after retention", "tenant", e.Tenant, "employee", e.ID)
	}
	return errors.Join(errs...)
}

// purgeable reports whether e's history may go: deleted, retention over, nothing owed. A job
// still waiting for an administrator (approval, brake) keeps the employee until it is decided.
func purgeable(e *identity.Employee, now time.Time) bool {
	if e.Deleted == nil || e.RetainUntil == nil || now.Before(*e.RetainUntil) {
		return false
	}
	if e.NextWakeAt != nil || e.Seat.State != identity.SeatNone || holdsLicense(e.State) || e.State == identity.StatePendingSeat {
		return false
	}
	for _, j := range e.Jobs {
		if !j.State.Terminal() {
			return false
		}
	}
	return true
}
