package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
)

// ExpiredEmployees lists the ids of SCIM-deleted employees whose retention ended by now (the
// runner's housekeeping; a scan).
func (s *Store) ExpiredEmployees(ctx context.Context, now time.Time) ([]string, error) {
	cur, err := s.c(colEmployees).Find(ctx,
		bson.D{{Key: "retainUntil", Value: bson.D{{Key: "$lte", Value: now.UTC()}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, wrap("expired employees", err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrap("expired employees", err)
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	return out, nil
}

// PurgeEmployee deletes a SCIM-deleted employee's document, history included, if it is still
// at revision rev, and its due mark and seat queue entry. The messenger ID registry keeps its
// records (tombstones are forever), and so does the audit log.
func (s *Store) PurgeEmployee(ctx context.Context, id string, rev int64) error {
	res, err := s.c(colEmployees).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "rev", Value: rev},
		{Key: "deleted", Value: bson.D{{Key: "$exists", Value: true}}}})
	if err != nil {
		return wrap("purge employee", err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("purge employee: changed meanwhile: %w", identity.ErrRetry)
	}
	if _, err := s.c(colDue).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return wrap("purge employee due mark", err)
	}
	_, err = s.c(colPending).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	return wrap("purge employee seat queue entry", err)
}
