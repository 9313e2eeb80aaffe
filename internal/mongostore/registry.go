package mongostore

import (
	"errors"

	"context"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
)

// InsertWorkID records a newly issued messenger ID; an ID ever issued before (in any tenant,
// revoked or not) is ErrConflict, since the registry keeps every ID as its `_id` forever.
func (s *Store) InsertWorkID(ctx context.Context, r *identity.WorkIDRecord) error {
	_, err := s.c(colWorkIDs).InsertOne(ctx, r)
	return wrap("insert messenger ID", err)
}

// GetWorkID reads a registry record.
func (s *Store) GetWorkID(ctx context.Context, id string) (*identity.WorkIDRecord, error) {
	var r identity.WorkIDRecord
	if err := s.c(colWorkIDs).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&r); err != nil {
		return nil, wrap("get messenger ID", err)
	}
	return &r, nil
}

// RevokeWorkID tombstones an ID. Idempotent; the record is never deleted.
func (s *Store) RevokeWorkID(ctx context.Context, id string, at time.Time) error {
	_, err := s.c(colWorkIDs).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "status", Value: identity.WorkIDActive}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: identity.WorkIDRevoked}, {Key: "revoked", Value: at.UTC()}}}})
	return wrap("revoke messenger ID", err)
}

// dueDoc marks an employee with owed work or a timer; the runner polls these few documents
// instead of every employee.
type dueDoc struct {
	ID     string    `bson:"_id"`
	Tenant string    `bson:"tenant"`
	At     time.Time `bson:"at"`
}

// MarkDue records that an employee has work due at or after at (an earlier mark wins).
// It is written before the employee update that creates the work, so a crash in between leaves
// at worst a mark with nothing to do, never work without a mark.
//
// It is one upsert ($min keeps the earlier mark), not a conditional update followed by an
// insert: one round trip on every deactivation instead of two.
func (s *Store) MarkDue(ctx context.Context, tenant, employee string, at time.Time) error {
	at = at.UTC()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		_, err = s.c(colDue).UpdateOne(ctx, bson.D{{Key: "_id", Value: employee}},
			bson.D{{Key: "$min", Value: bson.D{{Key: "at", Value: at}}}, {Key: "$set", Value: bson.D{{Key: "tenant", Value: tenant}}}},
			options.UpdateOne().SetUpsert(true))
		if err == nil || !isDup(err) {
			break // a concurrent upsert inserted first: the retry updates its mark
		}
	}
	return wrap("mark due", err)
}

