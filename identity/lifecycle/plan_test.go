package lifecycle

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/mdm"
)

var (
	t0      = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	webhook = ConnectorInfo{ID: "hook1", Name: "hr", Type: "webhook", Notifier: true}
	intune  = ConnectorInfo{ID: "intune1", Name: "intune", Type: "intune"}
)

func ptr(t time.Time) *time.Time { return &t }

// licensed is an employee holding a seat, credentials and an ID in generation gen.
func licensed(gen int) *identity.Employee {
	return &identity.Employee{
		ID: "emp1", Tenant: "ten1", Active: true, State: identity.StateActive, Generation: gen,
		Seat:        identity.Seat{State: identity.SeatHeld, Op: seatOp("emp1", gen, "a")},
		WorkID:      "ABCD1234",
		Credentials: &identity.Credentials{Username: "ABCD1234", Hash: "h"},
		Jobs: map[string]*identity.Job{
			jobID(gen, identity.ActionAcquireSeat): {ID: jobID(gen, identity.ActionAcquireSeat), Action: identity.ActionAcquireSeat, State: identity.JobDone, Generation: gen},
		},
	}
}

func appPolicy(notice time.Duration) identity.Policy {
	return identity.Policy{NoticePeriod: identity.Duration(notice), Wipe: identity.WipeApp}
}

// jobStates maps job ids to "action/state" (connector and device omitted).
func jobStates(e *identity.Employee) map[string]string {
	out := map[string]string{}
	for id, j := range e.Jobs {
		out[id] = j.Action + "/" + string(j.State)
	}
	return out
}

