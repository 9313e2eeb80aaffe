package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/secretbox"
	"github.com/offboard/offboard/internal/server"
	"github.com/offboard/offboard/internal/testenv"
)

// rawDatabase renders every document of every collection of the store's database as
// extended JSON, and the raw bytes, for a search for plaintext.
func rawDatabase(t *testing.T, store *mongostore.Store) string {
	t.Helper()
	ctx := context.Background()
	db := store.Database()
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
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
			b.WriteString(n + " " + d.String() + "\n")
			b.Write(d)
		}
	}
	return b.String()
}

// secretConnectors are one connector of every type, each with secrets that say what they are.
func secretConnectors(webhookURL string) []map[string]any {
	return []map[string]any{
		{"type": "webhook", "name": "hr", "config": map[string]any{"url": webhookURL, "secret": "SECRET-webhook-hmac-0123456789"}},
		{"type": "webhook", "name": "fn", "config": map[string]any{"url": "https://svc:SECRET-basic@127.0.0.1:1/api/hook?code=SECRET-fnkey", "secret": "SECRET-webhook-hmac-0123456789"}},
		{"type": "nanomdm", "name": "apple", "config": map[string]any{"url": "http://127.0.0.1:9", "apiKey": "SECRET-nanomdm-apikey", "appBundleId": "ch.threema.work.iapp"}},
		{"type": "intune", "name": "intune", "config": map[string]any{"tenantId": "contoso.onmicrosoft.com", "clientId": "11111111-2222-3333-4444-555555555555",
			"clientSecret": "SECRET-intune-client", "appId": "11111111-2222-3333-4444-666666666666", "groupId": "11111111-2222-3333-4444-777777777777"}},
		{"type": "jamf", "name": "jamf", "config": map[string]any{"url": "https://acme.jamfcloud.com", "clientId": "jamf-client",
			"clientSecret": "SECRET-jamf-client", "appId": 12, "groupId": 34}},
		{"type": "workspaceone", "name": "ws1", "config": map[string]any{"url": "https://as1506.awmdm.com", "tenantCode": "SECRET-ws1-tenantcode",
			"clientId": "ws1-client", "clientSecret": "SECRET-ws1-client", "tokenUrl": "https://na.uemauth.vmwservices.com/connect/token"}},
		{"type": "workspaceone", "name": "ws1-basic", "config": map[string]any{"url": "https://as1506.awmdm.com", "tenantCode": "SECRET-ws1-tenantcode-2",
			"auth": "basic", "username": "svc-offboard", "password": "SECRET-ws1-password"}},
	}
}

