package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/elimity-com/scim"
	"github.com/scim2/filter-parser/v2"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// Tests of the pure parts: filter parsing, normalisation, the PATCH applier, projections.

func TestFilterParsing(t *testing.T) {
	valid := map[string]string{
		`userName eq "a"`:                       `userName eq "a"`,
		`USERNAME EQ "a"`:                       `userName eq "a"`,
		`name.FamilyName eq Employee`:           `name.familyName eq "Employee"`,
		`emails[type eq "work"].value eq "u@x"`: `emails[type eq "work" and value eq "u@x"]`,
		`emails[type eq "work" and value co "@" and primary eq true]`:                      `emails[type eq "work" and value co "@" and primary eq true]`,
		`a eq 1 or b eq 2 and c eq 3`:                                                      ``, // unknown attributes: parsed, refused on resolving
		`not(active eq true)`:                                                              `not(active eq true)`,
		`meta.lastModified gt 2015-10-10T14:38:21.8617979-07:00`:                           `meta.lastModified gt "2015-10-10T14:38:21.8617979-07:00"`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:EMPLOYEENUMBER eq "1"`: `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1"`,
		`manager.value eq "x"`:                                                             `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x"`,
		`displayName eq "\u00e9\"\\"`:                                                      `displayName eq "é\"\\"`,
		`title eq null`:                                                                    `title eq <nil>`,
		`title eq 1.5e3`:                                                                   `title eq 1500`,
	}
	for in, want := range valid {
		e, err := parseFilter(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if want == "" {
			continue
		}
		if err := userSchema.canonical(e, nil); err != nil {
			t.Errorf("%s: resolve: %v", in, err)
			continue
		}
		if got := strings.ReplaceAll(exprString(e), "\\\\", "\\"); got != want && exprString(e) != want {
			t.Errorf("%s: %s, want %s", in, exprString(e), want)
		}
	}
	for _, in := range []string{``, `  `, `userName`, `userName eq`, `userName xx "a"`, `(userName eq "a"`, `userName eq "a")`, `emails[type eq "a"`,
		`emails[type eq "a"]]`, `emails[a[b eq "c"]]`, `not userName eq "a"`, `userName eq "a" and`, `"a" eq userName`, `user$name eq "a"`,
		`userName eq "\x"`, strings.Repeat("(", 17) + `a eq "b"` + strings.Repeat(")", 17), strings.Repeat("a", MaxFilterLength+1)} {
		if _, err := parseFilter(in); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
	for _, in := range []string{`nosuch eq "a"`, `name.nosuch eq "a"`, `emails[nosuch eq "a"]`, `userName[value eq "a"]`, `urn:x:userName eq "a"`} {
		if _, err := resolveFilter(in, userSchema); err == nil {
			t.Errorf("%q resolved", in)
		}
	}
}

// exprString prints an expression with filter-parser's String methods.
func exprString(e filter.Expression) string {
	switch x := e.(type) {
	case *filter.AttributeExpression:
		if x.CompareValue == nil && x.Operator != filter.PR {
			return x.AttributePath.String() + " " + string(x.Operator) + " <nil>"
		}
		return x.String()
	case *filter.LogicalExpression:
		return exprString(x.Left) + " " + string(x.Operator) + " " + exprString(x.Right)
	case *filter.NotExpression:
		return "not(" + exprString(x.Expression) + ")"
	case *filter.ValuePath:
		return x.AttributePath.String() + "[" + exprString(x.ValueFilter) + "]"
	}
	return "?"
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `emails[type eq "work"].value eq "u@x"`, `not (a pr) or (b gt 1 and c le "x")`,
		`meta.lastModified gt 2015-10-10T14:38:21.8617979-07:00`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x"`,
		`members[value eq "a" or value eq "b"]`, `displayName eq "\"\\\u00e9"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseFilter(s)
		if err != nil {
			return
		}
		for _, rs := range []*resourceSchema{userSchema, groupSchema} {
			_ = rs.canonical(e, nil)
		}
	})
}

func TestNormalizeResource(t *testing.T) {
	in := map[string]any{
		"SCHEMAS":    []any{UserSchema, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User", "http://x"},
		"UserName":   "u",
		"ACTIVE":     "False",
		"department": "Sales",
		"title":      nil,
		"nickName":   "",
		"emails":     map[string]any{"VALUE": "a@x", "Primary": "true", "bogus": 1},
		"meta":       map[string]any{"resourceType": "User"},
		"id":         "client-id",
		"groups":     []any{},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0User": map[string]any{"Manager": []any{map[string]any{"value": "m", "$ref": "x"}}},
		EnterpriseSchema + ":costCenter":                            "42",
		"unknown":                                                   "x",
		"addresses":                                                 nil,
	}
	got, err := normalizeResource(in, userSchema)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"schemas":        []any{UserSchema, EnterpriseSchema},
		"userName":       "u",
		"active":         false,
		"emails":         []any{map[string]any{"value": "a@x", "primary": true}},
		EnterpriseSchema: map[string]any{"department": "Sales", "manager": map[string]any{"value": "m"}, "costCenter": "42"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if _, err := normalizeResource(map[string]any{"userName": "u"}, userSchema); err == nil {
		t.Fatal("no schemas accepted")
	}
	if _, err := normalizeResource(map[string]any{"schemas": []any{UserSchema}, "title": "a", "Title": "b"}, userSchema); err == nil {
		t.Fatal("duplicate attribute accepted")
	}
}

func TestNormalizePatch(t *testing.T) {
	body := map[string]any{
		"schemas": []any{PatchOpSchema},
		"operations": []any{
			map[string]any{"Op": "Replace", "Path": "active", "Value": "False"},
			map[string]any{"op": "add", "path": "manager", "value": "m1"},
			map[string]any{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:NAME.givenName", "value": "G"},
			map[string]any{"op": "replace", "value": map[string]any{"id": "x", "displayName": nil, "name.familyName": "F", EnterpriseSchema: map[string]any{"department": "D"}}},
			map[string]any{"op": "replace", "path": "title", "value": ""},
			map[string]any{"op": "Remove", "path": "emails", "value": []any{map[string]any{"$ref": nil}}},
			map[string]any{"op": "Remove", "path": `EMAILS[type eq "work"].VALUE`},
		},
	}
	ops, err := normalizePatch(body, userSchema)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(ops)
	want := `[{"op":"replace","path":"active","value":false},` +
		`{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":{"value":"m1"}},` +
		`{"op":"replace","path":"name.givenName","value":"G"},` +
		`{"op":"replace","value":{"name.familyName":"F","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"D"}},` +
		`{"op":"remove","path":"displayName"},` +
		`{"op":"remove","path":"title"},` +
		`{"op":"remove","path":"emails[type eq \"work\"].value"}]`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u","emails":[{"value":"a","primary":"True"}],"manager":[{"value":"m"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","value":{"name.givenName":"x","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":null}}]}`,
		`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"g","members":["a",{"value":"b","displayName":"B","$ref":null}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"x\"]"},{"op":"add","path":"members","value":"y"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body map[string]any
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if d.Decode(&body) != nil {
			return
		}
		for _, rs := range []*resourceSchema{userSchema, groupSchema} {
			if out, err := normalizeResource(body, rs); err == nil {
				again, err := normalizeResource(roundTrip(t, out), rs)
				if err != nil || !reflect.DeepEqual(roundTrip(t, again), roundTrip(t, out)) {
					t.Fatalf("not idempotent: %v\n%v\n%v", err, out, again)
				}
			}
			if ops, err := normalizePatch(body, rs); err == nil && len(ops) > 0 {
				again, err := normalizePatch(roundTrip(t, map[string]any{"schemas": []any{PatchOpSchema}, "Operations": ops}), rs)
				if err != nil || !bytes.Equal(canonicalJSON(again), canonicalJSON(ops)) {
					t.Fatalf("PATCH not idempotent: %v\n%s\n%s", err, canonicalJSON(ops), canonicalJSON(again))
				}
			}
		}
	})
}

