// Package workspaceonetest is an httptest fake of the parts of the Workspace ONE UEM REST API v1
// (and its OAuth token endpoint) that the Workspace ONE connector uses. It refuses what Workspace
// ONE refuses (a missing aw-tenant-code, bad credentials, a missing API version, device commands
// with a body, uninstall bodies of the wrong shape) and implements mdmtest.Fake, so the
// connector's own tests and Offboard's end-to-end tests drive the same wire format.
package workspaceonetest

import (
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/offboard/offboard/mdm/mdmtest"
	"github.com/offboard/offboard/mdm/mdmtest/vendorfake"
)

// The credentials and app the fake knows.
const (
	TenantCode   = "1Ab2Cd3Ef4Gh5Ij6Kl7Mn8Op9Qr0StUvWxYz=="
	ClientID     = "3c9e0b7a51d24f6e8a1b2c3d4e5f6a7b"
	ClientSecret = "A1B2C3D4E5F60718293A4B5C6D7E8F90"
	Username     = "svc-offboard"
	Password     = "b4sic-p4ssw0rd!"
	AppID        = 4711
)

// Jane has two devices: a corporate iPhone and an employee-owned Android phone. The enrollment
// user is "jane.doe" (her userName without the domain: use stripDomain).
const (
	JaneUserName = "jane.doe"
	JaneEmail    = "jane.doe@example.com"
	JaneIPhone   = "12345"
	JaneAndroid  = "12346"
)

//go:embed testdata/devices.json
var devicesJSON []byte

var _ mdmtest.Fake = (*WS1)(nil)

// WS1 is the fake. Its zero value is not usable; call New. Its URL is the API server's URL; the
// token endpoint is URL()+"/connect/token". Actions counts the commands and uninstalls applied
// to a device.
type WS1 struct {
	*vendorfake.Base
	t testing.TB

	// The fields below are guarded by Base.Mu.
	devices   []map[string]any
	uninstall map[string]int
}

// Request is one request the fake received.
type Request = vendorfake.Request

// New starts a fake on a TLS httptest server that stops when the test ends. Its clock stands
// two minutes after mdmtest.Occurred until SetClock or SetNow.
func New(t testing.TB) *WS1 {
	f := &WS1{t: t, uninstall: map[string]int{}}
	if err := json.Unmarshal(devicesJSON, &f.devices); err != nil {
		t.Fatal(err)
	}
	f.Base = vendorfake.Start(t, f)
	return f
}

// Uninstalls counts the app uninstalls sent for a device.
func (f *WS1) Uninstalls(id string) int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.uninstall[id]
}

// EnrollmentStatus is a device's EnrollmentStatus ("" for an unknown device).
func (f *WS1) EnrollmentStatus(id string) string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if d := f.device(id); d != nil {
		return d["EnrollmentStatus"].(string)
	}
	return ""
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

func (f *WS1) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Record(r)
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
	if status, ok := f.PopFailure(w); ok {
		ws1Err(w, status, 9999, "injected failure")
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
	case r.Method == "POST" && r.URL.Path == "/API/mam/apps/public/"+strconv.Itoa(AppID)+"/uninstall":
		f.uninstallApp(w, r)
	default:
		ws1Err(w, http.StatusNotFound, 404, "Endpoint not found")
	}
}

func (f *WS1) authorized(r *http.Request) bool {
	if r.Header.Get("aw-tenant-code") != TenantCode {
		return false
	}
	auth := r.Header.Get("Authorization")
	if strings.HasPrefix(auth, "Bearer ") {
		return f.Bearer(r)
	}
	if b, ok := strings.CutPrefix(auth, "Basic "); ok {
		raw, _ := base64.StdEncoding.DecodeString(b)
		return string(raw) == Username+":"+Password
	}
	return false
}

func (f *WS1) token(w http.ResponseWriter, r *http.Request) {
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
	if r.PostForm.Get("client_id") != ClientID || r.PostForm.Get("client_secret") != ClientSecret {
		w.WriteHeader(400) // the identity server answers invalid_client with 400
		io.WriteString(w, `{"error":"invalid_client"}`)
		return
	}
	tok := f.IssueToken("ws1-access-")
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": 3600, "token_type": "Bearer", "scope": "api"})
}

func (f *WS1) device(id string) map[string]any {
	for _, d := range f.devices {
		if strconv.Itoa(int(d["Id"].(map[string]any)["Value"].(float64))) == id {
			return d
		}
	}
	return nil
}

// search matches user names loosely (prefix), as the console's search does, so the connector
// must keep only exact matches.
func (f *WS1) search(w http.ResponseWriter, r *http.Request) {
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

func (f *WS1) command(w http.ResponseWriter, r *http.Request, id string) {
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
	f.CountAction(id)
	w.WriteHeader(http.StatusAccepted)
}

func (f *WS1) uninstallApp(w http.ResponseWriter, r *http.Request) {
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
	f.CountAction(id)
	f.uninstall[id]++
	w.WriteHeader(http.StatusAccepted)
}

// mdmtest.Fake (FailNext, RevokeTokens, Actions and TokenRequests come with the Base)

// RemoveDevice makes Workspace ONE forget a device.
func (f *WS1) RemoveDevice(id string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.devices = slices.DeleteFunc(f.devices, func(d map[string]any) bool {
		return strconv.Itoa(int(d["Id"].(map[string]any)["Value"].(float64))) == id
	})
}

// CompleteCommands carries out a pending wipe: the device is unenrolled.
func (f *WS1) CompleteCommands(id string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if d := f.device(id); d != nil && strings.HasSuffix(d["EnrollmentStatus"].(string), "Pending") {
		d["EnrollmentStatus"] = "Unenrolled"
	}
}