func TestSecretsAreSealedAtRestNeverShownAndNeverLogged(t *testing.T) {
	sink := &testenv.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := testenv.Start(t, testenv.Options{Logger: log, Server: func(c *server.Config) { behindProxy(c); insecureIssuers(c) }})
	acme := env.CreateTenant("acme", 10)
	rc := newReceiver(t)
	idp := newIssuer(t, "tid-acme", "offboard-scim")
	if r := acme.Admin("PUT", "/oidc", idp.config()); r.Status != 200 {
		t.Fatalf("oidc: %d %s", r.Status, r.Raw)
	}
	// A webhook receiver that fails with a body full of secrets: the runner logs the failure.
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"vendor-says-no"}`)
	}))
	t.Cleanup(failing.Close)
	secrets := []string{hookSecret, "SECRET-", testenv.AdminToken, acme.SCIMToken}

	var created []string
	for _, c := range secretConnectors(rc.srv.URL) {
		if c["type"] == "webhook" {
			c["config"].(map[string]any)["secret"] = hookSecret
		}
		r := acme.Admin("POST", "/connectors", c)
		if r.Status != 201 {
			t.Fatalf("create %s: %d %s", c["type"], r.Status, r.Raw)
		}
		notMentioned(t, "the creation answer", r, secrets...)
		created = append(created, r.JSON["id"].(string))
		if hook, ok := r.JSON["webhookUrl"].(string); ok {
			secrets = append(secrets, hook[strings.LastIndex(hook, "/")+1:])
		}
	}

	// Exercise every path that handles a secret, a token, a password or a SCIM body.
	msg, _ := newToken(t, acme, "messenger")
	adm, _ := newToken(t, acme, "admin")
	secrets = append(secrets, msg, adm)
	body := entraUser("logged.user@acme.com", "ext-log")
	body["displayName"] = "BODYMARKER display name"
	body["password"] = "SECRET-scim-password"
	body["name"].(map[string]any)["givenName"] = "BODYMARKER-given"
	u := acme.SCIM("POST", "/Users", body)
	if u.Status != 201 {
		t.Fatalf("create user: %d %s", u.Status, u.Raw)
	}
	notMentioned(t, "the SCIM answer", u, "SECRET-scim-password")
	id := u.JSON["id"].(string)
	acme.SCIM("PATCH", "/Users/"+id, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "replace", "path": "displayName", "value": "BODYMARKER patched"},
			{"op": "replace", "path": "password", "value": "SECRET-patched-password"}}})
	acme.SCIM("PUT", "/Users/"+id, body)
	acme.SCIM("POST", "/Users", `{"userName": "BODYMARKER-broken",`)
	user, pass := credentials(t, acme, id)
	secrets = append(secrets, pass)
	check(env, user, pass)
	check(env, user, pass+"x")
	check(env, "ZZZZZZZZ", "SECRET-guessed-password")
	for _, bad := range []string{"obs_" + strings.Repeat("a", 16) + "_SECRETbadtoken", acme.SCIMToken[:len(acme.SCIMToken)-1] + "a", "SECRET.jwt.token"} {
		env.Do("GET", acme.SCIMBase+"/Users", bad, nil, freshClient()...)
		env.Do("GET", "/admin/v1/tenants", bad, nil, freshClient()...)
		env.Do("GET", "/messenger/v1/ids/AAAAAAAA", bad, nil, freshClient()...)
	}
	jwt := idp.token(t, func(c map[string]any) { c["aud"] = "wrong-audience" })
	env.Do("GET", acme.SCIMBase+"/Users", jwt, nil, freshClient()...)
	env.Do("GET", acme.SCIMBase+"/Users", jwt[:len(jwt)-4]+"AAAA", nil, freshClient()...)
	secrets = append(secrets, jwt[strings.LastIndex(jwt, ".")+1:], jwt[strings.Index(jwt, ".")+1:strings.LastIndex(jwt, ".")])
	for _, cid := range created {
		acme.Admin("POST", "/connectors/"+cid+"/check", nil)
	}
	if r := acme.Admin("POST", "/connectors", map[string]any{"type": "webhook", "name": "failing",
		"config": map[string]any{"url": failing.URL, "secret": hookSecret}}); r.Status != 201 {
		t.Fatalf("failing connector: %d %s", r.Status, r.Raw)
	}
	connectWebhook(t, acme, rc)
	if r := patchActive(acme, id, false); r.Status != 204 {
		t.Fatalf("deactivate: %d %s", r.Status, r.Raw)
	}
	testenv.Eventually(t, 10*time.Second, "the webhook delivery", func() bool { return len(rc.deliveries()) > 0 })
	testenv.Eventually(t, 10*time.Second, "the failing delivery", func() bool {
		for _, j := range employee(t, acme, id)["jobs"].([]any) {
			if j.(map[string]any)["state"] == "failed" {
				return true
			}
		}
		return false
	})

	t.Run("no plaintext secret or password is anywhere in the database", func(t *testing.T) {
		raw := rawDatabase(t, env.Store)
		for _, s := range append(secrets, "SECRET-", "BODYMARKER-broken") {
			if strings.Contains(raw, s) {
				i := strings.Index(raw, s)
				t.Errorf("the database holds %q: …%s…", s, raw[max(0, i-200):min(len(raw), i+100)])
			}
		}
		if !strings.Contains(raw, `"sealed": "v1:`+env.Keys.CurrentKeyID()+`:`) {
			t.Errorf("connectors are not sealed under the current key %s", env.Keys.CurrentKeyID())
		}
	})
	t.Run("the API never returns a secret", func(t *testing.T) {
		for _, p := range []string{"/connectors", "/audit?limit=5000", "/tokens", "/employees/" + id, ""} {
			notMentioned(t, "GET "+p, acme.Admin("GET", p, nil), secrets...)
		}
		for _, cid := range created {
			notMentioned(t, "GET connector", acme.Admin("GET", "/connectors/"+cid, nil), secrets...)
		}
		notMentioned(t, "GET the SCIM user", acme.SCIM("GET", "/Users/"+id, nil), "SECRET-")
	})
	t.Run("logs, even at debug level, hold no secret, token, password or SCIM body", func(t *testing.T) {
		logs := sink.String()
		if testing.Verbose() {
			t.Log(logs)
		}
		for _, want := range []string{"jwt rejected"} {
			if !strings.Contains(logs, want) {
				t.Errorf("no %q line: the test did not exercise that path", want)
			}
		}
		for _, s := range append(secrets, "SECRET", "BODYMARKER", "logged.user@acme.com", "ext-log", user) {
			if strings.Contains(logs, s) {
				i := strings.Index(logs, s)
				t.Errorf("the logs hold %q: …%s…", s, logs[max(0, i-300):min(len(logs), i+100)])
			}
		}
	})
}

