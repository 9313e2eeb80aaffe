package server_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/server"
	"github.com/offboard/offboard/internal/testenv"
)

// unsafeKeys walks every document of every collection and returns the field names that a
// document store would read as an operator or a path: a leading '$', a '.', a NUL.
func unsafeKeys(t *testing.T, store *mongostore.Store) []string {
	t.Helper()
	ctx := context.Background()
	db := store.Database()
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	var walk func(where string, doc bson.Raw)
	walkValue := func(where string, v bson.RawValue) {
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			walk(where, v.Document())
		case bson.TypeArray:
			vals, _ := v.Array().Values()
			for _, e := range vals {
				if e.Type == bson.TypeEmbeddedDocument || e.Type == bson.TypeArray {
					walk(where+"[]", bson.Raw(e.Value))
				}
			}
		}
	}
	walk = func(where string, doc bson.Raw) {
		elems, err := doc.Elements()
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		for _, e := range elems {
			k := e.Key()
			if strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\x00") {
				bad = append(bad, where+" → "+k)
			}
			walkValue(where+"."+k, e.Value())
		}
	}
	for _, n := range names {
		cur, err := db.Collection(n).Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.Raw
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			walk(n, d)
		}
	}
	return bad
}

// refusedOrInert accepts a 4xx refusal or a success, never a 5xx.
func refusedOrInert(t *testing.T, what string, r testenv.Response) {
	t.Helper()
	if r.Status >= 500 || r.Status == 0 {
		t.Errorf("%s: %d %s", what, r.Status, r.Raw)
	}
	for _, leak := range []string{"mongo", "bson", "ferret", "sqlite", "goroutine", ".go:", "panic"} {
		if strings.Contains(strings.ToLower(string(r.Raw)), leak) {
			t.Errorf("%s: the answer shows internals (%q): %s", what, leak, r.Raw)
		}
	}
}

