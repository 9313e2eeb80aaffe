package mongostore

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
)

// ListEmployees pages a tenant's (not deleted) employees matching a SCIM filter, in a stable
// order (creation, then id). On the embedded store this scans the tenant's employees; the IdP
// hot paths use FindEmployeeByUserName / FindEmployeesByExternalID instead.
func (s *Store) ListEmployees(ctx context.Context, tenant string, q identity.ListQuery) ([]*identity.Employee, int, error) {
	filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "deleted", Value: bson.D{{Key: "$exists", Value: false}}}}
	if q.Filter != nil {
		f, err := UserFilter(q.Filter)
		if err != nil {
			return nil, 0, err
		}
		filter = append(filter, bson.E{Key: "$and", Value: bson.A{f}})
	}
	total, err := s.c(colEmployees).CountDocuments(ctx, filter)
	if err != nil {
		return nil, 0, wrap("count employees", err)
	}
	if q.Count <= 0 || int64(q.StartIndex) > total {
		return nil, int(total), nil
	}
	start := max(q.StartIndex, 1)
	sort := bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}}
	if q.SortBy != "" {
		dir := 1
		if q.Descending {
			dir = -1
		}
		sort = bson.D{{Key: q.SortBy, Value: dir}, {Key: "_id", Value: 1}}
	}
	cur, err := s.c(colEmployees).Find(ctx, filter, options.Find().SetSort(sort).SetSkip(int64(start-1)).SetLimit(int64(q.Count)))
	if err != nil {
		return nil, 0, wrap("list employees", err)
	}
	defer cur.Close(ctx)
	var out []*identity.Employee
	for cur.Next(ctx) {
		e, err := decodeEmployee(cur.Current)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, e)
	}
	if err := cur.Err(); err != nil {
		return nil, 0, wrap("list employees", err)
	}
	return out, int(total), nil
}

// UserFilter translates a SCIM filter on Users into a MongoDB query on employee documents.
func UserFilter(expr any) (bson.D, error) {
	return nil, fmt.Errorf("filter not supported yet: %w", identity.ErrInvalid)
}
