// Package lifecycle turns an employee's SCIM state and the tenant's policy into lifecycle
// transitions and owed effects (Plan, pure), applies them durably through the store (Service),
// and executes the effects with leases, backoff and idempotency keys (Runner).
package lifecycle

import (
	"fmt"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/mdm"
)

// ConnectorInfo describes one of a tenant's MDM connectors for planning.
type ConnectorInfo struct {
	ID   string
	Name string
	Type string
	// Notifier connectors (the webhook) get one person-level job; the others get a dispatch job
	// that finds the person's devices and fans out into one job per device.
	Notifier bool
	// Messenger connectors (threemawork) manage the messenger's licenses themselves: every final
	// offboarding withdraws the license there, whatever the wipe policy, without brake or
	// approval — like the built-in registry's own lock-out.
	Messenger bool
}

// Input is everything Plan decides from besides the employee itself.
type Input struct {
	Policy     identity.Policy
	Now        time.Time
	Connectors []ConnectorInfo
	// Braked: the mass-offboarding brake is engaged; device effects of a final offboarding
	// wait for an admin's confirmation.
	Braked bool
	// Lease, if set, leases the local jobs Plan creates (seat, ID) to this owner for LeaseFor,
	// so the caller can execute them right away with no other worker interfering.
	Lease    string
	LeaseFor time.Duration
	Actor    string
}

// Outcome summarises the transitions one Plan made.
type Outcome struct {
	Hired      bool // a seat acquisition started (joiner or re-hire)
	Restricted bool
	Restored   bool
	Offboarded bool // the final offboarding happened
	Dropped    bool // a pending or inactive employee left the seat queue
	// External: non-local jobs were created (the runner must be woken).
	External bool
}

// Changed reports whether any transition happened.
func (o Outcome) Changed() bool {
	return o.Hired || o.Restricted || o.Restored || o.Offboarded || o.Dropped || o.External
}

// localAction reports whether a job acts only on Offboarded's own state (seats, registry).
func localAction(a string) bool {
	return a == identity.ActionAcquireSeat || a == identity.ActionReleaseSeat || a == identity.ActionRevokeID
}

// holdsLicense reports whether a state keeps seat, credentials and ID.
func holdsLicense(s identity.State) bool {
	return s == identity.StateActive || s == identity.StateRestricted
}

// WillOffboard reports whether Plan would run the final offboarding now, without changing e.
func WillOffboard(e *identity.Employee, p identity.Policy, now time.Time) bool {
	if !holdsLicense(e.State) {
		return false
	}
	return finalDue(e, p, now)
}

func finalDue(e *identity.Employee, p identity.Policy, now time.Time) bool {
	if e.Deleted != nil || (e.LeaveDate != nil && !now.Before(*e.LeaveDate)) {
		return true
	}
	if e.Active {
		return false
	}
	return p.NoticePeriod == 0 || (e.RestrictedUntil != nil && !now.Before(*e.RestrictedUntil))
}

// Plan applies the lifecycle to e in place: from e's desired SCIM state (Active, Deleted,
// LeaveDate) and its current lifecycle state it makes the due transition and adds the jobs it
// owes. It is pure and idempotent: planning an already planned employee changes nothing.
func Plan(e *identity.Employee, in Input) Outcome {
	var out Outcome
	now := in.Now.UTC()
	wantLicense := e.Active && e.Deleted == nil && (e.LeaveDate == nil || now.Before(*e.LeaveDate))

	switch {
	case holdsLicense(e.State) && finalDue(e, in.Policy, now):
		offboard(e, in, &out)
	case e.State == identity.StateActive && !wantLicense:
		e.State = identity.StateRestricted
		until := now.Add(time.Duration(in.Policy.NoticePeriod))
		e.RestrictedUntil = &until
		e.Record(now, "restricted", "notice period until "+until.Format(time.RFC3339), in.Actor)
		out.Restricted = true
	case e.State == identity.StateRestricted && wantLicense:
		e.State = identity.StateActive
		e.RestrictedUntil = nil
		cancelOpen(e, now, "reactivated during the notice period")
		e.Record(now, "restored", "reactivated during the notice period", in.Actor)
		out.Restored = true
	case e.State == identity.StatePendingSeat && !wantLicense:
		e.State = identity.StateInactive
		e.SeatQueued = nil
		if j := e.Jobs[jobID(e.Generation, identity.ActionAcquireSeat)]; j != nil && j.State == identity.JobPending {
			finish(j, identity.JobCancelled, now, "deactivated before a seat was free")
		}
		e.Record(now, "dropped", "deactivated while waiting for a seat", in.Actor)
		out.Dropped = true
	case (e.State == "" || e.State == identity.StateInactive || e.State == identity.StateOffboarded) && wantLicense:
		hire(e, in, &out)
	case e.State == "":
		e.State = identity.StateInactive
		e.Record(now, "created", "created inactive", in.Actor)
	}

	// A seat the employee holds but no longer needs is given back: an acquisition that
	// completed after a deactivation, or the seat of an earlier generation while a re-hired
	// employee waits in line for its own.
	if e.Seat.State == identity.SeatHeld {
		g := seatGen(e)
		if !holdsLicense(e.State) && e.State != identity.StatePendingSeat || e.State == identity.StatePendingSeat && g < e.Generation {
			releaseSeat(e, in, g)
		}
	}
	e.NextWakeAt = nextWake(e, now)
	return out
}