func TestNoRequestValueReachesMongoDBAsAnOperatorOrAFieldName(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Server: insecureIssuers})
	acme := env.CreateTenant("acme", 10)
	victim := mustCreate(t, acme, "victim@acme.com", "victim")
	other := mustCreate(t, acme, "other@acme.com", "other")
	userSchema := []string{"urn:ietf:params:scim:schemas:core:2.0:User"}

	t.Run("SCIM bodies with operator values are refused", func(t *testing.T) {
		for _, body := range []string{
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":{"$ne":null}}`,
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":{"$gt":""}}`,
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":["$where"]}`,
			`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x@acme.com","active":{"$ne":false}}`,
		} {
			r := acme.SCIM("POST", "/Users", body)
			if r.Status != 400 {
				t.Errorf("%s: %d %s", body, r.Status, r.Raw)
			}
		}
	})
	t.Run("SCIM bodies with operator or dotted keys are refused or stored inert", func(t *testing.T) {
		for i, body := range []map[string]any{
			{"$where": "sleep(1000)"},
			{"a.b": 1, "$set": map[string]any{"tenant": "x"}},
			{"a\x00b": 1},
			{"name": map[string]any{"$gt": "", "givenName": "G", "x.y": 1}},
			{"emails": []any{map[string]any{"value": "e@acme.com", "$inc": map[string]any{"rev": 1}}}},
			{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"$where": "1", "department": "a.b", "manager": map[string]any{"$ref": "x", "value": "y"}}},
			{"urn:ietf:params:scim:schemas:extension:evil:2.0:User": map[string]any{"$where": "1"}},
			{"userName.$ne": "x"},
		} {
			body["schemas"] = userSchema
			body["userName"] = "inert" + string(rune('a'+i)) + "@acme.com"
			refusedOrInert(t, "POST", acme.SCIM("POST", "/Users", body))
			delete(body, "userName")
			body["userName"] = "victim@acme.com"
			refusedOrInert(t, "PUT", acme.SCIM("PUT", "/Users/"+victim, body))
		}
	})
	t.Run("PATCH paths and values with operators are refused or inert", func(t *testing.T) {
		for _, op := range []map[string]any{
			{"op": "add", "value": map[string]any{"$where": "1", "x.y": 2}},
			{"op": "add", "path": "$where", "value": "1"},
			{"op": "replace", "path": "name.$set", "value": "x"},
			{"op": "replace", "path": "userName", "value": map[string]any{"$ne": nil}},
			{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:$inc", "value": 1},
			{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": map[string]any{"$ref": "x", "value": "y"}},
			{"op": "add", "path": `emails[type eq "work"].$where`, "value": "1"},
			{"op": "remove", "path": `emails[value ne "x" or "$where" eq "1"]`},
			{"op": "replace", "path": "tenant", "value": "someone-else"},
			{"op": "replace", "path": "res", "value": map[string]any{}},
			{"op": "replace", "path": "rev", "value": 0},
		} {
			refusedOrInert(t, "PATCH "+op["op"].(string), acme.SCIM("PATCH", "/Users/"+victim, map[string]any{
				"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": []any{op}}))
		}
		if r := acme.SCIM("GET", "/Users/"+victim, nil); r.Status != 200 || r.JSON["userName"] != "victim@acme.com" {
			t.Fatalf("the victim changed identity: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("filters match values literally: operators, regex metacharacters and paths do nothing", func(t *testing.T) {
		for _, f := range []string{
			`userName eq "{\"$ne\":null}"`,
			`userName eq "{\"$gt\":\"\"}"`,
			`userName sw ".*"`,
			`userName sw "^"`,
			`userName co ".*"`,
			`userName co "|"`,
			`userName ew "$"`,
			`userName sw "(?i)V"`,
			`userName co "\\"`,
			`userName eq "victim@acme.com\u0000"`,
			`externalId eq "{\"$ne\":null}"`,
			`displayName eq "x" or "1" eq "1"`,
			`$where eq "1"`,
			`tenant eq "x"`,
			`_id eq "` + victim + `"`,
			`res.userName eq "victim@acme.com"`,
			`userName.$ne eq "x"`,
			`urn:ietf:params:scim:schemas:core:2.0:User:$where eq "1"`,
			`emails[$where eq "1"]`,
			`meta.lastModified gt {"$date":0}`,
		} {
			r := acme.SCIM("GET", "/Users?filter="+url.QueryEscape(f), nil)
			refusedOrInert(t, "filter "+f, r)
			if r.Status == 200 && r.JSON["totalResults"] != float64(0) {
				t.Errorf("filter %s matched: %s", f, r.Raw)
			}
		}
		// The literal value still works where it should: a prefix of a real userName.
		if r := acme.SCIM("GET", "/Users?filter="+url.QueryEscape(`userName eq "other@acme.com"`), nil); r.JSON["totalResults"] != float64(1) {
			t.Fatalf("a plain filter: %s", r.Raw)
		}
	})
	t.Run("ids in paths are plain values", func(t *testing.T) {
		for _, id := range []string{"%24where", url.PathEscape(`{"$ne":null}`), "a.b", "%00", other + "%00", strings.ToUpper(other), " " + other} {
			for _, m := range []string{"GET", "DELETE"} {
				r := acme.SCIM(m, "/Users/"+id, nil)
				refusedOrInert(t, m+" /Users/"+id, r)
				if r.Status < 300 {
					t.Errorf("%s /Users/%s found something: %d %s", m, id, r.Status, r.Raw)
				}
			}
			for _, p := range []string{"/employees/" + id, "/connectors/" + id, "/employees/" + id + "/jobs/" + id + "/retry"} {
				m := "GET"
				if strings.HasSuffix(p, "/retry") {
					m = "POST"
				}
				r := acme.Admin(m, p, nil)
				refusedOrInert(t, m+" "+p, r)
				if r.Status < 300 {
					t.Errorf("%s %s found something: %s", m, p, r.Raw)
				}
			}
			refusedOrInert(t, "DELETE token", acme.Admin("DELETE", "/tokens/"+id, nil))
			refusedOrInert(t, "GET tenant", env.Admin("GET", "/tenants/"+id, nil))
			refusedOrInert(t, "ID status", env.Do("GET", "/messenger/v1/ids/"+id, testenv.AdminToken, nil))
		}
		if r := acme.SCIM("GET", "/Users/"+other, nil); r.Status != 200 {
			t.Fatalf("the real id: %d", r.Status)
		}
	})
	t.Run("admin bodies with operator keys, NUL keys or unknown fields are refused", func(t *testing.T) {
		for _, c := range []struct {
			method, path, body string
		}{
			{"POST", "/tenants", `{"name":{"$ne":null},"seats":1}`},
			{"POST", "/tenants", `{"name":"evil","seats":1,"$where":"1"}`},
			{"POST", "/tenants", `{"name":"evil","seats":{"$gt":0}}`},
			{"POST", "/tenants", `{"name":"evil.corp$","seats":1}`},
			{"PATCH", "/tenants/" + acme.ID, `{"seats":{"$inc":1}}`},
			{"PUT", "/tenants/" + acme.ID + "/policy", `{"wipe":{"$ne":"app"}}`},
			{"PUT", "/tenants/" + acme.ID + "/policy", `{"a.b":1}`},
			{"PUT", "/tenants/" + acme.ID + "/policy", `{"wipe":"none","x\u0000y":1}`},
			{"PUT", "/tenants/" + acme.ID + "/oidc", `{"issuer":"https://x","audience":"a","claims":{"$where":"1"}}`},
			{"POST", "/tenants/" + acme.ID + "/tokens", `{"scope":{"$ne":null}}`},
			{"POST", "/tenants/" + acme.ID + "/tokens", `{"scope":"admin","tenant":""}`},
			{"POST", "/tenants/" + acme.ID + "/connectors", `{"type":"webhook","name":"w","config":{"url":"http://127.0.0.1:9","secret":"0123456789abcdef","$where":1}}`},
			{"POST", "/tenants/" + acme.ID + "/connectors", `{"type":"webhook","name":{"$ne":null},"config":{}}`},
			{"POST", "/tenants/" + acme.ID + "/employees/" + victim + "/devices", `{"connector":{"$ne":null},"deviceId":"d"}`},
		} {
			r := env.Admin(c.method, c.path, c.body)
			if r.Status != 400 {
				t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, r.Status, r.Raw)
			}
		}
	})
	t.Run("admin values that look like operators or paths are stored inert", func(t *testing.T) {
		idp := newIssuer(t, "tid-acme", "offboard-scim")
		cfg := idp.config()
		cfg["claims"] = map[string]string{"tid": "tid-acme", "https://idp.example/claims.role": "$where"}
		if r := acme.Admin("PUT", "/oidc", cfg); r.Status != 200 {
			t.Fatalf("a dotted claim name: %d %s", r.Status, r.Raw)
		}
		got := acme.Admin("GET", "", nil).JSON["oidc"].(map[string]any)["claims"].(map[string]any)
		if got["https://idp.example/claims.role"] != "$where" || got["tid"] != "tid-acme" {
			t.Fatalf("claims read back as %v", got)
		}
		jwt := idp.token(t, func(c map[string]any) { c["https://idp.example/claims.role"] = "$where" })
		if r := env.Do("GET", acme.SCIMBase+"/Users", jwt, nil); r.Status != 200 {
			t.Fatalf("a token with the dotted claim: %d %s", r.Status, r.Raw)
		}
		if r := env.Do("GET", acme.SCIMBase+"/Users", idp.token(t, nil), nil); r.Status != 401 {
			t.Fatalf("a token without the dotted claim: %d", r.Status)
		}
		for _, body := range []any{
			map[string]any{"wipe": "app", "restrictions": []string{"$where", "a.b", "x\x00y"}},
		} {
			refusedOrInert(t, "policy", acme.Admin("PUT", "/policy", body))
		}
		r := acme.Admin("POST", "/connectors", map[string]any{"type": "nanomdm", "name": "apple",
			"config": map[string]any{"url": "http://127.0.0.1:9", "apiKey": "k", "appBundleId": "ch.threema.work.iapp", "a.b": 1}})
		refusedOrInert(t, "connector with a dotted config key", r)
		if r := acme.Admin("POST", "/connectors", map[string]any{"type": "nanomdm", "name": "apple2",
			"config": map[string]any{"url": "http://127.0.0.1:9", "apiKey": "k", "appBundleId": "ch.threema.work.iapp"}}); r.Status != 201 {
			t.Fatalf("nanomdm: %d %s", r.Status, r.Raw)
		}
		for _, dev := range []string{"$where", "dev.ice", "a\x00b", strings.Repeat("x", 200)} {
			refusedOrInert(t, "device "+dev, acme.Admin("POST", "/employees/"+victim+"/devices",
				map[string]any{"connector": "apple2", "deviceId": dev, "ownership": "company", "platform": "ios"}))
		}
		refusedOrInert(t, "jobs state", acme.Admin("GET", "/jobs?state=%24ne", nil))
		refusedOrInert(t, "jobs state[$ne]", acme.Admin("GET", "/jobs?state%5B%24ne%5D=x", nil))
		refusedOrInert(t, "audit since", acme.Admin("GET", "/audit?since=%7B%22%24gt%22%3A0%7D", nil))
		code, _ := check(env, "$where", "x")
		if code != 401 {
			t.Errorf("license check with an operator username: %d", code)
		}
	})
	t.Run("no stored document has a field name with '$', '.' or NUL", func(t *testing.T) {
		if bad := unsafeKeys(t, env.Store); len(bad) > 0 {
			t.Fatalf("unsafe field names stored:\n%s", strings.Join(bad, "\n"))
		}
	})
}

func TestServerErrorsCarryNoInternals(t *testing.T) {
	sink := &testenv.LogBuffer{}
	env := testenv.Start(t, testenv.Options{Logger: newJSONLogger(sink), Server: func(c *server.Config) { c.Service = nil }})
	acme := env.CreateTenant("acme", 10)

	r := acme.SCIM("POST", "/Users", entraUser("x@acme.com", "x"))
	scimError(t, r, 500, "")
	refusedOrInertBody(t, "SCIM 500", r)
	a := acme.Admin("POST", "/employees/abc/credentials", nil)
	jsonError(t, "admin 500", a, 500)
	refusedOrInertBody(t, "admin 500", a)
	if !strings.Contains(sink.String(), "handler panicked") {
		t.Fatal("the panic is not logged for the operator")
	}
}

// refusedOrInertBody fails if an error body names internals.
func refusedOrInertBody(t *testing.T, what string, r testenv.Response) {
	t.Helper()
	for _, leak := range []string{"nil pointer", "runtime", "goroutine", ".go:", "panic", "lifecycle", "mongo"} {
		if strings.Contains(strings.ToLower(string(r.Raw)), leak) {
			t.Errorf("%s shows internals (%q): %s", what, leak, r.Raw)
		}
	}
}
