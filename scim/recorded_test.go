package scim_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// recording is one file of testdata/recorded.
type recording struct {
	Source  string `json:"source"`
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	} `json:"request"`
	Expected struct {
		Status any             `json:"status"`
		Body   json.RawMessage `json:"body"`
	} `json:"expected_response"`
	Notes string `json:"notes"`
}

// statuses are the statuses a recording accepts: 200, "204", "200 or 204".
func (rec recording) statuses() []int {
	var out []int
	for _, m := range regexp.MustCompile(`\d{3}`).FindAllString(toString(rec.Expected.Status), -1) {
		n, _ := strconv.Atoi(m)
		out = append(out, n)
	}
	return out
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.Itoa(int(x))
	}
	return ""
}

func (rec recording) expectedBody(t *testing.T) map[string]any {
	if len(rec.Expected.Body) == 0 {
		return nil
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(rec.Expected.Body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// recordedCase says how to replay one recording: what the tenant must hold first (setup
// returns recorded ids → ids in this tenant) and what to check beyond status and shape.
type recordedCase struct {
	setup func(r *rig, rec recording, t *testing.T) map[string]string
	check func(t *testing.T, r *rig, resp response, ids map[string]string)
	// ignore lists expected-body keys deliberately answered differently (see the comment).
	ignore []string
}

// A user like the ones in the recordings, with a work email and a name.
func defaultUser(r *rig, userName string) string {
	return r.createUser(userName, map[string]any{
		"externalId": "ext-" + userName,
		"name":       map[string]any{"givenName": "Given", "familyName": "Family"},
		"emails":     []any{map[string]any{"type": "work", "value": userName, "primary": true}},
	})
}

// fromExpected creates the resource an expected body shows (for GETs), mapping its id.
func fromExpected(endpoint string, pick func(map[string]any) map[string]any) func(*rig, recording, *testing.T) map[string]string {
	return func(r *rig, rec recording, t *testing.T) map[string]string {
		res := pick(rec.expectedBody(t))
		body := map[string]any{}
		for k, v := range res {
			if k != "id" && k != "meta" {
				body[k] = v
			}
		}
		got := r.must(201, "POST", endpoint, body)
		ids := map[string]string{str(res["id"]): str(got.body["id"])}
		if id := pathID(rec.Request.Path); id != "" {
			ids[id] = str(got.body["id"])
		}
		return ids
	}
}

func whole(m map[string]any) map[string]any { return m }
func firstResource(m map[string]any) map[string]any {
	return get(m, "Resources.0").(map[string]any)
}

// pathID is the resource id in a recorded path ("/Users/<id>"), "" if none.
func pathID(p string) string {
	p, _, _ = strings.Cut(p, "?")
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if n := len(parts); n >= 2 && (parts[n-2] == "Users" || parts[n-2] == "Groups") {
		return parts[n-1]
	}
	return ""
}

// onUser maps the path's id (or "{id}") to a fresh default user.
func onUser(r *rig, rec recording, t *testing.T) map[string]string {
	return map[string]string{pathID(rec.Request.Path): defaultUser(r, "patch.me@example.com")}
}

// onGroup maps the path's id to a group with members; members maps recorded member ids to
// users it creates (the first `present` of them are members already).
func onGroup(present int, recordedMembers ...string) func(*rig, recording, *testing.T) map[string]string {
	return func(r *rig, rec recording, t *testing.T) map[string]string {
		ids := map[string]string{}
		var members []string
		for i, m := range recordedMembers {
			id := defaultUser(r, "member"+strconv.Itoa(i)+"@example.com")
			ids[m] = id
			if i < present {
				members = append(members, id)
			}
		}
		stay := defaultUser(r, "stays@example.com")
		ids["{stays}"] = stay
		members = append(members, stay)
		ids[pathID(rec.Request.Path)] = r.createGroup("Group "+pathID(rec.Request.Path), members...)
		return ids
	}
}

func userAt(t *testing.T, r *rig, id string) map[string]any {
	t.Helper()
	return r.must(200, "GET", "/Users/"+id, nil).body
}

func expectValue(t *testing.T, body map[string]any, path string, want any) {
	t.Helper()
	got := get(body, path)
	if n, ok := got.(json.Number); ok {
		got = num(n)
	}
	if got != want {
		t.Fatalf("%s = %#v, want %#v", path, got, want)
	}
}

func hasMembers(t *testing.T, r *rig, group string, want ...string) {
	t.Helper()
	got := r.memberIDs(group)
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("members %v, want %v", got, want)
	}
}

const enterpriseURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

var recordedCases = map[string]recordedCase{
	"entra/E00-test-connection.json": {},
	"entra/E01-create-user.json": {check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		if resp.header.Get("Location") != get(resp.body, "meta.location") {
			t.Fatalf("Location %q, meta.location %v", resp.header.Get("Location"), get(resp.body, "meta.location"))
		}
		if _, ok := resp.body["roles"]; ok {
			t.Fatal("empty roles returned")
		}
	}},
	"entra/E01b-create-user-docs-example2.json": {check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		for _, k := range []string{"addresses", "phoneNumbers", "title", "preferredLanguage", enterpriseURN} {
			if _, ok := resp.body[k]; ok {
				t.Fatalf("null %s returned: %s", k, resp.raw)
			}
		}
	}},
	"entra/E02-get-user.json":           {setup: fromExpected("/Users", whole)},
	"entra/E03-get-user-not-found.json": {},
	"entra/E04-query-by-userName.json":  {setup: fromExpected("/Users", firstResource)},
	"entra/E05-query-by-userName-zero.json": {check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		expectValue(t, resp.body, "itemsPerPage", 0) // the page size, not the default count
	}},
	"entra/E06-query-by-externalId.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			r.createUser("jyoung@testuser.com", map[string]any{"externalId": "jyoung"})
			r.createUser("other@testuser.com", map[string]any{"externalId": "JYOUNG"}) // externalId is case-exact
			return nil
		},
		check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
			expectValue(t, resp.body, "totalResults", 1)
			expectValue(t, resp.body, "Resources.0.userName", "jyoung@testuser.com")
		},
	},
	"entra/E07-patch-user-multivalued.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		expectValue(t, resp.body, "emails.0.value", "updatedEmail@microsoft.com")
		expectValue(t, resp.body, "emails.0.type", "work")
		expectValue(t, resp.body, "name.familyName", "updatedFamilyName")
		expectValue(t, resp.body, "name.givenName", "Given")
	}},
	"entra/E08-patch-user-singlevalued.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		expectValue(t, resp.body, "userName", "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com")
		found := r.must(200, "GET", "/Users?filter="+url.QueryEscape(`userName eq "5B50642D-79FC-4410-9E90-4C077CDD1A59@testuser.com"`), nil)
		expectValue(t, found.body, "totalResults", 1)
	}},
	"entra/E09-disable-user-docs.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			exp := rec.expectedBody(t)
			exp["active"] = true
			body := map[string]any{}
			for k, v := range exp {
				if k != "id" && k != "meta" {
					body[k] = v
				}
			}
			id := str(r.must(201, "POST", "/Users", body).body["id"])
			return map[string]string{pathID(rec.Request.Path): id, str(exp["id"]): id}
		},
		// The docs' example shows meta.resourceType "Users" and a location of another tenant;
		// the RFC's resourceType is the resource type's name, "User".
		ignore: []string{"meta.resourceType"},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			expectValue(t, resp.body, "active", false)
			expectValue(t, userAt(t, r, ids["5171a35d82074e068ce2"]), "active", false)
		},
	},
	"entra/E10-disable-user-WITHOUT-flag.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		expectValue(t, userAt(t, r, ids["{id}"]), "active", false)
	}},
	"entra/E11-disable-user-WITH-flag.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		expectValue(t, userAt(t, r, ids["{id}"]), "active", false)
	}},
	"entra/E12-add-single-value-WITHOUT-flag.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		expectValue(t, userAt(t, r, ids["{id}"]), "nickName", "Babs")
	}},
	"entra/E13-add-single-value-WITH-flag.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		expectValue(t, userAt(t, r, ids["{id}"]), "nickName", "Babs")
	}},
	"entra/E14-replace-multiple-WITHOUT-flag.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		u := userAt(t, r, ids["{id}"])
		expectValue(t, u, "displayName", "Pvlo")
		expectValue(t, u, "emails.0.value", "TestBcwqnm@test.microsoft.com")
		expectValue(t, u, "name.givenName", "Gtfd")
		expectValue(t, u, "name.familyName", "Pkqf")
		expectValue(t, u, "externalId", "Eqpj")
		expectValue(t, u, enterpriseURN+".employeeNumber", "Eqpj")
	}},
	"entra/E15-replace-multiple-WITH-flag.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		u := userAt(t, r, ids["{id}"])
		expectValue(t, u, "displayName", "Bjfe")
		expectValue(t, u, "emails.0.value", "TestMhvaes@test.microsoft.com")
		expectValue(t, u, "name.givenName", "Kkom")
		expectValue(t, u, "name.familyName", "Unua")
		expectValue(t, u, enterpriseURN+".employeeNumber", "Aklq")
		if _, ok := u["name.givenName"]; ok {
			t.Fatal("dotted key stored as an attribute name")
		}
	}},
	"entra/E16-remove-member-WITHOUT-flag.json": {setup: onGroup(1, "u1091"), check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		hasMembers(t, r, ids["{id}"], ids["{stays}"]) // only the listed member is removed
	}},
	"entra/E17-remove-member-WITH-flag.json": {setup: onGroup(1, "7f4bc1a3-285e-48ae-8202-5accb43efb0e"), check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		hasMembers(t, r, ids["{id}"], ids["{stays}"])
	}},
	"entra/E18-manager-add-legacy-docs-example5.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		u := userAt(t, r, ids["{id}"])
		if m, _ := u[enterpriseURN].(map[string]any); len(m) != 1 || !equalJSON(m["manager"], map[string]any{"value": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"}) {
			t.Fatalf("manager stored as %v", u[enterpriseURN])
		}
	}},
	"entra/E19-manager-add-plain-string.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		expectValue(t, userAt(t, r, ids["{id}"]), enterpriseURN+".manager.value", "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2")
	}},
	"entra/E20-manager-remove-via-replace-empty.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			id := r.createUser("has.manager@example.com", map[string]any{enterpriseURN: map[string]any{"manager": map[string]any{"value": "boss"}, "department": "Sales"}})
			return map[string]string{"{id}": id}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			u := userAt(t, r, ids["{id}"])
			if get(u, enterpriseURN+".manager") != nil || get(u, enterpriseURN+".department") != "Sales" {
				t.Fatalf("manager not cleared alone: %v", u[enterpriseURN])
			}
		},
	},
	"entra/E21-delete-user.json": {setup: onUser, check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		isError(t, r.do("GET", "/Users/"+ids["5171a35d82074e068ce2"], nil), 404, "")
	}},
	"entra/E30-create-group.json": {},
	"entra/E31-get-group-excluding-members.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			exp := rec.expectedBody(t)
			m := defaultUser(r, "member@example.com")
			g := r.createGroup(str(exp["displayName"]), m)
			r.must(200, "PUT", "/Groups/"+g, map[string]any{"schemas": exp["schemas"], "displayName": exp["displayName"], "externalId": exp["externalId"], "members": []any{map[string]any{"value": m}}})
			return map[string]string{str(exp["id"]): g}
		},
		check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
			if _, ok := resp.body["members"]; ok {
				t.Fatal("members returned although excluded")
			}
		},
	},
	"entra/E32-query-group-by-displayName.json": {setup: fromExpected("/Groups", firstResource), check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		if _, ok := get(resp.body, "Resources.0").(map[string]any)["members"]; ok {
			t.Fatal("members returned although excluded")
		}
	}},
	"entra/E33-patch-group-displayName.json": {setup: onGroup(0), check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		expectValue(t, r.must(200, "GET", "/Groups/"+ids["fa2ce26709934589afc5"], nil).body, "displayName", "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName")
	}},
	"entra/E34-patch-group-add-members.json": {setup: onGroup(0, "f648f8d5ea4e4cd38e9c"), check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		hasMembers(t, r, ids["a99962b9f99d4c4fac67"], ids["{stays}"], ids["f648f8d5ea4e4cd38e9c"])
		u := userAt(t, r, ids["f648f8d5ea4e4cd38e9c"])
		expectValue(t, u, "groups.0.value", ids["a99962b9f99d4c4fac67"])
	}},
	"entra/E35-patch-group-remove-members.json": {setup: onGroup(1, "f648f8d5ea4e4cd38e9c"), check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		hasMembers(t, r, ids["a99962b9f99d4c4fac67"], ids["{stays}"])
		if len(asList(userAt(t, r, ids["f648f8d5ea4e4cd38e9c"])["groups"])) != 0 {
			t.Fatal("removed member still lists the group")
		}
	}},
	"entra/E36-delete-group.json": {setup: onGroup(0), check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
		isError(t, r.do("GET", "/Groups/"+ids["cdb1ce18f65944079d37"], nil), 404, "")
		if len(asList(userAt(t, r, ids["{stays}"])["groups"])) != 0 {
			t.Fatal("member of a deleted group still lists it")
		}
	}},
	"entra/E40-schemas.json": {check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		expectValue(t, resp.body, "schemas.0", "urn:ietf:params:scim:api:messages:2.0:ListResponse")
		if n := num(resp.body["totalResults"]); n < 3 || n != len(asList(resp.body["Resources"])) {
			t.Fatalf("totalResults %d for %d schemas", n, len(asList(resp.body["Resources"])))
		}
		if strings.Contains(string(resp.raw), "null") {
			t.Fatalf("null in /Schemas: %s", resp.raw)
		}
	}},

	"okta/O01-lookup-user.json": {},
	"okta/O02-create-user.json": {check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
		if _, ok := resp.body["password"]; ok {
			t.Fatal("password returned")
		}
	}},
	"okta/O03-create-user-conflict.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			r.createUser("TEST.USER@okta.local") // uniqueness ignores letter case
			return nil
		},
		// Okta's example shows "status": 409 (a number); RFC 7644 §3.12 says a string.
		ignore: []string{"status"},
		check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
			isError(t, resp, 409, "uniqueness")
		},
	},
	"okta/O04-list-users.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			for _, n := range []string{"c@okta.local", "a@okta.local", "b@okta.local"} {
				r.createUser(n)
			}
			return nil
		},
		check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
			expectValue(t, resp.body, "totalResults", 3)
			expectValue(t, resp.body, "itemsPerPage", 3)
			// Okta pages with startIndex += count: pages must not overlap or skip.
			var seen []string
			for start := 1; start <= 3; start++ {
				page := r.must(200, "GET", "/Users?startIndex="+strconv.Itoa(start)+"&count=1", nil)
				expectValue(t, page.body, "startIndex", start)
				seen = append(seen, str(get(page.body, "Resources.0.userName")))
			}
			if strings.Join(seen, ",") != "c@okta.local,a@okta.local,b@okta.local" {
				t.Fatalf("pages in order %v", seen)
			}
		},
	},
	"okta/O05-get-user.json": {setup: func(r *rig, rec recording, t *testing.T) map[string]string {
		return map[string]string{"23a35c27-23d3-4c03-b4c5-6443c09e7173": r.createUser("test.user@okta.local")}
	}},
	"okta/O06-put-user.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			id := r.createUser("test.user@okta.local", map[string]any{"title": "Engineer", "name": map[string]any{"givenName": "Test", "familyName": "User"}})
			return map[string]string{"23a35c27-23d3-4c03-b4c5-6443c09e7173": id}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			expectValue(t, resp.body, "name.middleName", "Excited")
			expectValue(t, resp.body, "emails.0.display", "test.user@okta.local")
			expectValue(t, resp.body, "id", ids["23a35c27-23d3-4c03-b4c5-6443c09e7173"])
			if _, ok := resp.body["title"]; ok {
				t.Fatal("PUT kept an attribute it did not send")
			}
		},
	},
	"okta/O07-deactivate-user.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			return map[string]string{"23a35c27-23d3-4c03-b4c5-6443c09e7173": r.createUser("test.user@okta.local")}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			expectValue(t, userAt(t, r, ids["23a35c27-23d3-4c03-b4c5-6443c09e7173"]), "active", false)
		},
	},
	"okta/O08-reactivate-user.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			id := r.createUser("test.user@okta.local", map[string]any{"active": false})
			return map[string]string{"23a35c27-23d3-4c03-b4c5-6443c09e7173": id}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			expectValue(t, userAt(t, r, ids["23a35c27-23d3-4c03-b4c5-6443c09e7173"]), "active", true)
		},
	},
	"okta/O10-create-group.json": {},
	"okta/O11-list-groups.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			r.createGroup("One", defaultUser(r, "m@okta.local"))
			r.createGroup("Two")
			return nil
		},
		check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
			expectValue(t, resp.body, "totalResults", 2)
			expectValue(t, resp.body, "Resources.0.displayName", "One")
			if len(asList(get(resp.body, "Resources.0.members"))) != 1 {
				t.Fatalf("members of a listed group: %s", resp.raw)
			}
		},
	},
	"okta/O12-lookup-group.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			r.createGroup("test scimv2") // displayName matches in any letter case
			return nil
		},
		check: func(t *testing.T, r *rig, resp response, _ map[string]string) {
			expectValue(t, resp.body, "totalResults", 1)
		},
	},
	"okta/O13-get-group.json": {setup: func(r *rig, rec recording, t *testing.T) map[string]string {
		return map[string]string{"abf4dd94-a4c0-4f67-89c9-76b03340cb9b": r.createGroup("Test SCIMv2")}
	}},
	"okta/O14-rename-group.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			return map[string]string{"abf4dd94-a4c0-4f67-89c9-76b03340cb9b": r.createGroup("Old name")}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			expectValue(t, r.must(200, "GET", "/Groups/"+ids["abf4dd94-a4c0-4f67-89c9-76b03340cb9b"], nil).body, "displayName", "Test SCIMv2")
		},
	},
	"okta/O15-group-membership.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			old := defaultUser(r, "old@okta.local")
			add := defaultUser(r, "test.user@okta.local")
			g := r.createGroup("Test SCIMv2", old)
			return map[string]string{"abf4dd94-a4c0-4f67-89c9-76b03340cb9b": g, "89bb1940-b905-4575-9e7f-6f887cfb368e": old, "23a35c27-23d3-4c03-b4c5-6443c09e7173": add}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			hasMembers(t, r, ids["abf4dd94-a4c0-4f67-89c9-76b03340cb9b"], ids["23a35c27-23d3-4c03-b4c5-6443c09e7173"])
		},
	},
	"okta/O16-group-membership-full-replace.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			a := defaultUser(r, "a@okta.local")
			b := defaultUser(r, "b@okta.local")
			c := defaultUser(r, "c@okta.local")
			g := r.createGroup("Test SCIMv2", c, a)
			return map[string]string{"abf4dd94-a4c0-4f67-89c9-76b03340cb9b": g, "23a35c27-23d3-4c03-b4c5-6443c09e7173": a, "89bb1940-b905-4575-9e7f-6f887cfb368e": b, "{replaced}": c}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			hasMembers(t, r, ids["abf4dd94-a4c0-4f67-89c9-76b03340cb9b"], ids["23a35c27-23d3-4c03-b4c5-6443c09e7173"], ids["89bb1940-b905-4575-9e7f-6f887cfb368e"])
			if len(asList(userAt(t, r, ids["{replaced}"])["groups"])) != 0 {
				t.Fatal("replaced-away member still lists the group")
			}
		},
	},
	"okta/O17-group-put-AIW.json": {
		setup: func(r *rig, rec recording, t *testing.T) map[string]string {
			a := defaultUser(r, "test.user@okta.local")
			b := defaultUser(r, "b@okta.local")
			g := r.createGroup("Before", b)
			return map[string]string{"abf4dd94-a4c0-4f67-89c9-76b03340cb9b": g, "23a35c27-23d3-4c03-b4c5-6443c09e7173": a}
		},
		check: func(t *testing.T, r *rig, resp response, ids map[string]string) {
			hasMembers(t, r, ids["abf4dd94-a4c0-4f67-89c9-76b03340cb9b"], ids["23a35c27-23d3-4c03-b4c5-6443c09e7173"])
			expectValue(t, resp.body, "displayName", "Test SCIMv2")
		},
	},
	"okta/O18-delete-group.json": {setup: func(r *rig, rec recording, t *testing.T) map[string]string {
		return map[string]string{"abf4dd94-a4c0-4f67-89c9-76b03340cb9b": r.createGroup("Test SCIMv2")}
	}},
}

