package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/offboard/offboard/internal/testenv"
)

// newToken creates a token of scope in the tenant as the operator and returns it and its id.
func newToken(t *testing.T, tn *testenv.Tenant, scope string) (plain, id string) {
	t.Helper()
	r := tn.Admin("POST", "/tokens", map[string]any{"scope": scope})
	if r.Status != http.StatusCreated {
		t.Fatalf("create %s token: %d %s", scope, r.Status, r.Raw)
	}
	return r.JSON["token"].(string), r.JSON["id"].(string)
}

func TestEachTokenScopeOpensOnlyItsOwnAPI(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Server: behindProxy})
	acme := env.CreateTenant("acme", 10)
	beta := env.CreateTenant("beta", 10)
	msg, _ := newToken(t, acme, "messenger")
	adm, _ := newToken(t, acme, "admin")

	// One representative request per API; "ok" is the status an authorised caller gets.
	apis := []struct {
		name   string
		method string
		path   string
		ok     int
	}{
		{"SCIM", "GET", "/scim/v2/" + acme.ID + "/Users", 200},
		{"admin", "GET", "/admin/v1/tenants/" + acme.ID, 200},
		{"messenger", "GET", "/messenger/v1/ids/AAAAAAAA", 404}, // authorised; the ID was never issued
	}
	tokens := []struct {
		name  string
		token string
		opens map[string]bool
	}{
		{"scim", acme.SCIMToken, map[string]bool{"SCIM": true}},
		{"messenger", msg, map[string]bool{"messenger": true}},
		{"tenant admin", adm, map[string]bool{"admin": true}},
		{"operator", testenv.AdminToken, map[string]bool{"admin": true}},
	}
	for _, tok := range tokens {
		for _, api := range apis {
			t.Run(tok.name+" token on the "+api.name+" API", func(t *testing.T) {
				r := env.Do(api.method, api.path, tok.token, nil, freshClient()...)
				want := http.StatusUnauthorized
				if tok.opens[api.name] {
					want = api.ok
				}
				if r.Status != want {
					t.Fatalf("%s %s: %d, want %d: %s", api.method, api.path, r.Status, want, r.Raw)
				}
			})
		}
	}

	t.Run("a token re-prefixed to another scope is refused", func(t *testing.T) {
		for _, forged := range []string{"oba_" + acme.SCIMToken[4:], "obm_" + acme.SCIMToken[4:], "obs_" + adm[4:]} {
			for _, api := range apis {
				if r := env.Do(api.method, api.path, forged, nil, freshClient()...); r.Status != 401 {
					t.Errorf("forged %s… on %s: %d", forged[:4], api.name, r.Status)
				}
			}
		}
	})
	t.Run("a tenant admin token reaches only its own tenant", func(t *testing.T) {
		if r := env.Do("GET", "/admin/v1/tenants/"+acme.ID+"/seats", adm, nil); r.Status != 200 {
			t.Fatalf("own seats: %d %s", r.Status, r.Raw)
		}
		if r := env.Do("GET", "/admin/v1/tenants/acme/seats", adm, nil); r.Status != 200 {
			t.Fatalf("own seats by name: %d %s", r.Status, r.Raw)
		}
		for _, ref := range []string{beta.ID, "beta"} {
			if r := env.Do("GET", "/admin/v1/tenants/"+ref, adm, nil); r.Status != 404 {
				t.Errorf("other tenant %s: %d %s", ref, r.Status, r.Raw)
			}
		}
	})
	t.Run("operator-only routes refuse a tenant admin token", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{"GET", "/admin/v1/tenants"},
			{"POST", "/admin/v1/tenants"},
			{"PATCH", "/admin/v1/tenants/" + acme.ID},
		} {
			if r := env.Do(c.method, c.path, adm, map[string]any{"name": "evil", "seats": 100000}); r.Status != 403 {
				t.Errorf("%s %s: %d %s", c.method, c.path, r.Status, r.Raw)
			}
		}
		if got := acme.Admin("GET", "", nil); got.JSON["seats"] != float64(10) {
			t.Fatalf("a tenant admin changed its seats: %s", got.Raw)
		}
	})
	t.Run("the operator token reaches every tenant and the operator routes", func(t *testing.T) {
		for _, p := range []string{"/admin/v1/tenants", "/admin/v1/tenants/" + acme.ID + "/tokens", "/admin/v1/tenants/" + beta.ID + "/audit", "/admin/v1/tenants/beta/seats"} {
			if r := env.Do("GET", p, testenv.AdminToken, nil); r.Status != 200 {
				t.Errorf("operator GET %s: %d %s", p, r.Status, r.Raw)
			}
		}
	})
}

func TestRevokedTokensStopAtOnceAndUseIsRecorded(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Server: behindProxy})
	acme := env.CreateTenant("acme", 10)
	for _, c := range []struct {
		scope, method, path string
		ok                  int
	}{
		{"scim", "GET", "/scim/v2/" + acme.ID + "/Users", 200},
		{"messenger", "GET", "/messenger/v1/ids/AAAAAAAA", 404},
		{"admin", "GET", "/admin/v1/tenants/" + acme.ID + "/seats", 200},
	} {
		t.Run(c.scope+" token", func(t *testing.T) {
			plain, id := newToken(t, acme, c.scope)
			if r := env.Do(c.method, c.path, plain, nil); r.Status != c.ok {
				t.Fatalf("fresh token: %d %s", r.Status, r.Raw)
			}
			testenv.Eventually(t, 5*time.Second, "lastUsed recorded", func() bool {
				for _, tok := range acme.Admin("GET", "/tokens", nil).JSON["tokens"].([]any) {
					m := tok.(map[string]any)
					if m["id"] == id && m["lastUsed"] != nil {
						if _, leaked := m["hash"]; leaked {
							t.Fatalf("token listing shows the hash: %v", m)
						}
						return true
					}
				}
				return false
			})
			if r := acme.Admin("DELETE", "/tokens/"+id, nil); r.Status != 204 {
				t.Fatalf("revoke: %d %s", r.Status, r.Raw)
			}
			if r := env.Do(c.method, c.path, plain, nil, freshClient()...); r.Status != 401 {
				t.Fatalf("revoked token: %d %s", r.Status, r.Raw)
			}
		})
	}
	t.Run("a tenant admin can revoke its own admin token, which stops that very token", func(t *testing.T) {
		plain, id := newToken(t, acme, "admin")
		if r := env.Do("DELETE", "/admin/v1/tenants/"+acme.ID+"/tokens/"+id, plain, nil); r.Status != 204 {
			t.Fatalf("self-revoke: %d %s", r.Status, r.Raw)
		}
		if r := env.Do("GET", "/admin/v1/tenants/"+acme.ID, plain, nil, freshClient()...); r.Status != 401 {
			t.Fatalf("after self-revoke: %d", r.Status)
		}
	})
}
