package scim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/scim"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// noConnectors is a tenant without MDM connectors.
type noConnectors struct{}

func (noConnectors) List(context.Context, string) ([]lifecycle.ConnectorInfo, error) { return nil, nil }
func (noConnectors) Open(context.Context, string, string) (mdm.Connector, error) {
	return nil, identity.ErrNotFound
}

// fastHasher keeps tests fast; the lifecycle's bcrypt is not under test here.
type fastHasher struct{}

func (fastHasher) Hash(p string) (string, error) { return "plain:" + p, nil }
func (fastHasher) Compare(h, p string) bool      { return h == "plain:"+p }

// rig is the SCIM endpoint end to end: mongostore on the embedded store, the lifecycle
// service, the SCIM handler behind a test bearer-token middleware, mounted per tenant at
// /scim/v2/<tenant> with the prefix stripped, as the server does.
type rig struct {
	t      testing.TB
	srv    *httptest.Server
	store  *mongostore.Store
	svc    *lifecycle.Service
	tenant string
	client *http.Client
	url    string // the server's base URL
	token  string // the tenant's bearer token
	env    *testenv.Env
}

// newServerRig runs the rig against the whole server (`offboard serve`'s handlers: real token
// authentication, rate and body limits, the admin API creating tenants) instead of the bare
// SCIM handler.
func newServerRig(t testing.TB) *rig {
	t.Helper()
	env := testenv.Start(t)
	r := &rig{t: t, store: env.Store, svc: env.Service, client: env.HTTP, url: env.URL, env: env}
	tn := env.CreateTenant(newTenantID(), 100000)
	r.tenant, r.token = tn.ID, tn.SCIMToken
	return r
}

func newTenantID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ten" + hex.EncodeToString(b[:])
}

func newRig(t testing.TB, opts ...func(*scim.Config)) *rig {
	t.Helper()
	return newRigOn(t, testdb.New(t), opts...)
}

// newRigOn is newRig on a given store.
func newRigOn(t testing.TB, store *mongostore.Store, opts ...func(*scim.Config)) *rig {
	t.Helper()
	r := &rig{t: t, store: store}
	r.tenant = r.addTenant()
	r.svc = lifecycle.NewService(store, noConnectors{}, lifecycle.WithHasher(fastHasher{}))
	t.Cleanup(r.svc.Close)
	var base string
	cfg := scim.Config{Users: r.svc, Lookup: store, BaseURL: func(tenant string) string { return base + "/scim/v2/" + tenant }}
	for _, o := range opts {
		o(&cfg)
	}
	h := scim.NewHandler(cfg)
	mux := http.NewServeMux()
	mux.HandleFunc("/scim/v2/", func(w http.ResponseWriter, req *http.Request) {
		rest := strings.TrimPrefix(req.URL.Path, "/scim/v2/")
		tenant, _, _ := strings.Cut(rest, "/")
		auth := req.Header.Get("Authorization")
		if auth != "Bearer token-"+tenant {
			scim.WriteError(w, http.StatusUnauthorized, "", "Authentication failed.")
			return
		}
		ctx := scim.WithPrincipal(req.Context(), scim.Principal{Tenant: tenant, Actor: "token:test"})
		http.StripPrefix("/scim/v2/"+tenant, h).ServeHTTP(w, req.WithContext(ctx))
	})
	r.srv = httptest.NewServer(mux)
	base = r.srv.URL
	r.url, r.token = base, "token-"+r.tenant
	t.Cleanup(r.srv.Close)
	r.client = r.srv.Client()
	return r
}

func (r *rig) addTenant() string {
	id := newTenantID()
	tn := &identity.Tenant{ID: id, Name: id, Seats: 100000, Policy: identity.DefaultPolicy(), Created: time.Now()}
	tn.Policy.BrakeThreshold = 0
	if err := r.store.CreateTenant(context.Background(), tn); err != nil {
		r.t.Fatal(err)
	}
	return id
}

// forTenant returns the rig for a new tenant of the same store and handler, bound to t (a
// subtest): a test's database, one tenant per case.
func (r *rig) forTenant(t testing.TB) *rig {
	c := *r
	c.t = t
	if r.env != nil {
		tn := r.env.CreateTenant(newTenantID(), 100000)
		c.tenant, c.token = tn.ID, tn.SCIMToken
		return &c
	}
	c.tenant = r.addTenant()
	c.token = "token-" + c.tenant
	return &c
}

// base is the tenant's SCIM base URL.
func (r *rig) base() string { return r.url + "/scim/v2/" + r.tenant }

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// do sends a request; body may be a string (sent as is), []byte or a value (JSON-encoded).
// path is relative to the tenant's base URL.
func (r *rig) do(method, path string, body any, headers ...string) response {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base()+path, testenv.Body(r.t, body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&out.body); err != nil {
			r.t.Fatalf("%s %s: %d, body is not a JSON object: %q", method, path, resp.StatusCode, raw)
		}
	}
	if err := rfcShaped(out); err != nil {
		r.t.Fatalf("%s %s: not an RFC 7644 answer: %v: %d %s", method, path, err, out.status, raw)
	}
	return out
}

