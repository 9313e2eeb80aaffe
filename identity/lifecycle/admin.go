package lifecycle

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/mdm"
)

// jobTransition moves one job of an employee from one of the allowed states to the state
// next chooses for it.
func (s *Service) jobTransition(ctx context.Context, actor, tenant, empID, jobID, action string, from []identity.JobState, next func(*identity.Job) identity.JobState) (*identity.Job, error) {
	var before, after identity.JobState
	e, err := s.store.UpdateEmployee(ctx, tenant, empID, func(e *identity.Employee) error {
		j := e.Jobs[jobID]
		if j == nil {
			return fmt.Errorf("job %s: %w", jobID, identity.ErrNotFound)
		}
		ok := false
		for _, f := range from {
			ok = ok || j.State == f
		}
		if !ok {
			return fmt.Errorf("%w: job is %s", identity.ErrConflict, j.State)
		}
		now := s.now().UTC()
		before, after = j.State, next(j)
		j.State, j.NextAt, j.Updated, j.LeaseOwner, j.LeaseUntil = after, now, now, "", nil
		if after == identity.JobPending || after == identity.JobApproval {
			j.Attempts, j.LastError = 0, ""
		}
		e.Record(now, action, jobID, actor)
		e.NextWakeAt = nextWake(e, now)
		return s.store.MarkDue(ctx, tenant, empID, now)
	})
	if err != nil {
		return nil, err
	}
	s.auditAdmin(ctx, tenant, actor, "job."+action, empID+"/"+jobID, map[string]any{"state": before}, map[string]any{"state": after})
	s.wake(tenant, empID)
	return e.Jobs[jobID], nil
}

// ApproveJob lets a full device wipe that waits for approval run.
func (s *Service) ApproveJob(ctx context.Context, actor, tenant, empID, jobID string) (*identity.Job, error) {
	return s.jobTransition(ctx, actor, tenant, empID, jobID, "approved", []identity.JobState{identity.JobApproval}, always(identity.JobPending))
}

// RejectJob cancels a full device wipe that waits for approval.
func (s *Service) RejectJob(ctx context.Context, actor, tenant, empID, jobID string) (*identity.Job, error) {
	return s.jobTransition(ctx, actor, tenant, empID, jobID, "rejected", []identity.JobState{identity.JobApproval}, always(identity.JobCancelled))
}

// RetryJob runs a failed (or cancelled) job again with a fresh attempt budget. A cancelled full
// device wipe was never approved (rejected, cancelled with the brake, or reactivated in time):
// it goes back to waiting for approval instead of running.
func (s *Service) RetryJob(ctx context.Context, actor, tenant, empID, jobID string) (*identity.Job, error) {
	return s.jobTransition(ctx, actor, tenant, empID, jobID, "retried", []identity.JobState{identity.JobFailed, identity.JobCancelled},
		func(j *identity.Job) identity.JobState {
			if j.Action == identity.ActionWipeDevice && j.State == identity.JobCancelled {
				return identity.JobApproval
			}
			return identity.JobPending
		})
}

func always(s identity.JobState) func(*identity.Job) identity.JobState {
	return func(*identity.Job) identity.JobState { return s }
}

