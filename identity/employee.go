package identity

import (
	"time"

	"github.com/offboard/offboard/mdm"
)

// State is an employee's lifecycle state.
type State string

// Lifecycle states.
const (
	// StatePendingSeat: created active, waiting first-come for a free seat.
	StatePendingSeat State = "pending_seat"
	// StateActive: holds a seat, credentials and a messenger ID.
	StateActive State = "active"
	// StateRestricted: deactivated during the notice period; keeps the seat, the messenger check
	// answers "restricted".
	StateRestricted State = "restricted"
	// StateOffboarded: final: credentials deleted, ID revoked, seat freed, wipes owed or done.
	StateOffboarded State = "offboarded"
	// StateInactive: created inactive by the IdP; never held a seat.
	StateInactive State = "inactive"
)

// SeatState tracks the employee's seat through the two-document seat protocol.
type SeatState string

// Seat states.
const (
	SeatNone      SeatState = ""
	SeatAcquiring SeatState = "acquiring"
	SeatHeld      SeatState = "held"
	SeatReleasing SeatState = "releasing"
)

// Seat is the employee's side of the seat protocol (see Tenant.SeatOps).
type Seat struct {
	State SeatState `bson:"state,omitempty"`
	Op    string    `bson:"op,omitempty"`
}

// Credentials are the employee's messenger license credentials. The password exists only as a
// slow hash; it is revealed once when an admin rotates it.
type Credentials struct {
	Username string     `bson:"username"`
	Hash     string     `bson:"hash,omitempty"` // empty until first rotation: no password works yet
	Rotated  *time.Time `bson:"rotated,omitempty"`
}

// Employee is the one document per SCIM user: the SCIM resource, the lifecycle state and the
// effects (Jobs) it still owes, so a state change and its effects commit in one atomic update.
type Employee struct {
	ID     string `bson:"_id"`
	Tenant string `bson:"tenant"`

	// SCIM side.
	UserName string `bson:"userName"`
	// UserNameKey is the case-folded userName; empty once the SCIM resource is deleted, which
	// frees the name for a new user.
	UserNameKey string         `bson:"userNameKey,omitempty"`
	ExternalID  string         `bson:"externalId,omitempty"`
	Active      bool           `bson:"active"`
	Resource    map[string]any `bson:"res"`
	// Version is the SCIM resource version (meta.version, ETag); it changes only when the
	// resource does.
	Version  int64      `bson:"version"`
	Created  time.Time  `bson:"created"`
	Modified time.Time  `bson:"modified"`
	Deleted  *time.Time `bson:"deleted,omitempty"` // SCIM DELETE: resource gone, history kept

	// Lifecycle side.
	State State `bson:"state"`
	// Generation counts hires: a re-hire after the final offboarding starts a new generation
	// with new credentials and a new messenger ID.
	Generation int        `bson:"gen"`
	Seat       Seat       `bson:"seat"`
	SeatQueued *time.Time `bson:"seatQueued,omitempty"` // when the employee started waiting for a seat
	// Queued: an entry in the tenant's seat queue was written for this employee (so licensing
	// must remove it; a joiner licensed at once never had one).
	Queued      bool         `bson:"queued,omitempty"`
	WorkID      string       `bson:"workId,omitempty"`
	PastWorkIDs []string     `bson:"pastWorkIds,omitempty"`
	Credentials *Credentials `bson:"cred,omitempty"`
	// RestrictedUntil is when the notice period ends and the final offboarding starts.
	RestrictedUntil *time.Time `bson:"restrictedUntil,omitempty"`
	// LeaveDate is the IdP's leave date: offboard at that time even without a deactivation.
	LeaveDate   *time.Time      `bson:"leaveDate,omitempty"`
	Offboarded  *time.Time      `bson:"offboarded,omitempty"`
	Jobs        map[string]*Job `bson:"jobs,omitempty"`
	Devices     []mdm.Device    `bson:"devices,omitempty"` // attached by hand or discovered
	Groups      []GroupRef      `bson:"groups,omitempty"`
	Timeline    []Event         `bson:"timeline,omitempty"`
	Rev         int64           `bson:"rev"` // compare-and-swap counter, bumped by every write
	NextWakeAt  *time.Time      `bson:"nextWakeAt,omitempty"`
	RetainUntil *time.Time      `bson:"retainUntil,omitempty"`
}

