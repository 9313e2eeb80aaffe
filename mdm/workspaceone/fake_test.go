package workspaceone_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const (
	tenantCode   = "1Ab2Cd3Ef4Gh5Ij6Kl7Mn8Op9Qr0StUvWxYz=="
	clientID     = "3c9e0b7a51d24f6e8a1b2c3d4e5f6a7b"
	clientSecret = "A1B2C3D4E5F60718293A4B5C6D7E8F90"
	username     = "svc-offboard"
	password     = "b4sic-p4ssw0rd!"
	appID        = 4711
)

// fakeWS1 speaks the parts of the Workspace ONE UEM REST API v1 (and its OAuth token endpoint)
// the connector uses, and refuses what Workspace ONE refuses: a missing aw-tenant-code, bad
// credentials, a missing API version, device commands with a body, uninstall bodies of the
// wrong shape.
type fakeWS1 struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	devices   []map[string]any
	issued    int
	valid     map[string]bool
	failNext  []failure
	actions   map[string]int
	uninstall map[string]int
}

type failure struct {
	status int
	header http.Header
}

func newFakeWS1(t *testing.T) *fakeWS1 {
	f := &fakeWS1{t: t, valid: map[string]bool{}, actions: map[string]int{}, uninstall: map[string]int{}}
	raw, err := os.ReadFile("testdata/devices.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &f.devices); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewTLSServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func ws1Err(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errorCode": code, "message": msg, "activityId": "c0a8e2f1-0000-4000-8000-000000000000"})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeWS1) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/connect/token" {
		f.token(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/API/") {
		http.NotFound(w, r)
		return
	}
	if !f.authorized(r) {
		ws1Err(w, http.StatusUnauthorized, 1005, "User credentials are invalid.")
		return
	}
	if r.Header.Get("Accept") != "application/json;version=1" {
		ws1Err(w, http.StatusNotAcceptable, 1001, "Accept must name the API version")
		return
	}
	if len(f.failNext) > 0 {
		fl := f.failNext[0]
		f.failNext = f.failNext[1:]
		for k, v := range fl.header {
			w.Header()[k] = v
		}
		ws1Err(w, fl.status, 9999, "injected failure")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/API/"), "/")
	switch {
	case r.Method == "GET" && r.URL.Path == "/API/system/info":
		writeJSON(w, map[string]string{"ProductName": "Workspace ONE UEM", "ProductVersion": "24.10.0.4"})
	case r.Method == "GET" && r.URL.Path == "/API/mdm/devices/search":
		f.search(w, r)
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "mdm" && parts[1] == "devices":
		if d := f.device(parts[2]); d != nil {
			writeJSON(w, d)
		} else {
			ws1Err(w, http.StatusNotFound, 404, "Device not found")
		}
	case r.Method == "POST" && len(parts) == 4 && parts[1] == "devices" && parts[3] == "commands":
		f.command(w, r, parts[2])
	case r.Method == "POST" && r.URL.Path == "/API/mam/apps/public/"+strconv.Itoa(appID)+"/uninstall":
		f.uninstallApp(w, r)
	default:
		ws1Err(w, http.StatusNotFound, 404, "Endpoint not found")
	}
}

func (f *fakeWS1) authorized(r *http.Request) bool {
	if r.Header.Get("aw-tenant-code") != tenantCode {
		return false
	}
	auth := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(auth, "Bearer "); ok {
		return f.valid[tok]
	}
	if b, ok := strings.CutPrefix(auth, "Basic "); ok {
		raw, _ := base64.StdEncoding.DecodeString(b)
		return string(raw) == username+":"+password
	}
	return false
}

func (f *fakeWS1) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"invalid_request"}`)
		return
	}
	r.ParseForm()
	if r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"unsupported_grant_type"}`)
		return
	}
	if r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != clientSecret {
		w.WriteHeader(400) // the identity server answers invalid_client with 400
		io.WriteString(w, `{"error":"invalid_client"}`)
		return
	}
	f.issued++
	tok := fmt.Sprintf("ws1-access-%d", f.issued)
	f.valid[tok] = true
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": 3600, "token_type": "Bearer", "scope": "api"})
}

func (f *fakeWS1) device(id string) map[string]any {
	for _, d := range f.devices {
		if strconv.Itoa(int(d["Id"].(map[string]any)["Value"].(float64))) == id {
			return d
		}
	}
	return nil
}

// search matches user names loosely (prefix), as the console's search does, so the connector
// must keep only exact matches.
func (f *fakeWS1) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	user := strings.ToLower(q.Get("user"))
	var match []map[string]any
	for _, d := range f.devices {
		if user != "" && strings.HasPrefix(strings.ToLower(d["UserName"].(string)), user) {
			match = append(match, d)
		}
	}
	if len(match) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	page, _ := strconv.Atoi(q.Get("page"))
	size, _ := strconv.Atoi(q.Get("pagesize"))
	if size <= 0 {
		size = 500
	}
	from, to := min(page*size, len(match)), min((page+1)*size, len(match))
	writeJSON(w, map[string]any{"Devices": match[from:to], "Page": page, "PageSize": size, "Total": len(match)})
}

func (f *fakeWS1) command(w http.ResponseWriter, r *http.Request, id string) {
	if r.ContentLength != 0 {
		ws1Err(w, 400, 400, "device commands take no body")
		return
	}
	name := r.URL.Query().Get("command")
	pending := map[string]string{"EnterpriseWipe": "EnterpriseWipePending", "DeviceWipe": "DeviceWipePending"}[name]
	if pending == "" {
		ws1Err(w, 400, 400, "Invalid command")
		return
	}
	d := f.device(id)
	if d == nil {
		ws1Err(w, 404, 404, "Device not found")
		return
	}
	d["EnrollmentStatus"] = pending
	f.actions[id]++
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeWS1) uninstallApp(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") != "application/json" {
		ws1Err(w, 415, 415, "Unsupported media type")
		return
	}
	var body struct {
		DeviceID *int64 `json:"DeviceId"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.DeviceID == nil {
		ws1Err(w, 400, 400, "DeviceId is required")
		return
	}
	id := strconv.FormatInt(*body.DeviceID, 10)
	if f.device(id) == nil {
		ws1Err(w, 404, 404, "Device not found")
		return
	}
	f.actions[id]++
	f.uninstall[id]++
	w.WriteHeader(http.StatusAccepted)
}

// mdmtest.Fake

func (f *fakeWS1) FailNext(status int, h http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = append(f.failNext, failure{status, h})
}

func (f *fakeWS1) RevokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.valid)
}

func (f *fakeWS1) RemoveDevice(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices = slices.DeleteFunc(f.devices, func(d map[string]any) bool {
		return strconv.Itoa(int(d["Id"].(map[string]any)["Value"].(float64))) == id
	})
}

func (f *fakeWS1) CompleteCommands(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.device(id); d != nil && strings.HasSuffix(d["EnrollmentStatus"].(string), "Pending") {
		d["EnrollmentStatus"] = "Unenrolled"
	}
}

func (f *fakeWS1) Actions(target string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.actions[target]
}

func (f *fakeWS1) TokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued
}