func roundTrip(t *testing.T, v any) map[string]any {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(canonicalJSON(v)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// toOperations builds operations as the library passes them (paths parsed), without its
// validation: the applier must be safe on any value.
func toOperations(norm []patchOp) []scim.PatchOperation {
	var out []scim.PatchOperation
	for _, o := range norm {
		op := scim.PatchOperation{Op: o.Op, Value: o.Value}
		if o.Path != "" {
			p, err := filter.ParsePath([]byte(o.Path))
			if err != nil {
				continue
			}
			op.Path = &p
		}
		out = append(out, op)
	}
	return out
}

func TestApplyPatch(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"userName": "u", "active": true,
			"name":           map[string]any{"givenName": "G", "familyName": "F"},
			"emails":         []any{map[string]any{"type": "work", "value": "w@x", "primary": true}, map[string]any{"type": "home", "value": "h@x"}},
			EnterpriseSchema: map[string]any{"department": "D", "manager": map[string]any{"value": "m"}},
		}
	}
	cases := []struct {
		name, body string
		check      func(map[string]any) bool
		err        string
	}{
		{"replace of a complex attribute merges sub-attributes", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"name","value":{"givenName":"X"}}]}`,
			func(m map[string]any) bool {
				return get(m, "name.givenName") == "X" && get(m, "name.familyName") == "F"
			}, ""},
		{"add of a primary email clears the old primary", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[{"value":"n@x","primary":true}]}]}`,
			func(m map[string]any) bool {
				return len(m["emails"].([]any)) == 3 && get(m, "emails.0.primary") == nil && get(m, "emails.2.primary") == true
			}, ""},
		{"add of a present value changes nothing", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails","value":[{"value":"w@x","type":"work","primary":true}]}]}`,
			func(m map[string]any) bool { return len(m["emails"].([]any)) == 2 }, ""},
		{"remove of the last sub-attribute removes the attribute", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"manager.value"}]}`,
			func(m map[string]any) bool {
				return get(m, EnterpriseSchema+".manager") == nil && get(m, EnterpriseSchema+".department") == "D"
			}, ""},
		{"remove of a whole extension attribute set leaves no empty extension", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"department"},{"op":"remove","path":"manager"}]}`,
			func(m map[string]any) bool { _, ok := m[EnterpriseSchema]; return !ok }, ""},
		{"replace of emails[type eq work] merges into the match", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[type eq \"work\"]","value":{"value":"n@x"}}]}`,
			func(m map[string]any) bool {
				return get(m, "emails.0.value") == "n@x" && get(m, "emails.0.type") == "work"
			}, ""},
		{"remove of emails.value without a filter removes it from every element", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"emails.value"}]}`,
			func(m map[string]any) bool {
				return get(m, "emails.0.value") == nil && get(m, "emails.1.type") == "home"
			}, ""},
		{"value filters compare case-insensitively where caseExact is false", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"emails[value eq \"W@X\"]"}]}`,
			func(m map[string]any) bool { return len(m["emails"].([]any)) == 1 }, ""},
		{"a filter with not selects elements", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails[not (type eq \"work\")].display","value":"D"}]}`,
			func(m map[string]any) bool {
				return get(m, "emails.1.display") == "D" && get(m, "emails.0.display") == nil
			}, ""},
		{"a read-only path is a mutability error", `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails","value":[]},{"op":"remove","path":"groups"}]}`, nil, "mutability"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := base()
			var m map[string]any
			_ = json.Unmarshal([]byte(c.body), &m)
			norm, err := normalizePatch(m, userSchema)
			if err == nil {
				err = applyPatch(userSchema, res, toOperations(norm))
			}
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("%v, want %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(res) {
				t.Fatalf("got %v", res)
			}
		})
	}
}