func TestPlan(t *testing.T) {
	type check func(t *testing.T, e *identity.Employee, out Outcome)
	tests := []struct {
		name  string
		emp   func() *identity.Employee
		in    Input
		out   Outcome
		state identity.State
		jobs  map[string]string // exact set of jobs afterwards
		check check
	}{
		{
			name:  "a new active user is a joiner waiting for a seat in generation 1",
			emp:   func() *identity.Employee { return &identity.Employee{ID: "emp1", Active: true} },
			in:    Input{Policy: appPolicy(0), Now: t0},
			out:   Outcome{Hired: true},
			state: identity.StatePendingSeat,
			jobs:  map[string]string{"g1:acquire_seat": "acquire_seat/pending"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				j := e.Jobs["g1:acquire_seat"]
				if e.Generation != 1 || j.SeatOp != "emp1-g1-a" || j.Generation != 1 || !j.NextAt.Equal(t0) {
					t.Errorf("generation %d, job %+v", e.Generation, j)
				}
				if e.SeatQueued == nil || !e.SeatQueued.Equal(t0) || e.NextWakeAt == nil || !e.NextWakeAt.Equal(t0) {
					t.Errorf("seatQueued %v nextWakeAt %v", e.SeatQueued, e.NextWakeAt)
				}
				if j.Key == "" || j.Key != idempotencyKey("emp1", "g1:acquire_seat") {
					t.Errorf("key %q", j.Key)
				}
			},
		},
		{
			name: "a joiner's local job is leased to the caller when asked, so the request runs it at once",
			emp:  func() *identity.Employee { return &identity.Employee{ID: "emp1", Active: true} },
			in:   Input{Policy: appPolicy(0), Now: t0, Lease: "req-1", LeaseFor: 10 * time.Second},
			out:  Outcome{Hired: true}, state: identity.StatePendingSeat,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/running"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				j := e.Jobs["g1:acquire_seat"]
				if j.LeaseOwner != "req-1" || j.LeaseUntil == nil || !j.LeaseUntil.Equal(t0.Add(10*time.Second)) {
					t.Errorf("lease %q until %v", j.LeaseOwner, j.LeaseUntil)
				}
				if e.NextWakeAt == nil || !e.NextWakeAt.Equal(*j.LeaseUntil) {
					t.Errorf("a leased job must wake the runner when its lease expires: %v", e.NextWakeAt)
				}
			},
		},
		{
			name:  "a new inactive user is recorded inactive and owes nothing",
			emp:   func() *identity.Employee { return &identity.Employee{ID: "emp1"} },
			in:    Input{Policy: appPolicy(0), Now: t0},
			state: identity.StateInactive, jobs: map[string]string{},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.Generation != 0 || e.NextWakeAt != nil {
					t.Errorf("generation %d wake %v", e.Generation, e.NextWakeAt)
				}
			},
		},
		{
			name: "an inactive user activated by the IdP becomes a joiner",
			emp: func() *identity.Employee {
				return &identity.Employee{ID: "emp1", Active: true, State: identity.StateInactive}
			},
			in:  Input{Policy: appPolicy(0), Now: t0},
			out: Outcome{Hired: true}, state: identity.StatePendingSeat,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/pending"},
		},
		{
			name: "a joiner deactivated while waiting leaves the seat queue and its acquisition is cancelled",
			emp: func() *identity.Employee {
				e := &identity.Employee{ID: "emp1", Active: true}
				Plan(e, Input{Policy: appPolicy(0), Now: t0})
				e.Active = false
				return e
			},
			in:  Input{Policy: appPolicy(0), Now: t0.Add(time.Minute)},
			out: Outcome{Dropped: true}, state: identity.StateInactive,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/cancelled"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.SeatQueued != nil || e.NextWakeAt != nil {
					t.Errorf("seatQueued %v wake %v", e.SeatQueued, e.NextWakeAt)
				}
			},
		},
		{
			name: "a joiner deactivated while its acquisition runs keeps the running job, whose seat is then given back",
			emp: func() *identity.Employee {
				e := &identity.Employee{ID: "emp1", Active: true}
				Plan(e, Input{Policy: appPolicy(0), Now: t0, Lease: "w", LeaseFor: time.Minute})
				e.Active = false
				return e
			},
			in:  Input{Policy: appPolicy(0), Now: t0.Add(time.Second)},
			out: Outcome{Dropped: true}, state: identity.StateInactive,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/running"},
		},
		{
			name: "a dropped joiner activated again waits for a seat with a live acquisition in a new generation",
			emp: func() *identity.Employee {
				e := &identity.Employee{ID: "emp1", Active: true}
				Plan(e, Input{Policy: appPolicy(0), Now: t0})
				e.Active = false
				Plan(e, Input{Policy: appPolicy(0), Now: t0.Add(time.Minute)})
				e.Active = true
				return e
			},
			in:  Input{Policy: appPolicy(0), Now: t0.Add(2 * time.Minute)},
			out: Outcome{Hired: true}, state: identity.StatePendingSeat,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/cancelled", "g2:acquire_seat": "acquire_seat/pending"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.Generation != 2 || e.Jobs["g2:acquire_seat"].SeatOp != "emp1-g2-a" {
					t.Errorf("generation %d job %+v", e.Generation, e.Jobs["g2:acquire_seat"])
				}
			},
		},
		{
			name: "a deactivation with a notice period restricts the user and keeps seat, ID and credentials",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in:   Input{Policy: appPolicy(72 * time.Hour), Now: t0, Connectors: []ConnectorInfo{webhook, intune}},
			out:  Outcome{Restricted: true}, state: identity.StateRestricted,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/done"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				end := t0.Add(72 * time.Hour)
				if e.RestrictedUntil == nil || !e.RestrictedUntil.Equal(end) || e.NextWakeAt == nil || !e.NextWakeAt.Equal(end) {
					t.Errorf("restrictedUntil %v wake %v", e.RestrictedUntil, e.NextWakeAt)
				}
				if e.Credentials == nil || e.Seat.State != identity.SeatHeld || e.WorkID == "" {
					t.Error("a restricted user keeps credentials, seat and ID")
				}
			},
		},
		{
			name: "a restricted user is left alone before the notice period ends",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.Active, e.State, e.RestrictedUntil = false, identity.StateRestricted, ptr(t0.Add(time.Hour))
				return e
			},
			in:    Input{Policy: appPolicy(time.Hour), Now: t0.Add(59 * time.Minute), Connectors: []ConnectorInfo{webhook}},
			state: identity.StateRestricted,
			jobs:  map[string]string{"g1:acquire_seat": "acquire_seat/done"},
		},
		{
			name: "a restricted user is offboarded when the notice period ends",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.Active, e.State, e.RestrictedUntil = false, identity.StateRestricted, ptr(t0.Add(time.Hour))
				return e
			},
			in:  Input{Policy: appPolicy(time.Hour), Now: t0.Add(time.Hour), Connectors: []ConnectorInfo{webhook}},
			out: Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_app/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if last := e.Timeline[len(e.Timeline)-1]; last.Detail != "notice period ended" {
					t.Errorf("reason %q", last.Detail)
				}
				if e.RestrictedUntil != nil {
					t.Error("restrictedUntil kept after the offboarding")
				}
			},
		},
		{
			name: "a restricted user reactivated during the notice period is restored",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.State, e.RestrictedUntil = identity.StateRestricted, ptr(t0.Add(time.Hour))
				return e
			},
			in:  Input{Policy: appPolicy(time.Hour), Now: t0.Add(time.Minute)},
			out: Outcome{Restored: true}, state: identity.StateActive,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/done"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.RestrictedUntil != nil || e.NextWakeAt != nil || e.Credentials == nil {
					t.Errorf("restored: until %v wake %v cred %v", e.RestrictedUntil, e.NextWakeAt, e.Credentials)
				}
			},
		},
		{
			name: "a deactivation without a notice period offboards at once and owes every effect",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in:   Input{Policy: appPolicy(0), Now: t0, Connectors: []ConnectorInfo{webhook, intune}},
			out:  Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_app/pending",
				"g1:discover_devices:intune1": "discover_devices/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.Credentials != nil {
					t.Error("credentials must be deleted in the offboarding write")
				}
				if e.Offboarded == nil || !e.Offboarded.Equal(t0) {
					t.Errorf("offboarded at %v", e.Offboarded)
				}
				if e.Jobs["g1:revoke_id"].WorkID != "ABCD1234" || e.Jobs["g1:release_seat"].SeatOp != "emp1-g1-r" {
					t.Errorf("revoke %+v release %+v", e.Jobs["g1:revoke_id"], e.Jobs["g1:release_seat"])
				}
				n := e.Jobs["g1:notify:hook1"]
				if n.Connector != "hook1" || n.WorkID != "ABCD1234" || n.Device != nil {
					t.Errorf("notify job %+v", n)
				}
				if d := e.Jobs["g1:discover_devices:intune1"]; d.Connector != "intune1" {
					t.Errorf("discover job %+v", d)
				}
			},
		},
		{
			name: "local jobs of an offboarding are leased to the request, external ones are left to the runner",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in:   Input{Policy: appPolicy(0), Now: t0, Connectors: []ConnectorInfo{webhook}, Lease: "req", LeaseFor: time.Minute},
			out:  Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/running",
				"g1:release_seat": "release_seat/running", "g1:notify:hook1": "wipe_app/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.NextWakeAt == nil || !e.NextWakeAt.Equal(t0) {
					t.Errorf("the external job is due now: wake %v", e.NextWakeAt)
				}
			},
		},
		{
			name: "wipe none offboards without device or webhook jobs",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in: Input{Policy: identity.Policy{Wipe: identity.WipeNone}, Now: t0,
				Connectors: []ConnectorInfo{webhook, intune}},
			out: Outcome{Offboarded: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending", "g1:release_seat": "release_seat/pending",
			},
		},
		{
			name: "a messenger connector withdraws the license whatever the wipe policy and the brake",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in: Input{Policy: identity.Policy{Wipe: identity.WipeNone}, Now: t0, Braked: true,
				Connectors: []ConnectorInfo{webhook, {ID: "tw1", Name: "threema", Type: "threemawork", Notifier: true, Messenger: true}}},
			out: Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending", "g1:release_seat": "release_seat/pending",
				"g1:revoke_license:tw1": "revoke_license/pending",
			},
		},
		{
			name: "the device policy turns the webhook's event into a full wipe waiting for approval",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in: Input{Policy: identity.Policy{Wipe: identity.WipeDevice}, Now: t0,
				Connectors: []ConnectorInfo{webhook, intune}},
			out: Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_device/approval",
				"g1:discover_devices:intune1": "discover_devices/pending",
			},
		},
		{
			name: "the engaged brake holds the device and webhook jobs but not the seat and the ID",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in:   Input{Policy: appPolicy(0), Now: t0, Braked: true, Connectors: []ConnectorInfo{webhook, intune}},
			out:  Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_app/braked",
				"g1:discover_devices:intune1": "discover_devices/braked",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.Credentials != nil {
					t.Error("the brake must not delay the lock-out")
				}
			},
		},
		{
			name: "the brake also holds a full wipe, which still needs its approval afterwards",
			emp:  func() *identity.Employee { e := licensed(1); e.Active = false; return e },
			in: Input{Policy: identity.Policy{Wipe: identity.WipeDevice}, Now: t0, Braked: true,
				Connectors: []ConnectorInfo{webhook}},
			out: Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_device/braked",
			},
		},
		{
			name: "an active user whose leave date has come is offboarded even though the IdP says active",
			emp:  func() *identity.Employee { e := licensed(1); e.LeaveDate = ptr(t0); return e },
			in:   Input{Policy: appPolicy(336 * time.Hour), Now: t0, Connectors: []ConnectorInfo{webhook}},
			out:  Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_app/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if last := e.Timeline[len(e.Timeline)-1]; last.Detail != "leave date reached" {
					t.Errorf("reason %q", last.Detail)
				}
			},
		},
		{
			name:  "an active user with a future leave date stays active and wakes the runner on that date",
			emp:   func() *identity.Employee { e := licensed(1); e.LeaveDate = ptr(t0.Add(48 * time.Hour)); return e },
			in:    Input{Policy: appPolicy(0), Now: t0},
			state: identity.StateActive,
			jobs:  map[string]string{"g1:acquire_seat": "acquire_seat/done"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.NextWakeAt == nil || !e.NextWakeAt.Equal(t0.Add(48*time.Hour)) {
					t.Errorf("wake %v", e.NextWakeAt)
				}
			},
		},
		{
			name: "a DELETE offboards an active user at once, notice period or not",
			emp:  func() *identity.Employee { e := licensed(1); e.Deleted = ptr(t0); return e },
			in:   Input{Policy: appPolicy(336 * time.Hour), Now: t0, Connectors: []ConnectorInfo{webhook}},
			out:  Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_app/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if last := e.Timeline[len(e.Timeline)-1]; last.Detail != "deleted" {
					t.Errorf("reason %q", last.Detail)
				}
			},
		},
		{
			name: "a DELETE ends a notice period at once",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.Active, e.State, e.RestrictedUntil, e.Deleted = false, identity.StateRestricted, ptr(t0.Add(time.Hour)), ptr(t0)
				return e
			},
			in:  Input{Policy: appPolicy(time.Hour), Now: t0},
			out: Outcome{Offboarded: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending", "g1:release_seat": "release_seat/pending",
			},
		},
		{
			name: "a DELETE of an offboarded user owes nothing more",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.Active = false
				Plan(e, Input{Policy: appPolicy(0), Now: t0})
				for _, j := range e.Jobs {
					j.State = identity.JobDone
				}
				e.Seat = identity.Seat{}
				e.Deleted = ptr(t0.Add(time.Hour))
				return e
			},
			in:    Input{Policy: appPolicy(0), Now: t0.Add(time.Hour), Connectors: []ConnectorInfo{webhook}},
			state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/done", "g1:release_seat": "release_seat/done",
			},
		},
		{
			name: "a DELETE of a joiner waiting for a seat drops it from the queue",
			emp: func() *identity.Employee {
				e := &identity.Employee{ID: "emp1", Active: true}
				Plan(e, Input{Policy: appPolicy(0), Now: t0})
				e.Deleted = ptr(t0)
				return e
			},
			in:  Input{Policy: appPolicy(0), Now: t0},
			out: Outcome{Dropped: true}, state: identity.StateInactive,
			jobs: map[string]string{"g1:acquire_seat": "acquire_seat/cancelled"},
		},
		{
			name: "an offboarded user activated again is re-hired in a new generation: old local effects kept, unsent wipes cancelled",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.Active = false
				Plan(e, Input{Policy: appPolicy(0), Now: t0, Connectors: []ConnectorInfo{webhook}})
				e.Active = true
				return e
			},
			in:  Input{Policy: appPolicy(0), Now: t0.Add(time.Hour), Connectors: []ConnectorInfo{webhook}},
			out: Outcome{Hired: true}, state: identity.StatePendingSeat,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending",
				"g1:release_seat": "release_seat/pending", "g1:notify:hook1": "wipe_app/cancelled",
				"g2:acquire_seat": "acquire_seat/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.Generation != 2 || e.Offboarded != nil {
					t.Errorf("generation %d offboarded %v", e.Generation, e.Offboarded)
				}
				if e.Jobs["g2:acquire_seat"].SeatOp != "emp1-g2-a" || e.Jobs["g2:acquire_seat"].Key == e.Jobs["g1:acquire_seat"].Key {
					t.Error("a new generation needs its own seat operation and idempotency keys")
				}
				if last := e.Timeline[len(e.Timeline)-1]; last.Kind != "rehired" {
					t.Errorf("timeline kind %q", last.Kind)
				}
			},
		},
		{
			name: "a re-hire cancels the earlier employment's held and unsent wipes, never a sent one or the license withdrawal",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.Active = false
				threema := ConnectorInfo{ID: "tw1", Name: "threema", Type: "threemawork", Notifier: true, Messenger: true}
				Plan(e, Input{Policy: appPolicy(0), Now: t0, Braked: true, Connectors: []ConnectorInfo{webhook, intune, threema}})
				// intune found two devices: one command sent, one full wipe waiting for approval.
				DeviceJob(e, identity.Policy{Wipe: identity.WipeDevice}, mdm.Device{ID: "d1", Connector: "intune1", Ownership: mdm.OwnershipCompany}, 1, "ABCD1234", false, t0)
				DeviceJob(e, appPolicy(0), mdm.Device{ID: "d2", Connector: "intune1"}, 1, "ABCD1234", false, t0)
				e.Jobs["g1:discover_devices:intune1"].State = identity.JobDone
				e.Jobs["g1:wipe_app:intune1:d2"].State = identity.JobWaiting
				e.Active = true
				return e
			},
			in:  Input{Policy: appPolicy(0), Now: t0.Add(time.Hour)},
			out: Outcome{Hired: true}, state: identity.StatePendingSeat,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/pending", "g1:release_seat": "release_seat/pending",
				"g1:revoke_license:tw1": "revoke_license/pending", "g1:notify:hook1": "wipe_app/cancelled",
				"g1:discover_devices:intune1": "discover_devices/done", "g1:wipe_device:intune1:d1": "wipe_device/cancelled",
				"g1:wipe_app:intune1:d2": "wipe_app/waiting", "g2:acquire_seat": "acquire_seat/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if last := e.Timeline[len(e.Timeline)-1]; last.Kind != "rehired" || !strings.Contains(last.Detail, "2 unsent wipe(s)") {
					t.Errorf("timeline %+v", last)
				}
			},
		},
		{
			name: "a re-hired user's second offboarding owes fresh effects with new keys",
			emp: func() *identity.Employee {
				e := licensed(1)
				e.Active = false
				Plan(e, Input{Policy: appPolicy(0), Now: t0, Connectors: []ConnectorInfo{webhook}})
				for _, j := range e.Jobs {
					j.State = identity.JobDone
				}
				e.Seat = identity.Seat{}
				e.Active = true
				Plan(e, Input{Policy: appPolicy(0), Now: t0.Add(time.Hour)})
				e.Jobs["g2:acquire_seat"].State = identity.JobDone
				e.State, e.WorkID, e.PastWorkIDs = identity.StateActive, "NEWID123", []string{"ABCD1234"}
				e.Seat = identity.Seat{State: identity.SeatHeld, Op: "emp1-g2-a"}
				e.Credentials = &identity.Credentials{Username: "NEWID123"}
				e.Active = false
				return e
			},
			in:  Input{Policy: appPolicy(0), Now: t0.Add(2 * time.Hour), Connectors: []ConnectorInfo{webhook}},
			out: Outcome{Offboarded: true, External: true}, state: identity.StateOffboarded,
			jobs: map[string]string{
				"g1:acquire_seat": "acquire_seat/done", "g1:revoke_id": "revoke_id/done",
				"g1:release_seat": "release_seat/done", "g1:notify:hook1": "wipe_app/done",
				"g2:acquire_seat": "acquire_seat/done", "g2:revoke_id": "revoke_id/pending",
				"g2:release_seat": "release_seat/pending", "g2:notify:hook1": "wipe_app/pending",
			},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.Jobs["g2:revoke_id"].WorkID != "NEWID123" || e.Jobs["g2:notify:hook1"].Key == e.Jobs["g1:notify:hook1"].Key {
					t.Error("the second offboarding must revoke the new ID under a new key")
				}
			},
		},
		{
			name: "a seat that arrives after a deactivation is given back",
			emp: func() *identity.Employee {
				return &identity.Employee{ID: "emp1", State: identity.StateInactive, Generation: 1,
					Seat: identity.Seat{State: identity.SeatHeld, Op: "emp1-g1-a"}}
			},
			in:    Input{Policy: appPolicy(0), Now: t0},
			state: identity.StateInactive,
			jobs:  map[string]string{"g1:release_seat": "release_seat/pending"},
			check: func(t *testing.T, e *identity.Employee, _ Outcome) {
				if e.Jobs["g1:release_seat"].SeatOp != "emp1-g1-r" {
					t.Errorf("release job %+v", e.Jobs["g1:release_seat"])
				}
			},
		},
	}
	tests = append(tests, struct {
		name  string
		emp   func() *identity.Employee
		in    Input
		out   Outcome
		state identity.State
		jobs  map[string]string
		check check
	}{
		name: "a re-hired joiner waiting in line gives back a seat still held from an earlier generation",
		emp: func() *identity.Employee {
			e := &identity.Employee{ID: "emp1", Active: true}
			Plan(e, Input{Policy: appPolicy(0), Now: t0})
			e.Seat = identity.Seat{State: identity.SeatHeld, Op: "emp1-g1-a"} // taken, ID not issued yet
			e.Active = false
			Plan(e, Input{Policy: appPolicy(0), Now: t0})
			delete(e.Jobs, "g1:release_seat") // the give-back had not been planned yet
			e.Active = true
			return e
		},
		in:  Input{Policy: appPolicy(0), Now: t0.Add(time.Minute)},
		out: Outcome{Hired: true}, state: identity.StatePendingSeat,
		jobs: map[string]string{"g1:acquire_seat": "acquire_seat/cancelled", "g2:acquire_seat": "acquire_seat/pending",
			"g1:release_seat": "release_seat/pending"},
		check: func(t *testing.T, e *identity.Employee, _ Outcome) {
			if j := e.Jobs["g1:release_seat"]; j.SeatOp != "emp1-g1-r" || j.Generation != 1 {
				t.Errorf("release %+v", j)
			}
		},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.emp()
			out := Plan(e, tt.in)
			if out != tt.out {
				t.Errorf("outcome %+v, want %+v", out, tt.out)
			}
			if e.State != tt.state {
				t.Errorf("state %q, want %q", e.State, tt.state)
			}
			if got := jobStates(e); !reflect.DeepEqual(got, tt.jobs) {
				t.Errorf("jobs\n got %v\nwant %v", sorted(got), sorted(tt.jobs))
			}
			if tt.check != nil {
				tt.check(t, e, out)
			}
			// Planning is idempotent: the same input changes nothing more.
			before := jobStates(e)
			state, gen, n := e.State, e.Generation, len(e.Timeline)
			if again := Plan(e, tt.in); again.Changed() || e.State != state || e.Generation != gen ||
				len(e.Timeline) != n || !reflect.DeepEqual(jobStates(e), before) {
				t.Errorf("planning again changed the employee: %+v", again)
			}
		})
	}
}