func hire(e *identity.Employee, in Input, out *Outcome) {
	now := in.Now.UTC()
	// Every hire is a new generation, with its own seat operation, job ids and idempotency keys:
	// a joiner dropped from the seat queue and activated again must not find its cancelled
	// acquisition under the same id (it would wait forever).
	kind := "joined"
	if e.State == identity.StateOffboarded {
		kind = "rehired"
	}
	detail := "waiting for a seat"
	if kind == "rehired" {
		// The employee may use the app on their devices again: wipes of the earlier employment
		// that have not reached a vendor yet (held by the brake, waiting for an admin's
		// approval, or not yet sent) would now remove it from the returning employee.
		if n := cancelUnsent(e, now, "re-hired before it was sent", func(g int) bool { return g <= e.Generation }); n > 0 {
			detail += fmt.Sprintf("; %d unsent wipe(s) of the previous employment cancelled", n)
		}
	}
	e.Generation++
	e.State = identity.StatePendingSeat
	e.SeatQueued = &now
	e.Offboarded = nil
	addJob(e, in, jobID(e.Generation, identity.ActionAcquireSeat), identity.ActionAcquireSeat, func(j *identity.Job) {
		j.SeatOp = seatOp(e.ID, e.Generation, "a")
	})
	e.Record(now, kind, detail, in.Actor)
	out.Hired = true
}

func offboard(e *identity.Employee, in Input, out *Outcome) {
	now := in.Now.UTC()
	reason := "deactivated"
	switch {
	case e.Deleted != nil:
		reason = "deleted"
	case e.LeaveDate != nil && !now.Before(*e.LeaveDate):
		reason = "leave date reached"
	case e.RestrictedUntil != nil:
		reason = "notice period ended"
	}
	e.State = identity.StateOffboarded
	e.Offboarded = &now
	e.RestrictedUntil = nil
	e.Credentials = nil // the app's license check fails from this write on
	gen := e.Generation
	if e.WorkID != "" {
		id := e.WorkID
		addJob(e, in, jobID(gen, identity.ActionRevokeID), identity.ActionRevokeID, func(j *identity.Job) { j.WorkID = id })
	}
	if e.Seat.State == identity.SeatHeld {
		releaseSeat(e, in, seatGen(e))
	}
	for _, c := range in.Connectors {
		if c.Messenger {
			addJob(e, in, jobID(gen, identity.ActionRevokeLicense, c.ID), identity.ActionRevokeLicense, func(j *identity.Job) {
				j.Connector, j.WorkID = c.ID, e.WorkID
			})
			out.External = true
		}
	}
	if in.Policy.Wipe != identity.WipeNone {
		for _, c := range in.Connectors {
			if c.Messenger {
				continue
			}
			state := identity.JobPending
			if in.Braked {
				state = identity.JobBraked
			}
			if c.Notifier {
				action := identity.ActionWipeApp
				if in.Policy.Wipe == identity.WipeDevice {
					action = identity.ActionWipeDevice
					if state == identity.JobPending {
						state = identity.JobApproval
					}
				}
				addJob(e, in, jobID(gen, identity.ActionNotify, c.ID), action, func(j *identity.Job) {
					j.Connector, j.State, j.WorkID = c.ID, state, e.WorkID
				})
			} else {
				addJob(e, in, jobID(gen, identity.ActionDiscover, c.ID), identity.ActionDiscover, func(j *identity.Job) {
					j.Connector, j.State, j.WorkID = c.ID, state, e.WorkID
				})
			}
			out.External = true
		}
	}
	e.Record(now, "offboarded", reason, in.Actor)
	out.Offboarded = true
}

