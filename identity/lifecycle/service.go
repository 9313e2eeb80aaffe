package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/offboard/offboard/identity"
)

// DefaultLeaseFor is how long a worker owns a job it started; a worker that dies is replaced
// after this long. Local effects take milliseconds; the runner renews the lease of a vendor
// call every third of it while the call runs (see DefaultCallTimeout).
const DefaultLeaseFor = 15 * time.Second

// DefaultRetention is how long the history of a SCIM-deleted employee is kept.
const DefaultRetention = 400 * 24 * time.Hour

// Service applies SCIM changes and admin actions to employees: one compare-and-swap per change
// carrying the new state and the effects it owes, then the local effects (seat, messenger ID)
// right away and the external ones through the Runner.
type Service struct {
	store     Store
	conns     Connectors
	now       func() time.Time
	log       *slog.Logger
	owner     string
	leaseFor  time.Duration
	retention time.Duration
	wake      func(tenant, employee string)
	hasher    Hasher
	newWorkID func() string
	forget    *forgetter
	tenants   tenantSettings
	decoy     struct {
		once sync.Once
		hash string
	}
}

// Option configures a Service.
type Option func(*Service)

// WithClock injects the clock.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithOwner names this process for leases (default: a random id).
func WithOwner(owner string) Option { return func(s *Service) { s.owner = owner } }

// WithLeaseFor sets the lease duration.
func WithLeaseFor(d time.Duration) Option { return func(s *Service) { s.leaseFor = d } }

// WithHasher sets the password hasher (tests use a fast one).
func WithHasher(h Hasher) Option { return func(s *Service) { s.hasher = h } }

// WithWorkIDGenerator replaces the messenger ID generator (NewWorkID). Tests use it to force
// collisions; whatever it returns, the registry decides whether an ID is new.
func WithWorkIDGenerator(gen func() string) Option { return func(s *Service) { s.newWorkID = gen } }

// WithRetention sets how long deleted employees' history is kept.
func WithRetention(d time.Duration) Option { return func(s *Service) { s.retention = d } }

// NewService returns a Service.
func NewService(store Store, conns Connectors, opts ...Option) *Service {
	s := &Service{
		store: store, conns: conns, now: time.Now, log: slog.Default(),
		owner: "offboard-" + NewID()[:8], leaseFor: DefaultLeaseFor, retention: DefaultRetention,
		wake: func(string, string) {}, hasher: BcryptHasher{}, newWorkID: NewWorkID,
	}
	for _, o := range opts {
		o(s)
	}
	s.forget = newForgetter(store, s.log)
	return s
}

// SetWaker connects the runner: called after a change that owes external effects.
func (s *Service) SetWaker(w func(tenant, employee string)) { s.wake = w }

// Owner is the lease owner name of this process.
func (s *Service) Owner() string { return s.owner }

// leaseToken names one execution of this process as a lease owner. Every request and every
// runner pass leases under its own token, so two goroutines of one process exclude each other
// exactly as two processes do; the process name prefix tells an operator whose lease it is.
func (s *Service) leaseToken() string { return s.owner + "/" + NewID()[:8] }

// Close flushes background work.
func (s *Service) Close() { s.forget.close() }

// UserInput is the desired SCIM-side state of a user, decoded by the SCIM layer.
type UserInput struct {
	UserName   string
	ExternalID string
	Active     bool
	Resource   map[string]any
	LeaveDate  *time.Time
}

