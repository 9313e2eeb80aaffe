package scim_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/scim"
)

// The legal-but-nasty inputs (and real-world deviations) identity providers and conformance
// suites send, one case per item, each with the decision taken: "lenient" accepts a non-RFC
// shape because an IdP sends it, "strict" answers with the RFC error. The numbers follow the
// list the endpoint was designed against (A names, B values, C filters, D pagination, E PATCH,
// F lifecycle, errors and headers).

const patchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

func patch(ops ...map[string]any) map[string]any {
	list := make([]any, len(ops))
	for i, o := range ops {
		list[i] = o
	}
	return map[string]any{"schemas": []string{patchSchema}, "Operations": list}
}

func op(o, path string, value any) map[string]any {
	m := map[string]any{"op": o}
	if path != "" {
		m["path"] = path
	}
	if value != nil {
		m["value"] = value
	}
	return m
}

func filterQ(f string) string { return "/Users?filter=" + url.QueryEscape(f) }

// total runs a user filter and returns totalResults.
func (r *rig) total(f string) int {
	r.t.Helper()
	return num(r.must(http.StatusOK, "GET", filterQ(f), nil).body["totalResults"])
}

func TestNastyInputs(t *testing.T) {
	base := newRig(t)
	cases := []struct {
		name string
		run  func(t *testing.T, r *rig)
	}{
		// A. Names and casing

		// 1 (lenient, RFC 7643 §2.1): attribute names in bodies match in any case; answers use
		// canonical names.
		{"01 attribute names in bodies match in any letter case and come back canonical", func(t *testing.T, r *rig) {
			resp := r.must(201, "POST", "/Users", map[string]any{
				"schemas":  []string{scim.UserSchema, enterpriseURN},
				"USERNAME": "casey@x", "Emails": []any{map[string]any{"Primary": true, "VALUE": "casey@x", "Type": "work"}},
				enterpriseURN: map[string]any{"Department": "Ops", "Manager": map[string]any{"Value": "boss-id"}},
			})
			expectValue(t, resp.body, "userName", "casey@x")
			expectValue(t, resp.body, "emails.0.primary", true)
			expectValue(t, resp.body, "emails.0.value", "casey@x")
			expectValue(t, resp.body, enterpriseURN+".department", "Ops")
			expectValue(t, resp.body, enterpriseURN+".manager.value", "boss-id")
		}},
		// 2 (RFC 7644 §3.4.2.2): filter attribute names and operators in any case.
		{"02 filter attribute names and operators match in any letter case", func(t *testing.T, r *rig) {
			r.createUser("frank@x", map[string]any{"displayName": "Frank", "name": map[string]any{"familyName": "Employee"},
				"emails": []any{map[string]any{"value": "frank@example.org"}}})
			for _, f := range []string{`USERNAME EQ "frank@x"`, `DisplayName eq "Frank"`, `name.FamilyName eq "Employee"`,
				`emails.Value co "example.org"`, `meta.Created gt "2000-01-01T00:00:00Z"`,
				`(ActiVe eq true) and meta.lastmodified ge "2000-01-01T00:00:00Z"`, `userName Sw "FR"`} {
				if n := r.total(f); n != 1 {
					t.Fatalf("%s: %d results", f, n)
				}
			}
		}},
		// 3 (lenient): PATCH op names in any case (Entra sends Add/Replace/Remove).
		{"03 PATCH op names match in any letter case", func(t *testing.T, r *rig) {
			id := r.createUser("ops@x")
			r.must(204, "PATCH", "/Users/"+id, patch(op("Add", "nickName", "N"), op("REPLACE", "title", "T"), op("Remove", "nickName", nil)))
			u := userAt(t, r, id)
			if u["nickName"] != nil || u["title"] != "T" {
				t.Fatalf("got %v", u)
			}
		}},
		// 4 (RFC: caseExact false, uniqueness server): JOHN@X conflicts with john@x and finds it.
		{"04 userName is unique and found in any letter case", func(t *testing.T, r *rig) {
			id := r.createUser("john@x")
			isError(t, r.do("POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "JOHN@X"}), 409, "uniqueness")
			resp := r.must(200, "GET", filterQ(`userName eq "JOHN@X"`), nil)
			expectValue(t, resp.body, "Resources.0.id", id)
		}},
		// 5 (RFC 7643 §3.1: id is caseExact): another case of the id is another resource.
		{"05 id is case-exact", func(t *testing.T, r *rig) {
			id := r.createUser("exact@x")
			isError(t, r.do("GET", "/Users/"+strings.ToUpper(id), nil), 404, "")
			if n := r.total(`id eq "` + strings.ToUpper(id) + `"`); n != 0 {
				t.Fatalf("id eq in another case found %d", n)
			}
		}},
		// 6 (RFC §3.10): fully qualified names in PATCH paths, filters and attributes=.
		{"06 URN-qualified attribute paths work in PATCH, filters and attributes", func(t *testing.T, r *rig) {
			id := r.createUser("urn@x")
			r.must(204, "PATCH", "/Users/"+id, patch(
				op("replace", scim.UserSchema+":name.givenName", "Uri"),
				op("add", enterpriseURN+":employeeNumber", "42")))
			if n := r.total(enterpriseURN + `:employeeNumber eq "42" and ` + scim.UserSchema + `:name.givenName eq "uri"`); n != 1 {
				t.Fatalf("qualified filter found %d", n)
			}
			resp := r.must(200, "GET", "/Users/"+id+"?attributes="+url.QueryEscape(enterpriseURN+":employeeNumber,"+scim.UserSchema+":name.givenName"), nil)
			expectValue(t, resp.body, enterpriseURN+".employeeNumber", "42")
			expectValue(t, resp.body, "name.givenName", "Uri")
			if resp.body["userName"] != nil {
				t.Fatalf("attributes= returned more: %s", resp.raw)
			}
		}},
		// 7 (lenient): unknown and misspelt schema URNs in schemas[] are ignored; the misspelt
		// enterprise URN (Entra docs) is read as the enterprise extension.
		{"07 unknown or garbled schema URNs are tolerated", func(t *testing.T, r *rig) {
			r.must(201, "POST", "/Groups", map[string]any{"schemas": []string{scim.GroupSchema, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"}, "displayName": "G"})
			resp := r.must(201, "POST", "/Users", map[string]any{
				"schemas":  []string{scim.UserSchema, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"},
				"userName": "garbled@x", "urn:ietf:params:scim:schemas:extension:enterprise:2.0User": map[string]any{"department": "R&D"}})
			expectValue(t, resp.body, enterpriseURN+".department", "R&D")
		}},

		// B. Values and types

		// 8 (lenient): "True"/"False" strings for booleans become booleans.
		{"08 boolean strings are coerced to booleans", func(t *testing.T, r *rig) {
			resp := r.must(201, "POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "bool@x", "active": "True",
				"roles": []any{map[string]any{"value": "admin", "primary": "True"}}})
			expectValue(t, resp.body, "active", true)
			expectValue(t, resp.body, "roles.0.primary", true)
			id := str(resp.body["id"])
			r.must(204, "PATCH", "/Users/"+id, patch(op("Replace", "active", "False")))
			expectValue(t, userAt(t, r, id), "active", false)
		}},
		// 9 (RFC 7643 §2.5): null and "" mean unassigned; nothing is returned as null or "".
		{"09 null and empty values are unassigned and never returned", func(t *testing.T, r *rig) {
			resp := r.must(201, "POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "null@x",
				"addresses": nil, "phoneNumbers": nil, "title": nil, "nickName": "", "displayName": "D", "locale": "de"})
			for _, k := range []string{"addresses", "phoneNumbers", "title", "nickName"} {
				if _, ok := resp.body[k]; ok {
					t.Fatalf("%s returned: %s", k, resp.raw)
				}
			}
			id := str(resp.body["id"])
			r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "displayName", ""), map[string]any{"op": "replace", "path": "locale", "value": nil}))
			u := userAt(t, r, id)
			if _, ok := u["displayName"]; ok {
				t.Fatalf("displayName kept: %v", u)
			}
			if _, ok := u["locale"]; ok {
				t.Fatalf("locale kept: %v", u)
			}
			r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "", map[string]any{"title": nil, "nickName": "Nick"})))
			expectValue(t, userAt(t, r, id), "nickName", "Nick")
		}},
		// 10 (lenient): manager as string, object or one-element array is stored as {"value":
		// id}; {"value": ""} removes it.
		{"10 every manager shape is stored as {value: id}", func(t *testing.T, r *rig) {
			id := r.createUser("managed@x")
			for _, v := range []any{"m1", map[string]any{"value": "m1"}, []any{map[string]any{"$ref": "https://x/Users/m1", "value": "m1"}}} {
				r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "manager", v)))
				if m := get(userAt(t, r, id), enterpriseURN+".manager"); !equalJSON(m, map[string]any{"value": "m1"}) {
					t.Fatalf("manager %v from %v", m, v)
				}
				r.must(204, "PATCH", "/Users/"+id, patch(op("replace", enterpriseURN+":manager", map[string]any{"value": ""})))
				if m := get(userAt(t, r, id), enterpriseURN+".manager"); m != nil {
					t.Fatalf("manager not cleared: %v", m)
				}
			}
			resp := r.must(201, "POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "m2@x", enterpriseURN: map[string]any{"manager": "m1"}})
			expectValue(t, resp.body, enterpriseURN+".manager.value", "m1")
		}},
		// 11 (lenient): "$ref": null in members is ignored; a member's "displayName" is read
		// as "display" and returned as "display" (the canonical name).
		{"11 null $ref and displayName in members are tolerated", func(t *testing.T, r *rig) {
			u := r.createUser("member11@x")
			g := r.createGroup("G11")
			r.must(204, "PATCH", "/Groups/"+g, patch(op("Add", "members", []any{map[string]any{"$ref": nil, "value": u, "displayName": "Member Eleven"}})))
			resp := r.must(200, "GET", "/Groups/"+g, nil)
			expectValue(t, resp.body, "members.0.value", u)
			expectValue(t, resp.body, "members.0.display", "Member Eleven")
		}},
		// 12 (RFC 7644 §3.5.1): read-only attributes sent by clients are ignored; password is
		// accepted and never returned.
		{"12 client-sent read-only attributes are ignored and password never returned", func(t *testing.T, r *rig) {
			resp := r.must(201, "POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "ro@x", "password": "1mz050nq",
				"groups": []any{}, "meta": map[string]any{"resourceType": "User"}, "id": "chosen-by-client"})
			id := str(resp.body["id"])
			if id == "chosen-by-client" || resp.body["password"] != nil {
				t.Fatalf("got %s", resp.raw)
			}
			put := r.must(200, "PUT", "/Users/"+id, map[string]any{"schemas": []string{scim.UserSchema}, "id": "other", "userName": "ro@x",
				"meta": map[string]any{"version": "W/\"99\""}, "groups": []any{map[string]any{"value": "g"}}, "password": "x"})
			expectValue(t, put.body, "id", id)
			if len(asList(put.body["groups"])) != 0 || put.body["password"] != nil {
				t.Fatalf("got %s", put.raw)
			}
			g := r.createGroup("Old")
			r.must(204, "PATCH", "/Groups/"+g, patch(op("replace", "", map[string]any{"id": g, "displayName": "New"})))
			expectValue(t, r.must(200, "GET", "/Groups/"+g, nil).body, "displayName", "New")
			isError(t, r.do("PATCH", "/Users/"+id, patch(op("replace", "groups", []any{map[string]any{"value": g}}))), 400, "mutability")
		}},
		// 13 (lenient, like the MS collection's "misspelled attribute" expecting 200): unknown
		// attributes are ignored in POST, PUT and path-less PATCH; an explicit PATCH path to
		// an unknown attribute is strict (400 invalidPath): there is nothing to apply it to.
		{"13 unknown attributes are ignored, unknown PATCH paths are refused", func(t *testing.T, r *rig) {
			id := str(r.must(201, "POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "unk@x", "adreses": "x"}).body["id"])
			r.must(200, "PUT", "/Users/"+id, map[string]any{"schemas": []string{scim.UserSchema}, "userName": "unk@x", "adreses": "x"})
			r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "", map[string]any{"adreses": "x", "title": "T"})))
			expectValue(t, userAt(t, r, id), "title", "T")
			isError(t, r.do("PATCH", "/Users/"+id, patch(op("replace", "adreses", "x"))), 400, "invalidPath")
		}},
		// 14 (RFC, Entra): Unicode stored byte-exact, compared with Unicode case folding.
		{"14 Unicode values are stored byte-exact and compared with Unicode case folding", func(t *testing.T, r *rig) {
			name := "zoë.ångström+测试@例え.jp"
			display := "Zoë \"Zed\" O\\Malley 🚀 <b>&"
			id := r.createUser(name, map[string]any{"displayName": display})
			u := userAt(t, r, id)
			expectValue(t, u, "userName", name)
			expectValue(t, u, "displayName", display)
			resp := r.must(200, "GET", filterQ(`userName eq "ZOË.ÅNGSTRÖM+测试@例え.JP"`), nil)
			expectValue(t, resp.body, "Resources.0.id", id)
			if n := r.total(`displayName co "zoË"`); n != 1 {
				t.Fatalf("co in another case: %d", n)
			}
			isError(t, r.do("POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "ZOË.ÅNGSTRÖM+测试@例え.JP"}), 409, "uniqueness")
		}},
		// 15: the query string is form-decoded: "+" is a space, a literal "+" arrives as %2B.
		{"15 plus signs in query strings are spaces and %2B is a plus", func(t *testing.T, r *rig) {
			id := r.createUser("a+b@x", map[string]any{"externalId": "x y"})
			resp := r.must(200, "GET", "/Users?filter=userName+eq+%22a%2Bb@x%22", nil)
			expectValue(t, resp.body, "Resources.0.id", id)
			resp = r.must(200, "GET", "/Users?filter=externalId+eq+%22x+y%22", nil)
			expectValue(t, resp.body, "totalResults", 1)
		}},

		// C. Filters

		// 16 (RFC): and binds tighter than or; parentheses group; not needs parentheses.
		{"16 logical precedence and grouping", func(t *testing.T, r *rig) {
			r.createUser("p1@x", map[string]any{"name": map[string]any{"familyName": "Employee"}, "emails": []any{map[string]any{"value": "p1@example.com"}}, "title": "A"})
			r.createUser("p2@x", map[string]any{"name": map[string]any{"familyName": "Employee"}, "emails": []any{map[string]any{"value": "p2@example.org"}}, "title": "B"})
			r.createUser("p3@x", map[string]any{"name": map[string]any{"familyName": "Other"}, "emails": []any{map[string]any{"value": "p3@example.org"}}, "title": "A"})
			for f, want := range map[string]int{
				`name.familyName eq "Employee" and (emails.value co "example.com" or emails.value co "example.org")`: 2,
				`name.familyName eq "Other" or title eq "B" and name.familyName eq "Employee"`:                       2,
				`(name.familyName eq "Other" or title eq "B") and emails.value co "org"`:                             2,
				`not (title eq "A")`: 1,
				`not (not (title eq "A") and not (name.familyName eq "Other"))`: 2,
				`((((title eq "A"))))`: 2,
			} {
				if n := r.total(f); n != want {
					t.Fatalf("%s: %d results, want %d", f, n, want)
				}
			}
			isError(t, r.do("GET", filterQ(`not title eq "A"`), nil), 400, "invalidFilter")
		}},
		// 17: JSON escapes in filter strings are decoded.
		{"17 escaped quotes and backslashes in filter strings", func(t *testing.T, r *rig) {
			r.createUser("esc@x", map[string]any{"displayName": `Zoë "Zed" O\Malley`})
			if n := r.total(`displayName eq "Zoë \"Zed\" O\\Malley"`); n != 1 {
				t.Fatalf("%d results", n)
			}
			if n := r.total(`displayName eq "Zo\u00eb \"Zed\" O\\Malley"`); n != 1 {
				t.Fatalf("with \\u escape: %d results", n)
			}
		}},
		// 18 (lenient for the suffix form Entra sends): value paths; attr[filter].sub op value
		// means one element satisfies both.
		{"18 value paths, also with an attribute after the brackets", func(t *testing.T, r *rig) {
			r.createUser("vp1@x", map[string]any{"emails": []any{map[string]any{"type": "work", "value": "u@x"}, map[string]any{"type": "home", "value": "h@y"}}})
			r.createUser("vp2@x", map[string]any{"emails": []any{map[string]any{"type": "home", "value": "u@x"}, map[string]any{"type": "work", "value": "w@y"}}})
			for f, want := range map[string]int{
				`emails[type eq "work" and value co "@x"]`:                  1,
				`emails[type eq "work"].value eq "u@x"`:                     1,
				`emails[type eq "work"].value eq "U@X"`:                     1,
				`emails.type eq "work" and emails.value eq "u@x"`:           2,
				`emails[type eq "work" or value eq "nobody"]`:               2,
				`not (emails[type eq "work" and value co "@x"])`:            1,
				`emails[not (type eq "work")]`:                              2,
				`emails[type eq "home" and value co "@y" and value sw "h"]`: 1,
			} {
				if n := r.total(f); n != want {
					t.Fatalf("%s: %d results, want %d", f, n, want)
				}
			}
		}},
		// 19 (RFC): a multi-valued attribute matches if any element does.
		{"19 multi-valued attributes match if any element matches", func(t *testing.T, r *rig) {
			r.createUser("mv@x", map[string]any{"emails": []any{map[string]any{"value": "a@example.com"}, map[string]any{"value": "b@example.org"}}})
			if n := r.total(`emails.value co "example.org"`); n != 1 {
				t.Fatalf("%d", n)
			}
			if n := r.total(`emails co "example.org"`); n != 1 { // complex without sub: its value
				t.Fatalf("%d", n)
			}
		}},
		// 20 (RFC; lenient for the unquoted form MS sends): dateTime comparisons with any
		// fractional precision and offsets; pr.
		{"20 dateTime comparisons with 7-digit fractions and offsets, and pr", func(t *testing.T, r *rig) {
			before := time.Now().UTC().Add(-time.Minute)
			r.createUser("dt@x", map[string]any{"title": "T"})
			after := time.Now().UTC().Add(time.Minute)
			f := func(t time.Time) string { return t.Format("2006-01-02T15:04:05.0000000-07:00") }
			if n := r.total(`meta.lastModified gt "` + f(before.In(time.FixedZone("", -7*3600))) + `"`); n != 1 {
				t.Fatalf("gt with offset: %d", n)
			}
			if n := r.total(`meta.lastModified gt ` + f(after)); n != 0 {
				t.Fatalf("unquoted gt: %d", n)
			}
			if n := r.total(`meta.created le "2015-10-10T14:38:21.8617979-07:00"`); n != 0 {
				t.Fatalf("le: %d", n)
			}
			if n := r.total(`title pr and not (nickName pr)`); n != 1 {
				t.Fatalf("pr: %d", n)
			}
			isError(t, r.do("GET", filterQ(`meta.created gt "yesterday"`), nil), 400, "invalidFilter")
		}},
		// 21 (lenient): unquoted compValues that are not true/false/null/numbers are strings.
		{"21 unquoted values are read as strings", func(t *testing.T, r *rig) {
			r.createUser("Otto@x", map[string]any{"externalId": "jyoung", "name": map[string]any{"familyName": "Employee"}})
			for _, f := range []string{`name.FamilyName eq Employee`, `userName sw O`, `externalId eq jyoung`} {
				if n := r.total(f); n != 1 {
					t.Fatalf("%s: %d", f, n)
				}
			}
		}},
		// 22 (RFC): invalid filters are 400 invalidFilter, never 500 or an empty list.
		{"22 invalid filters are 400 invalidFilter", func(t *testing.T, r *rig) {
			for _, f := range []string{`userName eq`, `userName xx "a"`, `(userName eq "a"`, `emails[type eq "work"`, `userName eq "a")`,
				`nosuch eq "a"`, `active gt true`, `userName eq "unterminated`, `emails[value eq "a"].nosuch eq "b"`, `and`, `userName eq "a" or`, "title co \xff"} {
				isError(t, r.do("GET", filterQ(f), nil), 400, "invalidFilter")
			}
		}},
		// 23 (strict): filters longer than 4 KiB or nested deeper than 16 levels are refused
		// before parsing.
		{"23 pathological filters are bounded", func(t *testing.T, r *rig) {
			deep := strings.Repeat("(", 10000) + `userName eq "a"` + strings.Repeat(")", 10000)
			isError(t, r.do("GET", filterQ(deep), nil), 400, "invalidFilter")
			long := `userName eq "` + strings.Repeat("a", 100000) + `"`
			isError(t, r.do("GET", filterQ(long), nil), 400, "invalidFilter")
			big := map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:SearchRequest"}, "filter": `userName eq "` + strings.Repeat("b", 900000) + `"`}
			isError(t, r.do("POST", "/Users/.search", big), 400, "invalidFilter")
		}},

		// D. Pagination

		// 24 (RFC): count=0 answers only the total, with an empty Resources.
		{"24 count=0 returns only totalResults", func(t *testing.T, r *rig) {
			r.createUser("c0@x")
			resp := r.must(200, "GET", "/Users?count=0", nil)
			expectValue(t, resp.body, "totalResults", 1)
			expectValue(t, resp.body, "itemsPerPage", 0)
			if l, ok := resp.body["Resources"].([]any); !ok || len(l) != 0 {
				t.Fatalf("Resources %v", resp.body["Resources"])
			}
		}},
		// 25 (RFC): count<0 is 0, startIndex<1 is 1 (and reported as 1).
		{"25 negative count and startIndex below 1", func(t *testing.T, r *rig) {
			r.createUser("neg@x")
			resp := r.must(200, "GET", "/Users?count=-5&startIndex=-3", nil)
			expectValue(t, resp.body, "itemsPerPage", 0)
			expectValue(t, resp.body, "startIndex", 1)
			resp = r.must(200, "GET", "/Users?startIndex=0", nil)
			expectValue(t, resp.body, "startIndex", 1)
			expectValue(t, resp.body, "itemsPerPage", 1)
			isError(t, r.do("GET", "/Users?count=ten", nil), 400, "invalidValue")
		}},
		// 26 (RFC): huge counts are capped at filter.maxResults, which the SPC advertises.
		{"26 huge counts are capped at maxResults", func(t *testing.T, r *rig) {
			r.createUser("huge@x")
			for _, c := range []string{"100000000", "100000000000000000000000000000"} {
				resp := r.must(200, "GET", "/Users?count="+c, nil)
				expectValue(t, resp.body, "itemsPerPage", 1)
			}
			expectValue(t, r.must(200, "GET", "/ServiceProviderConfig", nil).body, "filter.maxResults", scim.DefaultMaxResults)
		}},
		// 27 (RFC): a startIndex past the end is an empty page with the right total.
		{"27 startIndex beyond the end", func(t *testing.T, r *rig) {
			r.createUser("end@x")
			resp := r.must(200, "GET", "/Users?startIndex=5", nil)
			expectValue(t, resp.body, "totalResults", 1)
			expectValue(t, resp.body, "itemsPerPage", 0)
			expectValue(t, resp.body, "startIndex", 5)
			if l, ok := resp.body["Resources"].([]any); !ok || len(l) != 0 {
				t.Fatalf("Resources %v", resp.body["Resources"])
			}
		}},
		// 28 (Okta, MS): integers, stable order across pages, Resources always present.
		{"28 list numbers are integers, order is stable and Resources always present", func(t *testing.T, r *rig) {
			for _, n := range []string{"s3@x", "s1@x", "s2@x", "s4@x"} {
				r.createUser(n)
			}
			resp := r.must(200, "GET", filterQ(`userName eq "nobody"`), nil)
			if !strings.Contains(string(resp.raw), `"Resources":[]`) || !strings.Contains(string(resp.raw), `"totalResults":0`) {
				t.Fatalf("%s", resp.raw)
			}
			var order []string
			for s := 1; s <= 4; s += 2 {
				page := r.must(200, "GET", "/Users?startIndex="+itoa(s)+"&count=2", nil)
				for _, u := range asList(page.body["Resources"]) {
					order = append(order, str(get(u, "userName")))
				}
			}
			if strings.Join(order, ",") != "s3@x,s1@x,s2@x,s4@x" {
				t.Fatalf("order %v", order)
			}
			sorted := r.must(200, "GET", "/Users?sortBy=userName&sortOrder=descending&count=1", nil)
			expectValue(t, sorted.body, "Resources.0.userName", "s4@x")
		}},
		// 29 (lenient): query parameter names in any case (startindex from the MS collection).
		{"29 lower-case parameter names are tolerated", func(t *testing.T, r *rig) {
			r.createUser("lc1@x")
			r.createUser("lc2@x")
			resp := r.must(200, "GET", "/Users?startindex=0&COUNT=1&Filter="+url.QueryEscape(`userName sw "lc"`), nil)
			expectValue(t, resp.body, "startIndex", 1)
			expectValue(t, resp.body, "itemsPerPage", 1)
			expectValue(t, resp.body, "totalResults", 2)
		}},

		// E. PATCH

		// 30 (RFC + lenient Entra form): path-less values; dotted and URN keys are paths.
		{"30 path-less PATCH values with dotted and URN keys", func(t *testing.T, r *rig) {
			id := r.createUser("pl@x", map[string]any{"name": map[string]any{"familyName": "F"}})
			r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "", map[string]any{"name.givenName": "x", enterpriseURN + ":employeeNumber": "y", "active": false})))
			u := userAt(t, r, id)
			expectValue(t, u, "name.givenName", "x")
			expectValue(t, u, "name.familyName", "F")
			expectValue(t, u, enterpriseURN+".employeeNumber", "y")
			expectValue(t, u, "active", false)
		}},
		// 31 (lenient, Entra): replace of attr[filter].sub with no match adds the element.
		{"31 replace of a missing filtered element adds it", func(t *testing.T, r *rig) {
			id := r.createUser("r31@x", map[string]any{"emails": []any{map[string]any{"type": "home", "value": "h@x"}}})
			r.must(204, "PATCH", "/Users/"+id, patch(op("replace", `emails[type eq "work"].value`, "w@x")))
			u := userAt(t, r, id)
			if len(asList(u["emails"])) != 2 || get(u, "emails.1.type") != "work" || get(u, "emails.1.value") != "w@x" {
				t.Fatalf("emails %v", u["emails"])
			}
			isError(t, r.do("PATCH", "/Users/"+id, patch(op("replace", `emails[type co "zz"].value`, "z@x"))), 400, "")
		}},
		// 32 (lenient): add of attr[filter].sub on an empty list creates the element.
		{"32 add of a filtered sub-attribute on an empty list creates the element", func(t *testing.T, r *rig) {
			id := r.createUser("a32@x")
			r.must(204, "PATCH", "/Users/"+id, patch(op("add", `emails[type eq "home"].value`, "home@x")))
			if u := userAt(t, r, id); !equalJSON(u["emails"], []any{map[string]any{"type": "home", "value": "home@x"}}) {
				t.Fatalf("emails %v", u["emails"])
			}
		}},
		// 33 (RFC + Entra): remove with a value filter removes the matches; remove members
		// without a value removes all; Entra's remove with a value list removes those only.
		{"33 remove by filter, remove all, and remove a listed value", func(t *testing.T, r *rig) {
			id := r.createUser("r33@x", map[string]any{"emails": []any{map[string]any{"type": "work", "value": "w@x"}, map[string]any{"type": "home", "value": "h@x"}}})
			r.must(204, "PATCH", "/Users/"+id, patch(op("remove", `emails[type eq "work"]`, nil)))
			if u := userAt(t, r, id); len(asList(u["emails"])) != 1 || get(u, "emails.0.type") != "home" {
				t.Fatalf("emails %v", u["emails"])
			}
			a, b, c := r.createUser("m33a@x"), r.createUser("m33b@x"), r.createUser("m33c@x")
			g := r.createGroup("G33", a, b, c)
			r.must(204, "PATCH", "/Groups/"+g, patch(op("Remove", "members", []any{map[string]any{"value": a}})))
			hasMembers(t, r, g, b, c)
			r.must(204, "PATCH", "/Groups/"+g, patch(op("remove", "members", nil)))
			hasMembers(t, r, g)
		}},
		// 34 (lenient, Okta): removing a member that is not there, with an add in the same
		// request, is a no-op and the add happens.
		{"34 removing an absent member does not fail the request", func(t *testing.T, r *rig) {
			a := r.createUser("m34@x")
			g := r.createGroup("G34")
			r.must(204, "PATCH", "/Groups/"+g, patch(op("remove", `members[value eq "not-a-member"]`, nil), op("add", "members", []any{map[string]any{"value": a}})))
			hasMembers(t, r, g, a)
		}},
		// 35 (RFC): remove without a path is noTarget; an unknown op is invalidValue.
		{"35 remove without path and unknown ops are refused", func(t *testing.T, r *rig) {
			id := r.createUser("r35@x")
			isError(t, r.do("PATCH", "/Users/"+id, patch(op("remove", "", nil))), 400, "noTarget")
			isError(t, r.do("PATCH", "/Users/"+id, patch(op("merge", "title", "x"))), 400, "invalidValue")
		}},
		// 36 (lenient, MS collection): adding a present member changes nothing; a member id
		// that names no user or group of the tenant (even as a bare string) is ignored.
		{"36 duplicate and non-existent members", func(t *testing.T, r *rig) {
			a := r.createUser("m36@x")
			g := r.createGroup("G36", a)
			v := r.must(200, "GET", "/Groups/"+g, nil).header.Get("ETag")
			r.must(204, "PATCH", "/Groups/"+g, patch(op("add", "members", []any{map[string]any{"value": a}})))
			if got := r.must(200, "GET", "/Groups/"+g, nil).header.Get("ETag"); got != v {
				t.Fatalf("no-op add changed the version %s → %s", v, got)
			}
			r.must(204, "PATCH", "/Groups/"+g, patch(op("add", "members", "string id 1")))
			hasMembers(t, r, g, a)
			other := base.forTenant(t)
			stranger := other.createUser("stranger@x")
			r.must(204, "PATCH", "/Groups/"+g, patch(op("add", "members", []any{map[string]any{"value": stranger}})))
			hasMembers(t, r, g, a) // another tenant's user is not a member candidate
		}},
		// 37 (RFC): operations apply in order, all or nothing.
		{"37 operations apply in order and atomically", func(t *testing.T, r *rig) {
			a := r.createUser("m37@x")
			g := r.createGroup("G37")
			r.must(204, "PATCH", "/Groups/"+g, patch(op("add", "members", []any{map[string]any{"value": a}}), op("remove", `members[value eq "`+a+`"]`, nil)))
			hasMembers(t, r, g)
			isError(t, r.do("PATCH", "/Groups/"+g, patch(op("add", "members", []any{map[string]any{"value": a}}), op("remove", "displayName", nil))), 400, "invalidValue")
			hasMembers(t, r, g)
			id := r.createUser("u37@x", map[string]any{"title": "Before"})
			isError(t, r.do("PATCH", "/Users/"+id, patch(op("replace", "title", "After"), op("replace", `emails[type sw "x"].value`, "v"))), 400, "noTarget")
			expectValue(t, userAt(t, r, id), "title", "Before")
		}},
		// 38 (decided): PATCH answers 204 with the new ETag for users and groups: the one answer
		// Entra (documents 200 for users, 204 for groups), Okta (either) and the MS collection
		// (asserts 204) all accept. With attributes/excludedAttributes the RFC's 200 with the
		// resource, projected.
		{"38 PATCH answers 204 with the ETag, or 200 when attributes ask for the resource", func(t *testing.T, r *rig) {
			id := r.createUser("r38@x")
			resp := r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "title", "T")))
			if len(resp.raw) != 0 || resp.header.Get("ETag") != r.must(200, "GET", "/Users/"+id, nil).header.Get("ETag") {
				t.Fatalf("204 with body %q, ETag %q", resp.raw, resp.header.Get("ETag"))
			}
			withUser := r.must(200, "PATCH", "/Users/"+id+"?attributes=title", patch(op("replace", "title", "U")))
			expectValue(t, withUser.body, "title", "U")
			if _, ok := withUser.body["userName"]; ok {
				t.Fatalf("attributes=title returned userName: %v", withUser.body)
			}
			g := r.createGroup("G38")
			gresp := r.must(204, "PATCH", "/Groups/"+g, patch(op("replace", "displayName", "H38")))
			if gresp.header.Get("ETag") != r.must(200, "GET", "/Groups/"+g, nil).header.Get("ETag") {
				t.Fatalf("group PATCH ETag %q", gresp.header.Get("ETag"))
			}
			resp = r.must(200, "PATCH", "/Groups/"+g+"?excludedAttributes=members", patch(op("replace", "displayName", "I38")))
			expectValue(t, resp.body, "displayName", "I38")
		}},

		// F. Lifecycle, errors, headers

		// 39 (Entra): inactive users stay visible to GET and filters; active=true reactivates.
		{"39 deactivated users are still returned", func(t *testing.T, r *rig) {
			id := r.createUser("soft@x")
			r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "", map[string]any{"active": false})))
			expectValue(t, userAt(t, r, id), "active", false)
			if n := r.total(`userName eq "soft@x" and active eq false`); n != 1 {
				t.Fatalf("%d", n)
			}
			r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "active", true)))
			expectValue(t, userAt(t, r, id), "active", true)
		}},
		// 40 (RFC): DELETE is 204, then 404 for DELETE and GET; the name is free again.
		{"40 delete twice", func(t *testing.T, r *rig) {
			id := r.createUser("del@x")
			r.must(204, "DELETE", "/Users/"+id, nil)
			isError(t, r.do("DELETE", "/Users/"+id, nil), 404, "")
			isError(t, r.do("GET", "/Users/"+id, nil), 404, "")
			if n := r.total(`userName eq "del@x"`); n != 0 {
				t.Fatalf("deleted user found: %d", n)
			}
			r.createUser("del@x")
		}},
		// 41 (RFC 7644 §3.12): error bodies have schemas, a string status, scimType, detail,
		// and the SCIM media type.
		{"41 error bodies are RFC-shaped", func(t *testing.T, r *rig) {
			r.createUser("dup@x")
			resp := r.do("POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}, "userName": "dup@x"})
			isError(t, resp, 409, "uniqueness")
			if resp.body["detail"] == "" {
				t.Fatal("no detail")
			}
			isError(t, r.do("POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema}}), 400, "invalidValue")
		}},
		// 42: a missing or malformed Authorization is 401 with a SCIM body (the server's
		// authentication middleware answers with scim.WriteError, as the rig's does; the
		// handler itself refuses a request without a principal the same way).
		{"42 missing or malformed credentials are 401 with a SCIM body", func(t *testing.T, r *rig) {
			isError(t, r.do("GET", "/Users", nil, "Authorization", "non-token"), 401, "")
			isError(t, r.do("GET", "/Users", nil, "Authorization", ""), 401, "")
		}},
		// 43: application/json and application/scim+json with charset are accepted; other
		// media types are 415.
		{"43 content types", func(t *testing.T, r *rig) {
			body := map[string]any{"schemas": []string{scim.UserSchema}, "userName": "ct1@x"}
			r.must(201, "POST", "/Users", body, "Content-Type", "application/json")
			body["userName"] = "ct2@x"
			r.must(201, "POST", "/Users", body, "Content-Type", "application/scim+json; charset=utf-8")
			body["userName"] = "ct3@x"
			isError(t, r.do("POST", "/Users", body, "Content-Type", "text/plain"), 415, "")
			isError(t, r.do("POST", "/Users", body, "Content-Type", "application/json; charset=latin1"), 415, "")
		}},
		// 44 (RFC 7644 §3.1): Location on 201 equals meta.location.
		{"44 Location header on 201 equals meta.location", func(t *testing.T, r *rig) {
			for _, c := range []struct{ path, body string }{
				{"/Users", `{"schemas":["` + scim.UserSchema + `"],"userName":"loc@x"}`},
				{"/Groups", `{"schemas":["` + scim.GroupSchema + `"],"displayName":"Loc"}`},
			} {
				resp := r.must(201, "POST", c.path, c.body)
				if loc := resp.header.Get("Location"); loc == "" || loc != get(resp.body, "meta.location") || !strings.HasPrefix(loc, r.base()+c.path+"/") {
					t.Fatalf("Location %q, meta.location %v", loc, get(resp.body, "meta.location"))
				}
				if resp.header.Get("ETag") != get(resp.body, "meta.version") {
					t.Fatalf("ETag %q, meta.version %v", resp.header.Get("ETag"), get(resp.body, "meta.version"))
				}
			}
		}},
		// 45 (strict): malformed JSON, trailing commas, a BOM, a non-object body are 400
		// invalidSyntax.
		{"45 invalid JSON is 400 invalidSyntax", func(t *testing.T, r *rig) {
			for _, b := range []string{`{"userName":`, `{"schemas":["` + scim.UserSchema + `"],"userName":"a",}`, "\ufeff{}", `[]`, `"x"`, ``,
				`{"userName":"a","USERNAME":"b","schemas":["` + scim.UserSchema + `"]}`} {
				isError(t, r.do("POST", "/Users", b), 400, "invalidSyntax")
			}
		}},
		// 46 (lenient): a trailing slash is ignored; a filter inside attributes= is ignored.
		{"46 trailing slash and a filter inside attributes", func(t *testing.T, r *rig) {
			r.createUser("slash@x", map[string]any{"emails": []any{map[string]any{"type": "work", "value": "s@x"}}})
			resp := r.must(200, "GET", "/Users/?filter="+url.QueryEscape(`userName eq "slash@x"`)+"&attributes="+url.QueryEscape(`emails[type eq "work"]`), nil)
			expectValue(t, resp.body, "Resources.0.emails.0.value", "s@x")
			if get(resp.body, "Resources.0.userName") != nil {
				t.Fatalf("%s", resp.raw)
			}
		}},
		// 47: the handler does not rate-limit (the server's middleware does); it offers
		// WriteRateLimited for a 429 with an integer Retry-After (Okta honours only seconds).
		{"47 rate-limit answers carry an integer Retry-After", func(t *testing.T, r *rig) {
			rec := httptest.NewRecorder()
			scim.WriteRateLimited(rec, 2500*time.Millisecond)
			if rec.Code != 429 || rec.Header().Get("Retry-After") != "3" || !strings.Contains(rec.Body.String(), `"status":"429"`) {
				t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body.String())
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, base.forTenant(t))
		})
	}
}