func TestConnectorsSurviveAKeyRotation(t *testing.T) {
	k1, k2 := secretbox.GenerateKey(), secretbox.GenerateKey()
	ring := func(s string) *secretbox.Keyring {
		kr, err := secretbox.ParseKeys(s)
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	rc := newReceiver(t)
	env := testenv.Start(t, testenv.Options{Keys: ring(k1)})
	acme := env.CreateTenant("acme", 10)
	hook := acme.Admin("POST", "/connectors", map[string]any{"type": "webhook", "name": "hr", "config": map[string]any{"url": rc.srv.URL, "secret": hookSecret}})
	nano := acme.Admin("POST", "/connectors", map[string]any{"type": "nanomdm", "name": "apple", "config": map[string]any{
		"url": "http://127.0.0.1:9", "apiKey": "rotation-nano-key", "appBundleId": "ch.threema.work.iapp"}})
	if hook.Status != 201 || nano.Status != 201 {
		t.Fatalf("connectors: %d %s / %d %s", hook.Status, hook.Raw, nano.Status, nano.Raw)
	}
	hookID := hook.JSON["id"].(string)
	nanoPath := strings.TrimPrefix(nano.JSON["webhookUrl"].(string), env.URL)
	store := env.Store
	env.Stop()

	// restart runs a server on the same database with the given keys, and reports whether
	// the webhook connector can be opened and the NanoMDM hook secret verified.
	restart := func(t *testing.T, keys string) (healthy, hookOpens bool, e *testenv.Env) {
		t.Helper()
		e = testenv.Start(t, testenv.Options{Store: store, Keys: ring(keys)})
		h := e.Admin("POST", "/tenants/"+acme.ID+"/connectors/"+hookID+"/check", nil)
		if h.Status != 200 {
			t.Fatalf("check: %d %s", h.Status, h.Raw)
		}
		r := e.Do("POST", e.URL+strings.Replace(nanoPath, "/hooks/", "/hooks/", 1), "", `{"topic":"mdm.CheckOut"}`, "Content-Type", "application/json")
		return h.JSON["ok"] == true, r.Status != 404, e
	}

	t.Run("K2 alone opens nothing sealed under K1", func(t *testing.T) {
		healthy, opens, e := restart(t, k2)
		e.Stop()
		if healthy || opens {
			t.Fatalf("healthy %v, hook opens %v with the wrong key", healthy, opens)
		}
	})
	t.Run("with K2,K1 the connectors keep working before the rewrap", func(t *testing.T) {
		healthy, opens, e := restart(t, k2+","+k1)
		defer e.Stop()
		if !healthy || !opens {
			t.Fatalf("healthy %v, hook opens %v", healthy, opens)
		}
		n, err := e.Connectors.Rewrap(context.Background())
		if err != nil || n != 2 {
			t.Fatalf("rewrap: %d, %v", n, err)
		}
	})
	t.Run("after the rewrap K1 can be dropped", func(t *testing.T) {
		healthy, opens, e := restart(t, k2)
		e.Stop()
		if !healthy || !opens {
			t.Fatalf("healthy %v, hook opens %v with K2 alone after the rewrap", healthy, opens)
		}
		if raw := rawDatabase(t, store); strings.Contains(raw, "v1:"+ring(k1).CurrentKeyID()+":") {
			t.Fatal("an envelope under K1 is left")
		}
	})
}

func newJSONLogger(sink *testenv.LogBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestAnswersAreNeitherCachedNorSniffed(t *testing.T) {
	env := testenv.Start(t)
	acme := env.CreateTenant("acme", 10)
	id := mustCreate(t, acme, "cache@acme.com", "c")
	for name, r := range map[string]testenv.Response{
		"SCIM user":   acme.SCIM("GET", "/Users/"+id, nil),
		"SCIM list":   acme.SCIM("GET", "/Users", nil),
		"SCIM error":  acme.SCIM("GET", "/Users/nope", nil),
		"credentials": acme.Admin("POST", "/employees/"+id+"/credentials", nil),
		"tokens":      acme.Admin("GET", "/tokens", nil),
	} {
		if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: Cache-Control %q, X-Content-Type-Options %q", name, r.Header.Get("Cache-Control"), r.Header.Get("X-Content-Type-Options"))
		}
	}
}