// GroupRef is a group the employee is a member of (the read-only SCIM "groups" attribute).
type GroupRef struct {
	ID      string `bson:"id" json:"value"`
	Display string `bson:"display,omitempty" json:"display,omitempty"`
}

// Event is one entry of an employee's timeline.
type Event struct {
	At     time.Time `bson:"at" json:"at"`
	Kind   string    `bson:"kind" json:"kind"`
	Detail string    `bson:"detail,omitempty" json:"detail,omitempty"`
	Actor  string    `bson:"actor,omitempty" json:"actor,omitempty"`
}

// maxTimeline bounds the timeline kept in the employee document; the audit log keeps all.
const maxTimeline = 200

// Record appends an event to the timeline, dropping the oldest beyond the bound.
func (e *Employee) Record(at time.Time, kind, detail, actor string) {
	e.Timeline = append(e.Timeline, Event{At: at.UTC(), Kind: kind, Detail: detail, Actor: actor})
	if n := len(e.Timeline); n > maxTimeline {
		e.Timeline = append([]Event(nil), e.Timeline[n-maxTimeline:]...)
	}
}

// JobState is the state of one owed effect.
type JobState string

// Job states.
const (
	JobPending   JobState = "pending"   // due at NextAt
	JobRunning   JobState = "running"   // leased by a runner until LeaseUntil
	JobWaiting   JobState = "waiting"   // accepted by the vendor; polled until it completes
	JobApproval  JobState = "approval"  // full device wipe waiting for an admin's approval
	JobBraked    JobState = "braked"    // held by the mass-offboarding brake until confirmed
	JobDone      JobState = "done"      // completed
	JobFailed    JobState = "failed"    // gave up; an admin can retry
	JobCancelled JobState = "cancelled" // no longer wanted (e.g. reactivated in time)
)

// Terminal reports whether a job will not run again without an admin's retry.
func (s JobState) Terminal() bool {
	return s == JobDone || s == JobFailed || s == JobCancelled
}

// Job actions.
const (
	ActionReleaseSeat = "release_seat"
	ActionAcquireSeat = "acquire_seat"
	ActionRevokeID    = "revoke_id"
	ActionDiscover    = "discover_devices"
	ActionNotify      = "notify"
	// ActionRevokeLicense withdraws the license at an external messenger (Threema Work).
	ActionRevokeLicense = "revoke_license"
	ActionWipeApp       = string(mdm.ActionWipeApp)
	ActionWipeDevice    = string(mdm.ActionWipeDevice)
)

// Job is one effect an employee's state owes. Its ID is deterministic (generation, action,
// target), and Key, the idempotency key sent to the outside, derives from it.
type Job struct {
	ID         string       `bson:"id" json:"id"`
	Action     string       `bson:"action" json:"action"`
	Connector  string       `bson:"connector,omitempty" json:"connector,omitempty"`
	Device     *mdm.Device  `bson:"device,omitempty" json:"device,omitempty"`
	WorkID     string       `bson:"workId,omitempty" json:"workId,omitempty"`
	SeatOp     string       `bson:"seatOp,omitempty" json:"-"`
	State      JobState     `bson:"state" json:"state"`
	Attempts   int          `bson:"attempts" json:"attempts"`
	NextAt     time.Time    `bson:"nextAt" json:"nextAt"`
	LeaseOwner string       `bson:"leaseOwner,omitempty" json:"-"`
	LeaseUntil *time.Time   `bson:"leaseUntil,omitempty" json:"-"`
	LastError  string       `bson:"lastError,omitempty" json:"lastError,omitempty"`
	Command    *mdm.Command `bson:"command,omitempty" json:"command,omitempty"`
	Key        string       `bson:"key" json:"key"`
	Created    time.Time    `bson:"created" json:"created"`
	Updated    time.Time    `bson:"updated" json:"updated"`
	Generation int          `bson:"gen" json:"generation"`
}
