package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testclock"
	"github.com/offboard/offboard/internal/testdb"
	"github.com/offboard/offboard/mdm"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// effect is one external effect as the vendor sees it.
type effect struct {
	Action string
	Device string // "" for the person-level webhook event
	Person string
}

// vendor stands for every system Offboard calls: it answers as told, deduplicates on the
// idempotency key like a well-behaved receiver, and records what it saw.
type vendor struct {
	mu       sync.Mutex
	calls    map[string]int    // key -> calls
	accepted map[string]effect // key -> the effect accepted under it
	keysOf   map[effect][]string
	devices  map[string][]mdm.Device // person id -> devices the MDM knows
	// answer, if set, decides the outcome of a call (nil: accepted).
	answer func(key string, call int) error
	// gate, if set, is called before a call is answered (tests stall calls with it).
	gate  func(key string)
	finds int
}

func newVendor() *vendor {
	return &vendor{calls: map[string]int{}, accepted: map[string]effect{}, keysOf: map[effect][]string{}, devices: map[string][]mdm.Device{}}
}

func (v *vendor) call(key string, ef effect) error {
	v.mu.Lock()
	gate := v.gate
	v.mu.Unlock()
	if gate != nil {
		gate(key)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls[key]++
	if v.answer != nil {
		if err := v.answer(key, v.calls[key]); err != nil {
			return err
		}
	}
	if prev, seen := v.accepted[key]; seen {
		if prev != ef {
			return fmt.Errorf("key %s reused for %+v and %+v", key, prev, ef)
		}
		return nil // a duplicate delivery: deduplicated
	}
	v.accepted[key] = ef
	v.keysOf[ef] = append(v.keysOf[ef], key)
	return nil
}

// duplicates is how many calls repeated an accepted key.
func (v *vendor) duplicates() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, c := range v.calls {
		n += max(c-1, 0)
	}
	return n
}

// effects returns the accepted effects, sorted, and fails if one effect was accepted under two
// keys (a second wipe of the same device for the same offboarding).
func (v *vendor) effects(t *testing.T) []string {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for ef, keys := range v.keysOf {
		if len(keys) != 1 {
			t.Errorf("effect %+v accepted under %d keys: %v", ef, len(keys), keys)
		}
		out = append(out, ef.Action+"@"+ef.Device)
	}
	sort.Strings(out)
	return out
}

// notifier is a person-level connector (the webhook's shape).
type notifier struct{ v *vendor }

func (notifier) Type() string { return "webhook" }
func (n notifier) Notify(_ context.Context, req mdm.Request) error {
	return n.v.call(req.Key, effect{Action: string(req.Action), Person: req.Person.ID})
}

// deviceMDM finds devices and removes the app or wipes them, answering at once.
type deviceMDM struct{ v *vendor }

func (deviceMDM) Type() string { return "intune" }
func (d deviceMDM) FindDevices(_ context.Context, p mdm.Person) ([]mdm.Device, error) {
	d.v.mu.Lock()
	defer d.v.mu.Unlock()
	d.v.finds++
	return append([]mdm.Device(nil), d.v.devices[p.ID]...), nil
}
func (d deviceMDM) RemoveApp(_ context.Context, req mdm.Request) (mdm.Command, error) {
	err := d.v.call(req.Key, effect{Action: string(req.Action), Device: req.Device.ID, Person: req.Person.ID})
	return mdm.Command{ID: "cmd-" + req.Key[:8], State: mdm.CommandDone}, err
}
func (d deviceMDM) WipeDevice(_ context.Context, req mdm.Request) (mdm.Command, error) {
	err := d.v.call(req.Key, effect{Action: string(req.Action), Device: req.Device.ID, Person: req.Person.ID})
	return mdm.Command{ID: "cmd-" + req.Key[:8], State: mdm.CommandDone}, err
}

// conns implements lifecycle.Connectors over the fakes.
type conns struct {
	mu    sync.Mutex
	infos map[string][]lifecycle.ConnectorInfo
	open  map[string]mdm.Connector
}

