package scim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/offboard/offboard/scim"
)

func TestVersionsAndPreconditions(t *testing.T) {
	base := newRig(t)
	t.Run("the ETag is meta.version and changes with every change of the resource", func(t *testing.T) {
		r := base.forTenant(t)
		id := r.createUser("etag@x")
		first := r.must(200, "GET", "/Users/"+id, nil)
		same := r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "userName", "etag@x")))
		if same.header.Get("ETag") != first.header.Get("ETag") {
			t.Fatal("a PATCH that changed nothing changed the version")
		}
		changed := r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "title", "T")))
		if changed.header.Get("ETag") == first.header.Get("ETag") || !strings.HasPrefix(changed.header.Get("ETag"), `W/"`) {
			t.Fatalf("ETag %q after a change, %q before", changed.header.Get("ETag"), first.header.Get("ETag"))
		}
	})
	t.Run("If-None-Match with the current version is 304, with an old one 200", func(t *testing.T) {
		r := base.forTenant(t)
		id := r.createUser("inm@x")
		tag := r.must(200, "GET", "/Users/"+id, nil).header.Get("ETag")
		r.must(http.StatusNotModified, "GET", "/Users/"+id, nil, "If-None-Match", tag)
		r.must(http.StatusNotModified, "GET", "/Users/"+id, nil, "If-None-Match", `W/"0", `+tag)
		r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "title", "T")))
		r.must(200, "GET", "/Users/"+id, nil, "If-None-Match", tag)
		g := r.createGroup("INM")
		gtag := r.must(200, "GET", "/Groups/"+g, nil).header.Get("ETag")
		r.must(http.StatusNotModified, "GET", "/Groups/"+g, nil, "If-None-Match", gtag)
	})
	t.Run("a renamed user is shown under its new name in its groups, whose version changes", func(t *testing.T) {
		r := base.forTenant(t)
		id := r.createUser("rename@x")
		other := r.createUser("other@x", map[string]any{"displayName": "Other"})
		g := r.createGroup("Renamed", id, other)
		display := func() map[string]string {
			out := map[string]string{}
			for _, m := range asList(r.must(200, "GET", "/Groups/"+g, nil).body["members"]) {
				out[str(get(m, "value"))] = str(get(m, "display"))
			}
			return out
		}
		if d := display(); d[id] != "rename@x" || d[other] != "Other" {
			t.Fatalf("displays %v", d)
		}
		tag := r.must(200, "GET", "/Groups/"+g, nil).header.Get("ETag")
		r.must(204, "PATCH", "/Users/"+id, patch(op("Replace", "displayName", "Renée Renamed")))
		if d := display(); d[id] != "Renée Renamed" || d[other] != "Other" {
			t.Fatalf("displays after displayName: %v", d)
		}
		r.must(200, "GET", "/Groups/"+g, nil, "If-None-Match", tag) // not 304: the members changed
		r.must(200, "PUT", "/Users/"+other, map[string]any{"schemas": []string{scim.UserSchema}, "userName": "other.new@x"})
		if d := display(); d[other] != "other.new@x" {
			t.Fatalf("displays after a PUT without displayName: %v", d)
		}
		tag = r.must(200, "GET", "/Groups/"+g, nil).header.Get("ETag")
		r.must(204, "PATCH", "/Users/"+id, patch(op("Replace", "title", "T")))
		r.must(http.StatusNotModified, "GET", "/Groups/"+g, nil, "If-None-Match", tag) // no rename, no new version
	})
	t.Run("If-Match with an old version is 412 for PUT, PATCH and DELETE of users and groups", func(t *testing.T) {
		r := base.forTenant(t)
		id := r.createUser("im@x")
		old := r.must(200, "GET", "/Users/"+id, nil).header.Get("ETag")
		cur := r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "title", "T")), "If-Match", old).header.Get("ETag")
		isError(t, r.do("PATCH", "/Users/"+id, patch(op("replace", "title", "U")), "If-Match", old), 412, "")
		isError(t, r.do("PUT", "/Users/"+id, map[string]any{"schemas": []string{scim.UserSchema}, "userName": "im@x"}, "If-Match", old), 412, "")
		isError(t, r.do("DELETE", "/Users/"+id, nil, "If-Match", old), 412, "")
		isError(t, r.do("DELETE", "/Users/"+id, nil, "If-Match", `"garbage"`), 412, "")
		expectValue(t, userAt(t, r, id), "title", "T")
		r.must(204, "DELETE", "/Users/"+id, nil, "If-Match", cur)

		g := r.createGroup("IM")
		gold := r.must(200, "GET", "/Groups/"+g, nil).header.Get("ETag")
		r.must(204, "PATCH", "/Groups/"+g, patch(op("replace", "displayName", "IM2")), "If-Match", gold)
		isError(t, r.do("PATCH", "/Groups/"+g, patch(op("replace", "displayName", "IM3")), "If-Match", gold), 412, "")
		isError(t, r.do("PUT", "/Groups/"+g, map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": "IM4"}, "If-Match", gold), 412, "")
		isError(t, r.do("DELETE", "/Groups/"+g, nil, "If-Match", gold), 412, "")
		r.must(204, "DELETE", "/Groups/"+g, nil, "If-Match", "*")
	})
}

