package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/offboard/offboard/identity"
)

// seatRetry is how often a waiting joiner re-checks for a seat when no release woke it.
const seatRetry = time.Minute

// localRetry is the delay before the runner retries a local effect that failed (database).
const localRetry = 5 * time.Second

type localResult struct {
	job     string
	taken   bool   // acquire: the seat operation took a seat (even if the ID then failed)
	seat    bool   // acquire: got a seat and an ID
	noSeat  bool   // acquire: pool full
	workID  string // acquire: newly issued messenger ID
	err     error
	release bool
}

// runLocal executes the local jobs (seat, messenger ID) leased to token and records their
// outcome in one write. It loops while planning leases further local jobs (a seat that arrived
// after a deactivation is given back at once). It returns the updated employee, or nil if
// nothing was leased to it.
func (s *Service) runLocal(ctx context.Context, e *identity.Employee, token string) (*identity.Employee, error) {
	return s.runLocalWith(ctx, e, token, nil)
}

// runLocalWith is runLocal given the tenant the caller read for the same change, which spares
// a read of the tenant document per request (nil: read it).
func (s *Service) runLocalWith(ctx context.Context, e *identity.Employee, token string, known *identity.Tenant) (*identity.Employee, error) {
	var last *identity.Employee
	for round := 0; round < 3; round++ {
		var results []localResult
		for _, j := range localOrder(e) {
			if j.State != identity.JobRunning || j.LeaseOwner != token {
				continue
			}
			results = append(results, s.execLocal(ctx, e, j))
		}
		if len(results) == 0 {
			return last, nil
		}
		var (
			unusedIDs []string
			forget    []string
			dequeue   bool
			released  bool
		)
		t := known
		known = nil
		if t == nil {
			var err error
			if t, err = s.settings(ctx, e.Tenant); err != nil {
				return last, err
			}
		}
		next, err := s.store.UpdateEmployee(ctx, e.Tenant, e.ID, func(x *identity.Employee) error {
			unusedIDs, forget, dequeue, released = nil, nil, false, false
			now := s.now().UTC()
			lease := Input{Policy: t.Policy, Now: now, Lease: token, LeaseFor: s.leaseFor, Actor: "system"}
			for _, r := range results {
				j := x.Jobs[r.job]
				if j == nil || j.LeaseOwner != token || j.State != identity.JobRunning {
					if r.workID != "" {
						unusedIDs = append(unusedIDs, r.workID)
					}
					continue
				}
				switch {
				case r.err != nil && r.taken && !takeSeat(x, j, lease):
					// The seat was taken but the ID failed, and nobody needs the seat any
					// more: it is given back and the acquisition is over.
					forget = append(forget, j.SeatOp)
					finish(j, identity.JobDone, now, "")
					j.LastError = "seat given back: " + r.err.Error()
				case r.err != nil:
					// A taken seat is held from now on (takeSeat above), so a deactivation
					// before the retry gives it back.
					j.State, j.LeaseOwner, j.LeaseUntil = identity.JobPending, "", nil
					j.Attempts++
					j.LastError = r.err.Error()
					j.NextAt, j.Updated = now.Add(localRetry), now
				case r.noSeat:
					x.Queued = true
					j.State, j.LeaseOwner, j.LeaseUntil = identity.JobPending, "", nil
					j.NextAt, j.Updated = now.Add(seatRetry), now
					j.LastError = "no free seat"
				case r.seat:
					takeSeat(x, j, lease)
					forget = append(forget, j.SeatOp)
					finish(j, identity.JobDone, now, "")
					j.LastError = ""
					if x.State == identity.StatePendingSeat && x.Generation == j.Generation {
						if x.WorkID != "" {
							x.PastWorkIDs = append(x.PastWorkIDs, x.WorkID)
						}
						x.State, x.WorkID, x.SeatQueued = identity.StateActive, r.workID, nil
						x.Credentials = &identity.Credentials{Username: r.workID}
						x.Record(now, "licensed", "seat assigned, messenger ID "+r.workID, "system")
						dequeue, x.Queued = x.Queued, false
					} else if r.workID != "" {
						unusedIDs = append(unusedIDs, r.workID)
					}
				case r.release:
					if x.Seat.State == identity.SeatHeld && x.Seat.Op == seatOp(x.ID, j.Generation, "a") {
						x.Seat = identity.Seat{} // the tracked seat; a surplus one was never tracked
					}
					forget = append(forget, j.SeatOp)
					finish(j, identity.JobDone, now, "")
					released = true
				default:
					finish(j, identity.JobDone, now, "")
				}
			}
			Plan(x, lease)
			return nil
		})
		if err != nil {
			return last, err
		}
		last, e = next, next
		s.forget.add(e.Tenant, forget...)
		for _, id := range unusedIDs {
			if err := s.store.RevokeWorkID(ctx, id, s.now()); err != nil {
				s.log.Warn("unused messenger ID not revoked", "error", err)
			}
		}
		if dequeue {
			s.auditAdmin(ctx, e.Tenant, "system", "employee.licensed", e.ID,
				map[string]any{"state": identity.StatePendingSeat}, map[string]any{"state": e.State, "workId": e.WorkID, "generation": e.Generation})
			if err := s.store.DequeueSeat(ctx, e.ID); err != nil {
				s.log.Warn("seat queue not updated", "employee", e.ID, "error", err)
			}
		}
		if released {
			s.ServeSeatQueue(ctx, e.Tenant)
		}
	}
	return last, nil
}