func sorted(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func TestDeviceJob(t *testing.T) {
	company := mdm.Device{ID: "dev-1", Connector: "intune1", Ownership: mdm.OwnershipCompany}
	personal := mdm.Device{ID: "dev-2", Connector: "intune1", Ownership: mdm.OwnershipPersonal}
	tests := []struct {
		name   string
		wipe   identity.WipeMode
		dev    mdm.Device
		braked bool
		id     string
		want   string
	}{
		{"the app policy removes the app from a company device", identity.WipeApp, company, false, "g3:wipe_app:intune1:dev-1", "wipe_app/pending"},
		{"the device policy fully wipes a company device after approval", identity.WipeDevice, company, false, "g3:wipe_device:intune1:dev-1", "wipe_device/approval"},
		{"the device policy only removes the app from a personal device", identity.WipeDevice, personal, false, "g3:wipe_app:intune1:dev-2", "wipe_app/pending"},
		{"the brake holds a device job", identity.WipeApp, personal, true, "g3:wipe_app:intune1:dev-2", "wipe_app/braked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &identity.Employee{ID: "emp1", Generation: 3}
			if !DeviceJob(e, identity.Policy{Wipe: tt.wipe}, tt.dev, 3, "WID00001", tt.braked, t0) {
				t.Fatal("no job added")
			}
			j := e.Jobs[tt.id]
			if j == nil {
				t.Fatalf("jobs %v, want %s", jobStates(e), tt.id)
			}
			if got := j.Action + "/" + string(j.State); got != tt.want {
				t.Errorf("job %s, want %s", got, tt.want)
			}
			if j.Device == nil || j.Device.ID != tt.dev.ID || j.WorkID != "WID00001" || j.Generation != 3 || j.Key != idempotencyKey("emp1", tt.id) {
				t.Errorf("job %+v", j)
			}
			if DeviceJob(e, identity.Policy{Wipe: tt.wipe}, tt.dev, 3, "WID00001", tt.braked, t0) {
				t.Error("the same device got a second job in the same offboarding")
			}
		})
	}
}

func TestIdempotencyKeysAreStableAndDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, emp := range []string{"emp1", "emp2"} {
		for _, job := range []string{jobID(1, identity.ActionNotify, "c1"), jobID(2, identity.ActionNotify, "c1"),
			jobID(1, identity.ActionWipeApp, "c1", "d1"), jobID(1, identity.ActionWipeApp, "c1", "d2"),
			jobID(1, identity.ActionWipeDevice, "c1", "d1"), jobID(1, identity.ActionWipeApp, "c2", "d1")} {
			k := idempotencyKey(emp, job)
			if k != idempotencyKey(emp, job) {
				t.Fatal("key not stable")
			}
			if prev, dup := seen[k]; dup {
				t.Fatalf("%s/%s and %s share key %s", emp, job, prev, k)
			}
			seen[k] = emp + "/" + job
		}
	}
	if a, b := jobID(1, identity.ActionWipeApp, "c", "a.b$c"), jobID(1, identity.ActionWipeApp, "c", "a_b_c"); a == b {
		t.Fatalf("sanitized device ids collide: %s", a)
	}
}

func TestTakeSeat(t *testing.T) {
	acquisition := func(gen int) *identity.Job {
		return &identity.Job{ID: jobID(gen, identity.ActionAcquireSeat), Action: identity.ActionAcquireSeat,
			SeatOp: seatOp("emp1", gen, "a"), Generation: gen}
	}
	tests := []struct {
		name    string
		state   identity.State
		gen     int
		tracked int // generation of the tracked seat, 0 for none
		job     int // generation of the acquisition that landed
		uses    bool
		seat    int    // generation tracked afterwards
		release string // release job added, if any
	}{
		{"a seat taken while none is tracked is tracked", identity.StatePendingSeat, 1, 0, 1, true, 1, ""},
		{"the same acquisition landing again changes nothing", identity.StateActive, 1, 1, 1, true, 1, ""},
		{"a seat for the waiting generation replaces an older one, which goes back", identity.StatePendingSeat, 2, 1, 2, true, 2, "g1:release_seat"},
		{"an overtaken acquisition's seat goes back while the newer one stays", identity.StateActive, 2, 2, 1, false, 2, "g1:release_seat"},
		{"a seat landing after a deactivation is tracked, and Plan gives it back", identity.StateInactive, 1, 0, 1, true, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &identity.Employee{ID: "emp1", State: tt.state, Generation: tt.gen, Jobs: map[string]*identity.Job{}}
			for g := 1; g <= tt.gen; g++ {
				e.Jobs[jobID(g, identity.ActionAcquireSeat)] = acquisition(g)
			}
			if tt.tracked > 0 {
				e.Seat = identity.Seat{State: identity.SeatHeld, Op: seatOp("emp1", tt.tracked, "a")}
			}
			if got := takeSeat(e, acquisition(tt.job), Input{Now: t0}); got != tt.uses {
				t.Errorf("uses %v, want %v", got, tt.uses)
			}
			if e.Seat.Op != seatOp("emp1", tt.seat, "a") || seatGen(e) != tt.seat {
				t.Errorf("tracked %+v, want generation %d", e.Seat, tt.seat)
			}
			var releases []string
			for id, j := range e.Jobs {
				if j.Action == identity.ActionReleaseSeat {
					releases = append(releases, id)
				}
			}
			want := []string{}
			if tt.release != "" {
				want = []string{tt.release}
			}
			if len(releases) != len(want) || len(want) == 1 && releases[0] != want[0] {
				t.Errorf("release jobs %v, want %v", releases, want)
			}
		})
	}
}