// ReleaseBrake confirms (run) or cancels every job the mass-offboarding brake holds in a
// tenant and resets the brake's count. It returns how many jobs changed.
func (s *Service) ReleaseBrake(ctx context.Context, actor, tenant string, confirm bool) (int, error) {
	ids, err := s.store.EmployeesWithState(ctx, tenant, identity.JobBraked)
	if err != nil {
		return 0, err
	}
	next, action := identity.JobCancelled, "brake_cancelled"
	if confirm {
		next, action = identity.JobPending, "brake_confirmed"
	}
	n := 0
	for _, id := range ids {
		_, err := s.store.UpdateEmployee(ctx, tenant, id, func(e *identity.Employee) error {
			now := s.now().UTC()
			changed := 0
			for _, j := range e.Jobs {
				if j.State == identity.JobBraked {
					j.State, j.NextAt, j.Updated = next, now, now
					if next == identity.JobPending && j.Action == identity.ActionWipeDevice {
						// Confirming the brake releases the batch, not each full wipe in it.
						j.State = identity.JobApproval
					}
					if next == identity.JobCancelled {
						j.LastError = "cancelled by an administrator after the mass-offboarding brake"
					}
					changed++
				}
			}
			if changed == 0 {
				return identity.ErrSkip
			}
			n += changed
			e.Record(now, action, "", actor)
			e.NextWakeAt = nextWake(e, now)
			return s.store.MarkDue(ctx, tenant, id, now)
		})
		if err != nil {
			return n, err
		}
		s.wake(tenant, id)
	}
	if r, ok := s.store.(interface {
		ResetOffboardingCount(context.Context, string) error
	}); ok {
		if err := r.ResetOffboardingCount(ctx, tenant); err != nil {
			return n, err
		}
	}
	s.auditAdmin(ctx, tenant, actor, "brake."+strings.TrimPrefix(action, "brake_"), "", nil, map[string]any{"jobs": n})
	return n, nil
}

// AttachDevice attaches a managed device to an employee by hand (NanoMDM has no user
// directory). If the employee is already offboarded, the device's wipe job is added at once.
func (s *Service) AttachDevice(ctx context.Context, actor, tenant, empID string, d mdm.Device) (*identity.Employee, error) {
	if d.ID == "" || len(d.ID) > 256 || d.Connector == "" {
		return nil, fmt.Errorf("%w: device needs a connector and an id", identity.ErrInvalid)
	}
	switch d.Ownership {
	case mdm.OwnershipCompany, mdm.OwnershipPersonal, mdm.OwnershipUnknown:
	default:
		return nil, fmt.Errorf("%w: ownership must be company or personal", identity.ErrInvalid)
	}
	conns, err := s.conns.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	found := false
	for _, c := range conns {
		if c.ID == d.Connector || c.Name == d.Connector {
			d.Connector, found = c.ID, !c.Notifier
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: no device connector %q in this tenant", identity.ErrInvalid, d.Connector)
	}
	t, err := s.store.GetTenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	d.Manual = true
	added := false
	e, err := s.store.UpdateEmployee(ctx, tenant, empID, func(e *identity.Employee) error {
		added = false
		if e.Deleted != nil {
			return fmt.Errorf("employee: %w", identity.ErrNotFound)
		}
		for i, x := range e.Devices {
			if x.Connector == d.Connector && x.ID == d.ID {
				e.Devices[i] = d
				return nil
			}
		}
		now := s.now().UTC()
		e.Devices = append(e.Devices, d)
		e.Record(now, "device_attached", d.Connector+"/"+d.ID, actor)
		if e.State == identity.StateOffboarded && t.Policy.Wipe != identity.WipeNone {
			if j := e.Jobs[jobID(e.Generation, identity.ActionDiscover, d.Connector)]; j != nil && j.State == identity.JobDone {
				added = DeviceJob(e, t.Policy, d, e.Generation, e.WorkID, false, now)
				e.NextWakeAt = nextWake(e, now)
				if added {
					return s.store.MarkDue(ctx, tenant, empID, now)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.auditAdmin(ctx, tenant, actor, "employee.device_attached", empID, nil, d)
	if added {
		s.wake(tenant, empID)
	}
	return e, nil
}

// SortedJobs returns an employee's jobs in a stable order (creation, id).
func SortedJobs(e *identity.Employee) []*identity.Job {
	out := make([]*identity.Job, 0, len(e.Jobs))
	for _, j := range e.Jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].Created.Equal(out[b].Created) {
			return out[a].Created.Before(out[b].Created)
		}
		return out[a].ID < out[b].ID
	})
	return out
}
