package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/offboard/offboard/internal/server"
	"github.com/offboard/offboard/internal/testenv"
)

// limited checks a 429 with an integer Retry-After of at least a second.
func limited(t *testing.T, what string, r testenv.Response) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d, want 429: %s", what, r.Status, r.Raw)
	}
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("%s: Retry-After %q is not a positive integer", what, r.Header.Get("Retry-After"))
	}
}

// jsonError checks the admin/messenger error format.
func jsonError(t *testing.T, what string, r testenv.Response, status int) {
	t.Helper()
	if r.Status != status || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || r.JSON["error"] == nil {
		t.Fatalf("%s: %d %q %s, want %d with a JSON error", what, r.Status, r.Header.Get("Content-Type"), r.Raw, status)
	}
}

func TestEachCredentialIsRateLimited(t *testing.T) {
	setup := testenv.Start(t)
	acme, beta := setup.CreateTenant("acme", 10), setup.CreateTenant("beta", 10)
	msg, _ := newToken(t, acme, "messenger")
	adm, _ := newToken(t, acme, "admin")
	setup.Stop()
	env := testenv.Start(t, testenv.Options{Store: setup.Store, Server: func(c *server.Config) {
		behindProxy(c)
		c.TokenRate, c.TokenBurst = 0.01, 3
	}})
	for _, c := range []struct {
		api, path, token, other string
		scimAPI                 bool
	}{
		{"SCIM", "/scim/v2/" + acme.ID + "/Users", acme.SCIMToken, "/scim/v2/" + beta.ID + "/Users|" + beta.SCIMToken, true},
		{"admin", "/admin/v1/tenants/" + acme.ID + "/seats", adm, "/admin/v1/tenants/" + beta.ID + "/seats|" + testenv.AdminToken, false},
		{"messenger", "/messenger/v1/ids/AAAAAAAA", msg, "", false},
	} {
		t.Run("the "+c.api+" API answers 429 with Retry-After once a token's burst is spent", func(t *testing.T) {
			for i := 0; i < 3; i++ {
				// Each from another address: the per-credential limit is what bites.
				if r := env.Do("GET", c.path, c.token, nil, freshClient()...); r.Status == 429 {
					t.Fatalf("request %d limited already", i+1)
				}
			}
			r := env.Do("GET", c.path, c.token, nil, freshClient()...)
			limited(t, c.api, r)
			if c.scimAPI {
				scimError(t, r, 429, "")
			} else {
				jsonError(t, c.api, r, 429)
			}
			if c.other != "" {
				path, tok, _ := strings.Cut(c.other, "|")
				if r := env.Do("GET", path, tok, nil, freshClient()...); r.Status == 429 {
					t.Fatal("another credential is limited too")
				}
			}
		})
	}
}

func TestEachClientAddressIsRateLimited(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Server: func(c *server.Config) {
		behindProxy(c)
		c.IPRate, c.IPBurst = 0.01, 4
	}})
	acme := env.CreateTenant("acme", 10)
	msg, _ := newToken(t, acme, "messenger")
	for _, c := range []struct {
		api, method, path, token string
		scimAPI                  bool
	}{
		{"SCIM", "GET", "/scim/v2/" + acme.ID + "/Users", acme.SCIMToken, true},
		{"admin", "GET", "/admin/v1/tenants", testenv.AdminToken, false},
		{"messenger", "GET", "/messenger/v1/ids/AAAAAAAA", msg, false},
		{"license check", "POST", "/messenger/v1/check", "", false},
		{"hooks", "POST", "/hooks/nanomdm/x/y", "", false},
	} {
		t.Run("the "+c.api+" API limits one address and not the next", func(t *testing.T) {
			from := freshClient()
			for i := 0; i < 4; i++ {
				if r := env.Do(c.method, c.path, c.token, nil, from...); r.Status == 429 {
					t.Fatalf("request %d limited already", i+1)
				}
			}
			r := env.Do(c.method, c.path, c.token, nil, from...)
			limited(t, c.api, r)
			if c.scimAPI {
				scimError(t, r, 429, "")
			} else {
				jsonError(t, c.api, r, 429)
			}
			if r := env.Do(c.method, c.path, c.token, nil, freshClient()...); r.Status == 429 {
				t.Fatal("another address is limited too")
			}
		})
	}
	t.Run("a client cannot pick its address with X-Forwarded-For unless the proxy is trusted", func(t *testing.T) {
		plain := testenv.Start(t, testenv.Options{Server: func(c *server.Config) { c.IPRate, c.IPBurst = 0.01, 2 }})
		for i := 0; i < 2; i++ {
			plain.Do("GET", "/admin/v1/tenants", testenv.AdminToken, nil, freshClient()...)
		}
		limited(t, "spoofed X-Forwarded-For", plain.Do("GET", "/admin/v1/tenants", testenv.AdminToken, nil, freshClient()...))
	})
}