// localOrder returns e's local jobs in the order they run: the messenger ID is revoked first
// (the most urgent effect of a leaver), then seats are released, then acquired.
func localOrder(e *identity.Employee) []*identity.Job {
	rank := map[string]int{identity.ActionRevokeID: 0, identity.ActionReleaseSeat: 1, identity.ActionAcquireSeat: 2}
	var out []*identity.Job
	for _, j := range e.Jobs {
		if localAction(j.Action) {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if rank[out[a].Action] != rank[out[b].Action] {
			return rank[out[a].Action] < rank[out[b].Action]
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// errLeaseExpired: the worker's lease ran out before it applied a local effect; another worker
// may own the job now, so it must not touch the seat counters any more.
var errLeaseExpired = errors.New("lease expired before the effect was applied")

// leased bounds ctx by what is left of j's lease and reports false if nothing is. A seat
// operation is idempotent only while its record exists, and the record is forgotten once the
// job's outcome is recorded, by whichever worker owns it then: a worker past its lease must not
// apply the operation any more.
func (s *Service) leased(ctx context.Context, j *identity.Job) (context.Context, context.CancelFunc, bool) {
	if j.LeaseUntil == nil {
		return ctx, func() {}, false
	}
	left := j.LeaseUntil.Sub(s.now())
	if left <= 0 {
		return ctx, func() {}, false
	}
	c, cancel := context.WithTimeout(ctx, left)
	return c, cancel, true
}

// takeSeat records that acquisition job j took a seat and reports whether e uses it. The
// employee document tracks one seat (e.Seat): a seat taken while it tracks none is tracked; one
// taken for the generation waiting for it replaces a seat of an older generation, which is given
// back; any other is surplus (the acquisition was overtaken, e.g. by a deactivation and a
// re-hire) and is given back at once by a release job of its own generation.
func takeSeat(e *identity.Employee, j *identity.Job, in Input) bool {
	held := identity.Seat{State: identity.SeatHeld, Op: j.SeatOp}
	switch {
	case e.Seat.State == identity.SeatHeld && e.Seat.Op == j.SeatOp:
		return true
	case e.Seat.State != identity.SeatHeld:
		e.Seat = held
		return true
	case e.State == identity.StatePendingSeat && e.Generation == j.Generation:
		old := seatGen(e)
		e.Seat = held
		releaseSeat(e, in, old)
		return true
	}
	releaseSeat(e, in, j.Generation)
	return false
}

func (s *Service) execLocal(ctx context.Context, e *identity.Employee, j *identity.Job) localResult {
	r := localResult{job: j.ID}
	ctx, cancel, ok := s.leased(ctx, j)
	defer cancel()
	if !ok {
		r.err = errLeaseExpired
		return r
	}
	switch j.Action {
	case identity.ActionAcquireSeat:
		ok, err := s.store.AcquireSeat(ctx, e.Tenant, j.SeatOp, e.ID)
		if err != nil {
			r.err = err
			return r
		}
		if !ok {
			r.noSeat = true
			if err := s.store.QueueForSeat(ctx, e.Tenant, e.ID, derefTime(e.SeatQueued, s.now())); err != nil {
				r.err = err
			}
			return r
		}
		r.seat, r.taken = true, true
		r.workID, r.err = s.issueWorkID(ctx, e, j.Generation)
		if r.err != nil {
			// Keep the seat claim idempotent: the retry re-acquires under the same op.
			r.seat = false
		}
	case identity.ActionReleaseSeat:
		r.err = s.store.ReleaseSeat(ctx, e.Tenant, j.SeatOp, e.ID)
		r.release = r.err == nil
	case identity.ActionRevokeID:
		r.err = s.store.RevokeWorkID(ctx, j.WorkID, s.now())
	default:
		r.err = fmt.Errorf("unknown local action %q", j.Action)
	}
	return r
}

// issueWorkID draws messenger IDs until the registry accepts one it has never seen.
func (s *Service) issueWorkID(ctx context.Context, e *identity.Employee, gen int) (string, error) {
	for i := 0; i < 16; i++ {
		id := s.newWorkID()
		err := s.store.InsertWorkID(ctx, &identity.WorkIDRecord{
			ID: id, Tenant: e.Tenant, Employee: e.ID, Generation: gen,
			Status: identity.WorkIDActive, Issued: s.now().UTC(),
		})
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, identity.ErrConflict) {
			return "", err
		}
	}
	return "", fmt.Errorf("no unused messenger ID after 16 draws: %w", identity.ErrConflict)
}

// ServeSeatQueue gives free seats to the tenant's waiting joiners, first come first served.
func (s *Service) ServeSeatQueue(ctx context.Context, tenant string) {
	for i := 0; i < 100; i++ {
		// The queue first: it is empty after almost every release, and then the tenant
		// document need not be read.
		heads, err := s.store.SeatQueue(ctx, tenant, 1)
		if err != nil || len(heads) == 0 {
			return
		}
		t, err := s.store.GetTenant(ctx, tenant)
		if err != nil || t.Free <= 0 {
			return
		}
		head := heads[0]
		e, token, err := s.leaseSeatJob(ctx, tenant, head)
		if err != nil {
			s.log.Warn("seat queue head not served", "employee", head, "error", err)
			return
		}
		if e == nil {
			// Not waiting any more (or another worker is on it): drop it from the queue.
			if cur, err := s.store.LoadEmployee(ctx, head); err == nil && cur.State == identity.StatePendingSeat {
				return
			}
			_ = s.store.DequeueSeat(ctx, head)
			continue
		}
		done, err := s.runLocal(ctx, e, token)
		if err != nil || done == nil || done.State == identity.StatePendingSeat {
			return
		}
	}
}

// leaseSeatJob leases a waiting employee's acquire_seat job to a new execution of this
// process and returns the employee and the lease token; nil if there is none to lease.
func (s *Service) leaseSeatJob(ctx context.Context, tenant, id string) (*identity.Employee, string, error) {
	leased, token := false, s.leaseToken()
	e, err := s.store.UpdateEmployee(ctx, tenant, id, func(e *identity.Employee) error {
		leased = false
		j := e.Jobs[jobID(e.Generation, identity.ActionAcquireSeat)]
		now := s.now().UTC()
		if e.State != identity.StatePendingSeat || j == nil || !leasable(j, now) {
			return identity.ErrSkip
		}
		lease(j, token, now, s.leaseFor)
		e.NextWakeAt = nextWake(e, now)
		leased = true
		return nil
	})
	if err != nil || !leased {
		return nil, "", err
	}
	return e, token, nil
}

// leasable reports whether a job can be taken by a worker now.
func leasable(j *identity.Job, now time.Time) bool {
	switch j.State {
	case identity.JobPending, identity.JobWaiting:
		return true
	case identity.JobRunning:
		return j.LeaseUntil == nil || !now.Before(*j.LeaseUntil)
	}
	return false
}

func lease(j *identity.Job, owner string, now time.Time, d time.Duration) {
	until := now.Add(d)
	j.State, j.LeaseOwner, j.LeaseUntil, j.Updated = identity.JobRunning, owner, &until, now
}

func derefTime(t *time.Time, def time.Time) time.Time {
	if t == nil {
		return def
	}
	return *t
}

// forgetter drops seat operation records from tenant documents in batches, once the employee
// documents hold their outcome; the record keeps a retried operation idempotent until then.
// Records it never gets to forget (a crash, a failed write) are collected by the runner's
// housekeeping.
type forgetter struct {
	store  Store
	log    *slog.Logger
	mu     sync.Mutex
	ops    map[string][]string
	closed bool
	kick   chan struct{}
	done   chan struct{}
}

func newForgetter(store Store, log *slog.Logger) *forgetter {
	f := &forgetter{store: store, log: log, ops: map[string][]string{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go f.loop()
	return f
}

func (f *forgetter) add(tenant string, ops ...string) {
	if len(ops) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return // a late local effect after Close: housekeeping forgets the records
	}
	f.ops[tenant] = append(f.ops[tenant], ops...)
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *forgetter) loop() {
	defer close(f.done)
	for range f.kick {
		time.Sleep(100 * time.Millisecond) // gather a batch
		f.flush()
	}
	f.flush()
}

func (f *forgetter) flush() {
	f.mu.Lock()
	batch := f.ops
	f.ops = map[string][]string{}
	f.mu.Unlock()
	for tenant, ops := range batch {
		if err := f.store.ForgetSeatOps(context.Background(), tenant, ops); err != nil {
			f.log.Warn("seat operation records kept", "tenant", tenant, "error", err)
		}
	}
}

func (f *forgetter) close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.kick)
	}
	f.mu.Unlock()
	<-f.done
}