func get(v any, path string) any {
	for path != "" {
		m, ok := v.(map[string]any)
		if l, isList := v.([]any); isList {
			i := int(path[0] - '0')
			if i >= len(l) {
				return nil
			}
			v, path = l[i], strings.TrimPrefix(path[1:], ".")
			continue
		}
		if !ok {
			return nil
		}
		found := false
		for k, e := range m {
			if path == k || strings.HasPrefix(path, k+".") {
				v, path, found = e, strings.TrimPrefix(strings.TrimPrefix(path, k), "."), true
				break
			}
		}
		if !found {
			return nil
		}
	}
	return v
}

// fakeStores answer "not found" to everything (the fuzzer's PATCH plans add nobody).
type fakeStores struct{ GroupStore }

func (fakeStores) GetUser(context.Context, string, string) (*identity.Employee, error) {
	return nil, identity.ErrNotFound
}
func (fakeStores) GetGroup(context.Context, string, string) (*identity.Group, error) {
	return nil, identity.ErrNotFound
}
func (fakeStores) IsMember(context.Context, string, string) (bool, error) { return true, nil }
func (fakeStores) GroupMembers(context.Context, string, *identity.Group) ([]identity.Member, error) {
	return []identity.Member{{Value: "a", Type: "User", Display: "A"}}, nil
}
func (fakeStores) CreateUser(context.Context, string, string, lifecycle.UserInput) (*identity.Employee, error) {
	return nil, identity.ErrNotFound
}
func (fakeStores) UpdateUser(context.Context, string, string, string, *int64, lifecycle.Mutation) (*identity.Employee, error) {
	return nil, identity.ErrNotFound
}
func (fakeStores) DeleteUser(context.Context, string, string, string, *int64) error { return nil }

