// Package intunetest is an httptest fake of the parts of Microsoft Graph v1.0 and the Microsoft
// identity platform token endpoint that the Intune connector uses. It refuses what Graph refuses
// (missing or stale bearer tokens, malformed OData filters, bodies of the wrong shape or content
// type) and implements mdmtest.Fake, so the connector's own tests and Offboard's end-to-end tests
// drive the same wire format.
package intunetest

import (
	_ "embed"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm/mdmtest"
	"github.com/offboard/offboard/mdm/mdmtest/vendorfake"
)

var _ mdmtest.Fake = (*Graph)(nil)

// The app registration, app and groups the fake knows.
const (
	TenantID      = "contoso.onmicrosoft.com"
	ClientID      = "6731de76-14a6-49ae-97bc-6eba6914391e"
	ClientSecret  = "gr4ph~s3cret.value_0123456789"
	AppID         = "9a2e6c1d-3b4f-4e5a-8c7d-1f0e2d3c4b5a"
	GroupID       = "7c6b5a49-3827-4165-9e8d-7c6b5a493827"
	RequiredGroup = "11111111-2222-4333-8444-555555555555"
)

// Jane is the person with two devices in the fake: an iPhone the company owns and a personal
// Android phone.
const (
	JaneUPN      = "jane.doe@example.com"
	JaneObjectID = "4f2d1e0a-7b7c-4a43-9d6e-2c1f0b3a9e11"
	JaneIPhone   = "705c034c-034c-705c-4c03-5c704c035c70"
	JanePixel    = "2e9f5d8c-61a4-4d0b-b7e3-5a1c9f2d4e60"
)

//go:embed testdata/managed_devices.json
var managedDevicesJSON []byte

//go:embed testdata/app_assignments.json
var appAssignmentsJSON []byte

// Graph is the fake. Its zero value is not usable; call New. Its URL is the base URL of both
// Graph and the login endpoint (graphUrl and loginUrl); Actions counts the wipes, retires and
// offboarding-group memberships applied to a device.
type Graph struct {
	*vendorfake.Base
	t testing.TB

	// The fields below are guarded by Base.Mu.
	devices     []map[string]any // in list order
	assignments []map[string]any
	members     map[string]bool
}

// Request is one request the fake received.
type Request = vendorfake.Request

var filterRE = regexp.MustCompile(`^userPrincipalName eq '((?:[^']|'')*)'$`)

// New starts a fake on a TLS httptest server that stops when the test ends. Its clock stands
// two minutes after mdmtest.Occurred until SetClock or SetNow.
func New(t testing.TB) *Graph {
	f := &Graph{t: t, members: map[string]bool{}}
	if err := json.Unmarshal(managedDevicesJSON, &f.devices); err != nil {
		t.Fatal(err)
	}
	var as struct {
		Value []map[string]any `json:"value"`
	}
	if err := json.Unmarshal(appAssignmentsJSON, &as); err != nil {
		t.Fatal(err)
	}
	f.assignments = as.Value
	f.Base = vendorfake.Start(t, http.HandlerFunc(f.serve))
	return f
}

func graphErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"innerError": map[string]any{"date": "2026-11-28T04:02:00", "request-id": "5e1f0c3a-0000-4000-8000-000000000000"},
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	json.NewEncoder(w).Encode(v)
}