func (c *conns) List(_ context.Context, tenant string) ([]lifecycle.ConnectorInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]lifecycle.ConnectorInfo(nil), c.infos[tenant]...), nil
}

func (c *conns) Open(_ context.Context, _, id string) (mdm.Connector, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, ok := c.open[id]
	if !ok {
		return nil, &mdm.VendorError{Vendor: "test", Op: "open", Detail: "no connector " + id}
	}
	return conn, nil
}

// world is one database with the fakes around it; services and runners come and go on it
// (a restart is a new Service and Runner on the same world).
type world struct {
	t      *testing.T
	store  *mongostore.Store
	clock  *testclock.Clock
	vendor *vendor
	conns  *conns
	log    *slog.Logger
}

func newWorld(t *testing.T) *world {
	t.Helper()
	c := testclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("OFFBOARD_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	v := newVendor()
	return &world{
		t: t, store: testdb.New(t, mongostore.WithClock(c.Now)), clock: c, vendor: v, log: log,
		conns: &conns{infos: map[string][]lifecycle.ConnectorInfo{}, open: map[string]mdm.Connector{
			"hook": notifier{v}, "mdm": deviceMDM{v},
		}},
	}
}

// tenant creates a tenant with the webhook and the device MDM connected.
func (w *world) tenant(name string, seats int, policy identity.Policy) *identity.Tenant {
	w.t.Helper()
	tn := &identity.Tenant{ID: "t-" + name, Name: name, Seats: seats, Policy: policy, Created: w.clock.Now()}
	if err := w.store.CreateTenant(context.Background(), tn); err != nil {
		w.t.Fatal(err)
	}
	w.conns.mu.Lock()
	w.conns.infos[tn.ID] = []lifecycle.ConnectorInfo{
		{ID: "hook", Name: "hr", Type: "webhook", Notifier: true},
		{ID: "mdm", Name: "intune", Type: "intune"},
	}
	w.conns.mu.Unlock()
	return tn
}

// service starts a Service and Runner on store (the world's store, or a decorator of it).
func (w *world) service(store lifecycle.Store, owner string, opts ...lifecycle.Option) (*lifecycle.Service, *lifecycle.Runner) {
	opts = append([]lifecycle.Option{lifecycle.WithClock(w.clock.Now), lifecycle.WithLogger(w.log.With("owner", owner)),
		lifecycle.WithOwner(owner), lifecycle.WithHasher(lifecycle.BcryptHasher{Cost: 4})}, opts...)
	svc := lifecycle.NewService(store, w.conns, opts...)
	r := lifecycle.NewRunner(svc, lifecycle.WithBackoff(time.Second, 10*time.Second, 5))
	w.t.Cleanup(svc.Close)
	return svc, r
}

func userInput(name string, active bool) lifecycle.UserInput {
	return lifecycle.UserInput{UserName: name, ExternalID: "ext-" + name, Active: active,
		Resource: map[string]any{"userName": name, "emails": []any{map[string]any{"value": name, "primary": true}}}}
}

func setActive(active bool) lifecycle.Mutation {
	return func(e *identity.Employee) (bool, error) {
		if e.Active == active {
			return false, nil
		}
		e.Active = active
		return true, nil
	}
}

// settle drives runner the way its loop would after a start-up — every employee with open
// work or a due mark, until nothing is owed — advancing the clock past leases and backoffs.
// It returns how many rounds it took.
func (w *world) settle(r *lifecycle.Runner, step time.Duration) int {
	w.t.Helper()
	ctx := context.Background()
	for round := 1; round <= 60; round++ {
		open, err := w.store.EmployeesWithOpenWork(ctx)
		if err != nil {
			w.t.Fatal(err)
		}
		due, err := w.store.ListDue(ctx, w.clock.Now(), 1000)
		if err != nil {
			w.t.Fatal(err)
		}
		if len(open) == 0 && len(due) == 0 {
			return round
		}
		seen := map[string]bool{}
		for _, d := range append(open, due...) {
			if seen[d.Employee] {
				continue
			}
			seen[d.Employee] = true
			if err := r.Process(ctx, d.Tenant, d.Employee); err != nil {
				w.t.Logf("process %s: %v", d.Employee, err)
			}
		}
		w.clock.Advance(step)
	}
	w.t.Fatalf("work still open after 60 rounds")
	return 0
}

func (w *world) load(id string) *identity.Employee {
	w.t.Helper()
	e, err := w.store.LoadEmployee(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	return e
}

func (w *world) tenantDoc(id string) *identity.Tenant {
	w.t.Helper()
	tn, err := w.store.GetTenant(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	return tn
}

func jobSummary(e *identity.Employee) string {
	var out []string
	for _, j := range lifecycle.SortedJobs(e) {
		out = append(out, j.ID+"="+string(j.State))
	}
	return strings.Join(out, " ")
}

// errCrashed is what every store call of a crashed process returns.
var errCrashed = errors.New("process killed")

// crashStore is a lifecycle.Store that dies right after its Nth write: that write lands, every
// later call (read or write) fails as if the process were gone. With limit 0 it never dies and
// only counts. ForgetSeatOps runs on a background batcher at a time of its own, so it is not a
// numbered write point; it simply fails once the process is dead.
type crashStore struct {
	lifecycle.Store
	mu     sync.Mutex
	limit  int
	writes int
	dead   bool
	trace  []string
}

func (c *crashStore) alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errCrashed
	}
	return nil
}

// wrote counts a write that landed and kills the process if it was the last one allowed.
func (c *crashStore) wrote(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.trace = append(c.trace, name)
	if c.limit > 0 && c.writes >= c.limit {
		c.dead = true
	}
}

func (c *crashStore) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// write runs one plain write.
func (c *crashStore) write(name string, fn func() error) error {
	if err := c.alive(); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	c.wrote(name)
	return nil
}

func (c *crashStore) AcquireSeat(ctx context.Context, tenant, op, employee string) (ok bool, err error) {
	err = c.write("AcquireSeat", func() error { ok, err = c.Store.AcquireSeat(ctx, tenant, op, employee); return err })
	return ok, err
}
func (c *crashStore) ReleaseSeat(ctx context.Context, tenant, op, employee string) error {
	return c.write("ReleaseSeat", func() error { return c.Store.ReleaseSeat(ctx, tenant, op, employee) })
}
func (c *crashStore) ForgetSeatOps(ctx context.Context, tenant string, ops []string) error {
	if err := c.alive(); err != nil {
		return err
	}
	return c.Store.ForgetSeatOps(ctx, tenant, ops)
}
func (c *crashStore) CountOffboarding(ctx context.Context, tenant string, now time.Time, window time.Duration) (n int, err error) {
	err = c.write("CountOffboarding", func() error { n, err = c.Store.CountOffboarding(ctx, tenant, now, window); return err })
	return n, err
}
func (c *crashStore) ClaimUserName(ctx context.Context, tenant, key, id string) error {
	return c.write("ClaimUserName", func() error { return c.Store.ClaimUserName(ctx, tenant, key, id) })
}
func (c *crashStore) ReleaseUserName(ctx context.Context, tenant, key, id string) error {
	return c.write("ReleaseUserName", func() error { return c.Store.ReleaseUserName(ctx, tenant, key, id) })
}
func (c *crashStore) InsertEmployee(ctx context.Context, e *identity.Employee) error {
	return c.write("InsertEmployee", func() error { return c.Store.InsertEmployee(ctx, e) })
}
func (c *crashStore) UpdateEmployee(ctx context.Context, tenant, id string, fn func(*identity.Employee) error) (*identity.Employee, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	wrote := false
	e, err := c.Store.UpdateEmployee(ctx, tenant, id, func(x *identity.Employee) error {
		wrote = false
		if err := fn(x); err != nil {
			return err
		}
		if err := c.alive(); err != nil {
			return err // died inside the updater (e.g. on its MarkDue): the CAS never lands
		}
		wrote = true
		return nil
	})
	if err == nil && wrote {
		c.wrote("UpdateEmployee")
	}
	return e, err
}
func (c *crashStore) InsertWorkID(ctx context.Context, r *identity.WorkIDRecord) error {
	return c.write("InsertWorkID", func() error { return c.Store.InsertWorkID(ctx, r) })
}
func (c *crashStore) RevokeWorkID(ctx context.Context, id string, at time.Time) error {
	return c.write("RevokeWorkID", func() error { return c.Store.RevokeWorkID(ctx, id, at) })
}
func (c *crashStore) MarkDue(ctx context.Context, tenant, employee string, at time.Time) error {
	return c.write("MarkDue", func() error { return c.Store.MarkDue(ctx, tenant, employee, at) })
}
func (c *crashStore) RescheduleDue(ctx context.Context, tenant, employee string, seen, next time.Time) error {
	return c.write("RescheduleDue", func() error { return c.Store.RescheduleDue(ctx, tenant, employee, seen, next) })
}
func (c *crashStore) ClearDue(ctx context.Context, employee string, at time.Time) error {
	return c.write("ClearDue", func() error { return c.Store.ClearDue(ctx, employee, at) })
}
func (c *crashStore) QueueForSeat(ctx context.Context, tenant, employee string, at time.Time) error {
	return c.write("QueueForSeat", func() error { return c.Store.QueueForSeat(ctx, tenant, employee, at) })
}
func (c *crashStore) DequeueSeat(ctx context.Context, employee string) error {
	return c.write("DequeueSeat", func() error { return c.Store.DequeueSeat(ctx, employee) })
}
func (c *crashStore) AppendAudit(ctx context.Context, e *identity.AuditEntry) error {
	return c.write("AppendAudit", func() error { return c.Store.AppendAudit(ctx, e) })
}

// Reads fail once the process is dead.
func (c *crashStore) GetTenant(ctx context.Context, id string) (*identity.Tenant, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.GetTenant(ctx, id)
}
func (c *crashStore) LoadEmployee(ctx context.Context, id string) (*identity.Employee, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.LoadEmployee(ctx, id)
}
func (c *crashStore) GetEmployee(ctx context.Context, tenant, id string) (*identity.Employee, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.GetEmployee(ctx, tenant, id)
}
func (c *crashStore) GetWorkID(ctx context.Context, id string) (*identity.WorkIDRecord, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.GetWorkID(ctx, id)
}
func (c *crashStore) GetDue(ctx context.Context, employee string) (time.Time, bool, error) {
	if err := c.alive(); err != nil {
		return time.Time{}, false, err
	}
	return c.Store.GetDue(ctx, employee)
}
func (c *crashStore) ListDue(ctx context.Context, now time.Time, limit int) ([]identity.Due, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.ListDue(ctx, now, limit)
}
func (c *crashStore) EmployeesWithOpenWork(ctx context.Context) ([]identity.Due, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.EmployeesWithOpenWork(ctx)
}
func (c *crashStore) EmployeesWithState(ctx context.Context, tenant string, s identity.JobState) ([]string, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.EmployeesWithState(ctx, tenant, s)
}
func (c *crashStore) SeatQueue(ctx context.Context, tenant string, limit int) ([]string, error) {
	if err := c.alive(); err != nil {
		return nil, err
	}
	return c.Store.SeatQueue(ctx, tenant, limit)
}

var _ lifecycle.Store = (*crashStore)(nil)

// employeeByName finds an employee by userName through the store's key lookup.
func (w *world) employeeByName(tenant, userName string) string {
	w.t.Helper()
	e, err := w.store.FindEmployeeByUserName(context.Background(), tenant, userName)
	if err != nil {
		w.t.Fatal(err)
	}
	return e.ID
}