// seatGen is the generation whose acquisition took the seat e holds.
func seatGen(e *identity.Employee) int {
	for _, j := range e.Jobs {
		if j.Action == identity.ActionAcquireSeat && j.SeatOp == e.Seat.Op {
			return j.Generation
		}
	}
	return e.Generation
}

// releaseSeat adds the job that gives back the seat acquired in generation gen. There is one
// acquisition per generation, so one release per generation gives each seat back exactly once.
func releaseSeat(e *identity.Employee, in Input, gen int) {
	addJob(e, in, jobID(gen, identity.ActionReleaseSeat), identity.ActionReleaseSeat, func(j *identity.Job) {
		j.SeatOp, j.Generation = seatOp(e.ID, gen, "r"), gen
	})
}

// DeviceJob adds the job for one device found or attached during a dispatch: remove the app,
// or — under the device policy, for a company-owned device — a full wipe waiting for approval.
func DeviceJob(e *identity.Employee, p identity.Policy, d mdm.Device, gen int, workID string, braked bool, now time.Time) bool {
	action := identity.ActionWipeApp
	state := identity.JobPending
	if p.Wipe == identity.WipeDevice && d.Ownership == mdm.OwnershipCompany {
		action, state = identity.ActionWipeDevice, identity.JobApproval
	}
	if braked {
		state = identity.JobBraked
	}
	dev := d
	return addJob(e, Input{Now: now}, jobID(gen, action, d.Connector, d.ID), action, func(j *identity.Job) {
		j.Connector, j.Device, j.State, j.WorkID, j.Generation = d.Connector, &dev, state, workID, gen
	})
}

// addJob adds a job unless one with the same id exists (planning is idempotent). Local jobs
// are leased to in.Lease when set.
func addJob(e *identity.Employee, in Input, id, action string, set func(*identity.Job)) bool {
	if _, ok := e.Jobs[id]; ok {
		return false
	}
	if e.Jobs == nil {
		e.Jobs = map[string]*identity.Job{}
	}
	now := in.Now.UTC()
	j := &identity.Job{
		ID: id, Action: action, State: identity.JobPending, NextAt: now,
		Key: idempotencyKey(e.ID, id), Created: now, Updated: now, Generation: e.Generation,
	}
	if set != nil {
		set(j)
	}
	if in.Lease != "" && localAction(action) && j.State == identity.JobPending {
		until := now.Add(in.LeaseFor)
		j.State, j.LeaseOwner, j.LeaseUntil = identity.JobRunning, in.Lease, &until
	}
	e.Jobs[id] = j
	return true
}

// cancelOpen cancels every job of the current generation that has not started an external
// effect yet.
func cancelOpen(e *identity.Employee, now time.Time, why string) {
	cancelUnsent(e, now, why, func(g int) bool { return g == e.Generation })
}

// cancelUnsent cancels the external jobs of the generations ofGen selects that have not
// reached a vendor yet (pending, awaiting approval, braked) and returns how many. The
// messenger's license withdrawal is never cancelled: the ID it concerns stays revoked.
func cancelUnsent(e *identity.Employee, now time.Time, why string, ofGen func(int) bool) int {
	n := 0
	for _, j := range e.Jobs {
		if ofGen(j.Generation) && !localAction(j.Action) && j.Action != identity.ActionRevokeLicense &&
			(j.State == identity.JobPending || j.State == identity.JobApproval || j.State == identity.JobBraked) {
			finish(j, identity.JobCancelled, now, why)
			n++
		}
	}
	return n
}

func finish(j *identity.Job, s identity.JobState, now time.Time, msg string) {
	j.State, j.Updated, j.LeaseOwner, j.LeaseUntil = s, now, "", nil
	if s == identity.JobFailed || s == identity.JobCancelled {
		j.LastError = msg
	}
}

// nextWake is when the runner must look at e next: the end of the notice period, the leave
// date, the earliest due job, or an expiring lease. Nil when nothing is owed.
func nextWake(e *identity.Employee, now time.Time) *time.Time {
	var next *time.Time
	consider := func(t time.Time) {
		if next == nil || t.Before(*next) {
			tt := t
			next = &tt
		}
	}
	if e.State == identity.StateRestricted && e.RestrictedUntil != nil {
		consider(*e.RestrictedUntil)
	}
	if e.LeaveDate != nil && holdsLicense(e.State) {
		consider(*e.LeaveDate)
	}
	for _, j := range e.Jobs {
		switch j.State {
		case identity.JobPending, identity.JobWaiting:
			consider(j.NextAt)
		case identity.JobRunning:
			if j.LeaseUntil != nil {
				consider(*j.LeaseUntil)
			}
		}
	}
	return next
}