func (f *Graph) serve(w http.ResponseWriter, r *http.Request) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Record(r)
	if r.URL.Path == "/"+TenantID+"/oauth2/v2.0/token" {
		f.token(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1.0/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !f.Bearer(r) {
		graphErr(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
		return
	}
	if status, ok := f.PopFailure(w); ok {
		graphErr(w, status, "TooManyRequests", "injected failure")
		return
	}
	if r.Method == http.MethodPost && r.ContentLength != 0 && r.Header.Get("Content-Type") != "application/json" {
		graphErr(w, http.StatusUnsupportedMediaType, "BadRequest", "Content-Type must be application/json")
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case r.Method == "GET" && rest == "deviceManagement/managedDevices":
		f.listDevices(w, r)
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "users" && parts[2] == "managedDevices":
		f.userDevices(w, r, parts[1])
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "deviceManagement" && parts[1] == "managedDevices":
		if d := f.device(parts[2]); d != nil {
			writeJSON(w, project(d, r.URL.Query().Get("$select")))
		} else {
			graphErr(w, http.StatusNotFound, "ResourceNotFound", "Resource not found")
		}
	case r.Method == "POST" && len(parts) == 4 && parts[1] == "managedDevices" && (parts[3] == "wipe" || parts[3] == "retire"):
		f.deviceAction(w, r, parts[2], parts[3])
	case r.Method == "GET" && rest == "deviceAppManagement/mobileApps/"+AppID+"/assignments":
		writeJSON(w, map[string]any{"value": f.assignments})
	case r.Method == "POST" && rest == "deviceAppManagement/mobileApps/"+AppID+"/assign":
		f.assign(w, r)
	case r.Method == "POST" && rest == "groups/"+GroupID+"/members/$ref":
		f.addMember(w, r)
	default:
		graphErr(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+parts[0]+"'.")
	}
}

func (f *Graph) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_request","error_description":"AADSTS900144: The request body must contain the following parameter: 'grant_type'."}`)
		return
	}
	r.ParseForm()
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"unsupported_grant_type"}`)
	case r.PostForm.Get("scope") != f.URL()+"/.default":
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for scope is not valid."}`)
	case r.PostForm.Get("client_id") != ClientID || r.PostForm.Get("client_secret") != ClientSecret:
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`)
	default:
		tok := f.IssueToken("eyJ0eXAiOiJKV1Qi.graph-")
		writeJSON(w, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
	}
}

// project keeps only the $select-ed properties, as Graph does; a request without $select gets
// everything.
func project(d map[string]any, sel string) map[string]any {
	if sel == "" {
		return d
	}
	out := map[string]any{}
	for _, k := range strings.Split(sel, ",") {
		if v, ok := d[k]; ok {
			out[k] = v
		}
	}
	return out
}

func (f *Graph) device(id string) map[string]any {
	for _, d := range f.devices {
		if d["id"] == id {
			return d
		}
	}
	return nil
}

func (f *Graph) checkSelect(w http.ResponseWriter, sel string) bool {
	for _, need := range []string{"id", "operatingSystem", "managedDeviceOwnerType"} {
		if !slices.Contains(strings.Split(sel, ","), need) {
			graphErr(w, http.StatusBadRequest, "BadRequest", "test fake: $select lacks "+need)
			return false
		}
	}
	return true
}

func (f *Graph) listDevices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("$top") != "" && q.Get("$filter") == "" {
		writeJSON(w, map[string]any{"value": []any{}})
		return
	}
	m := filterRE.FindStringSubmatch(q.Get("$filter"))
	if m == nil {
		graphErr(w, http.StatusBadRequest, "BadRequest", "Invalid filter clause")
		return
	}
	upn := strings.ReplaceAll(m[1], "''", "'")
	sel := q.Get("$select")
	if !f.checkSelect(w, sel) {
		return
	}
	var match []map[string]any
	for _, d := range f.devices {
		if strings.EqualFold(d["userPrincipalName"].(string), upn) {
			match = append(match, project(d, sel))
		}
	}
	// One device per page, so the connector must follow @odata.nextLink.
	skip, _ := strconv.Atoi(q.Get("$skiptoken"))
	page := map[string]any{"@odata.context": f.URL() + "/v1.0/$metadata#deviceManagement/managedDevices", "value": []any{}}
	if skip < len(match) {
		page["value"] = match[skip : skip+1]
	}
	if skip+1 < len(match) {
		q.Set("$skiptoken", strconv.Itoa(skip+1))
		page["@odata.nextLink"] = f.URL() + "/v1.0/deviceManagement/managedDevices?" + q.Encode()
	}
	writeJSON(w, page)
}

// userDevices serves /users/{id}/managedDevices: 404 for a user Entra does not know.
func (f *Graph) userDevices(w http.ResponseWriter, r *http.Request, userID string) {
	sel := r.URL.Query().Get("$select")
	if !f.checkSelect(w, sel) {
		return
	}
	known := false
	out := []any{}
	for _, d := range f.devices {
		if strings.EqualFold(d["userId"].(string), userID) {
			known = true
			out = append(out, project(d, sel))
		}
	}
	if !known {
		graphErr(w, http.StatusNotFound, "Request_ResourceNotFound", "Resource '"+userID+"' does not exist or one of its queried reference-property objects are not present.")
		return
	}
	writeJSON(w, map[string]any{"@odata.context": f.URL() + "/v1.0/$metadata#users('" + userID + "')/managedDevices", "value": out})
}

func (f *Graph) deviceAction(w http.ResponseWriter, r *http.Request, id, action string) {
	body, _ := io.ReadAll(r.Body)
	switch action {
	case "retire":
		if len(body) != 0 {
			graphErr(w, http.StatusBadRequest, "BadRequest", "retire takes no body")
			return
		}
	case "wipe":
		var wb struct {
			KeepEnrollmentData  *bool `json:"keepEnrollmentData"`
			KeepUserData        *bool `json:"keepUserData"`
			PersistEsimDataPlan *bool `json:"persistEsimDataPlan"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&wb); err != nil || wb.KeepEnrollmentData == nil || wb.KeepUserData == nil {
			graphErr(w, http.StatusBadRequest, "BadRequest", "invalid wipe body")
			return
		}
		if *wb.KeepUserData || *wb.KeepEnrollmentData {
			f.t.Errorf("wipe keeps user or enrollment data: %s", body)
		}
	}
	d := f.device(id)
	if d == nil {
		graphErr(w, http.StatusNotFound, "ResourceNotFound", "Resource not found")
		return
	}
	f.CountAction(id)
	d["managementState"] = action + "Pending"
	results := d["deviceActionResults"].([]any)
	now := f.NowLocked().UTC().Format(time.RFC3339)
	d["deviceActionResults"] = append(results, map[string]any{
		"actionName": action, "actionState": "pending", "startDateTime": now, "lastUpdatedDateTime": now,
	})
	w.WriteHeader(http.StatusNoContent)
}

