package mongostore_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
)

func TestEnsureSchemaRunsAgainOnEveryStartAndNamesEachIndexAfterItsKeys(t *testing.T) {
	for _, b := range testdb.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			db := testdb.Database(t, b.URI)
			ctx := context.Background()
			for start := 0; start < 4; start++ { // map order varies between runs
				if err := mongostore.New(db).EnsureSchema(ctx); err != nil {
					t.Fatalf("start %d: %v", start+1, err)
				}
			}
			cur, err := db.Collection("connectors").Indexes().List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var idx []bson.M
			if err := cur.All(ctx, &idx); err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for _, i := range idx {
				names[i["name"].(string)] = true
			}
			if !names["tenant_1_name_1"] || names["nameKey_1"] {
				t.Fatalf("connectors indexes: %v", idx)
			}
		})
	}
}