func TestEndpointsAndMethods(t *testing.T) {
	base := newRig(t)
	t.Run("unknown endpoints are 404 and wrong methods 405, both with SCIM bodies", func(t *testing.T) {
		r := base.forTenant(t)
		isError(t, r.do("GET", "/Nope", nil), 404, "")
		isError(t, r.do("GET", "/Users/a/b", nil), 404, "")
		resp := r.do("DELETE", "/Users", nil)
		isError(t, resp, 405, "")
		if resp.header.Get("Allow") != "GET, POST" {
			t.Fatalf("Allow %q", resp.header.Get("Allow"))
		}
		isError(t, r.do("POST", "/ServiceProviderConfig", "{}"), 405, "")
		isError(t, r.do("GET", "/Users/.search", nil), 405, "")
		isError(t, r.do("POST", "/Users/x", "{}"), 405, "")
		isError(t, r.do("GET", "/Bulk", nil), 501, "")
		isError(t, r.do("GET", "/Me", nil), 501, "")
		isError(t, r.do("GET", "/", nil), 501, "")
		isError(t, r.do("GET", "/Users/missing", nil), 404, "")
		isError(t, r.do("PATCH", "/Users/missing", patch(op("replace", "title", "x"))), 404, "")
		isError(t, r.do("PUT", "/Groups/missing", map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": "x"}), 404, "")
		isError(t, r.do("DELETE", "/Groups/missing", nil), 404, "")
	})
	t.Run("endpoint names match in any case", func(t *testing.T) {
		r := base.forTenant(t)
		r.must(200, "GET", "/users", nil)
		r.must(200, "GET", "/serviceproviderconfig", nil)
	})
	t.Run("bodies over the limit are 413", func(t *testing.T) {
		r := newRig(t, func(c *scim.Config) { c.MaxBody = 1024 })
		body := `{"schemas":["` + scim.UserSchema + `"],"userName":"big@x","title":"` + strings.Repeat("x", 2000) + `"}`
		isError(t, r.do("POST", "/Users", body), 413, "")
		// A chunked body without Content-Length is cut off at the limit too.
		req, _ := http.NewRequest("POST", r.base()+"/Users", struct{ *strings.Reader }{strings.NewReader(body)})
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Set("Content-Type", scim.ContentType)
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("chunked: %d", resp.StatusCode)
		}
	})
	t.Run("POST /.search answers like GET with a query", func(t *testing.T) {
		r := base.forTenant(t)
		r.createUser("s1@x", map[string]any{"title": "A"})
		r.createUser("s2@x", map[string]any{"title": "B"})
		resp := r.must(200, "POST", "/Users/.search", map[string]any{
			"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:SearchRequest"}, "filter": `title eq "B"`,
			"attributes": []string{"userName"}, "startIndex": 1, "count": 10, "sortBy": "userName",
		})
		expectValue(t, resp.body, "totalResults", 1)
		expectValue(t, resp.body, "Resources.0.userName", "s2@x")
		if get(resp.body, "Resources.0.title") != nil {
			t.Fatalf("attributes ignored: %s", resp.raw)
		}
		isError(t, r.do("POST", "/Users/.search", map[string]any{"filter": "title eq"}), 400, "invalidFilter")
		isError(t, r.do("POST", "/Users/.search", map[string]any{"sortOrder": "sideways"}), 400, "invalidValue")
	})
	t.Run("a request without a principal is 401", func(t *testing.T) {
		h := scim.NewHandler(scim.Config{BaseURL: func(string) string { return "http://x" }})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/Users", nil))
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"status":"401"`) {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
}

func TestDiscovery(t *testing.T) {
	r := newRig(t)
	t.Run("the service provider config advertises exactly what is supported", func(t *testing.T) {
		spc := r.must(200, "GET", "/ServiceProviderConfig", nil).body
		for path, want := range map[string]any{
			"patch.supported": true, "bulk.supported": false, "filter.supported": true, "filter.maxResults": scim.DefaultMaxResults,
			"changePassword.supported": false, "sort.supported": true, "etag.supported": true,
			"authenticationSchemes.0.type": "oauthbearertoken", "schemas.0": "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig",
		} {
			expectValue(t, spc, path, want)
		}
	})
	t.Run("schemas and resource types list what is served, by id too", func(t *testing.T) {
		rt := r.must(200, "GET", "/ResourceTypes", nil).body
		expectValue(t, rt, "totalResults", 2)
		expectValue(t, rt, "Resources.0.endpoint", "/Users")
		expectValue(t, rt, "Resources.0.schemaExtensions.0.schema", enterpriseURN)
		expectValue(t, r.must(200, "GET", "/ResourceTypes/Group", nil).body, "schema", scim.GroupSchema)
		isError(t, r.do("GET", "/ResourceTypes/Device", nil), 404, "")
		s := r.must(200, "GET", "/Schemas/"+url.PathEscape(enterpriseURN), nil).body
		expectValue(t, s, "id", enterpriseURN)
		expectValue(t, s, "attributes.5.name", "manager")
		isError(t, r.do("GET", "/Schemas/urn:nope", nil), 404, "")
	})
}

func TestTenantsSeeOnlyTheirOwnData(t *testing.T) {
	base := newRig(t)
	a, b := base.forTenant(t), base.forTenant(t)
	u := a.createUser("shared@x", map[string]any{"externalId": "ext"})
	g := a.createGroup("Shared", u)
	for _, c := range []struct{ method, path string }{
		{"GET", "/Users/" + u}, {"DELETE", "/Users/" + u}, {"GET", "/Groups/" + g}, {"DELETE", "/Groups/" + g},
	} {
		isError(t, b.do(c.method, c.path, nil), 404, "")
	}
	isError(t, b.do("PATCH", "/Users/"+u, patch(op("replace", "active", false))), 404, "")
	isError(t, b.do("PATCH", "/Groups/"+g, patch(op("add", "members", []any{map[string]any{"value": u}}))), 404, "")
	for _, f := range []string{`userName eq "shared@x"`, `externalId eq "ext"`, `id eq "` + u + `"`, `userName sw "sh"`} {
		if n := b.total(f); n != 0 {
			t.Fatalf("tenant B found %d with %s", n, f)
		}
	}
	if n := num(b.must(200, "GET", "/Groups?filter="+url.QueryEscape(`displayName eq "Shared"`), nil).body["totalResults"]); n != 0 {
		t.Fatalf("tenant B found A's group")
	}
	if n := num(b.must(200, "GET", "/Groups?filter="+url.QueryEscape(`members.value eq "`+u+`"`), nil).body["totalResults"]); n != 0 {
		t.Fatalf("tenant B found A's group by member")
	}
	// Tenant B may use the same names.
	b.createUser("shared@x")
	b.createGroup("Shared")
	expectValue(t, a.must(200, "GET", "/Users/"+u, nil).body, "active", true)
	_ = context.Background()
}

func TestEveryServedAttributeIsFilterable(t *testing.T) {
	// The store's allow-list is transcribed from the schemas served; this keeps them in step:
	// every attribute of /Schemas can be filtered with pr, except the ones that are not stored
	// (returned never, derived references).
	r := newRig(t)
	notFilterable := map[string]bool{
		"password": true, "groups.display": true, "groups.$ref": true, "manager.$ref": true, "manager.displayName": true,
		"members.$ref": true,
	}
	schemas := r.must(200, "GET", "/Schemas", nil).body
	for _, s := range asList(schemas["Resources"]) {
		id := str(get(s, "id"))
		endpoint := "/Users"
		if id == scim.GroupSchema {
			endpoint = "/Groups"
		}
		prefix := ""
		if strings.Contains(id, ":extension:") {
			prefix = id + ":"
		}
		for _, a := range asList(get(s, "attributes")) {
			name := str(get(a, "name"))
			paths := []string{name}
			for _, sub := range asList(get(a, "subAttributes")) {
				paths = append(paths, name+"."+str(get(sub, "name")))
			}
			for _, p := range paths {
				resp := r.do("GET", endpoint+"?filter="+url.QueryEscape(prefix+p+" pr"), nil)
				if notFilterable[p] {
					isError(t, resp, 400, "invalidFilter")
					continue
				}
				if resp.status != 200 {
					t.Errorf("%s%s pr: %d %s", prefix, p, resp.status, resp.raw)
				}
			}
		}
	}
	for _, p := range []string{"id", "externalId", "meta.created", "meta.lastModified", "meta.resourceType"} {
		r.must(200, "GET", "/Users?filter="+url.QueryEscape(p+" pr"), nil)
		r.must(200, "GET", "/Groups?filter="+url.QueryEscape(p+" pr"), nil)
	}
}

// TestPatchValueFiltersBeyondTheLibrarysGrammar: RFC 7644 §3.5.2 allows any valFilter in a
// PATCH path; the library's path parser takes one and/or and no parentheses. These paths are
// read by our own filter parser (valuefilter.go) and must act exactly as a list filter would.
func TestPatchValueFiltersBeyondTheLibrarysGrammar(t *testing.T) {
	base := newRig(t)
	emails := []any{
		map[string]any{"type": "work", "value": "w1@corp.example", "primary": true},
		map[string]any{"type": "work", "value": "w2@other.example"},
		map[string]any{"type": "home", "value": `h\o"me@x.example`},
		map[string]any{"type": "other", "value": "o@x.example"},
	}
	values := func(r *rig, id string) []string {
		var out []string
		for _, e := range asList(userAt(t, r, id)["emails"]) {
			out = append(out, str(get(e, "type"))+"="+str(get(e, "value")))
		}
		return out
	}
	t.Run("three terms joined by and select one element", func(t *testing.T) {
		r := base.forTenant(t)
		id := r.createUser("and3@x", map[string]any{"emails": emails})
		r.must(204, "PATCH", "/Users/"+id, patch(op("replace", `emails[type eq "work" and primary eq true and value co "@corp."].value`, "new@corp.example")))
		if got := strings.Join(values(r, id), " "); got != `work=new@corp.example work=w2@other.example home=h\o"me@x.example other=o@x.example` {
			t.Fatalf("emails %s", got)
		}
	})
	t.Run("parentheses, or chains and escaped strings", func(t *testing.T) {
		r := base.forTenant(t)
		id := r.createUser("paren@x", map[string]any{"emails": emails})
		r.must(204, "PATCH", "/Users/"+id, patch(op("remove", `emails[(type eq "home" and value eq "h\\o\"me@x.example") or (type eq "other")]`, nil)))
		if got := strings.Join(values(r, id), " "); got != "work=w1@corp.example work=w2@other.example" {
			t.Fatalf("emails %s", got)
		}
		r.must(204, "PATCH", "/Users/"+id, patch(op("remove", `emails[not (value ew "@corp.example") and type eq "work"]`, nil)))
		if got := strings.Join(values(r, id), " "); got != "work=w1@corp.example" {
			t.Fatalf("emails %s", got)
		}
	})
	t.Run("members removed by an or chain of values, others kept", func(t *testing.T) {
		r := base.forTenant(t)
		a, b, c, d := r.createUser("a@x"), r.createUser("b@x"), r.createUser("c@x"), r.createUser("d@x")
		g := r.createGroup("Chain", a, b, c, d)
		r.must(204, "PATCH", "/Groups/"+g, patch(op("remove", `members[value eq "`+a+`" or value eq "`+c+`" or value eq "`+d+`"]`, nil)))
		if got := r.memberIDs(g); len(got) != 1 || got[0] != b {
			t.Fatalf("members %v, want only %s", got, b)
		}
	})
	t.Run("an unknown sub-attribute or a nested value path is invalidFilter", func(t *testing.T) {
		r := base.forTenant(t)
		id := r.createUser("bad@x", map[string]any{"emails": emails})
		isError(t, r.do("PATCH", "/Users/"+id, patch(op("remove", `emails[type eq "work" and colour eq "red" and value pr]`, nil))), 400, "invalidFilter")
		isError(t, r.do("PATCH", "/Users/"+id, patch(op("remove", `emails[type eq "work" and (emails[value pr])]`, nil))), 400, "")
		if n := len(values(r, id)); n != 4 {
			t.Fatalf("a refused PATCH changed the user: %d emails", n)
		}
	})
}
