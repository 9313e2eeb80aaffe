package scim_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
	"github.com/offboard/offboard/scim"
)

// commandLog records the database commands of one test database.
type commandLog struct {
	mu   sync.Mutex
	db   string
	cmds []string // "<command> <collection> <filter>" of commands that are not `_id`-addressed
	n    int
}

func (l *commandLog) started(_ context.Context, e *event.CommandStartedEvent) {
	if e.DatabaseName != l.db {
		return
	}
	coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
	var filters []bson.Raw
	switch e.CommandName {
	case "find":
		filters = append(filters, e.Command.Lookup("filter").Document())
	case "findAndModify":
		filters = append(filters, e.Command.Lookup("query").Document())
	case "update", "delete":
		key := map[string]string{"update": "updates", "delete": "deletes"}[e.CommandName]
		vals, _ := e.Command.Lookup(key).Array().Values()
		for _, v := range vals {
			filters = append(filters, v.Document().Lookup("q").Document())
		}
	case "aggregate", "count", "distinct", "mapReduce":
		filters = append(filters, nil)
	default:
		return // insert, getMore, endSessions, ...
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	for _, f := range filters {
		if f != nil {
			if id, ok := f.Lookup("_id").StringValueOK(); ok && id != "" {
				continue
			}
		}
		l.cmds = append(l.cmds, fmt.Sprintf("%s %s %v", e.CommandName, coll, f))
	}
}

// scans returns (and forgets) the non-`_id` commands on the given collections.
func (l *commandLog) scans(collections ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.cmds {
		for _, coll := range collections {
			if strings.Fields(c)[1] == coll {
				out = append(out, c)
			}
		}
	}
	l.cmds, l.n = nil, 0
	return out
}

// monitoredStore is a Store on a fresh database whose commands are logged.
func monitoredStore(t testing.TB) (*mongostore.Store, *commandLog) {
	t.Helper()
	log := &commandLog{db: testdb.Name(t)}
	client, err := mongo.Connect(mongostore.ClientOptions(testdb.URI(t), &event.CommandMonitor{Started: log.started}))
	if err != nil {
		t.Fatal(err)
	}
	db := client.Database(log.db)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = client.Disconnect(ctx)
	})
	s := mongostore.New(db)
	if err := s.EnsureSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, log
}

// TestIdentityProviderHotPathsNeverScan checks the requests Entra ID and Okta send for every
// user and group change: on users, groups, their keys and memberships each is answered with
// `_id`-addressed reads and writes only (the embedded store scans for anything else).
func TestIdentityProviderHotPathsNeverScan(t *testing.T) {
	store, log := monitoredStore(t)
	r := newRigOn(t, store)
	others := []string{}
	for i := 0; i < 5; i++ {
		others = append(others, r.createUser(fmt.Sprintf("other%d@x", i)))
	}
	g := r.createGroup("Engineering", others...)
	scimColls := []string{"employees", "keys", "groups", "members"}
	log.scans()

	id := r.createUser("hot@x", map[string]any{"externalId": "ext-hot", "emails": []any{map[string]any{"type": "work", "value": "hot@x"}}})
	check := func(name string) {
		t.Helper()
		if s := log.scans(scimColls...); len(s) > 0 {
			t.Errorf("%s scans: %v", name, s)
		}
	}
	check("create user")
	r.must(200, "GET", "/Users?filter="+url.QueryEscape(`userName eq "HOT@x"`)+"&startIndex=1&count=100", nil)
	check("userName eq")
	r.must(200, "GET", "/Users?filter=externalId+eq+%22ext-hot%22", nil)
	check("externalId eq")
	r.must(200, "GET", "/Users/"+id, nil)
	check("get by id")
	r.must(204, "PATCH", "/Users/"+id, patch(op("Replace", `emails[type eq "work"].value`, "new@x"), op("Replace", "name.familyName", "F")))
	check("patch by id")
	r.must(200, "PUT", "/Users/"+id, map[string]any{"schemas": []string{scim.UserSchema}, "userName": "hot@x", "externalId": "ext-hot", "title": "T"})
	check("put by id")
	r.must(http.StatusNoContent, "PATCH", "/Groups/"+g, patch(op("Add", "members", []any{map[string]any{"value": id}})))
	check("group member add")
	r.must(http.StatusNoContent, "PATCH", "/Groups/"+g, patch(op("Remove", "members", []any{map[string]any{"value": id}})))
	check("group member remove (Entra)")
	r.must(http.StatusNoContent, "PATCH", "/Groups/"+g, patch(op("remove", `members[value eq "`+others[0]+`"]`, nil), op("add", "members", []any{map[string]any{"value": id}})))
	check("group member remove+add (Okta)")
	r.must(http.StatusNoContent, "PATCH", "/Groups/"+g, patch(op("replace", "", map[string]any{"id": g, "displayName": "Engineering"})))
	check("group rename to the same name (Okta)")
	r.must(200, "GET", "/Groups?excludedAttributes=members&filter="+url.QueryEscape(`displayName eq "engineering"`), nil)
	check("displayName eq")
	r.must(200, "GET", "/Groups/"+g+"?excludedAttributes=members", nil)
	check("get group without members")

	// The control: a general filter does scan (so the log above sees what it should).
	r.must(200, "GET", filterQ(`title eq "T"`), nil)
	if s := log.scans(scimColls...); len(s) == 0 {
		t.Fatal("a general filter was not seen scanning: the command log is blind")
	}
}