func (f *Graph) assign(w http.ResponseWriter, r *http.Request) {
	var body struct {
		MobileAppAssignments []map[string]any `json:"mobileAppAssignments"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.MobileAppAssignments == nil {
		graphErr(w, http.StatusBadRequest, "BadRequest", "invalid assign body")
		return
	}
	for _, a := range body.MobileAppAssignments {
		target, _ := a["target"].(map[string]any)
		intent, _ := a["intent"].(string)
		if a["@odata.type"] != "#microsoft.graph.mobileAppAssignment" || target == nil || target["@odata.type"] == nil ||
			!slices.Contains([]string{"available", "required", "uninstall", "availableWithoutEnrollment"}, intent) {
			graphErr(w, http.StatusBadRequest, "BadRequest", "invalid mobileAppAssignment")
			return
		}
	}
	f.assignments = body.MobileAppAssignments
	w.WriteHeader(http.StatusNoContent)
}

func (f *Graph) addMember(w http.ResponseWriter, r *http.Request) {
	var ref map[string]string
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ref); err != nil || len(ref) != 1 {
		graphErr(w, http.StatusBadRequest, "BadRequest", "invalid reference body")
		return
	}
	userID, ok := strings.CutPrefix(ref["@odata.id"], f.URL()+"/v1.0/directoryObjects/")
	if !ok {
		graphErr(w, http.StatusBadRequest, "BadRequest", "Invalid object identifier")
		return
	}
	if f.members[userID] {
		graphErr(w, http.StatusBadRequest, "Request_BadRequest",
			"One or more added object references already exist for the following modified properties: 'members'.")
		return
	}
	f.members[userID] = true
	for _, d := range f.devices {
		if d["userId"] == userID {
			f.CountAction(d["id"].(string))
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// Assignments returns the app's assignments as the fake holds them.
func (f *Graph) Assignments() []map[string]any {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return slices.Clone(f.assignments)
}

// IsMember reports whether user is a member of the offboarding group.
func (f *Graph) IsMember(userID string) bool {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.members[userID]
}

// DeviceField returns one property of a managed device (nil if either is unknown).
func (f *Graph) DeviceField(id, field string) any {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if d := f.device(id); d != nil {
		return d[field]
	}
	return nil
}

// SetActionState sets the actionState of every deviceActionResult of a device, as Intune does
// when the device reports back.
func (f *Graph) SetActionState(id, state string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if d := f.device(id); d != nil {
		for _, r := range d["deviceActionResults"].([]any) {
			r.(map[string]any)["actionState"] = state
		}
	}
}

// Count counts the requests received so far with method whose path ends in suffix.
func (f *Graph) Count(method, suffix string) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Method == method && strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}

// RemoveDevice makes Intune forget a device.
func (f *Graph) RemoveDevice(id string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.devices = slices.DeleteFunc(f.devices, func(d map[string]any) bool { return d["id"] == id })
}

// CompleteCommands marks every action on the device done.
func (f *Graph) CompleteCommands(id string) { f.SetActionState(id, "done") }

// FailOn answers the first Graph request with method with status and Retry-After, then lets the
// fake answer.
func (f *Graph) FailOn(method string, status int, retryAfter string) {
	var once sync.Once
	f.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hit := false
			if r.Method == method && strings.HasPrefix(r.URL.Path, "/v1.0/") {
				once.Do(func() { hit = true })
			}
			if hit {
				w.Header().Set("Retry-After", retryAfter)
				graphErr(w, status, "TooManyRequests", "Too many requests")
				return
			}
			next.ServeHTTP(w, r)
		})
	})
}

// HijackNextLink answers device lists with one device and a nextLink to link.
func (f *Graph) HijackNextLink(link string) {
	f.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "GET" && r.URL.Path == "/v1.0/deviceManagement/managedDevices" {
				f.Mu.Lock()
				first := project(f.devices[0], "id,userPrincipalName")
				f.Mu.Unlock()
				writeJSON(w, map[string]any{"value": []any{first}, "@odata.nextLink": link})
				return
			}
			next.ServeHTTP(w, r)
		})
	})
}
