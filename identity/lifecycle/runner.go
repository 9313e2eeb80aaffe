package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/mdm"
)

// Runner defaults.
const (
	DefaultMaxAttempts = 8
	DefaultBaseBackoff = 2 * time.Second
	DefaultMaxBackoff  = 15 * time.Minute
	DefaultPoll        = time.Second
	DefaultSweep       = 2 * time.Minute
	DefaultWorkers     = 8
	// DefaultCallTimeout bounds one vendor call; its lease is renewed while it runs.
	DefaultCallTimeout = 30 * time.Second
	// pollCommand is the first delay before asking a vendor whether an accepted command ran.
	pollCommand = 15 * time.Second
	// maxWaiting is how long an accepted command may stay unconfirmed before the job fails.
	maxWaiting = 7 * 24 * time.Hour
)

// Runner executes the jobs employees owe: woken right after a change, polling the few due
// marks every second, and sweeping all employees with open work at start-up and every few
// minutes to repair anything missed. External calls run under a lease (several processes on
// one database never run the same job at once), with exponential backoff and jitter,
// Retry-After honoured, a bounded number of attempts, and a stable idempotency key.
type Runner struct {
	svc         *Service
	store       Store
	conns       Connectors
	log         *slog.Logger
	maxAttempts int
	baseBackoff time.Duration
	maxBackoff  time.Duration
	poll        time.Duration
	sweep       time.Duration
	reconciled  time.Time // last seat-counter reconciliation
	workers     int
	callTimeout time.Duration
	observe     func(job *identity.Job, outcome string)
	onWaiting   func(ctx context.Context, tenant, employee, connector, command string)

	wakeCh chan target
	mu     sync.Mutex
	busy   map[string]bool // employees being processed in this process
	again  map[string]bool // woken while busy: process once more
	failed map[string]int  // consecutive passes that failed (the database was unreachable)
	sem    chan struct{}
	wg     sync.WaitGroup
}

type target struct{ tenant, employee string }

// RunnerOption configures a Runner.
type RunnerOption func(*Runner)

// WithBackoff sets the retry backoff bounds and the attempt limit.
func WithBackoff(base, max time.Duration, attempts int) RunnerOption {
	return func(r *Runner) { r.baseBackoff, r.maxBackoff, r.maxAttempts = base, max, attempts }
}

// WithIntervals sets the due-mark poll and the repair sweep intervals.
func WithIntervals(poll, sweep time.Duration) RunnerOption {
	return func(r *Runner) { r.poll, r.sweep = poll, sweep }
}

// WithCallTimeout sets the timeout of one vendor call.
func WithCallTimeout(d time.Duration) RunnerOption { return func(r *Runner) { r.callTimeout = d } }

// WithWorkers sets how many employees are processed concurrently.
func WithWorkers(n int) RunnerOption { return func(r *Runner) { r.workers = n } }

// WithObserver is called after every job attempt (metrics).
func WithObserver(fn func(job *identity.Job, outcome string)) RunnerOption {
	return func(r *Runner) { r.observe = fn }
}

// WithOnWaiting is called when a job starts waiting on a vendor command (so an inbound result
// can wake the employee).
func WithOnWaiting(fn func(ctx context.Context, tenant, employee, connector, command string)) RunnerOption {
	return func(r *Runner) { r.onWaiting = fn }
}

// NewRunner returns a Runner executing the jobs of svc's employees.
func NewRunner(svc *Service, opts ...RunnerOption) *Runner {
	r := &Runner{
		svc: svc, store: svc.store, conns: svc.conns, log: svc.log,
		maxAttempts: DefaultMaxAttempts, baseBackoff: DefaultBaseBackoff, maxBackoff: DefaultMaxBackoff,
		poll: DefaultPoll, sweep: DefaultSweep, workers: DefaultWorkers, callTimeout: DefaultCallTimeout,
		observe:   func(*identity.Job, string) {},
		onWaiting: func(context.Context, string, string, string, string) {},
		wakeCh:    make(chan target, 4096), busy: map[string]bool{}, again: map[string]bool{}, failed: map[string]int{},
	}
	for _, o := range opts {
		o(r)
	}
	r.sem = make(chan struct{}, r.workers)
	svc.SetWaker(r.Wake)
	return r
}