// CreateUser creates a user as the IdP asked. An active user is a joiner: a seat, credentials
// and a new messenger ID are issued before this returns, or the user waits in pending_seat.
func (s *Service) CreateUser(ctx context.Context, actor, tenant string, in UserInput) (*identity.Employee, error) {
	t, err := s.settings(ctx, tenant)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	e := &identity.Employee{
		ID: NewID(), Tenant: tenant, Version: 1, Created: now, Modified: now,
	}
	apply(e, in)
	if err := s.store.ClaimUserName(ctx, tenant, e.UserNameKey, e.ID); err != nil {
		return nil, err
	}
	token := s.leaseToken()
	plan, err := s.input(ctx, t, now, actor, false, token)
	if err != nil {
		_ = s.store.ReleaseUserName(context.WithoutCancel(ctx), tenant, e.UserNameKey, e.ID)
		return nil, err
	}
	out := Plan(e, plan)
	if err := s.store.InsertEmployee(ctx, e); err != nil {
		_ = s.store.ReleaseUserName(context.WithoutCancel(ctx), tenant, e.UserNameKey, e.ID)
		return nil, err
	}
	if done, err := s.runLocalWith(ctx, e, token, t); err != nil {
		s.log.Warn("local effects left to the runner", "employee", e.ID, "error", err)
		s.wake(tenant, e.ID) // it schedules the employee for when the request's lease ends
	} else if done != nil {
		e = done
	}
	// One entry with the outcome: a joiner licensed at once is audited as such, a waiting one
	// gets a second entry when a seat frees up ("employee.licensed").
	s.audit(ctx, tenant, actor, "", e, out, "employee.created")
	return e, nil
}

// apply copies the SCIM-side input onto an employee.
func apply(e *identity.Employee, in UserInput) {
	e.UserName = in.UserName
	e.UserNameKey = identity.FoldKey(in.UserName)
	e.ExternalID = in.ExternalID
	e.Active = in.Active
	e.Resource = in.Resource
	e.LeaveDate = in.LeaveDate
}

// input builds the planning input for a tenant; brake reports whether the caller counted this
// change as a final offboarding (see offboardingBraked); local jobs are leased to token.
// An unreadable connector list fails the change (the IdP retries it) rather than planning an
// offboarding without its device effects.
func (s *Service) input(ctx context.Context, t *identity.Tenant, now time.Time, actor string, braked bool, token string) (Input, error) {
	conns, err := s.conns.List(ctx, t.ID)
	if err != nil {
		return Input{}, fmt.Errorf("list connectors for planning: %w", err)
	}
	return Input{Policy: t.Policy, Now: now, Connectors: conns, Braked: braked,
		Lease: token, LeaseFor: s.leaseFor, Actor: actor}, nil
}

// Mutation changes the SCIM side of an employee (resource, userName, active, ...). It returns
// whether the SCIM resource changed (which bumps its version).
type Mutation func(e *identity.Employee) (changed bool, err error)

// UpdateUser applies a SCIM change (PUT, PATCH) with an optional If-Match version check, plans
// the lifecycle in the same write, then runs the local effects and wakes the runner.
func (s *Service) UpdateUser(ctx context.Context, actor, tenant, id string, ifMatch *int64, m Mutation) (*identity.Employee, error) {
	return s.update(ctx, actor, tenant, id, ifMatch, false, m)
}

// DeleteUser deletes the SCIM resource: the final offboarding runs if it has not, the userName
// is freed, and the employee's history and messenger ID tombstone stay (see retention).
func (s *Service) DeleteUser(ctx context.Context, actor, tenant, id string, ifMatch *int64) error {
	_, err := s.update(ctx, actor, tenant, id, ifMatch, true, func(e *identity.Employee) (bool, error) {
		now := s.now().UTC()
		retain := now.Add(s.retention)
		e.Deleted, e.RetainUntil = &now, &retain
		e.UserNameKey, e.ExternalID = "", ""
		e.Record(now, "deleted", "SCIM resource deleted", actor)
		return true, nil
	})
	return err
}