// TestRecordedIdentityProviderRequests replays every recorded Entra ID and Okta request:
// the answer's status must be one the vendor accepts and its body must have the documented
// shape (every documented key, same JSON types, same values for names and flags).
func TestRecordedIdentityProviderRequests(t *testing.T) {
	base := newRig(t)
	files, _ := filepath.Glob("testdata/recorded/*/*.json")
	if len(files) != len(recordedCases) {
		t.Errorf("%d recordings, %d cases: every recording needs a case", len(files), len(recordedCases))
	}
	for _, f := range files {
		name := filepath.ToSlash(strings.TrimPrefix(f, "testdata/recorded/"))
		c, ok := recordedCases[name]
		if !ok {
			t.Errorf("no case for %s", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var rec recording
			if err := json.Unmarshal(raw, &rec); err != nil {
				t.Fatal(err)
			}
			r := base.forTenant(t)
			ids := map[string]string{}
			if c.setup != nil {
				ids = c.setup(r, rec, t)
			}
			resp := replay(t, r, rec, ids)
			want := rec.statuses()
			patch204 := rec.Request.Method == "PATCH" && resp.status == http.StatusNoContent && containsInt(want, http.StatusOK)
			if !containsInt(want, resp.status) && !patch204 {
				t.Fatalf("status %d, want one of %v: %s", resp.status, want, resp.raw)
			}
			if patch204 {
				// Microsoft's examples show PATCH answering 200 with the user; Offboard answers
				// 204 (RFC 7644 §3.5.2; what Entra's compatibility notes and the MS test
				// collection expect, NASTY 38). The resource a GET returns now stands in for
				// the example's body in every check below.
				path, _, _ := strings.Cut(recordedPath(t, rec, ids), "?")
				resp.body = r.must(http.StatusOK, "GET", path, nil).body
			}
			if exp := rec.expectedBody(t); exp != nil {
				shapeMatch(t, "", exp, resp.body, ids, c.ignore)
			}
			if resp.status >= 400 {
				isError(t, resp, resp.status, "")
			}
			if c.check != nil {
				c.check(t, r, resp, ids)
			}
		})
	}
}

