package server_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/testenv"
)

// randomID is an id in the format of Offboard's ids that belongs to nothing.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sameAnswer fails unless A's request about B's object was answered exactly like the same
// request about an object that does not exist: status, content type and body.
func sameAnswer(t *testing.T, what string, onB, onNothing testenv.Response) {
	t.Helper()
	if onB.Status != onNothing.Status || onB.Header.Get("Content-Type") != onNothing.Header.Get("Content-Type") ||
		strings.TrimSpace(string(onB.Raw)) != strings.TrimSpace(string(onNothing.Raw)) {
		t.Errorf("%s: B's object answers differently from a missing one:\n  on B's:    %d %s\n  on none:   %d %s",
			what, onB.Status, onB.Raw, onNothing.Status, onNothing.Raw)
	}
	if onB.Status < 400 && onB.Status != 200 {
		t.Errorf("%s: %d on another tenant's object", what, onB.Status)
	}
}

// notMentioned fails if body names any of B's identifiers.
func notMentioned(t *testing.T, what string, r testenv.Response, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(string(r.Raw), s) {
			t.Errorf("%s shows B's %q: %s", what, s, r.Raw)
		}
	}
}

func scimFilter(f string) string { return "/Users?filter=" + url.QueryEscape(f) }

// world is two tenants with data in both.
type world struct {
	env                *testenv.Env
	a, b               *testenv.Tenant
	aAdmin, aMsg       string
	bAdmin, bMsg       string
	bAdminID, bMsgID   string
	aUser              string
	bUser, bLeaver     string
	bUserName, bExt    string
	bVersion           string
	bWorkID            string
	bJob               string
	bWebhook, bNano    string
	bNanoHook, aNanoID string
	aNanoHook          string
	bGroup             string // empty while /Groups is not served
}

func newWorld(t *testing.T) *world {
	t.Helper()
	env := testenv.Start(t, testenv.Options{Server: behindProxy})
	w := &world{env: env, a: env.CreateTenant("acme", 10), b: env.CreateTenant("beta", 10)}
	w.aAdmin, _ = newToken(t, w.a, "admin")
	w.aMsg, _ = newToken(t, w.a, "messenger")
	w.bAdmin, w.bAdminID = newToken(t, w.b, "admin")
	w.bMsg, w.bMsgID = newToken(t, w.b, "messenger")

	rc := newReceiver(t)
	r := w.b.Admin("POST", "/connectors", map[string]any{"type": "webhook", "name": "beta-only", "config": map[string]any{"url": rc.srv.URL, "secret": hookSecret}})
	if r.Status != 201 {
		t.Fatalf("B webhook: %d %s", r.Status, r.Raw)
	}
	w.bWebhook = r.JSON["id"].(string)
	nano := func(tn *testenv.Tenant, key string) (string, string) {
		r := tn.Admin("POST", "/connectors", map[string]any{"type": "nanomdm", "name": "apple", "config": map[string]any{
			"url": "http://127.0.0.1:9", "apiKey": key, "appBundleId": "ch.threema.work.iapp"}})
		if r.Status != 201 {
			t.Fatalf("nanomdm connector: %d %s", r.Status, r.Raw)
		}
		return r.JSON["id"].(string), r.JSON["webhookUrl"].(string)
	}
	w.aNanoID, w.aNanoHook = nano(w.a, "acme-nano-key")
	w.bNano, w.bNanoHook = nano(w.b, "beta-nano-key")

	w.aUser = mustCreate(t, w.a, "alice@acme.com", "ext-alice")
	w.bUserName, w.bExt = "bob@beta.com", "ext-bob"
	created := w.b.SCIM("POST", "/Users", entraUser(w.bUserName, w.bExt))
	if created.Status != 201 {
		t.Fatalf("B user: %d %s", created.Status, created.Raw)
	}
	w.bUser = created.JSON["id"].(string)
	w.bVersion = created.Header.Get("ETag")
	if w.bVersion == "" {
		w.bVersion = created.JSON["meta"].(map[string]any)["version"].(string)
	}
	w.bLeaver = mustCreate(t, w.b, "leaver@beta.com", "ext-leaver")
	if r := patchActive(w.b, w.bLeaver, false); r.Status != 204 {
		t.Fatalf("deactivate B leaver: %d %s", r.Status, r.Raw)
	}
	emp := employee(t, w.b, w.bUser)
	w.bWorkID, _ = emp["workId"].(string)
	if w.bWorkID == "" {
		t.Fatalf("B's user has no work ID: %v", emp)
	}
	for _, j := range employee(t, w.b, w.bLeaver)["jobs"].([]any) {
		w.bJob = j.(map[string]any)["id"].(string)
	}
	if w.bJob == "" {
		t.Fatal("B's leaver has no jobs")
	}
	if r := w.b.SCIM("GET", "/Groups", nil); r.Status != 404 {
		g := w.b.SCIM("POST", "/Groups", map[string]any{
			"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "displayName": "Beta Sales",
			"members": []map[string]any{{"value": w.bUser}}})
		if g.Status != 201 {
			t.Fatalf("B group: %d %s", g.Status, g.Raw)
		}
		w.bGroup = g.JSON["id"].(string)
	}
	return w
}

