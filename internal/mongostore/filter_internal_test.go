package mongostore

import (
	"errors"
	"testing"
	"time"

	"github.com/scim2/filter-parser/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/identity"
)

// UserFilterCases exposes the filter table to the database test (package mongostore_test).
func UserFilterCases() map[string]string { return userFilterCases }

// userFilterCases are filters (filter-parser syntax) and the employees of tenant "t" they match.
var userFilterCases = map[string]string{
	`userName eq "alice@example.com"`: "e1",
	`userName eq "ZOË"`:               "e3",
	`userName ne "bob"`:               "e1 e3",
	`userName sw "A"`:                 "e1",
	`userName ew "COM"`:               "e1",
	`userName co "O"`:                 "e1 e2 e3",
	`userName gt "b"`:                 "e2 e3",
	`userName le "bob"`:               "e1 e2",
	`id eq "e1"`:                      "e1",
	`id eq "E1"`:                      "",
	`externalId eq "x1"`:              "",
	`externalId pr`:                   "e1 e3",
	`active eq true`:                  "e1 e3",
	`active eq "false"`:               "e2",
	`active ne true`:                  "e2",
	`title eq "engineer"`:             "e1 e3",
	`title pr`:                        "e1 e3",
	`not (title pr)`:                  "e2",
	`title eq null`:                   "e2",
	`name.familyName eq "smith"`:      "e1",
	`name pr`:                         "e1",
	`emails.value co "example.com"`:   "e1 e2",
	`emails co "example.org"`:         "e3",
	`emails.type eq "work" and emails.value co "home"`:                                             "e1",
	`emails[type eq "work" and value co "home"]`:                                                   "",
	`emails[type eq "home" and value co "example"]`:                                                "e2",
	`emails[type eq "work" or value co "bob"]`:                                                     "e1 e2 e3",
	`not (emails[type eq "work" and value co "home"])`:                                             "e1 e2 e3",
	`not (emails[type eq "home" and value co "example"])`:                                          "e1 e3",
	`emails[not (type eq "work")]`:                                                                 "e1 e2",
	`emails[primary eq true]`:                                                                      "e1",
	`emails.primary eq true`:                                                                       "e1",
	`emails[value ew ".org"] and active eq true`:                                                   "e1 e3",
	`displayName co "malley"`:                                                                      "e2",
	`displayName sw "bob"`:                                                                         "e2",
	`meta.created eq "2026-01-02T03:04:05.123Z"`:                                                   "e1",
	`meta.created eq "2026-01-02T03:04:05.1230001Z"`:                                               "",
	`meta.created gt "2026-01-02T03:04:05.1229999Z"`:                                               "e1 e2 e3",
	`meta.created ge "2026-01-02T03:04:05.1231Z"`:                                                  "e2 e3",
	`meta.created lt "2026-01-02T04:04:05.1231Z"`:                                                  "e1 e2",
	`meta.created le "2026-01-02T04:04:05.1231Z"`:                                                  "e1 e2",
	`meta.lastModified ge "2026-01-01T22:04:05.123-05:00"`:                                         "e1 e2 e3",
	`meta.resourceType eq "user"`:                                                                  "e1 e2 e3",
	`meta.resourceType eq "Group"`:                                                                 "",
	`groups.value eq "g1"`:                                                                         "e1",
	`groups pr`:                                                                                    "e1",
	`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1"`:             "e1",
	`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "e2"`:             "e1",
	`employeeNumber pr`:                                                                            "e1",
	`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "BOB"`:                                 "e2",
	`urn:ietf:params:scim:schemas:extension:offboard:2.0:User:leaveDate gt "2026-06-01T00:00:00Z"`: "e2",
	`title eq "engineer" and (userName sw "z" or emails.type eq "home")`:                           "e1 e3",
	`title eq "engineer" and userName sw "z" or emails.type eq "home"`:                             "e1 e2 e3",
	`not (not (active eq true))`:                                                                   "e1 e3",
}

func TestInvalidFiltersAreFilterErrors(t *testing.T) {
	for _, f := range []string{`nosuch eq "a"`, `active gt true`, `active eq "maybe"`, `meta.created eq "soon"`, `meta.created co "2026"`,
		`password pr`, `groups.display eq "x"`, `name eq "x"`, `emails[nosuch eq "x"]`, `userName eq 5`, `meta.location pr`,
		`urn:nope:userName eq "x"`, `title[value eq "x"]`} {
		expr, err := filter.ParseFilter([]byte(f))
		if err != nil {
			t.Fatalf("%s: parse: %v", f, err)
		}
		_, err = UserFilter(expr)
		var fe *FilterError
		if !errors.As(err, &fe) || !errors.Is(err, identity.ErrInvalid) || fe.PublicDetail() == "" {
			t.Errorf("%s: %v, want a FilterError", f, err)
		}
	}
}

func TestSortPaths(t *testing.T) {
	for in, want := range map[string]string{"userName": "userNameKey", "name.familyName": "res.name.familyName", "meta.created": "created",
		"emails": "res.emails.value", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "res.enterprise.department"} {
		got, err := sortPath(userFields, in)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"password", "nosuch", "name", "groups.display"} {
		if _, err := sortPath(userFields, in); err == nil {
			t.Errorf("%s: sortable", in)
		}
	}
}

// FuzzCompileFilter: any parseable filter compiles into a query or a FilterError, and the
// compiled predicate runs on any document without panicking.
func FuzzCompileFilter(f *testing.F) {
	for c := range userFilterCases {
		f.Add(c)
	}
	f.Add(`members[value eq "u1" and type eq "User"] or members pr`)
	docs := []map[string]any{
		{"_id": "e1", "userName": "a", "res": map[string]any{"emails": []any{map[string]any{"value": 1}, "x", nil}}, "created": time.Now()},
		{"_id": "e2", "res": []any{map[string]any{"name": "x"}}, "groups": map[string]any{"id": 5}, "memberCount": "7"},
		{},
	}
	join := func(cond bson.D) (bson.D, func(string) bool, error) {
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"g"}}}}}, func(id string) bool { return id == "g" }, nil
	}
	f.Fuzz(func(t *testing.T, s string) {
		expr, err := filter.ParseFilter([]byte(s))
		if err != nil {
			return
		}
		for _, fs := range []*fields{userFields, groupFields} {
			q, err := compileFilter(expr, fs, join)
			if err != nil {
				var fe *FilterError
				if !errors.As(err, &fe) {
					t.Fatalf("%q: %T %v", s, err, err)
				}
				continue
			}
			if _, err := bson.Marshal(q.Filter); err != nil {
				t.Fatalf("%q: query does not encode: %v", s, err)
			}
			for _, d := range docs {
				q.Match(d)
			}
		}
	})
}

func BenchmarkCompileFilter(b *testing.B) {
	for _, f := range []string{`userName eq "bjensen@example.com"`,
		`name.familyName eq "Employee" and (emails.value co "example.com" or emails.value co "example.org")`,
		`emails[type eq "work" and value co "@example.com"] and meta.lastModified gt "2011-05-13T04:42:34Z"`} {
		expr, err := filter.ParseFilter([]byte(f))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := UserFilter(expr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