// replay sends a recording with its ids mapped, its query form-encoded as the IdPs do and its
// /scim/v2 prefix (Okta's recordings) removed.
func replay(t *testing.T, r *rig, rec recording, ids map[string]string) response {
	t.Helper()
	path := recordedPath(t, rec, ids)
	body := string(rec.Request.Body)
	for from, to := range ids {
		if from != "" {
			body = strings.ReplaceAll(body, from, to)
		}
	}
	var headers []string
	for k, v := range rec.Request.Headers {
		if k != "Authorization" {
			headers = append(headers, k, v)
		}
	}
	if body == "" {
		return r.do(rec.Request.Method, path, nil, headers...)
	}
	return r.do(rec.Request.Method, path, []byte(body), headers...)
}

// recordedPath is the recording's request path below the tenant's base, recorded ids replaced
// by this tenant's, the query re-encoded.
func recordedPath(t *testing.T, rec recording, ids map[string]string) string {
	t.Helper()
	path := strings.TrimPrefix(rec.Request.Path, "/scim/v2")
	for from, to := range ids {
		if from != "" {
			path = strings.ReplaceAll(path, from, to)
		}
	}
	if p, q, ok := strings.Cut(path, "?"); ok {
		vals, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		path = p + "?" + vals.Encode()
	}
	return path
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// valueKeys are compared by value; the rest only by presence and JSON type (ids, times,
// locations and page sizes differ from the recording by nature).
var valueKeys = map[string]bool{
	"schemas": true, "userName": true, "displayName": true, "active": true, "totalResults": true,
	"startIndex": true, "resourceType": true, "familyName": true, "givenName": true, "middleName": true,
	"formatted": true, "type": true, "primary": true, "externalId": true, "locale": true, "scimType": true,
	"id": true, "display": true,
}

func shapeMatch(t *testing.T, path string, exp, got any, ids map[string]string, ignore []string) {
	t.Helper()
	for _, ig := range ignore {
		if path == ig {
			return
		}
	}
	switch e := exp.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Fatalf("%s: got %T, want an object", path, got)
		}
		for k, v := range e {
			p := strings.TrimPrefix(path+"."+k, ".")
			if containsString(ignore, p) {
				continue
			}
			gv, present := g[k]
			if !present {
				t.Fatalf("%s missing", p)
			}
			if k == "status" {
				continue // checked by isError: a string (RFC 7644 §3.12)
			}
			if valueKeys[k] {
				want := v
				if s, ok := v.(string); ok && ids[s] != "" {
					want = ids[s]
				}
				if k == "schemas" {
					// The core schema first; extensions only when the resource has them.
					if get(gv, "0") != get(want, "0") {
						t.Fatalf("%s = %v, want %v", p, gv, want)
					}
					continue
				}
				if k != "id" || ids[str(v)] != "" {
					if !equalJSON(gv, want) {
						t.Fatalf("%s = %v, want %v", p, gv, want)
					}
					continue
				}
			}
			shapeMatch(t, p, v, gv, ids, ignore)
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			t.Fatalf("%s: got %T, want an array", path, got)
		}
		if len(e) > 0 {
			if len(g) == 0 {
				t.Fatalf("%s: empty, want %d elements", path, len(e))
			}
			shapeMatch(t, path+".0", e[0], g[0], ids, ignore)
		}
	case string:
		if _, ok := got.(string); !ok {
			t.Fatalf("%s: got %T, want a string", path, got)
		}
	case json.Number:
		if _, ok := got.(json.Number); !ok {
			t.Fatalf("%s: got %T, want a number", path, got)
		}
	case bool:
		if _, ok := got.(bool); !ok {
			t.Fatalf("%s: got %T, want a boolean", path, got)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