// Wake asks the runner to look at an employee now. It never blocks; if the queue is full the
// due poll or the sweep picks the employee up.
func (r *Runner) Wake(tenant, employee string) {
	select {
	case r.wakeCh <- target{tenant, employee}:
	default:
	}
}

// CommandReported is how a vendor's inbound result (a NanoMDM webhook) reaches the runner: the
// employee's job waiting on command of connector becomes due now, instead of at its next
// status poll, and the employee is processed. A job being polled at that moment gets NextAt set
// after its lease began, which tells record to poll again at once (the result may have come
// too late for the call in flight). It never fails: if the update does not happen, the poll
// picks the result up.
func (r *Runner) CommandReported(tenant, employee, connector, command string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.store.UpdateEmployee(ctx, tenant, employee, func(x *identity.Employee) error {
		now := r.svc.now().UTC()
		due := false
		for _, j := range x.Jobs {
			if j.Connector != connector || j.Command == nil || j.Command.ID != command {
				continue
			}
			switch {
			case j.State == identity.JobWaiting && now.Before(j.NextAt):
				j.NextAt, due = now, true
			case j.State == identity.JobRunning && !j.NextAt.After(j.Updated):
				j.NextAt, due = now, true
			}
		}
		if !due {
			return identity.ErrSkip
		}
		x.NextWakeAt = nextWake(x, now)
		return r.store.MarkDue(ctx, tenant, employee, now)
	})
	if err != nil {
		r.log.Warn("inbound command result left to the next poll", "employee", employee, "error", err)
	}
	r.Wake(tenant, employee)
}

// Run executes jobs until ctx ends, then waits for the jobs in flight.
func (r *Runner) Run(ctx context.Context) {
	defer r.wg.Wait()
	r.sweepAll(ctx)
	poll := time.NewTicker(r.poll)
	defer poll.Stop()
	sweep := time.NewTicker(r.sweep)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-r.wakeCh:
			r.dispatch(ctx, t)
		case <-poll.C:
			due, err := r.store.ListDue(ctx, r.svc.now(), 256)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("due jobs not listed", "error", err)
				}
				continue
			}
			for _, d := range due {
				r.dispatch(ctx, target{d.Tenant, d.Employee})
			}
		case <-sweep.C:
			r.sweepAll(ctx)
		}
	}
}

func (r *Runner) sweepAll(ctx context.Context) {
	all, err := r.store.EmployeesWithOpenWork(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("repair sweep failed", "error", err)
		}
		return
	}
	now := r.svc.now()
	for _, d := range all {
		if d.At.IsZero() || !d.At.After(now) {
			r.dispatch(ctx, target{d.Tenant, d.Employee})
		} else if err := r.store.MarkDue(ctx, d.Tenant, d.Employee, d.At); err != nil {
			r.log.Warn("due mark not repaired", "employee", d.Employee, "error", err)
		}
	}
	if err := r.Housekeep(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("housekeeping incomplete", "error", err)
	}
}

// dispatch processes an employee on a worker, at most once at a time per employee in this
// process; a wake-up that arrives while it is processed runs it once more afterwards.
func (r *Runner) dispatch(ctx context.Context, t target) {
	r.mu.Lock()
	if r.busy[t.employee] {
		r.again[t.employee] = true
		r.mu.Unlock()
		return
	}
	r.busy[t.employee] = true
	r.mu.Unlock()
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.busy, t.employee)
		r.mu.Unlock()
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.sem }()
		for {
			err := r.Process(ctx, t.tenant, t.employee)
			if err != nil && ctx.Err() == nil {
				r.log.Warn("employee jobs not processed", "employee", t.employee, "error", err)
			}
			r.mu.Lock()
			r.retryLater(t, err != nil && ctx.Err() == nil)
			if !r.again[t.employee] || ctx.Err() != nil {
				delete(r.busy, t.employee)
				delete(r.again, t.employee)
				r.mu.Unlock()
				return
			}
			delete(r.again, t.employee)
			r.mu.Unlock()
		}
	}()
}