func TestFailedAuthenticationIsThrottled(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Server: behindProxy})
	acme, beta := env.CreateTenant("acme", 10), env.CreateTenant("beta", 10)
	bad := "obs_" + strings.Repeat("a", 16) + "_" + strings.Repeat("b", 56)

	t.Run("SCIM: 20 failures lock out the address for that tenant, valid token or not", func(t *testing.T) {
		from := freshClient()
		for i := 0; i < 20; i++ {
			r := env.Do("GET", acme.SCIMBase+"/Users", bad, nil, from...)
			if r.Status != 401 && r.Status != 429 {
				t.Fatalf("failure %d: %d", i+1, r.Status)
			}
		}
		r := env.Do("GET", acme.SCIMBase+"/Users", acme.SCIMToken, nil, from...)
		limited(t, "valid token after 20 failures", r)
		scimError(t, r, 429, "")
		if r := env.Do("GET", beta.SCIMBase+"/Users", beta.SCIMToken, nil, from...); r.Status != 200 {
			t.Fatalf("another tenant from the same address: %d", r.Status)
		}
		if r := env.Do("GET", acme.SCIMBase+"/Users", acme.SCIMToken, nil, freshClient()...); r.Status != 200 {
			t.Fatalf("the same tenant from another address: %d", r.Status)
		}
	})
	t.Run("admin: 20 failures lock out the address", func(t *testing.T) {
		from := freshClient()
		for i := 0; i < 20; i++ {
			env.Do("GET", "/admin/v1/tenants", "wrong-operator-token", nil, from...)
		}
		r := env.Do("GET", "/admin/v1/tenants", testenv.AdminToken, nil, from...)
		limited(t, "operator token after 20 failures", r)
		jsonError(t, "admin lockout", r, 429)
	})
	t.Run("messenger: 50 failed checks lock out the address", func(t *testing.T) {
		from := freshClient()
		for i := 0; i < 50; i++ {
			req := env.Do("GET", "/messenger/v1/ids/AAAAAAAA", "obm_"+strings.Repeat("c", 16)+"_"+strings.Repeat("d", 56), nil, from...)
			if req.Status != 401 && req.Status != 429 {
				t.Fatalf("failure %d: %d", i+1, req.Status)
			}
		}
		limited(t, "messenger after 50 failures", env.Do("GET", "/messenger/v1/ids/AAAAAAAA", "", nil, from...))
	})
	t.Run("license checks are limited per license username across addresses", func(t *testing.T) {
		var last testenv.Response
		for i := 0; i < 25 && last.Status != 429; i++ {
			last = env.Do("POST", "/messenger/v1/check", "", nil, append(freshClient(), "Authorization", basic("QQQQQQQQ", "guess"))...)
		}
		limited(t, "license check", last)
	})
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// chunked posts body without a declared length.
func chunked(t *testing.T, url, token, body string) (int, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, io.MultiReader(strings.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), raw
}

