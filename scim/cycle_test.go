package scim_test

import (
	"net/url"
	"strconv"
	"testing"
)

// The provisioning cycles as each identity provider runs them, request by request. Every
// answer is also checked by the rig for RFC 7644 shape (rfcShaped).

// rigs are the two ways the cycles run: against the SCIM handler, and against the whole
// server as `offboard serve` assembles it (token authentication, limits, admin API).
var rigs = []struct {
	name string
	new  func(testing.TB) *rig
}{{"handler", func(t testing.TB) *rig { return newRig(t) }}, {"offboard serve", newServerRig}}

func TestEntraProvisioningCycle(t *testing.T) {
	for _, rg := range rigs {
		t.Run(rg.name, func(t *testing.T) { entraCycle(t, rg.new(t)) })
	}
}

func TestOktaProvisioningCycle(t *testing.T) {
	for _, rg := range rigs {
		t.Run(rg.name, func(t *testing.T) { oktaCycle(t, rg.new(t)) })
	}
}

func entraCycle(t *testing.T, base *rig) {
	for _, mode := range []struct {
		name, flag string
		cap        func(string) string // op spelling
		falseValue any
	}{
		{"default mode", "", func(s string) string { return string(s[0]-32) + s[1:] }, "False"},
		{"aadOptscim062020 mode", "aadOptscim062020", func(s string) string { return s }, false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			r := base.forTenant(t)
			q := func(path string, params ...string) string {
				v := url.Values{}
				for i := 0; i+1 < len(params); i += 2 {
					v.Set(params[i], params[i+1])
				}
				if mode.flag != "" {
					v.Set(mode.flag, "")
				}
				if len(v) == 0 {
					return path
				}
				return path + "?" + v.Encode()
			}
			// Test connection: a random user and a random group, both absent.
			resp := r.must(200, "GET", q("/Users", "filter", `userName eq "8a1e9c7e-2c0b-4a7a-9d0c-1f0b5e3b2a11"`), nil)
			expectValue(t, resp.body, "totalResults", 0)
			r.must(200, "GET", q("/Groups", "excludedAttributes", "members", "filter", `displayName eq "0b1e9c7e-2c0b-4a7a-9d0c-1f0b5e3b2a11"`), nil)
			r.must(200, "GET", q("/Schemas"), nil)

			// Joiner: lookup, create, lookup again.
			expectValue(t, r.must(200, "GET", q("/Users", "filter", `userName eq "joy@contoso.com"`), nil).body, "totalResults", 0)
			created := r.must(201, "POST", q("/Users"), map[string]any{
				"schemas":    []string{"urn:ietf:params:scim:schemas:core:2.0:User", enterpriseURN},
				"externalId": "0a21f0f2", "userName": "joy@contoso.com", "active": true,
				"emails":      []any{map[string]any{"primary": true, "type": "work", "value": "joy@contoso.com"}},
				"meta":        map[string]any{"resourceType": "User"},
				"name":        map[string]any{"formatted": "Joy Young", "familyName": "Young", "givenName": "Joy"},
				"roles":       []any{},
				enterpriseURN: map[string]any{"department": "Sales", "employeeNumber": "701"},
			})
			id := str(created.body["id"])
			expectValue(t, r.must(200, "GET", q("/Users", "filter", `userName eq "joy@contoso.com"`), nil).body, "Resources.0.id", id)
			expectValue(t, r.must(200, "GET", q("/Users", "filter", `externalId eq "0a21f0f2"`), nil).body, "totalResults", 1)

			// Attribute changes: several operations, a manager, a work email.
			manager := r.createUser("boss@contoso.com")
			r.must(204, "PATCH", q("/Users/"+id), patch(
				op(mode.cap("replace"), "displayName", "Joy Y."),
				op(mode.cap("replace"), `emails[type eq "work"].value`, "joy.young@contoso.com"),
				op(mode.cap("replace"), "name.givenName", "Joyce"),
				op(mode.cap("add"), enterpriseURN+":manager", manager),
				op(mode.cap("replace"), enterpriseURN+":employeeNumber", "702"),
			))
			u := userAt(t, r, id)
			expectValue(t, u, "emails.0.value", "joy.young@contoso.com")
			expectValue(t, u, enterpriseURN+".manager.value", manager)
			expectValue(t, u, enterpriseURN+".department", "Sales")

			// Groups: create, add and remove members, rename.
			expectValue(t, r.must(200, "GET", q("/Groups", "excludedAttributes", "members", "filter", `displayName eq "Sales"`), nil).body, "totalResults", 0)
			g := str(r.must(201, "POST", q("/Groups"), map[string]any{
				"schemas":    []string{"urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"},
				"externalId": "8aa1a0c0", "displayName": "Sales", "meta": map[string]any{"resourceType": "Group"},
			}).body["id"])
			r.must(204, "PATCH", q("/Groups/"+g), patch(op(mode.cap("add"), "members", []any{map[string]any{"$ref": nil, "value": id}, map[string]any{"value": manager}})))
			hasMembers(t, r, g, id, manager)
			expectValue(t, userAt(t, r, id), "groups.0.display", "Sales")
			r.must(204, "PATCH", q("/Groups/"+g), patch(op(mode.cap("remove"), "members", []any{map[string]any{"value": manager}})))
			hasMembers(t, r, g, id)
			r.must(204, "PATCH", q("/Groups/"+g), patch(op(mode.cap("replace"), "displayName", "Sales EMEA")))
			expectValue(t, userAt(t, r, id), "groups.0.display", "Sales EMEA")
			expectValue(t, r.must(200, "GET", q("/Groups/"+g, "excludedAttributes", "members"), nil).body, "displayName", "Sales EMEA")

			// Leaver: disable (the user stays visible), then delete.
			r.must(204, "PATCH", q("/Users/"+id), patch(op(mode.cap("replace"), "active", mode.falseValue)))
			expectValue(t, r.must(200, "GET", q("/Users", "filter", `userName eq "joy@contoso.com"`), nil).body, "Resources.0.active", false)
			r.must(204, "DELETE", q("/Users/"+id), nil)
			isError(t, r.do("GET", q("/Users/"+id), nil), 404, "")
			hasMembers(t, r, g)
			r.must(204, "DELETE", q("/Groups/"+g), nil)
			isError(t, r.do("GET", q("/Groups/"+g), nil), 404, "")
		})
	}
}

