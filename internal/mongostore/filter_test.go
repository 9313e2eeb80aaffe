package mongostore_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/scim2/filter-parser/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
)

// filterFixture is a tenant's employees with a spread of attribute shapes (and one deleted, and
// one in another tenant, which no filter may return).
func filterFixture(t *testing.T, s *mongostore.Store) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123e6, time.UTC)
	leave := time.Date(2026, 6, 30, 17, 0, 0, 0, time.UTC)
	emps := []*identity.Employee{
		{ID: "e1", Tenant: "t", UserName: "Alice@Example.com", Active: true, ExternalID: "X1", Created: t0, Modified: t0,
			Groups: []identity.GroupRef{{ID: "g1"}},
			Resource: map[string]any{"userName": "Alice@Example.com", "title": "Engineer",
				"name":       map[string]any{"givenName": "Alice", "familyName": "Smith"},
				"emails":     []any{map[string]any{"type": "work", "value": "alice@example.com", "primary": true}, map[string]any{"type": "home", "value": "alice@home.org"}},
				"enterprise": map[string]any{"employeeNumber": "1", "manager": map[string]any{"value": "e2"}}}},
		{ID: "e2", Tenant: "t", UserName: "bob", Active: false, Created: t0.Add(time.Hour), Modified: t0.Add(2 * time.Hour),
			Resource: map[string]any{"userName": "bob", "displayName": `Bob "B" O\Malley`,
				"emails":   []any{map[string]any{"type": "home", "value": "bob@example.com"}},
				"offboard": map[string]any{"leaveDate": leave}}},
		{ID: "e3", Tenant: "t", UserName: "Zoë", Active: true, ExternalID: "X3", Created: t0.Add(2 * time.Hour), Modified: t0.Add(2 * time.Hour),
			Resource: map[string]any{"userName": "Zoë", "title": "engineer", "emails": []any{map[string]any{"type": "work", "value": "zoe@example.org"}}}},
		{ID: "e4", Tenant: "t", UserName: "deleted", Active: true, Created: t0, Modified: t0, Deleted: &t0,
			Resource: map[string]any{"userName": "deleted", "title": "Engineer"}},
		{ID: "e5", Tenant: "other", UserName: "alice@example.com", Active: true, Created: t0, Modified: t0,
			Resource: map[string]any{"userName": "alice@example.com", "title": "Engineer"}},
	}
	for _, e := range emps {
		e.UserNameKey = identity.FoldKey(e.UserName)
		if e.Deleted != nil {
			e.UserNameKey = ""
		}
		if err := s.InsertEmployee(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUserFiltersMatchTheSameInTheDatabaseAndInGo(t *testing.T) {
	s := testdb.New(t)
	filterFixture(t, s)
	ctx := context.Background()
	raw := map[string]map[string]any{}
	cur, err := s.Database().Collection("employees").Find(ctx, bson.D{{Key: "tenant", Value: "t"}, {Key: "deleted", Value: bson.D{{Key: "$exists", Value: false}}}})
	if err != nil {
		t.Fatal(err)
	}
	for cur.Next(ctx) {
		var d map[string]any
		if err := bson.Unmarshal(cur.Current, &d); err != nil {
			t.Fatal(err)
		}
		raw[d["_id"].(string)] = mongostore.Plain(d)
	}
	for f, want := range mongostore.UserFilterCases() {
		t.Run(f, func(t *testing.T) {
			expr, err := filter.ParseFilter([]byte(f))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			found, total, err := s.ListEmployees(ctx, "t", identity.ListQuery{Filter: expr, StartIndex: 1, Count: 100})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range found {
				ids = append(ids, e.ID)
			}
			sort.Strings(ids)
			if strings.Join(ids, " ") != want || total != len(ids) {
				t.Fatalf("database: %v (total %d), want %q", ids, total, want)
			}
			q, err := mongostore.UserFilter(expr)
			if err != nil {
				t.Fatal(err)
			}
			var goIDs []string
			for id, d := range raw {
				if q.Match(d) {
					goIDs = append(goIDs, id)
				}
			}
			sort.Strings(goIDs)
			if strings.Join(goIDs, " ") != want {
				t.Fatalf("Go predicate: %v, want %q", goIDs, want)
			}
		})
	}
}