func TestOversizedAndOverlyComplexRequestsAreRefused(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 10)
	id := mustCreate(t, acme, "big@acme.com", "big")
	huge := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"huge@acme.com","displayName":"` + strings.Repeat("a", 1<<20) + `"}`

	t.Run("a SCIM body over 1 MiB is 413 with a SCIM error, declared or chunked", func(t *testing.T) {
		scimError(t, acme.SCIM("POST", "/Users", huge), 413, "")
		status, ct, raw := chunked(t, acme.SCIMBase+"/Users", acme.SCIMToken, huge)
		if status != 413 || !strings.HasPrefix(ct, "application/scim+json") || !strings.Contains(string(raw), `"413"`) {
			t.Fatalf("chunked: %d %s %s", status, ct, raw)
		}
		if r := acme.SCIM("GET", `/Users?filter=userName+eq+%22huge%40acme.com%22`, nil); r.JSON["totalResults"] != float64(0) {
			t.Fatal("the oversized user was created")
		}
	})
	t.Run("an admin or messenger body over its limit is 413", func(t *testing.T) {
		jsonError(t, "admin", acme.Admin("PUT", "/policy", `{"wipe":"`+strings.Repeat("a", 1<<20)+`"}`), 413)
		status, _, _ := chunked(t, env.URL+"/admin/v1/tenants/"+acme.ID+"/connectors", testenv.AdminToken, `{"type":"`+strings.Repeat("a", 1<<20)+`"}`)
		if status != 413 {
			t.Fatalf("chunked admin body: %d", status)
		}
		jsonError(t, "messenger", env.Do("POST", "/messenger/v1/check", "", strings.Repeat("a", 65<<10), "Authorization", basic("AAAAAAAA", "x")), 413)
	})
	t.Run("headers over 64 KiB are 431 in each API's format", func(t *testing.T) {
		big := strings.Repeat("h", 65<<10)
		scimError(t, acme.SCIM("GET", "/Users", nil, "X-Padding", big), 431, "")
		jsonError(t, "admin", env.Do("GET", "/admin/v1/tenants", testenv.AdminToken, nil, "X-Padding", big), 431)
		jsonError(t, "messenger", env.Do("GET", "/messenger/v1/ids/AAAAAAAA", "", nil, "X-Padding", big), 431)
	})
	t.Run("filters that are too long, too deep or too wide are invalidFilter", func(t *testing.T) {
		for name, f := range map[string]string{
			"long":  `userName eq "` + strings.Repeat("x", 5000) + `"`,
			"deep":  strings.Repeat("(", 40) + `userName eq "x"` + strings.Repeat(")", 40),
			"wide":  strings.Repeat(`userName eq "x" or `, 200) + `userName eq "x"`,
			"paths": strings.Repeat("emails[", 20) + `value eq "x"` + strings.Repeat("]", 20),
		} {
			scimError(t, acme.SCIM("GET", "/Users?filter="+url.QueryEscape(f), nil), 400, "invalidFilter")
			if r := acme.SCIM("POST", "/Users/.search", map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:SearchRequest"}, "filter": f}); r.Status != 400 && r.Status != 404 && r.Status != 405 {
				t.Errorf("%s filter through .search: %d %s", name, r.Status, r.Raw)
			}
		}
		if r := acme.SCIM("GET", "/Users?filter="+url.QueryEscape(`((userName eq "big@acme.com"))`), nil); r.Status != 200 {
			t.Fatalf("a modest filter: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("a PATCH with more than 1000 operations is refused whole", func(t *testing.T) {
		ops := make([]map[string]any, 1001)
		for i := range ops {
			ops[i] = map[string]any{"op": "replace", "path": "displayName", "value": fmt.Sprint("n", i)}
		}
		body := map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
		scimError(t, acme.SCIM("PATCH", "/Users/"+id, body), 400, "invalidValue")
		if r := acme.SCIM("GET", "/Users/"+id, nil); r.JSON["displayName"] != nil {
			t.Fatalf("part of the refused PATCH was applied: %s", r.Raw)
		}
		body["Operations"] = ops[:10]
		if r := acme.SCIM("PATCH", "/Users/"+id, body); r.Status != 204 {
			t.Fatalf("10 operations: %d %s", r.Status, r.Raw)
		}
	})
}
