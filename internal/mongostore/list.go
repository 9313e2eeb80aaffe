package mongostore

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
)

// ListEmployees pages a tenant's (not deleted) employees matching a SCIM filter, in a stable
// order: sortBy (if any), then creation, then id. On the embedded store this scans the tenant's
// employees; the IdP hot paths use FindEmployeeByUserName / FindEmployeesByExternalID /
// GetEmployee instead. A filter the store cannot evaluate is a *FilterError (ErrInvalid).
func (s *Store) ListEmployees(ctx context.Context, tenant string, q identity.ListQuery) ([]*identity.Employee, int, error) {
	base := bson.D{{Key: "tenant", Value: tenant}, {Key: "deleted", Value: bson.D{{Key: "$exists", Value: false}}}}
	var out []*identity.Employee
	total, err := s.list(ctx, colEmployees, base, userFields, nil, q, func(raw bson.Raw) error {
		e, err := decodeEmployee(raw)
		if err == nil {
			out = append(out, e)
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// list runs a paged SCIM query on col: base conditions (tenant, not deleted), the compiled
// filter and the sort. It calls emit for each document of the page and returns the total.
// Exact filters count and page in the database; inexact ones (see Query.Exact) check each
// candidate in Go and page while counting.
func (s *Store) list(ctx context.Context, col string, base bson.D, fs *fields, join joinFunc, q identity.ListQuery, emit func(bson.Raw) error) (int, error) {
	cq, err := compileFilter(q.Filter, fs, join)
	if err != nil {
		return 0, err
	}
	filter := base
	if len(cq.Filter) > 0 {
		filter = append(append(bson.D{}, base...), bson.E{Key: "$and", Value: bson.A{cq.Filter}})
	}
	sort := bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}}
	if q.SortBy != "" {
		path, err := sortPath(fs, q.SortBy)
		if err != nil {
			return 0, err
		}
		dir := 1
		if q.Descending {
			dir = -1
		}
		sort = bson.D{{Key: path, Value: dir}, {Key: "created", Value: 1}, {Key: "_id", Value: 1}}
	}
	start := max(q.StartIndex, 1)
	if cq.Exact {
		// Every query is a scan on the embedded store: read the page first and count only
		// when the page cannot tell the total (it is full, or empty past the start).
		n := 0
		if q.Count > 0 {
			cur, err := s.c(col).Find(ctx, filter, options.Find().SetSort(sort).SetSkip(int64(start-1)).SetLimit(int64(q.Count)))
			if err != nil {
				return 0, wrap("list "+col, err)
			}
			if err := drain(ctx, cur, col, func(raw bson.Raw) error { n++; return emit(raw) }); err != nil {
				return 0, err
			}
			if n < q.Count && (n > 0 || start == 1) {
				return start - 1 + n, nil
			}
		}
		total, err := s.c(col).CountDocuments(ctx, filter)
		if err != nil {
			return 0, wrap("count "+col, err)
		}
		return int(total), nil
	}
	cur, err := s.c(col).Find(ctx, filter, options.Find().SetSort(sort))
	if err != nil {
		return 0, wrap("list "+col, err)
	}
	defer cur.Close(ctx)
	total := 0
	for cur.Next(ctx) {
		var doc map[string]any
		if err := bson.Unmarshal(cur.Current, &doc); err != nil {
			return 0, wrap("decode "+col, err)
		}
		if !cq.Match(Plain(doc)) {
			continue
		}
		total++
		if total >= start && total < start+q.Count {
			if err := emit(cur.Current); err != nil {
				return 0, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return 0, wrap("list "+col, err)
	}
	return total, nil
}

func drain(ctx context.Context, cur *mongo.Cursor, col string, emit func(bson.Raw) error) error {
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		if err := emit(cur.Current); err != nil {
			return err
		}
	}
	return wrap("list "+col, cur.Err())
}