func mustCreate(t *testing.T, tn *testenv.Tenant, userName, ext string) string {
	t.Helper()
	r := tn.SCIM("POST", "/Users", entraUser(userName, ext))
	if r.Status != 201 {
		t.Fatalf("create %s: %d %s", userName, r.Status, r.Raw)
	}
	return r.JSON["id"].(string)
}

// bIdentifiers are strings that must never appear in an answer to A.
func (w *world) bIdentifiers() []string {
	return []string{w.b.ID, w.bUser, w.bLeaver, w.bUserName, w.bExt, w.bWorkID, w.bJob, w.bWebhook, w.bNano,
		w.bAdminID, w.bMsgID, "beta-nano-key", "beta-only", w.bGroup}
}

// unchanged checks, as B, that nothing of B's changed.
func (w *world) unchanged(t *testing.T) {
	t.Helper()
	r := w.b.SCIM("GET", "/Users/"+w.bUser, nil)
	if r.Status != 200 || r.JSON["active"] != true || r.JSON["userName"] != w.bUserName {
		t.Fatalf("B's user changed: %d %s", r.Status, r.Raw)
	}
	if v := r.JSON["meta"].(map[string]any)["version"]; v != w.bVersion {
		t.Fatalf("B's user version %v, was %s", v, w.bVersion)
	}
	if _, has := r.JSON["groups"]; has && w.bGroup == "" {
		t.Fatalf("B's user is in a group: %s", r.Raw)
	}
	if r := w.env.Do("GET", "/admin/v1/tenants/"+w.b.ID+"/tokens", w.bAdmin, nil); r.Status != 200 || strings.Contains(string(r.Raw), `"revoked"`) {
		t.Fatalf("B's tokens changed: %d %s", r.Status, r.Raw)
	}
	if r := w.b.Admin("GET", "/connectors", nil); len(r.JSON["connectors"].([]any)) != 2 {
		t.Fatalf("B's connectors changed: %s", r.Raw)
	}
	if r := w.b.Admin("GET", "", nil); r.JSON["oidc"] != nil || r.JSON["policy"].(map[string]any)["wipe"] != "app" {
		t.Fatalf("B's tenant changed: %s", r.Raw)
	}
	if r := w.env.Do("GET", "/messenger/v1/ids/"+w.bWorkID, w.bMsg, nil); r.Status != 200 || r.JSON["status"] != "active" {
		t.Fatalf("B's work ID changed: %d %s", r.Status, r.Raw)
	}
}