func oktaCycle(t *testing.T, r *rig) {
	okta := []string{"User-Agent", "Okta SCIM Client 1.0.0", "Content-Type", "application/json"}
	lookup := "/Users?filter=" + url.QueryEscape(`userName eq "test.user@okta.local"`) + "&startIndex=1&count=100"

	// Assign: lookup (none), create with a placeholder password and groups: [].
	resp := r.must(200, "GET", lookup, nil, okta...)
	expectValue(t, resp.body, "totalResults", 0)
	expectValue(t, resp.body, "itemsPerPage", 0)
	created := r.must(201, "POST", "/Users", map[string]any{
		"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "test.user@okta.local",
		"name":        map[string]any{"givenName": "Test", "familyName": "User"},
		"emails":      []any{map[string]any{"primary": true, "value": "test.user@okta.local", "type": "work"}},
		"displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7", "groups": []any{}, "password": "1mz050nq", "active": true,
	}, okta...)
	id := str(created.body["id"])
	isError(t, r.do("POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "test.user@okta.local"}, okta...), 409, "uniqueness")

	// Profile push: GET, then a full PUT carrying id, meta and groups.
	u := r.must(200, "GET", "/Users/"+id, nil, okta...).body
	u["name"] = map[string]any{"givenName": "Another", "middleName": "Excited", "familyName": "User"}
	put := r.must(200, "PUT", "/Users/"+id, u, okta...)
	expectValue(t, put.body, "name.middleName", "Excited")
	expectValue(t, put.body, "active", true)

	// Deactivate and reactivate with path-less values.
	r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "", map[string]any{"active": false})), okta...)
	expectValue(t, userAt(t, r, id), "active", false)
	r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "", map[string]any{"active": true})), okta...)
	expectValue(t, userAt(t, r, id), "active", true)

	// Group push: lookup, create, rename with the id in the value, membership changes.
	other := r.createUser("other@okta.local")
	expectValue(t, r.must(200, "GET", "/Groups?filter="+url.QueryEscape(`displayName eq "Test SCIMv2"`)+"&startIndex=1&count=100", nil, okta...).body, "totalResults", 0)
	g := str(r.must(201, "POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Test SCIMv2", "members": []any{}}, okta...).body["id"])
	r.must(204, "PATCH", "/Groups/"+g, patch(op("replace", "", map[string]any{"id": g, "displayName": "Test SCIMv2"})), okta...)
	r.must(204, "PATCH", "/Groups/"+g, patch(
		op("remove", `members[value eq "89bb1940-b905-4575-9e7f-6f887cfb368e"]`, nil),
		op("add", "members", []any{map[string]any{"value": id, "display": "test.user@okta.local"}})), okta...)
	hasMembers(t, r, g, id)
	r.must(204, "PATCH", "/Groups/"+g, patch(op("replace", "members", []any{map[string]any{"value": id}, map[string]any{"value": other}})), okta...)
	hasMembers(t, r, g, id, other)
	r.must(200, "PUT", "/Groups/"+g, map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Test SCIMv2",
		"members": []any{map[string]any{"value": other, "display": "other@okta.local"}}}, okta...)
	hasMembers(t, r, g, other)
	expectValue(t, r.must(200, "GET", "/Groups/"+g, nil, okta...).body, "members.0.display", "other@okta.local")

	// Import: page through all users with startIndex += count.
	for i := 0; i < 5; i++ {
		r.createUser("import" + strconv.Itoa(i) + "@okta.local")
	}
	seen := map[string]bool{}
	for start := 1; ; start += 3 {
		page := r.must(200, "GET", "/Users?startIndex="+strconv.Itoa(start)+"&count=3", nil, okta...)
		for _, res := range asList(page.body["Resources"]) {
			seen[str(get(res, "id"))] = true
		}
		if start+3 > num(page.body["totalResults"]) {
			break
		}
	}
	if len(seen) != 7 {
		t.Fatalf("import saw %d users, want 7", len(seen))
	}

	// Unassign: Okta deactivates users (never deletes them) and deletes pushed groups.
	r.must(204, "PATCH", "/Users/"+id, patch(op("replace", "", map[string]any{"active": false})), okta...)
	r.must(204, "DELETE", "/Groups/"+g, nil, okta...)
	if groups := asList(userAt(t, r, other)["groups"]); len(groups) != 0 {
		t.Fatalf("member of a deleted group still lists it: %v", groups)
	}
}