// rfcShaped checks what every SCIM answer must look like, whatever the request: the SCIM
// media type on every body, RFC 7644 §3.12 error bodies (status as a string), list responses
// with integer counts that agree with the page, ETag = meta.version, Location on 201.
func rfcShaped(resp response) error {
	if len(resp.raw) == 0 {
		if resp.status != http.StatusNoContent && resp.status != http.StatusNotModified {
			return fmt.Errorf("empty body with status %d", resp.status)
		}
		return nil
	}
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/scim+json") {
		return fmt.Errorf("Content-Type %q", ct)
	}
	b := resp.body
	if resp.status >= 400 {
		if get(b, "schemas.0") != "urn:ietf:params:scim:api:messages:2.0:Error" {
			return fmt.Errorf("error without the Error schema")
		}
		if s, ok := b["status"].(string); !ok || s != strconv.Itoa(resp.status) {
			return fmt.Errorf("error status %#v", b["status"])
		}
		if resp.status >= 500 && strings.Contains(fmt.Sprint(b["detail"]), ":") {
			return fmt.Errorf("5xx detail looks like internals: %v", b["detail"])
		}
		return nil
	}
	if get(b, "schemas.0") == "urn:ietf:params:scim:api:messages:2.0:ListResponse" {
		for _, k := range []string{"totalResults", "startIndex", "itemsPerPage"} {
			if _, ok := b[k].(json.Number); !ok {
				return fmt.Errorf("%s is %T, not an integer", k, b[k])
			}
		}
		list, ok := b["Resources"].([]any)
		if !ok {
			return fmt.Errorf("Resources missing")
		}
		if num(b["itemsPerPage"]) != len(list) || num(b["totalResults"]) < len(list) {
			return fmt.Errorf("itemsPerPage %d, totalResults %d for %d resources", num(b["itemsPerPage"]), num(b["totalResults"]), len(list))
		}
		return nil
	}
	if v, ok := get(b, "meta.version").(string); ok && resp.header.Get("ETag") != v {
		return fmt.Errorf("ETag %q, meta.version %q", resp.header.Get("ETag"), v)
	}
	if resp.status == http.StatusCreated && (resp.header.Get("Location") == "" || resp.header.Get("Location") != get(b, "meta.location")) {
		return fmt.Errorf("Location %q, meta.location %v", resp.header.Get("Location"), get(b, "meta.location"))
	}
	return nil
}

// must asserts the status and returns the response.
func (r *rig) must(status int, method, path string, body any, headers ...string) response {
	r.t.Helper()
	resp := r.do(method, path, body, headers...)
	if resp.status != status {
		r.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.status, status, resp.raw)
	}
	return resp
}

// createUser creates a user and returns its id.
func (r *rig) createUser(userName string, extra ...map[string]any) string {
	r.t.Helper()
	body := map[string]any{"schemas": []string{scim.UserSchema}, "userName": userName, "active": true}
	for _, e := range extra {
		for k, v := range e {
			body[k] = v
		}
	}
	return str(r.must(http.StatusCreated, "POST", "/Users", body).body["id"])
}

// createGroup creates a group with members and returns its id.
func (r *rig) createGroup(name string, members ...string) string {
	r.t.Helper()
	ms := []any{}
	for _, m := range members {
		ms = append(ms, map[string]any{"value": m})
	}
	body := map[string]any{"schemas": []string{scim.GroupSchema}, "displayName": name, "members": ms}
	return str(r.must(http.StatusCreated, "POST", "/Groups", body).body["id"])
}

func str(v any) string { s, _ := v.(string); return s }

// get follows a dotted path through a decoded body ("meta.version", "Resources.0.id"); keys
// containing dots (extension URNs) match as a whole.
func get(v any, path string) any {
	for path != "" {
		switch x := v.(type) {
		case map[string]any:
			found := false
			for k, e := range x {
				if path == k || strings.HasPrefix(path, k+".") {
					v, path, found = e, strings.TrimPrefix(strings.TrimPrefix(path, k), "."), true
					break
				}
			}
			if !found {
				return nil
			}
		case []any:
			head, rest, _ := strings.Cut(path, ".")
			i, err := strconv.Atoi(head)
			if err != nil || i >= len(x) {
				return nil
			}
			v, path = x[i], rest
		default:
			return nil
		}
	}
	return v
}

func num(v any) int {
	if n, ok := v.(json.Number); ok {
		i, _ := n.Int64()
		return int(i)
	}
	return -1
}

// memberIDs lists a group's member ids.
func (r *rig) memberIDs(group string) []string {
	r.t.Helper()
	resp := r.must(http.StatusOK, "GET", "/Groups/"+group, nil)
	var ids []string
	for _, m := range asList(resp.body["members"]) {
		ids = append(ids, str(get(m, "value")))
	}
	return ids
}

func asList(v any) []any { l, _ := v.([]any); return l }

// isError asserts an RFC 7644 §3.12 error body.
func isError(t testing.TB, resp response, status int, scimType string) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d, want %d: %s", resp.status, status, resp.raw)
	}
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/scim+json") {
		t.Fatalf("error Content-Type %q", ct)
	}
	if s, ok := resp.body["status"].(string); !ok || s != itoa(status) {
		t.Fatalf("error status %#v, want the string %q", resp.body["status"], itoa(status))
	}
	if sc := get(resp.body, "schemas.0"); sc != "urn:ietf:params:scim:api:messages:2.0:Error" {
		t.Fatalf("error schemas %v", resp.body["schemas"])
	}
	if scimType != "" && resp.body["scimType"] != scimType {
		t.Fatalf("scimType %v, want %s: %s", resp.body["scimType"], scimType, resp.raw)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
