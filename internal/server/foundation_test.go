package server_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/offboard/offboard/internal/embedded"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
	"github.com/offboard/offboard/internal/testenv"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// entraUser is the body Entra ID sends to create a user (learn.microsoft.com, SCIM guide).
func entraUser(userName, externalID string) map[string]any {
	return map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"},
		"externalId": externalID,
		"userName":   userName,
		"active":     true,
		"emails":     []map[string]any{{"primary": true, "type": "work", "value": userName}},
		"meta":       map[string]any{"resourceType": "User"},
		"name":       map[string]any{"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
		"roles":      []any{},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"department": "Sales"},
	}
}

func scimError(t *testing.T, r testenv.Response, status int, scimType string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/scim+json") {
		t.Errorf("content type %q", ct)
	}
	if r.JSON["status"] != strconv.Itoa(status) {
		t.Errorf("status field %v, want %q", r.JSON["status"], strconv.Itoa(status))
	}
	if scimType != "" && r.JSON["scimType"] != scimType {
		t.Errorf("scimType %v, want %s: %s", r.JSON["scimType"], scimType, r.Raw)
	}
}

func TestAnEntraUserIsStoredFoundCaseInsensitivelyAndSurvivesARestart(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 10)
	created := acme.SCIM("POST", "/Users", entraUser("Jane.Doe@Contoso.com", "0a21f0f2-8d2a"))
	if created.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.Status, created.Raw)
	}
	id := created.JSON["id"].(string)
	if loc := created.Header.Get("Location"); !strings.HasSuffix(loc, "/Users/"+id) {
		t.Errorf("Location %q", loc)
	}
	find := func(e *testenv.Env, tn *testenv.Tenant) testenv.Response {
		return e.Do("GET", tn.SCIMBase+`/Users?filter=userName+eq+%22JANE.DOE%40CONTOSO.COM%22`, tn.SCIMToken, nil)
	}
	got := find(env, acme)
	if got.Status != 200 || got.JSON["totalResults"] != float64(1) {
		t.Fatalf("case-insensitive lookup: %d %s", got.Status, got.Raw)
	}

	// A second tenant sees nothing of it: not by filter, not by id.
	beta := env.CreateTenant("beta", 10)
	if r := find(env, beta); r.JSON["totalResults"] != float64(0) {
		t.Fatalf("tenant beta found acme's user: %s", r.Raw)
	}
	scimError(t, beta.SCIM("GET", "/Users/"+id, nil), 404, "")

	// Restart the whole server on the same database.
	store := env.Store
	env.Stop()
	env2 := testenv.Start(t, testenv.Options{Store: store})
	acme2 := *acme
	acme2.SCIMBase = strings.Replace(acme.SCIMBase, env.URL, env2.URL, 1)
	again := env2.Do("GET", acme2.SCIMBase+"/Users/"+id, acme.SCIMToken, nil)
	if again.Status != 200 || again.JSON["userName"] != "Jane.Doe@Contoso.com" {
		t.Fatalf("after restart: %d %s", again.Status, again.Raw)
	}
	if r := find(env2, &acme2); r.JSON["totalResults"] != float64(1) {
		t.Fatalf("lookup after restart: %s", r.Raw)
	}
}

func TestBadInputGetsClearSCIMErrors(t *testing.T) {
	env := testenv.Start(t)
	acme, beta := env.CreateTenant("acme", 10), env.CreateTenant("beta", 10)
	if r := acme.SCIM("POST", "/Users", entraUser("dup@x.com", "1")); r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Raw)
	}

	t.Run("unknown token is 401 with a SCIM body", func(t *testing.T) {
		r := env.Do("GET", acme.SCIMBase+"/Users", "obs_aaaaaaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", nil)
		scimError(t, r, 401, "")
		scimError(t, env.Do("GET", acme.SCIMBase+"/Users", "", nil), 401, "")
		scimError(t, env.Do("GET", acme.SCIMBase+"/Users", "", nil, "Authorization", "non-token"), 401, "")
	})
	t.Run("a token of tenant A on tenant B's endpoint is refused", func(t *testing.T) {
		scimError(t, env.Do("GET", beta.SCIMBase+"/Users", acme.SCIMToken, nil), 401, "")
	})
	t.Run("a revoked token stops working at once", func(t *testing.T) {
		tok := acme.Admin("POST", "/tokens", map[string]any{"scope": "scim"})
		if tok.Status != 201 {
			t.Fatalf("token: %d %s", tok.Status, tok.Raw)
		}
		plain, id := tok.JSON["token"].(string), tok.JSON["id"].(string)
		if r := env.Do("GET", acme.SCIMBase+"/Users", plain, nil); r.Status != 200 {
			t.Fatalf("new token: %d", r.Status)
		}
		if r := acme.Admin("DELETE", "/tokens/"+id, nil); r.Status != 204 {
			t.Fatalf("revoke: %d %s", r.Status, r.Raw)
		}
		scimError(t, env.Do("GET", acme.SCIMBase+"/Users", plain, nil), 401, "")
	})
	t.Run("malformed JSON is invalidSyntax", func(t *testing.T) {
		scimError(t, acme.SCIM("POST", "/Users", `{"userName": "x",`), 400, "invalidSyntax")
	})
	t.Run("missing userName is invalidValue", func(t *testing.T) {
		scimError(t, acme.SCIM("POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "active": true}), 400, "invalidValue")
	})
	t.Run("a duplicate userName in another letter case is a uniqueness conflict", func(t *testing.T) {
		scimError(t, acme.SCIM("POST", "/Users", entraUser("DUP@X.COM", "2")), 409, "uniqueness")
	})
}

func TestADatabaseOutageAnswers503AndRecovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := embedded.Start(ctx, embedded.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	store, err := mongostore.Connect(ctx, db.URI(), "outage")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(ctx) })
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{Store: store})
	acme := env.CreateTenant("acme", 10)
	if r := env.Do("GET", "/readyz", "", nil); r.Status != 200 {
		t.Fatalf("readyz: %d", r.Status)
	}
	_ = db.Close()

	r := acme.SCIM("POST", "/Users", entraUser("while.down@x.com", "x"))
	scimError(t, r, 503, "")
	if strings.Contains(string(r.Raw), "mongo") || strings.Contains(string(r.Raw), "sock") {
		t.Errorf("503 body leaks internals: %s", r.Raw)
	}
	if r := env.Do("GET", "/readyz", "", nil); r.Status != 503 {
		t.Fatalf("readyz while down: %d", r.Status)
	}

	// The same data directory comes back; the client reconnects by itself.
	db, err = embedded.Start(ctx, embedded.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	testenv.Eventually(t, 20e9, "readyz after restart", func() bool { return env.Do("GET", "/readyz", "", nil).Status == 200 })
	if r := acme.SCIM("POST", "/Users", entraUser("after@x.com", "y")); r.Status != 201 {
		t.Fatalf("after recovery: %d %s", r.Status, r.Raw)
	}
	if r := acme.SCIM("GET", `/Users?filter=userName+eq+%22while.down%40x.com%22`, nil); r.JSON["totalResults"] != float64(0) {
		t.Fatalf("the failed create left a user: %s", r.Raw)
	}
}