func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"x"},{"op":"add","value":{"name.givenName":"G","active":"False"}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"a\"]"},{"op":"add","path":"members","value":[{"value":"b"}]},{"op":"replace","path":"displayName","value":"D"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members","value":[{"value":"a"}]},{"op":"replace","path":"members","value":[]}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"manager","value":[{"value":"m"}]},{"op":"remove","path":"addresses[type eq \"work\" and primary eq true].country"}]}`,
	} {
		f.Add([]byte(s))
	}
	stores := fakeStores{}
	rq := &request{h: &Handler{cfg: Config{Users: stores, Groups: stores, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}, p: Principal{Tenant: "t"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body map[string]any
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if d.Decode(&body) != nil {
			return
		}
		if norm, err := normalizePatch(body, userSchema); err == nil {
			res := map[string]any{"userName": "u", "active": true, "emails": []any{map[string]any{"type": "work", "value": "w"}},
				"name": map[string]any{"givenName": "g"}, EnterpriseSchema: map[string]any{"manager": map[string]any{"value": "m"}}}
			if applyPatch(userSchema, res, toOperations(norm)) == nil {
				_, _ = storageAttrs(res, userSchema)
				_, _ = toInput(res, nil)
			}
		}
		if norm, err := normalizePatch(body, groupSchema); err == nil {
			g := &identity.Group{ID: "g", DisplayName: "G", MemberCount: 1}
			plan := newMemberPlan(context.Background(), rq, g)
			if applyGroupPatch(g, plan, toOperations(norm)) == nil {
				_, _ = plan.change()
			}
		}
	})
}

func TestProjection(t *testing.T) {
	wire := map[string]any{
		"id": "1", "schemas": []any{UserSchema}, "meta": map[string]any{}, "userName": "u", "title": "T",
		"name":           map[string]any{"givenName": "G", "familyName": "F"},
		"emails":         []any{map[string]any{"value": "a", "type": "work"}, map[string]any{"value": "b"}},
		EnterpriseSchema: map[string]any{"department": "D", "employeeNumber": "1"},
		"password":       "never",
	}
	for _, c := range []struct{ attrs, excluded, want string }{
		{"userName", "", `{"id":"1","meta":{},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"u"}`},
		{"NAME.givenName,emails.type", "", `{"emails":[{"type":"work"}],"id":"1","meta":{},"name":{"givenName":"G"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}`},
		{EnterpriseSchema, "", `{"id":"1","meta":{},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"D","employeeNumber":"1"}}`},
		{"", "title,name.familyName,emails,department,id,meta", `{"id":"1","meta":{},"name":{"givenName":"G"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"1"},"userName":"u"}`},
		{`emails[type eq "work"],nosuch`, "", `{"emails":[{"type":"work","value":"a"},{"value":"b"}],"id":"1","meta":{},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}`},
	} {
		got, _ := json.Marshal(parseProjection(userSchema, c.attrs, c.excluded).apply(userSchema, wire))
		if string(got) != c.want {
			t.Errorf("attributes=%q excludedAttributes=%q:\n got  %s\n want %s", c.attrs, c.excluded, got, c.want)
		}
	}
}

func BenchmarkParseFilter(b *testing.B) {
	for _, f := range []string{`userName eq "bjensen@example.com"`,
		`name.familyName eq "Employee" and (emails.value co "example.com" or emails.value co "example.org")`,
		`emails[type eq "work"].value eq "u@x"`} {
		b.Run(f, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := resolveFilter(f, userSchema); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkApplyPatch(b *testing.B) {
	// Entra's multi-operation PATCH (E14) on a typical user, normalised as the handler does.
	var body map[string]any
	_ = json.Unmarshal([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
		{"op":"Replace","path":"displayName","value":"Pvlo"},
		{"op":"Replace","path":"emails[type eq \"work\"].value","value":"TestBcwqnm@test.microsoft.com"},
		{"op":"Replace","path":"name.givenName","value":"Gtfd"},
		{"op":"Replace","path":"name.familyName","value":"Pkqf"},
		{"op":"Replace","path":"externalId","value":"Eqpj"},
		{"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"Eqpj"}]}`), &body)
	norm, err := normalizePatch(body, userSchema)
	if err != nil {
		b.Fatal(err)
	}
	ops := toOperations(norm)
	e := &identity.Employee{UserName: "u@x", Active: true, Resource: map[string]any{
		"userName": "u@x", "displayName": "U", "name": map[string]any{"givenName": "G", "familyName": "F"},
		"emails":     []any{map[string]any{"type": "work", "value": "u@x", "primary": true}, map[string]any{"type": "home", "value": "h@x"}},
		"enterprise": map[string]any{"department": "D", "employeeNumber": "1"}}}
	b.Run("applier", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			res := wireAttrs(e.Resource)
			if err := applyPatch(userSchema, res, ops); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("normalise, apply and convert for storage", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := normalizePatch(body, userSchema); err != nil {
				b.Fatal(err)
			}
			cp := *e
			if _, err := patchUser(&cp, ops); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("the library's path parsing of the same operations (filter.ParsePath)", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			toOperations(norm)
		}
	})
}
