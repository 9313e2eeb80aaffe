package lifecycle

import (
	"context"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/mdm"
)

// Store is the storage the lifecycle needs (implemented by internal/mongostore).
type Store interface {
	GetTenant(ctx context.Context, id string) (*identity.Tenant, error)
	ListTenants(ctx context.Context) ([]*identity.Tenant, error)
	CountSeatsHeld(ctx context.Context, tenant string) (int, error)
	CorrectFree(ctx context.Context, tenant string, seen, want int) (bool, error)
	AcquireSeat(ctx context.Context, tenant, op, employee string) (bool, error)
	ReleaseSeat(ctx context.Context, tenant, op, employee string) error
	ForgetSeatOps(ctx context.Context, tenant string, ops []string) error
	CountOffboarding(ctx context.Context, tenant string, now time.Time, window time.Duration) (int, error)

	ClaimUserName(ctx context.Context, tenant, userNameKey, id string) error
	ReleaseUserName(ctx context.Context, tenant, userNameKey, id string) error
	InsertEmployee(ctx context.Context, e *identity.Employee) error
	LoadEmployee(ctx context.Context, id string) (*identity.Employee, error)
	GetEmployee(ctx context.Context, tenant, id string) (*identity.Employee, error)
	UpdateEmployee(ctx context.Context, tenant, id string, fn func(*identity.Employee) error) (*identity.Employee, error)
	EmployeesWithState(ctx context.Context, tenant string, jobState identity.JobState) ([]string, error)
	ExpiredEmployees(ctx context.Context, now time.Time) ([]string, error)
	PurgeEmployee(ctx context.Context, id string, rev int64) error

	InsertWorkID(ctx context.Context, r *identity.WorkIDRecord) error
	GetWorkID(ctx context.Context, id string) (*identity.WorkIDRecord, error)
	RevokeWorkID(ctx context.Context, id string, at time.Time) error

	MarkDue(ctx context.Context, tenant, employee string, at time.Time) error
	RescheduleDue(ctx context.Context, tenant, employee string, seen, next time.Time) error
	ClearDue(ctx context.Context, employee string, at time.Time) error
	GetDue(ctx context.Context, employee string) (at time.Time, ok bool, err error)
	ListDue(ctx context.Context, now time.Time, limit int) ([]identity.Due, error)
	EmployeesWithOpenWork(ctx context.Context) ([]identity.Due, error)

	QueueForSeat(ctx context.Context, tenant, employee string, at time.Time) error
	DequeueSeat(ctx context.Context, employee string) error
	SeatQueue(ctx context.Context, tenant string, limit int) ([]string, error)

	AppendAudit(ctx context.Context, e *identity.AuditEntry) error
}

// Connectors gives the lifecycle a tenant's MDM connectors.
type Connectors interface {
	// List returns the tenant's connectors for planning.
	List(ctx context.Context, tenant string) ([]ConnectorInfo, error)
	// Open returns the opened connector (cached by the implementation).
	Open(ctx context.Context, tenant, id string) (mdm.Connector, error)
}