func (s *Service) update(ctx context.Context, actor, tenant, id string, ifMatch *int64, deleting bool, m Mutation) (*identity.Employee, error) {
	t, err := s.settings(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var (
		out     Outcome
		before  identity.State
		counted bool
		braked  bool
		marked  bool
		token   = s.leaseToken()
	)
	e, err := s.store.UpdateEmployee(ctx, tenant, id, func(e *identity.Employee) error {
		if e.Deleted != nil {
			return fmt.Errorf("employee: %w", identity.ErrNotFound)
		}
		if ifMatch != nil && *ifMatch != e.Version {
			return fmt.Errorf("version %d, resource at %d: %w", *ifMatch, e.Version, identity.ErrPrecondition)
		}
		now := s.now().UTC()
		before = e.State
		changed, err := m(e)
		if err != nil {
			return err
		}
		if changed {
			e.Version++
			e.Modified = now
		}
		if WillOffboard(e, t.Policy, now) && !counted {
			counted = true
			braked = s.offboardingBraked(ctx, t, now)
		}
		in, err := s.input(ctx, t, now, actor, braked, token)
		if err != nil {
			return err
		}
		out = Plan(e, in)
		if !changed && !out.Changed() {
			return identity.ErrSkip
		}
		if (out.External || e.NextWakeAt != nil) && !marked {
			at := now
			if e.NextWakeAt != nil && e.NextWakeAt.After(now) && !out.External {
				at = *e.NextWakeAt
			}
			if err := s.store.MarkDue(ctx, tenant, id, at); err != nil {
				return err
			}
			marked = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out.Dropped {
		if err := s.store.DequeueSeat(ctx, id); err != nil {
			s.log.Warn("seat queue not updated", "employee", id, "error", err)
		}
	}
	if done, err := s.runLocalWith(ctx, e, token, t); err != nil {
		s.log.Warn("local effects left to the runner", "employee", id, "error", err)
		s.wake(tenant, id)
	} else if done != nil {
		e = done
	}
	switch {
	case deleting:
		s.audit(ctx, tenant, actor, before, e, out, "employee.deleted")
	case out.Changed():
		s.audit(ctx, tenant, actor, before, e, out, "")
	}
	// Only new external work needs the runner now; timers and leases are due marks. Waking on
	// any timer made the runner's own Reconcile wake it again for the same employee: a loop
	// until the timer came (for a restricted employee, the whole notice period).
	if out.External {
		s.wake(tenant, id)
	}
	return e, nil
}

// offboardingBraked counts a final offboarding against the tenant's brake and reports whether
// device effects must wait for an admin.
func (s *Service) offboardingBraked(ctx context.Context, t *identity.Tenant, now time.Time) bool {
	if t.Policy.BrakeThreshold <= 0 {
		return false
	}
	n, err := s.store.CountOffboarding(ctx, t.ID, now, time.Duration(t.Policy.BrakeWindow))
	if err != nil {
		// Fail safe: an unknown count engages the brake rather than risking a mass wipe.
		s.log.Warn("offboarding count unavailable, brake engaged", "tenant", t.ID, "error", err)
		return true
	}
	return n > t.Policy.BrakeThreshold
}

// audit records a lifecycle transition of e from state before (empty for a new employee);
// action, if set, overrides the one the outcome names.
func (s *Service) audit(ctx context.Context, tenant, actor string, before identity.State, e *identity.Employee, out Outcome, action string) {
	switch {
	case action != "":
	case out.Offboarded:
		action = "employee.offboarded"
	case out.Restricted:
		action = "employee.restricted"
	case out.Restored:
		action = "employee.restored"
	case out.Hired:
		action = "employee.hired"
	case out.Dropped:
		action = "employee.dropped"
	default:
		action = "employee.changed"
	}
	if out.Hired && action == "employee.created" {
		action = "employee.hired"
	}
	entry := &identity.AuditEntry{
		ID: NewID(), Tenant: tenant, At: s.now().UTC(), Actor: actor, Action: action, Target: e.ID,
		After: map[string]any{"state": e.State, "workId": e.WorkID, "generation": e.Generation},
	}
	if before != "" {
		entry.Before = map[string]any{"state": before}
	}
	if err := s.store.AppendAudit(ctx, entry); err != nil {
		s.log.Warn("audit entry not written", "tenant", tenant, "action", action, "error", err)
	}
}

// Reconcile re-plans an employee against the current time (notice period over, leave date
// reached) and returns it; the runner calls it before running jobs.
func (s *Service) Reconcile(ctx context.Context, tenant, id string) (*identity.Employee, error) {
	e, err := s.update(ctx, "system", tenant, id, nil, false, func(*identity.Employee) (bool, error) { return false, nil })
	if errors.Is(err, identity.ErrNotFound) {
		// Deleted employees still run their jobs; plan them without the SCIM guard.
		return s.store.LoadEmployee(ctx, id)
	}
	return e, err
}

// GetUser reads a tenant's employee.
func (s *Service) GetUser(ctx context.Context, tenant, id string) (*identity.Employee, error) {
	return s.store.GetEmployee(ctx, tenant, id)
}