// retryLater, with r.mu held, wakes an employee again after a pass that failed: a wake-up that
// met an unreachable database would otherwise wait for the sweep (minutes) while its work may
// have no due mark yet (a request's local effects that failed with the database). The delay
// doubles from the poll interval, with jitter; once it would reach the sweep interval the
// sweep takes over. A pass that succeeds clears the count.
func (r *Runner) retryLater(t target, failed bool) {
	if !failed {
		delete(r.failed, t.employee)
		return
	}
	n := r.failed[t.employee]
	delay := max(r.poll, 10*time.Millisecond) << n
	if n > 20 || delay >= r.sweep {
		delete(r.failed, t.employee)
		return
	}
	r.failed[t.employee] = n + 1
	delay = delay/2 + rand.N(delay/2+1)
	time.AfterFunc(delay, func() { r.Wake(t.tenant, t.employee) })
}

// Process re-plans an employee against the clock and runs every job that is due. Exported for
// tests that drive the runner step by step with an injected clock.
func (r *Runner) Process(ctx context.Context, tenant, id string) error {
	seen, marked, err := r.store.GetDue(ctx, id)
	if err != nil {
		return err
	}
	e, err := r.svc.Reconcile(ctx, tenant, id)
	if errors.Is(err, identity.ErrNotFound) {
		if marked {
			return r.store.ClearDue(ctx, id, seen)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if e, err = r.runLocalJobs(ctx, e); err != nil {
		return err
	}
	ids := make([]string, 0, len(e.Jobs))
	for jid, j := range e.Jobs {
		if !localAction(j.Action) {
			ids = append(ids, jid)
		}
	}
	sort.Strings(ids)
	// The jobs go to different vendors: they run side by side, so that a vendor that hangs
	// until the call times out delays no other connector's effect.
	outs := make([]*identity.Employee, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, jid := range ids {
		wg.Go(func() { outs[i], errs[i] = r.runJob(ctx, e, jid) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, out := range outs {
		if out != nil && out.Rev > e.Rev {
			e = out // the latest write of all
		}
	}
	return r.reschedule(ctx, e, seen, marked)
}

// reschedule moves the employee's due mark to its next wake-up, or clears it, unless the mark
// changed since it was read (someone owes new work: it stays and the runner looks again).
func (r *Runner) reschedule(ctx context.Context, e *identity.Employee, seen time.Time, marked bool) error {
	next := nextWake(e, r.svc.now())
	switch {
	case next == nil && marked:
		return r.store.ClearDue(ctx, e.ID, seen)
	case next == nil:
		return nil
	case marked:
		return r.store.RescheduleDue(ctx, e.Tenant, e.ID, seen, *next)
	}
	return r.store.MarkDue(ctx, e.Tenant, e.ID, *next)
}

// runLocalJobs leases the local jobs that are due (or whose worker died) and runs them.
func (r *Runner) runLocalJobs(ctx context.Context, e *identity.Employee) (*identity.Employee, error) {
	now := r.svc.now().UTC()
	want := false
	for _, j := range e.Jobs {
		if localAction(j.Action) && dueNow(j, now) {
			want = true
		}
	}
	if !want {
		return e, nil
	}
	// A joiner waiting for a seat only tries when first in line (first come, first served). It
	// is (re)queued under the time it started waiting first, which restores its place if a
	// crash lost its queue entry. A joiner that already holds its seat (the ID could not be
	// issued yet) only needs its ID and waits for nobody.
	var head string
	queued := false
	if e.State == identity.StatePendingSeat && e.SeatQueued != nil && !(e.Seat.State == identity.SeatHeld && seatGen(e) == e.Generation) {
		if err := r.store.QueueForSeat(ctx, e.Tenant, e.ID, *e.SeatQueued); err != nil {
			return e, err
		}
		queued = true
		if heads, err := r.store.SeatQueue(ctx, e.Tenant, 1); err == nil && len(heads) > 0 {
			head = heads[0]
		}
	}
	leased, token := false, r.svc.leaseToken()
	next, err := r.store.UpdateEmployee(ctx, e.Tenant, e.ID, func(x *identity.Employee) error {
		leased = false
		now := r.svc.now().UTC()
		if queued {
			x.Queued = true
		}
		for _, j := range x.Jobs {
			if !localAction(j.Action) || !dueNow(j, now) {
				continue
			}
			if j.Action == identity.ActionAcquireSeat && head != "" && head != x.ID {
				j.NextAt = now.Add(seatRetry)
				continue
			}
			lease(j, token, now, r.svc.leaseFor)
			leased = true
		}
		x.NextWakeAt = nextWake(x, now)
		return nil
	})
	if err != nil {
		return e, err
	}
	if !leased {
		return next, nil
	}
	done, err := r.svc.runLocal(ctx, next, token)
	if err != nil || done == nil {
		return next, err
	}
	return done, nil
}

// dueNow reports whether a job should be started now: pending and due, waiting and due for a
// status poll, or running under a lease that expired (its worker died).
func dueNow(j *identity.Job, now time.Time) bool {
	switch j.State {
	case identity.JobPending, identity.JobWaiting:
		return !now.Before(j.NextAt)
	case identity.JobRunning:
		return j.LeaseUntil != nil && !now.Before(*j.LeaseUntil)
	}
	return false
}

// runJob leases one external job if it is due, executes it and records the outcome.
func (r *Runner) runJob(ctx context.Context, e *identity.Employee, jid string) (*identity.Employee, error) {
	j := e.Jobs[jid]
	if j == nil || !dueNow(j, r.svc.now()) {
		return e, nil
	}
	polling := j.State == identity.JobWaiting
	leased, token := false, r.svc.leaseToken()
	e, err := r.store.UpdateEmployee(ctx, e.Tenant, e.ID, func(x *identity.Employee) error {
		leased = false
		j := x.Jobs[jid]
		now := r.svc.now().UTC()
		if j == nil || !dueNow(j, now) {
			return identity.ErrSkip
		}
		polling = j.State == identity.JobWaiting
		if !polling {
			j.Attempts++
		}
		lease(j, token, now, r.svc.leaseFor)
		leased = true
		return nil
	})
	if err != nil || !leased {
		return e, err
	}
	j = e.Jobs[jid]

	t, err := r.svc.settings(ctx, e.Tenant)
	if err != nil {
		return e, err
	}
	callCtx, cancel := context.WithTimeout(ctx, r.callTimeout)
	stopRenewing := r.renew(callCtx, cancel, e.Tenant, e.ID, jid, token)
	res := r.execute(callCtx, e, j, t.Policy, polling)
	cancel()
	stopRenewing()
	out, err := r.store.UpdateEmployee(ctx, e.Tenant, e.ID, func(x *identity.Employee) error {
		j := x.Jobs[jid]
		if j == nil || j.LeaseOwner != token || j.State != identity.JobRunning {
			return identity.ErrSkip // lease lost: the effect was idempotent, the new owner records it
		}
		now := r.svc.now().UTC()
		r.record(x, j, res, t.Policy, now)
		x.NextWakeAt = nextWake(x, now)
		return nil
	})
	if err != nil {
		return e, err
	}
	done := out.Jobs[jid]
	r.observe(done, string(done.State))
	if done.State == identity.JobWaiting && done.Command != nil && !polling {
		r.onWaiting(ctx, out.Tenant, out.ID, done.Connector, done.Command.ID)
	}
	return out, nil
}

// renew keeps the lease of a running vendor call: every third of the lease it extends the
// lease by a full one, so a call may take its whole timeout while a dead worker's job is
// taken over within one lease. If the lease is lost (this worker stalled past it and another
// one took the job), the call is cancelled: the new owner repeats it under the same key. The
// returned function stops the renewal and waits for it.
func (r *Runner) renew(ctx context.Context, cancelCall context.CancelFunc, tenant, id, jid, token string) func() {
	every := r.svc.leaseFor / 3
	if every <= 0 {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			held := false
			_, err := r.store.UpdateEmployee(context.WithoutCancel(ctx), tenant, id, func(x *identity.Employee) error {
				held = false
				j := x.Jobs[jid]
				if j == nil || j.LeaseOwner != token || j.State != identity.JobRunning {
					return identity.ErrSkip
				}
				now := r.svc.now().UTC()
				until := now.Add(r.svc.leaseFor)
				j.LeaseUntil = &until // not Updated: CommandReported compares NextAt with the lease's start
				x.NextWakeAt = nextWake(x, now)
				held = true
				return nil
			})
			if err != nil {
				r.log.Warn("lease not renewed", "employee", id, "job", jid, "error", err)
				continue
			}
			if !held {
				r.log.Warn("lease lost during a vendor call; the new owner repeats it", "employee", id, "job", jid)
				cancelCall()
				return
			}
		}
	}()
	return func() { close(stop); <-done }
}

// result is what one execution of an external job produced.
type result struct {
	err     error
	cmd     *mdm.Command
	devices []mdm.Device
	done    bool
	note    string
}

func (r *Runner) execute(ctx context.Context, e *identity.Employee, j *identity.Job, p identity.Policy, polling bool) result {
	conn, err := r.conns.Open(ctx, e.Tenant, j.Connector)
	if err != nil {
		return result{err: err}
	}
	person := personOf(e)
	person.Match = mdm.MatchAttribute(p.DeviceMatch) // which attribute Finders look the person up by
	req := mdm.Request{Key: j.Key, Action: mdm.Action(j.Action), Tenant: e.Tenant, Person: person,
		WorkID: j.WorkID, Device: j.Device, Occurred: derefTime(e.Offboarded, j.Created)}

	switch {
	case j.Action == identity.ActionDiscover:
		var devices []mdm.Device
		if f, ok := conn.(mdm.Finder); ok {
			found, err := f.FindDevices(ctx, person)
			if err != nil {
				return result{err: err}
			}
			devices = found
		}
		return result{done: true, devices: devices}
	case j.Device == nil:
		n, ok := conn.(mdm.Notifier)
		if !ok {
			return result{err: fmt.Errorf("connector %s: %w", j.Connector, mdm.ErrUnsupported)}
		}
		return result{err: n.Notify(ctx, req), done: true}
	case polling && j.Command != nil:
		sr, ok := conn.(mdm.StatusReporter)
		if !ok {
			return result{done: true, note: "vendor reports no status; accepted counts as done"}
		}
		cmd, err := sr.CommandStatus(ctx, *j.Device, *j.Command)
		return result{err: err, cmd: &cmd}
	case j.Action == identity.ActionWipeDevice:
		if j.Device.Ownership != mdm.OwnershipCompany {
			return result{err: &mdm.VendorError{Vendor: j.Connector, Op: "wipe", Detail: "refusing a full wipe of a device not owned by the company"}}
		}
		w, ok := conn.(mdm.Wiper)
		if !ok {
			return result{err: fmt.Errorf("connector %s: %w", j.Connector, mdm.ErrUnsupported)}
		}
		cmd, err := w.WipeDevice(ctx, req)
		return result{err: err, cmd: &cmd}
	default:
		a, ok := conn.(mdm.AppRemover)
		if !ok {
			return result{err: fmt.Errorf("connector %s: %w", j.Connector, mdm.ErrUnsupported)}
		}
		cmd, err := a.RemoveApp(ctx, req)
		return result{err: err, cmd: &cmd}
	}
}

// record stores the outcome of one attempt in the job (and, for a dispatch, the device jobs).
func (r *Runner) record(e *identity.Employee, j *identity.Job, res result, p identity.Policy, now time.Time) {
	// A result reported while the job ran (see CommandReported) is not lost to a long poll wait.
	reported := j.State == identity.JobRunning && j.NextAt.After(j.Updated)
	j.LeaseOwner, j.LeaseUntil, j.Updated = "", nil, now
	err := res.err
	switch {
	case errors.Is(err, mdm.ErrDeviceGone):
		j.State, j.LastError = identity.JobDone, "device no longer managed: nothing left to wipe"
		return
	case err != nil:
		j.LastError = truncate(err.Error(), 500)
		if !mdm.IsRetryable(err) || j.Attempts >= r.maxAttempts {
			j.State = identity.JobFailed
			e.Record(now, "job_failed", j.ID+": "+j.LastError, "system")
			return
		}
		j.State = identity.JobPending
		j.NextAt = now.Add(r.delay(j.Attempts, err))
		return
	}
	j.LastError = res.note
	if j.Action == identity.ActionDiscover {
		known := map[string]bool{}
		for _, d := range e.Devices {
			known[d.Connector+"/"+d.ID] = true
		}
		for _, d := range res.devices {
			d.Connector = j.Connector
			if !known[d.Connector+"/"+d.ID] {
				e.Devices = append(e.Devices, d)
				known[d.Connector+"/"+d.ID] = true
			}
		}
		for _, d := range e.Devices {
			if d.Connector == j.Connector {
				DeviceJob(e, p, d, j.Generation, j.WorkID, false, now)
			}
		}
		j.State = identity.JobDone
		return
	}
	if res.cmd == nil || res.cmd.State == "" || res.cmd.State == mdm.CommandDone || res.done && res.cmd == nil {
		j.State = identity.JobDone
		if res.cmd != nil {
			j.Command = res.cmd
		}
		return
	}
	j.Command = res.cmd
	switch res.cmd.State {
	case mdm.CommandFailed:
		j.State, j.LastError = identity.JobFailed, truncate("device reported failure: "+res.cmd.Detail, 500)
		e.Record(now, "job_failed", j.ID+": "+j.LastError, "system")
	default:
		if now.Sub(j.Created) > maxWaiting {
			j.State, j.LastError = identity.JobFailed, "the device did not confirm the command within 7 days"
			return
		}
		j.State = identity.JobWaiting
		wait := pollCommand << min(j.Attempts, 6)
		j.NextAt = now.Add(min(wait, r.maxBackoff))
		if reported {
			j.NextAt = now
		}
		j.Attempts++
	}
}

// delay is the backoff before retry attempt n: exponential with full jitter in [d/2, d], never
// shorter than the vendor's Retry-After.
func (r *Runner) delay(n int, err error) time.Duration {
	d := r.baseBackoff << min(max(n-1, 0), 20)
	if d > r.maxBackoff || d <= 0 {
		d = r.maxBackoff
	}
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	var ve *mdm.VendorError
	if errors.As(err, &ve) && ve.RetryAfter > d {
		d = ve.RetryAfter
	}
	return d
}

func personOf(e *identity.Employee) mdm.Person {
	p := mdm.Person{ID: e.ID, UserName: e.UserName, ExternalID: e.ExternalID}
	if emails, ok := e.Resource["emails"].([]any); ok {
		for _, m := range emails {
			em, _ := m.(map[string]any)
			v, _ := em["value"].(string)
			if v == "" {
				continue
			}
			if p.Email == "" || em["primary"] == true {
				p.Email = v
			}
		}
	}
	return p
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
