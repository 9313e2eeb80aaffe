package mongostore_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
)

// TestTheSchemaCanBeEnsuredAgainOnEveryStart: `offboard serve` ensures the schema on every
// start, so a restart on an existing database must find nothing to object to.
func TestTheSchemaCanBeEnsuredAgainOnEveryStart(t *testing.T) {
	ctx := context.Background()
	for _, b := range testdb.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := testdb.NewOn(t, b.URI)
			for start := range 6 {
				if err := s.EnsureSchema(ctx); err != nil {
					t.Fatalf("start %d: %v", start+2, err)
				}
			}
		})
	}
}

// TestTheSchemaAcceptsIndexesAnEarlierVersionNamedDifferently: databases created before the
// index names were fixed hold the same indexes under generated names.
func TestTheSchemaAcceptsIndexesAnEarlierVersionNamedDifferently(t *testing.T) {
	ctx := context.Background()
	db := testdb.Database(t, testdb.URI(t))
	if _, err := db.Collection("connectors").Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "name", Value: 1}}, Options: options.Index().SetUnique(true).SetName("nameKey_1"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := mongostore.New(db).EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
}