func TestTenantACannotReadChangeOrDetectTenantBsSCIMData(t *testing.T) {
	w := newWorld(t)
	a, env := w.a, w.env
	patchOp := map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "replace", "path": "active", "value": false}}}
	nothing := randomID()

	t.Run("B's user id through A's endpoint answers like a missing id", func(t *testing.T) {
		for _, c := range []struct {
			method string
			body   any
		}{{"GET", nil}, {"PUT", entraUser("hijack@acme.com", "h")}, {"PATCH", patchOp}, {"DELETE", nil}} {
			sameAnswer(t, c.method+" /Users/<B's id>", a.SCIM(c.method, "/Users/"+w.bUser, c.body), a.SCIM(c.method, "/Users/"+nothing, c.body))
			sameAnswer(t, c.method+" /Users/<B's deactivated id>", a.SCIM(c.method, "/Users/"+w.bLeaver, c.body), a.SCIM(c.method, "/Users/"+nothing, c.body))
		}
	})
	t.Run("If-Match with B's version changes nothing and tells nothing", func(t *testing.T) {
		for _, method := range []string{"PUT", "PATCH", "DELETE"} {
			var body any = patchOp
			if method == "PUT" {
				body = entraUser("hijack@acme.com", "h")
			}
			if method == "DELETE" {
				body = nil
			}
			for _, tag := range []string{w.bVersion, `W/"999"`, "*"} {
				sameAnswer(t, method+" If-Match "+tag, a.SCIM(method, "/Users/"+w.bUser, body, "If-Match", tag),
					a.SCIM(method, "/Users/"+nothing, body, "If-Match", tag))
			}
		}
		sameAnswer(t, "GET If-None-Match", a.SCIM("GET", "/Users/"+w.bUser, nil, "If-None-Match", w.bVersion),
			a.SCIM("GET", "/Users/"+nothing, nil, "If-None-Match", w.bVersion))
	})
	t.Run("filters never match B's users", func(t *testing.T) {
		for _, c := range []struct{ onB, onNothing string }{
			{`id eq "` + w.bUser + `"`, `id eq "` + nothing + `"`},
			{`userName eq "` + w.bUserName + `"`, `userName eq "nobody@beta.com"`},
			{`userName eq "BOB@BETA.COM"`, `userName eq "NOBODY@BETA.COM"`},
			{`externalId eq "` + w.bExt + `"`, `externalId eq "ext-nobody"`},
			{`userName sw "bob"`, `userName sw "zzq"`},
			{`userName co "beta.com"`, `userName co "zzq.example"`},
			{`emails.value eq "` + w.bUserName + `"`, `emails.value eq "nobody@beta.com"`},
			{`emails[value eq "` + w.bUserName + `"]`, `emails[value eq "nobody@beta.com"]`},
			{`userName eq "alice@acme.com" or userName eq "` + w.bUserName + `"`, `userName eq "alice@acme.com" or userName eq "nobody@beta.com"`},
			{`tenant eq "` + w.b.ID + `"`, `tenant eq "` + nothing[:20] + `"`},
			{`not (userName eq "alice@acme.com")`, `not (userName eq "alice@acme.com")`},
			{`userName pr`, `userName pr`},
		} {
			onB := a.SCIM("GET", scimFilter(c.onB), nil)
			notMentioned(t, "filter "+c.onB, onB, w.bIdentifiers()...)
			if c.onB != c.onNothing {
				sameAnswer(t, "filter "+c.onB, onB, a.SCIM("GET", scimFilter(c.onNothing), nil))
			}
		}
		all := a.SCIM("GET", "/Users?count=1000", nil)
		if all.Status != 200 || all.JSON["totalResults"] != float64(1) {
			t.Errorf("A's full listing: %d %s", all.Status, all.Raw)
		}
		notMentioned(t, "A's user listing", all, w.bIdentifiers()...)
		notMentioned(t, "A's listing from index 2", a.SCIM("GET", "/Users?startIndex=2&count=10", nil), w.bIdentifiers()...)
	})
	t.Run("uniqueness is per tenant: B's userName and externalId are free in A", func(t *testing.T) {
		r := a.SCIM("POST", "/Users", entraUser(strings.ToUpper(w.bUserName), w.bExt))
		if r.Status != 201 {
			t.Fatalf("A creating B's userName: %d %s (a 409 tells A that B has this user)", r.Status, r.Raw)
		}
		if r.JSON["id"] == w.bUser {
			t.Fatal("A got B's user id")
		}
		if r := a.SCIM("DELETE", "/Users/"+r.JSON["id"].(string), nil); r.Status != 204 {
			t.Fatalf("cleanup: %d", r.Status)
		}
	})
	t.Run("a PATCH value naming B's objects links nothing", func(t *testing.T) {
		for _, value := range []any{
			map[string]any{"value": w.bUser},
			[]any{map[string]any{"value": w.bUser, "type": "direct"}},
		} {
			r := a.SCIM("PATCH", "/Users/"+w.aUser, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
				"Operations": []map[string]any{{"op": "add", "path": "groups", "value": value}}})
			notMentioned(t, "PATCH groups", r, w.bLeaver, w.b.ID)
		}
		mgr := a.SCIM("PATCH", "/Users/"+w.aUser, map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
			"Operations": []map[string]any{{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": map[string]any{"value": w.bUser}}}})
		notMentioned(t, "PATCH manager", mgr, w.bUserName, w.bExt, w.b.ID)
	})
	t.Run("B's static token and B's endpoint stay closed to A", func(t *testing.T) {
		scimError(t, env.Do("GET", w.b.SCIMBase+"/Users/"+w.bUser, a.SCIMToken, nil, freshClient()...), 401, "")
		scimError(t, env.Do("GET", a.SCIMBase+"/Users/"+w.bUser, w.b.SCIMToken, nil, freshClient()...), 401, "")
	})
	w.unchanged(t)
}

func TestTenantACannotReachTenantBsGroups(t *testing.T) {
	w := newWorld(t)
	a := w.a
	if r := a.SCIM("GET", "/Groups", nil); r.Status != 200 {
		t.Fatalf("GET /Groups: %d %s", r.Status, r.Raw)
	}
	nothing := randomID()
	groupSchema := []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}
	patch := func(ops ...map[string]any) map[string]any {
		return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": ops}
	}
	mine := a.SCIM("POST", "/Groups", map[string]any{"schemas": groupSchema, "displayName": "Acme Sales"})
	if mine.Status != 201 {
		t.Fatalf("A group: %d %s", mine.Status, mine.Raw)
	}
	aGroup := mine.JSON["id"].(string)

	t.Run("B's group id through A's endpoint answers like a missing id", func(t *testing.T) {
		for _, c := range []struct {
			method string
			body   any
		}{
			{"GET", nil},
			{"PUT", map[string]any{"schemas": groupSchema, "displayName": "Hijacked"}},
			{"PATCH", patch(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": w.aUser}}})},
			{"PATCH", patch(map[string]any{"op": "remove", "path": `members[value eq "` + w.bUser + `"]`})},
			{"DELETE", nil},
		} {
			sameAnswer(t, c.method+" /Groups/<B's id>", a.SCIM(c.method, "/Groups/"+w.bGroup, c.body), a.SCIM(c.method, "/Groups/"+nothing, c.body))
		}
		sameAnswer(t, "GET /Groups/<B's id>?excludedAttributes=members", a.SCIM("GET", "/Groups/"+w.bGroup+"?excludedAttributes=members", nil),
			a.SCIM("GET", "/Groups/"+nothing+"?excludedAttributes=members", nil))
	})
	t.Run("group filters never match B's groups or members", func(t *testing.T) {
		for _, c := range []struct{ onB, onNothing string }{
			{`displayName eq "Beta Sales"`, `displayName eq "Nobody Sales"`},
			{`id eq "` + w.bGroup + `"`, `id eq "` + nothing + `"`},
			{`members[value eq "` + w.bUser + `"]`, `members[value eq "` + nothing + `"]`},
			{`id eq "` + aGroup + `" and members[value eq "` + w.bUser + `"]`, `id eq "` + aGroup + `" and members[value eq "` + nothing + `"]`},
		} {
			onB := a.SCIM("GET", "/Groups?filter="+url.QueryEscape(c.onB), nil)
			notMentioned(t, "group filter "+c.onB, onB, w.bIdentifiers()...)
			sameAnswer(t, "group filter "+c.onB, onB, a.SCIM("GET", "/Groups?filter="+url.QueryEscape(c.onNothing), nil))
		}
		notMentioned(t, "A's group listing", a.SCIM("GET", "/Groups", nil), w.bIdentifiers()...)
	})
	t.Run("B's user as a member of A's group is refused or dropped like a missing user", func(t *testing.T) {
		add := func(member string) testenv.Response {
			return a.SCIM("PATCH", "/Groups/"+aGroup, patch(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": member}}}))
		}
		onB, onNothing := add(w.bUser), add(nothing)
		if onB.Status != onNothing.Status {
			t.Errorf("adding B's user: %d %s; adding a missing user: %d %s", onB.Status, onB.Raw, onNothing.Status, onNothing.Raw)
		}
		created := a.SCIM("POST", "/Groups", map[string]any{"schemas": groupSchema, "displayName": "Acme Mixed",
			"members": []map[string]any{{"value": w.bUser}}})
		createdNothing := a.SCIM("POST", "/Groups", map[string]any{"schemas": groupSchema, "displayName": "Acme Mixed 2",
			"members": []map[string]any{{"value": nothing}}})
		if created.Status != createdNothing.Status {
			t.Errorf("POST with B's member: %d %s; with a missing member: %d %s", created.Status, created.Raw, createdNothing.Status, createdNothing.Raw)
		}
		notMentioned(t, "A's group after adding B's user", a.SCIM("GET", "/Groups/"+aGroup, nil), w.bUser)
		notMentioned(t, "A's new group", created, w.bUser)
		// B's user does not show A's groups.
		r := w.b.SCIM("GET", "/Users/"+w.bUser, nil)
		notMentioned(t, "B's user", r, aGroup, "Acme")
	})
	t.Run("B's group displayName is free in A", func(t *testing.T) {
		if r := a.SCIM("POST", "/Groups", map[string]any{"schemas": groupSchema, "displayName": "Beta Sales"}); r.Status != 201 {
			t.Fatalf("A creating B's group name: %d %s", r.Status, r.Raw)
		}
	})
	if r := w.b.SCIM("GET", "/Groups/"+w.bGroup, nil); r.Status != 200 || r.JSON["displayName"] != "Beta Sales" ||
		!strings.Contains(string(r.Raw), w.bUser) {
		t.Fatalf("B's group changed: %d %s", r.Status, r.Raw)
	}
}

func TestTenantAdminTokensCannotReachAnotherTenant(t *testing.T) {
	w := newWorld(t)
	env := w.env
	as := func(method, path string, body any) testenv.Response {
		return env.Do(method, "/admin/v1"+path, w.aAdmin, body)
	}
	nothing := randomID()

	t.Run("every tenant route on B answers like a missing tenant, by id and by name", func(t *testing.T) {
		routes := []struct {
			method, path string
			body         any
		}{
			{"GET", "", nil},
			{"PATCH", "", map[string]any{"seats": 1}},
			{"PUT", "/policy", map[string]any{"noticePeriod": "0s", "wipe": "none"}},
			{"PUT", "/oidc", map[string]any{"issuer": "https://evil.example", "audience": "x"}},
			{"DELETE", "/oidc", nil},
			{"POST", "/tokens", map[string]any{"scope": "scim"}},
			{"GET", "/tokens", nil},
			{"DELETE", "/tokens/" + w.bAdminID, nil},
			{"POST", "/connectors", map[string]any{"type": "webhook", "name": "x", "config": map[string]any{"url": "http://127.0.0.1:9", "secret": hookSecret}}},
			{"GET", "/connectors", nil},
			{"GET", "/connectors/" + w.bWebhook, nil},
			{"GET", "/connectors/beta-only", nil},
			{"DELETE", "/connectors/" + w.bWebhook, nil},
			{"POST", "/connectors/" + w.bWebhook + "/check", nil},
			{"GET", "/seats", nil},
			{"GET", "/jobs", nil},
			{"GET", "/jobs?state=done", nil},
			{"GET", "/audit", nil},
			{"POST", "/brake/confirm", nil},
			{"POST", "/brake/cancel", nil},
			{"GET", "/employees/" + w.bUser, nil},
			{"POST", "/employees/" + w.bUser + "/credentials", nil},
			{"POST", "/employees/" + w.bUser + "/devices", map[string]any{"connector": "apple", "deviceId": "d1"}},
			{"POST", "/employees/" + w.bLeaver + "/jobs/" + w.bJob + "/retry", nil},
			{"POST", "/employees/" + w.bLeaver + "/jobs/" + w.bJob + "/approve", nil},
			{"POST", "/employees/" + w.bLeaver + "/jobs/" + w.bJob + "/reject", nil},
		}
		for _, rt := range routes {
			missing := as(rt.method, "/tenants/"+nothing[:20]+rt.path, rt.body)
			sameAnswer(t, rt.method+" <B's id>"+rt.path, as(rt.method, "/tenants/"+w.b.ID+rt.path, rt.body), missing)
			sameAnswer(t, rt.method+" beta"+rt.path, as(rt.method, "/tenants/beta"+rt.path, rt.body),
				as(rt.method, "/tenants/nosuchtenant"+rt.path, rt.body))
		}
	})
	t.Run("B's objects under A's own tenant path answer like missing ones", func(t *testing.T) {
		own := "/tenants/" + w.a.ID
		for _, c := range []struct {
			method, onB, onNothing string
			body                   any
		}{
			{"GET", "/employees/" + w.bUser, "/employees/" + nothing, nil},
			{"GET", "/employees/" + w.bLeaver, "/employees/" + nothing, nil},
			{"POST", "/employees/" + w.bUser + "/credentials", "/employees/" + nothing + "/credentials", nil},
			{"POST", "/employees/" + w.bUser + "/devices", "/employees/" + nothing + "/devices", map[string]any{"connector": "apple", "deviceId": "d1", "ownership": "company"}},
			{"POST", "/employees/" + w.bLeaver + "/jobs/" + w.bJob + "/retry", "/employees/" + nothing + "/jobs/" + w.bJob + "/retry", nil},
			{"POST", "/employees/" + w.bLeaver + "/jobs/" + w.bJob + "/approve", "/employees/" + nothing + "/jobs/" + w.bJob + "/approve", nil},
			{"POST", "/employees/" + w.bLeaver + "/jobs/" + w.bJob + "/reject", "/employees/" + nothing + "/jobs/" + w.bJob + "/reject", nil},
			{"GET", "/connectors/" + w.bWebhook, "/connectors/" + nothing, nil},
			{"GET", "/connectors/beta-only", "/connectors/nosuchname", nil},
			{"POST", "/connectors/" + w.bWebhook + "/check", "/connectors/" + nothing + "/check", nil},
			{"DELETE", "/connectors/" + w.bWebhook, "/connectors/" + nothing, nil},
			{"DELETE", "/connectors/beta-only", "/connectors/nosuchname", nil},
			{"DELETE", "/tokens/" + w.bAdminID, "/tokens/" + nothing[:16], nil},
			{"DELETE", "/tokens/" + w.bMsgID, "/tokens/" + nothing[:16], nil},
		} {
			sameAnswer(t, c.method+" "+c.onB, as(c.method, own+c.onB, c.body), as(c.method, own+c.onNothing, c.body))
		}
	})
	t.Run("A's listings show nothing of B", func(t *testing.T) {
		own := "/tenants/" + w.a.ID
		for _, p := range []string{"", "/tokens", "/connectors", "/seats", "/audit", "/audit?limit=5000",
			"/jobs", "/jobs?state=pending", "/jobs?state=done", "/jobs?state=running", "/jobs?state=failed"} {
			r := as("GET", own+p, nil)
			if r.Status != 200 {
				t.Errorf("GET %s: %d %s", p, r.Status, r.Raw)
			}
			notMentioned(t, "GET "+p, r, w.bIdentifiers()...)
		}
		if s := as("GET", own+"/seats", nil); s.JSON["used"] != float64(1) {
			t.Errorf("A's seats count B's users: %s", s.Raw)
		}
	})
	t.Run("names are per tenant: B's connector name is free in A", func(t *testing.T) {
		r := as("POST", "/tenants/"+w.a.ID+"/connectors", map[string]any{"type": "webhook", "name": "beta-only",
			"config": map[string]any{"url": "http://127.0.0.1:9", "secret": hookSecret}})
		if r.Status != 201 {
			t.Fatalf("A creating B's connector name: %d %s", r.Status, r.Raw)
		}
	})
	w.unchanged(t)
}

func TestTenantAsMessengerTokenAndHooksLearnNothingOfTenantB(t *testing.T) {
	w := newWorld(t)
	env := w.env

	t.Run("B's messenger ID answers like a never issued one", func(t *testing.T) {
		for _, nothing := range []string{"ZZZZZZZZ", "A0A0A0A0"} {
			sameAnswer(t, "ID status of B's ID", env.Do("GET", "/messenger/v1/ids/"+w.bWorkID, w.aMsg, nil),
				env.Do("GET", "/messenger/v1/ids/"+nothing, w.aMsg, nil))
		}
		sameAnswer(t, "ID status of B's lowercased ID", env.Do("GET", "/messenger/v1/ids/"+strings.ToLower(w.bWorkID), w.aMsg, nil),
			env.Do("GET", "/messenger/v1/ids/zzzzzzzz", w.aMsg, nil))
		if r := env.Do("GET", "/messenger/v1/ids/"+w.bWorkID, w.bMsg, nil); r.Status != 200 {
			t.Fatalf("B's own ID: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("the license check tells a wrong password from an unknown ID in no way", func(t *testing.T) {
		code1, body1 := check(env, w.bWorkID, "wrong-password")
		code2, body2 := check(env, "ZZZZZZZZ", "wrong-password")
		if code1 != 401 || code2 != 401 || body1["error"] != body2["error"] {
			t.Fatalf("B's ID with a wrong password: %d %v; unknown ID: %d %v", code1, body1, code2, body2)
		}
	})
	t.Run("hook URLs only open with their own connector and secret", func(t *testing.T) {
		secretOf := func(hook string) (id, secret string) {
			parts := strings.Split(hook, "/")
			return parts[len(parts)-2], parts[len(parts)-1]
		}
		aID, aSecret := secretOf(w.aNanoHook)
		bID, bSecret := secretOf(w.bNanoHook)
		if aID != w.aNanoID || bID != w.bNano {
			t.Fatalf("hook URLs %s %s", w.aNanoHook, w.bNanoHook)
		}
		post := func(path string) testenv.Response {
			return env.Do("POST", path, "", `{"topic":"mdm.CheckOut"}`, "Content-Type", "application/json")
		}
		missing := post("/hooks/nanomdm/" + randomID() + "/" + randomID())
		for _, p := range []string{
			"/hooks/nanomdm/" + bID + "/" + aSecret,
			"/hooks/nanomdm/" + aID + "/" + bSecret,
			"/hooks/nanomdm/" + bID + "/" + bSecret[:len(bSecret)-1],
			"/hooks/nanomdm/" + bID + "/" + strings.ToUpper(bSecret),
			"/hooks/webhook/" + w.bWebhook + "/" + bSecret,
			"/hooks/nanomdm/" + w.bWebhook + "/" + bSecret,
		} {
			sameAnswer(t, "POST "+p, post(p), missing)
		}
		if r := post(strings.TrimPrefix(w.bNanoHook, env.URL)); r.Status == 404 {
			t.Fatalf("B's own hook URL is 404: %s", r.Raw)
		}
	})
	w.unchanged(t)
}

// countingHasher counts password comparisons.
type countingHasher struct {
	lifecycle.BcryptHasher
	compares atomic.Int64
}

func (h *countingHasher) Compare(hash, p string) bool {
	h.compares.Add(1)
	return h.BcryptHasher.Compare(hash, p)
}

func TestTheLicenseCheckCostsTheSameForEveryRefusal(t *testing.T) {
	h := &countingHasher{BcryptHasher: lifecycle.BcryptHasher{Cost: 4}}
	env := testenv.Start(t, testenv.Options{Service: []lifecycle.Option{lifecycle.WithHasher(h)}})
	beta := env.CreateTenant("beta", 10)
	live := mustCreate(t, beta, "live@beta.com", "live")
	user, pass := credentials(t, beta, live)
	gone := mustCreate(t, beta, "gone@beta.com", "gone")
	goneUser, _ := credentials(t, beta, gone)
	if r := patchActive(beta, gone, false); r.Status != 204 {
		t.Fatalf("offboard: %d", r.Status)
	}
	for _, c := range []struct{ name, user, pass string }{
		{"a live ID with a wrong password", user, pass + "x"},
		{"an offboarded ID", goneUser, "whatever-password"},
		{"a never issued ID", "ZZZZZZZZ", "whatever-password"},
		{"a malformed ID", "not-an-id", "whatever-password"},
	} {
		t.Run(c.name+" costs exactly one password comparison", func(t *testing.T) {
			before := h.compares.Load()
			if code, _ := check(env, c.user, c.pass); code != 401 {
				t.Fatalf("status %d", code)
			}
			if n := h.compares.Load() - before; n != 1 {
				t.Fatalf("%d comparisons: the refusal's timing tells this case apart", n)
			}
		})
	}
	if code, _ := check(env, user, pass); code != 200 {
		t.Fatalf("the right password: %d", code)
	}
}
