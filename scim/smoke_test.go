package scim_test

import (
	"net/http"
	"testing"
)

func TestSmoke(t *testing.T) {
	r := newRig(t)
	id := r.createUser("alice@x", map[string]any{"emails": []any{map[string]any{"type": "work", "value": "alice@x", "primary": true}}})
	got := r.must(200, "GET", "/Users/"+id, nil)
	t.Logf("%s", got.raw)
	l := r.must(200, "GET", `/Users?filter=userName+eq+%22ALICE@x%22`, nil)
	t.Logf("%s", l.raw)
	l = r.must(200, "GET", `/Users?filter=emails[type+eq+%22work%22+and+value+co+%22@X%22]`, nil)
	t.Logf("%s", l.raw)
	p := r.must(200, "PATCH", "/Users/"+id, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []any{map[string]any{"op": "Replace", "path": "active", "value": "False"}}})
	t.Logf("%s", p.raw)
	g := r.createGroup("Team", id)
	t.Logf("%v", r.memberIDs(g))
	r.must(http.StatusNoContent, "PATCH", "/Groups/"+g, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []any{map[string]any{"op": "Remove", "path": "members", "value": []any{map[string]any{"value": id}}}}})
	t.Logf("%v", r.memberIDs(g))
	got = r.must(200, "GET", "/Users/"+id, nil)
	t.Logf("%s", got.raw)
}