// GetDue reads an employee's due mark.
func (s *Store) GetDue(ctx context.Context, employee string) (time.Time, bool, error) {
	var d dueDoc
	err := s.c(colDue).FindOne(ctx, bson.D{{Key: "_id", Value: employee}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, wrap("get due", err)
	}
	return d.At, true, nil
}

// ClearDue removes an employee's mark if it is still the one the runner saw (at).
func (s *Store) ClearDue(ctx context.Context, employee string, at time.Time) error {
	_, err := s.c(colDue).DeleteOne(ctx, bson.D{{Key: "_id", Value: employee}, {Key: "at", Value: at.UTC()}})
	return wrap("clear due", err)
}

// ListDue returns up to limit marks due at or before now, earliest first.
func (s *Store) ListDue(ctx context.Context, now time.Time, limit int) ([]identity.Due, error) {
	cur, err := s.c(colDue).Find(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lte", Value: now.UTC()}}}},
		options.Find().SetSort(bson.D{{Key: "at", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, wrap("list due", err)
	}
	var docs []dueDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrap("list due", err)
	}
	out := make([]identity.Due, len(docs))
	for i, d := range docs {
		out[i] = identity.Due{Employee: d.ID, Tenant: d.Tenant, At: d.At}
	}
	return out, nil
}

// EmployeesWithOpenWork lists the ids of employees that have a non-terminal job, a pending seat
// or a timer; the runner's start-up and periodic repair sweep uses it (a full scan).
func (s *Store) EmployeesWithOpenWork(ctx context.Context) ([]identity.Due, error) {
	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "nextWakeAt", Value: bson.D{{Key: "$exists", Value: true}}}},
		bson.D{{Key: "state", Value: identity.StatePendingSeat}},
		bson.D{{Key: "seat.state", Value: bson.D{{Key: "$in", Value: bson.A{identity.SeatAcquiring, identity.SeatReleasing}}}}},
	}}}
	cur, err := s.c(colEmployees).Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "tenant", Value: 1}, {Key: "nextWakeAt", Value: 1}}))
	if err != nil {
		return nil, wrap("sweep employees", err)
	}
	var docs []struct {
		ID         string     `bson:"_id"`
		Tenant     string     `bson:"tenant"`
		NextWakeAt *time.Time `bson:"nextWakeAt"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrap("sweep employees", err)
	}
	out := make([]identity.Due, 0, len(docs))
	for _, d := range docs {
		at := time.Time{}
		if d.NextWakeAt != nil {
			at = *d.NextWakeAt
		}
		out = append(out, identity.Due{Employee: d.ID, Tenant: d.Tenant, At: at})
	}
	return out, nil
}

// pendingDoc queues an employee waiting for a seat, first come first served.
type pendingDoc struct {
	ID     string    `bson:"_id"`
	Tenant string    `bson:"tenant"`
	At     time.Time `bson:"at"`
}

// QueueForSeat adds an employee to the tenant's seat queue (idempotent).
func (s *Store) QueueForSeat(ctx context.Context, tenant, employee string, at time.Time) error {
	_, err := s.c(colPending).InsertOne(ctx, pendingDoc{ID: employee, Tenant: tenant, At: at.UTC()})
	if err != nil && isDup(err) {
		return nil
	}
	return wrap("queue for seat", err)
}

// DequeueSeat removes an employee from the seat queue.
func (s *Store) DequeueSeat(ctx context.Context, employee string) error {
	_, err := s.c(colPending).DeleteOne(ctx, bson.D{{Key: "_id", Value: employee}})
	return wrap("dequeue seat", err)
}

// SeatQueue returns up to limit employees waiting for a seat in a tenant, first come first.
func (s *Store) SeatQueue(ctx context.Context, tenant string, limit int) ([]string, error) {
	cur, err := s.c(colPending).Find(ctx, bson.D{{Key: "tenant", Value: tenant}},
		options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, wrap("seat queue", err)
	}
	var docs []pendingDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrap("seat queue", err)
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	return out, nil
}

// AppendAudit appends an audit entry.
func (s *Store) AppendAudit(ctx context.Context, e *identity.AuditEntry) error {
	_, err := s.c(colAudit).InsertOne(ctx, e)
	return wrap("append audit", err)
}

// ListAudit returns a tenant's audit entries after a point in time, oldest first.
func (s *Store) ListAudit(ctx context.Context, tenant string, since time.Time, limit int) ([]*identity.AuditEntry, error) {
	cur, err := s.c(colAudit).Find(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "at", Value: bson.D{{Key: "$gte", Value: since.UTC()}}}},
		options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, wrap("list audit", err)
	}
	var out []*identity.AuditEntry
	if err := cur.All(ctx, &out); err != nil {
		return nil, wrap("list audit", err)
	}
	return out, nil
}

// RescheduleDue moves an employee's mark from seen to next, unless someone marked it meanwhile
// (then that mark stands and the runner looks again).
func (s *Store) RescheduleDue(ctx context.Context, tenant, employee string, seen, next time.Time) error {
	_, err := s.c(colDue).UpdateOne(ctx, bson.D{{Key: "_id", Value: employee}, {Key: "at", Value: seen.UTC()}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: next.UTC()}, {Key: "tenant", Value: tenant}}}})
	return wrap("reschedule due", err)
}

// EmployeesWithState lists a tenant's employees having a job in the given state (admin bulk
// actions such as confirming a braked batch; a scan).
func (s *Store) EmployeesWithState(ctx context.Context, tenant string, jobState identity.JobState) ([]string, error) {
	cur, err := s.c(colEmployees).Find(ctx, bson.D{{Key: "tenant", Value: tenant}}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "jobs", Value: 1}}))
	if err != nil {
		return nil, wrap("employees with job state", err)
	}
	var docs []struct {
		ID   string                   `bson:"_id"`
		Jobs map[string]*identity.Job `bson:"jobs"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrap("employees with job state", err)
	}
	var out []string
	for _, d := range docs {
		for _, j := range d.Jobs {
			if j.State == jobState {
				out = append(out, d.ID)
				break
			}
		}
	}
	return out, nil
}

// CountOffboarding counts a tenant's final offboardings in the current and previous window
// (two fixed buckets approximating a sliding window), including this one.
func (s *Store) CountOffboarding(ctx context.Context, tenant string, now time.Time, window time.Duration) (int, error) {
	if window <= 0 {
		window = time.Hour
	}
	b := now.UnixNano() / int64(window)
	field := "brake.b" + strconv.FormatInt(b, 10)
	var t struct {
		Brake map[string]int `bson:"brake"`
	}
	err := s.c(colTenants).FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: tenant}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: field, Value: 1}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&t)
	if err != nil {
		return 0, wrap("count offboarding", err)
	}
	n := t.Brake["b"+strconv.FormatInt(b, 10)] + t.Brake["b"+strconv.FormatInt(b-1, 10)]
	if len(t.Brake) > 4 {
		unset := bson.D{}
		for k := range t.Brake {
			if k != "b"+strconv.FormatInt(b, 10) && k != "b"+strconv.FormatInt(b-1, 10) {
				unset = append(unset, bson.E{Key: "brake." + k, Value: ""})
			}
		}
		_, _ = s.c(colTenants).UpdateOne(ctx, bson.D{{Key: "_id", Value: tenant}}, bson.D{{Key: "$unset", Value: unset}})
	}
	return n, nil
}

// ResetOffboardingCount clears a tenant's brake counters (an admin confirmed or cancelled).
func (s *Store) ResetOffboardingCount(ctx context.Context, tenant string) error {
	_, err := s.c(colTenants).UpdateOne(ctx, bson.D{{Key: "_id", Value: tenant}}, bson.D{{Key: "$set", Value: bson.D{{Key: "brake", Value: bson.D{}}}}})
	return wrap("reset brake", err)
}
