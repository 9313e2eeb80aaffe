package intune_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm/mdmtest"
)

const (
	tenantID     = "contoso.onmicrosoft.com"
	clientID     = "6731de76-14a6-49ae-97bc-6eba6914391e"
	clientSecret = "gr4ph~s3cret.value_0123456789"
	appID        = "9a2e6c1d-3b4f-4e5a-8c7d-1f0e2d3c4b5a"
	groupID      = "7c6b5a49-3827-4165-9e8d-7c6b5a493827"
	requiredGrp  = "11111111-2222-4333-8444-555555555555"
)

// fakeGraph speaks the parts of Microsoft Graph v1.0 and the Microsoft identity platform token
// endpoint the connector uses, and refuses what Graph refuses: missing or stale bearer tokens,
// malformed OData filters, bodies of the wrong shape or content type.
type fakeGraph struct {
	t   *testing.T
	srv *httptest.Server
	now time.Time

	mu          sync.Mutex
	devices     []map[string]any // in list order
	issued      int
	valid       map[string]bool
	failNext    []failure
	assignments []map[string]any
	members     map[string]bool
	actions     map[string]int
	log         []string
}

type failure struct {
	status int
	header http.Header
}

var filterRE = regexp.MustCompile(`^userPrincipalName eq '((?:[^']|'')*)'$`)

func newFakeGraph(t *testing.T) *fakeGraph {
	f := &fakeGraph{t: t, now: mdmtest.Occurred.Add(2 * time.Minute), valid: map[string]bool{},
		members: map[string]bool{}, actions: map[string]int{}}
	raw, err := os.ReadFile("testdata/managed_devices.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &f.devices); err != nil {
		t.Fatal(err)
	}
	var as struct {
		Value []map[string]any `json:"value"`
	}
	raw, err = os.ReadFile("testdata/app_assignments.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &as); err != nil {
		t.Fatal(err)
	}
	f.assignments = as.Value
	f.srv = httptest.NewTLSServer(f)
	t.Cleanup(f.srv.Close)
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

func (f *fakeGraph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/"+tenantID+"/oauth2/v2.0/token" {
		f.token(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1.0/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !f.valid[tok] {
		graphErr(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
		return
	}
	if len(f.failNext) > 0 {
		fl := f.failNext[0]
		f.failNext = f.failNext[1:]
		for k, v := range fl.header {
			w.Header()[k] = v
		}
		graphErr(w, fl.status, "TooManyRequests", "injected failure")
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
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "deviceManagement" && parts[1] == "managedDevices":
		if d := f.device(parts[2]); d != nil {
			writeJSON(w, project(d, r.URL.Query().Get("$select")))
		} else {
			graphErr(w, http.StatusNotFound, "ResourceNotFound", "Resource not found")
		}
	case r.Method == "POST" && len(parts) == 4 && parts[1] == "managedDevices" && (parts[3] == "wipe" || parts[3] == "retire"):
		f.deviceAction(w, r, parts[2], parts[3])
	case r.Method == "GET" && rest == "deviceAppManagement/mobileApps/"+appID+"/assignments":
		writeJSON(w, map[string]any{"value": f.assignments})
	case r.Method == "POST" && rest == "deviceAppManagement/mobileApps/"+appID+"/assign":
		f.assign(w, r)
	case r.Method == "POST" && rest == "groups/"+groupID+"/members/$ref":
		f.addMember(w, r)
	default:
		graphErr(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+parts[0]+"'.")
	}
}

func (f *fakeGraph) token(w http.ResponseWriter, r *http.Request) {
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
	case r.PostForm.Get("scope") != f.srv.URL+"/.default":
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for scope is not valid."}`)
	case r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != clientSecret:
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`)
	default:
		f.issued++
		tok := fmt.Sprintf("eyJ0eXAiOiJKV1Qi.graph-%d", f.issued)
		f.valid[tok] = true
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

func (f *fakeGraph) device(id string) map[string]any {
	for _, d := range f.devices {
		if d["id"] == id {
			return d
		}
	}
	return nil
}

func (f *fakeGraph) listDevices(w http.ResponseWriter, r *http.Request) {
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
	for _, need := range []string{"id", "operatingSystem", "managedDeviceOwnerType"} {
		if !slices.Contains(strings.Split(sel, ","), need) {
			graphErr(w, http.StatusBadRequest, "BadRequest", "test fake: $select lacks "+need)
			return
		}
	}
	var match []map[string]any
	for _, d := range f.devices {
		if strings.EqualFold(d["userPrincipalName"].(string), upn) {
			match = append(match, project(d, sel))
		}
	}
	// One device per page, so the connector must follow @odata.nextLink.
	skip, _ := strconv.Atoi(q.Get("$skiptoken"))
	page := map[string]any{"@odata.context": f.srv.URL + "/v1.0/$metadata#deviceManagement/managedDevices", "value": []any{}}
	if skip < len(match) {
		page["value"] = match[skip : skip+1]
	}
	if skip+1 < len(match) {
		q.Set("$skiptoken", strconv.Itoa(skip+1))
		page["@odata.nextLink"] = f.srv.URL + "/v1.0/deviceManagement/managedDevices?" + q.Encode()
	}
	writeJSON(w, page)
}

func (f *fakeGraph) deviceAction(w http.ResponseWriter, r *http.Request, id, action string) {
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
	f.actions[id]++
	d["managementState"] = action + "Pending"
	results := d["deviceActionResults"].([]any)
	d["deviceActionResults"] = append(results, map[string]any{
		"actionName": action, "actionState": "pending",
		"startDateTime": f.now.Format(time.RFC3339), "lastUpdatedDateTime": f.now.Format(time.RFC3339),
	})
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeGraph) assign(w http.ResponseWriter, r *http.Request) {
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

func (f *fakeGraph) addMember(w http.ResponseWriter, r *http.Request) {
	var ref map[string]string
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ref); err != nil || len(ref) != 1 {
		graphErr(w, http.StatusBadRequest, "BadRequest", "invalid reference body")
		return
	}
	userID, ok := strings.CutPrefix(ref["@odata.id"], f.srv.URL+"/v1.0/directoryObjects/")
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
			f.actions[d["id"].(string)]++
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// mdmtest.Fake

func (f *fakeGraph) FailNext(status int, h http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = append(f.failNext, failure{status, h})
}

func (f *fakeGraph) RevokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.valid)
}

func (f *fakeGraph) RemoveDevice(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices = slices.DeleteFunc(f.devices, func(d map[string]any) bool { return d["id"] == id })
}

func (f *fakeGraph) CompleteCommands(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.device(id); d != nil {
		for _, r := range d["deviceActionResults"].([]any) {
			r.(map[string]any)["actionState"] = "done"
		}
	}
}

func (f *fakeGraph) Actions(target string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.actions[target]
}

func (f *fakeGraph) TokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued
}

// failOn answers the first Graph request with method with status and Retry-After, then lets the
// fake answer.
func failOn(f *fakeGraph, method string, status int, retryAfter string) http.Handler {
	var once sync.Once
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
		f.ServeHTTP(w, r)
	})
}

// hijackNextLink answers device lists with one device and a nextLink to link.
func hijackNextLink(f *fakeGraph, link string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && r.URL.Path == "/v1.0/deviceManagement/managedDevices" {
			writeJSON(w, map[string]any{"value": []any{project(f.devices[0], "id,userPrincipalName")}, "@odata.nextLink": link})
			return
		}
		f.ServeHTTP(w, r)
	})
}
