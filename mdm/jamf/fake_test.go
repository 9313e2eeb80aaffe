package jamf_test

import (
	"encoding/json"
	"encoding/xml"
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
	clientID     = "2f1c5a7e-9b3d-4e8f-a6c0-1d2e3f4a5b6c"
	clientSecret = "jamf-api-client-s3cret-0123456789"
	appID        = 12
	groupID      = 7
	smartGroupID = 9
)

// fakeJamf speaks the parts of the Jamf Pro API and Classic API the connector uses and refuses
// what Jamf refuses: missing or stale bearer tokens, RSQL it cannot parse, JSON or XML bodies of
// the wrong shape or content type. It also fails the test if more than 5 requests are in flight.
type fakeJamf struct {
	t   *testing.T
	srv *httptest.Server
	now time.Time

	// gate, when set, holds every API request until closed (for the concurrency test).
	gate     chan struct{}
	arrived  chan struct{} // told of each request held at the gate
	inflight int
	peak     int

	mu         sync.Mutex
	devices    []map[string]any
	exclusions []groupRef
	members    map[int][]int // group id -> device ids
	commands   []map[string]any
	issued     int
	valid      map[string]bool
	failNext   []failure
	actions    map[string]int
	log        []string
}

type failure struct {
	status int
	header http.Header
}

type groupRef struct {
	ID   int    `xml:"id"`
	Name string `xml:"name"`
}

// appRecord is how the fake reads testdata/app.xml and PUT bodies.
type appRecord struct {
	XMLName xml.Name `xml:"mobile_device_application"`
	General *struct {
		BundleID string `xml:"bundle_id"`
	} `xml:"general"`
	Scope *struct {
		Exclusions *struct {
			Groups *[]groupRef `xml:"mobile_device_groups>mobile_device_group"`
		} `xml:"exclusions"`
	} `xml:"scope"`
}

var filterRE = regexp.MustCompile(`^(userAndLocation\.emailAddress|userAndLocation\.username|mobileDeviceId|clientManagementId|uuid)=="((?:[^"\\]|\\.)*)"$`)

func newFakeJamf(t *testing.T) *fakeJamf {
	f := &fakeJamf{t: t, now: mdmtest.Occurred.Add(2 * time.Minute), valid: map[string]bool{},
		actions: map[string]int{}, members: map[int][]int{3: {}, groupID: {}, smartGroupID: {}}}
	raw, err := os.ReadFile("testdata/mobile_devices.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &f.devices); err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile("testdata/app.xml")
	if err != nil {
		t.Fatal(err)
	}
	var app appRecord
	if err := xml.Unmarshal(raw, &app); err != nil {
		t.Fatal(err)
	}
	f.exclusions = *app.Scope.Exclusions.Groups
	f.srv = httptest.NewTLSServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func apiErr(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"httpStatus": status, "errors": []any{
		map[string]any{"code": code, "description": desc, "id": "0", "field": nil}}})
}

func classicErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html><head><title>Status page</title></head><body><p>%s</p></body></html>", msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeXML(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "application/xml;charset=UTF-8")
	w.WriteHeader(status)
	io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+s)
}

func (f *fakeJamf) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.inflight++
	f.peak = max(f.peak, f.inflight)
	if f.inflight > 5 {
		f.t.Errorf("%d requests in flight to one Jamf server", f.inflight)
	}
	gate, arrived := f.gate, f.arrived
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.inflight--; f.mu.Unlock() }()
	if gate != nil {
		arrived <- struct{}{}
		<-gate
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/api/oauth/token" {
		f.token(w, r)
		return
	}
	classic := strings.HasPrefix(r.URL.Path, "/JSSResource/")
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !f.valid[tok] {
		if classic {
			classicErr(w, http.StatusUnauthorized, "The request requires user authentication")
		} else {
			apiErr(w, http.StatusUnauthorized, "INVALID_TOKEN", "Unauthorized")
		}
		return
	}
	if len(f.failNext) > 0 {
		fl := f.failNext[0]
		f.failNext = f.failNext[1:]
		for k, v := range fl.header {
			w.Header()[k] = v
		}
		apiErr(w, fl.status, "INJECTED", "injected failure")
		return
	}
	if classic {
		f.classic(w, r)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/json") {
		apiErr(w, http.StatusNotAcceptable, "NOT_ACCEPTABLE", "Accept must allow application/json")
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/v1/jamf-pro-version":
		writeJSON(w, 200, map[string]string{"version": "11.13.1-t1733320000"})
	case r.Method == "GET" && r.URL.Path == "/api/v2/mobile-devices/detail":
		f.inventory(w, r)
	case r.Method == "POST" && r.URL.Path == "/api/v2/mdm/commands":
		f.sendCommand(w, r)
	case r.Method == "GET" && r.URL.Path == "/api/v2/mdm/commands":
		f.listCommands(w, r)
	default:
		apiErr(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint")
	}
}

func (f *fakeJamf) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	r.ParseForm()
	if r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != clientSecret {
		writeJSON(w, 401, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"})
		return
	}
	f.issued++
	tok := fmt.Sprintf("jamf-token-%d", f.issued)
	f.valid[tok] = true
	writeJSON(w, 200, map[string]any{"access_token": tok, "scope": "api-role:2", "token_type": "Bearer", "expires_in": 299})
}

func unquoteRSQL(s string) string {
	return regexp.MustCompile(`\\(.)`).ReplaceAllString(s, "$1")
}

func (f *fakeJamf) inventory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	m := filterRE.FindStringSubmatch(q.Get("filter"))
	if m == nil || !slices.Contains([]string{"userAndLocation.emailAddress", "userAndLocation.username", "mobileDeviceId"}, m[1]) {
		apiErr(w, 400, "INVALID_RSQL_FILTER", "Invalid RSQL filter")
		return
	}
	field, value := m[1], unquoteRSQL(m[2])
	sections := q["section"]
	page, _ := strconv.Atoi(q.Get("page"))
	size, err := strconv.Atoi(q.Get("page-size"))
	if err != nil || size < 1 || size > 2000 {
		apiErr(w, 400, "INVALID_PAGE_SIZE", "page-size must be 1..2000")
		return
	}
	var match []map[string]any
	for _, d := range f.devices {
		var got string
		switch field {
		case "mobileDeviceId":
			got = d["mobileDeviceId"].(string)
		case "userAndLocation.emailAddress":
			got = d["userAndLocation"].(map[string]any)["emailAddress"].(string)
		case "userAndLocation.username":
			got = d["userAndLocation"].(map[string]any)["username"].(string)
		}
		if strings.EqualFold(got, value) {
			rec := map[string]any{"mobileDeviceId": d["mobileDeviceId"], "deviceType": d["deviceType"], "managementId": d["managementId"]}
			for _, s := range sections {
				key := map[string]string{"GENERAL": "general", "HARDWARE": "hardware", "USER_AND_LOCATION": "userAndLocation", "APPLICATIONS": "applications"}[s]
				if key == "" {
					apiErr(w, 400, "INVALID_SECTION", "unknown section "+s)
					return
				}
				rec[key] = d[key]
			}
			match = append(match, rec)
		}
	}
	from, to := min(page*size, len(match)), min((page+1)*size, len(match))
	writeJSON(w, 200, map[string]any{"totalCount": len(match), "results": append([]map[string]any{}, match[from:to]...)})
}

func (f *fakeJamf) deviceBy(key, value string) map[string]any {
	for _, d := range f.devices {
		if d[key] == value {
			return d
		}
	}
	return nil
}

func (f *fakeJamf) sendCommand(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") != "application/json" {
		apiErr(w, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
		return
	}
	var body struct {
		ClientData []struct {
			ManagementID string `json:"managementId"`
			ClientType   string `json:"clientType"`
		} `json:"clientData"`
		CommandData struct {
			CommandType            string `json:"commandType"`
			PreserveDataPlan       *bool  `json:"preserveDataPlan"`
			DisallowProximitySetup *bool  `json:"disallowProximitySetup"`
		} `json:"commandData"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || len(body.ClientData) != 1 || body.ClientData[0].ClientType != "MOBILE_DEVICE" ||
		body.CommandData.CommandType != "ERASE_DEVICE" {
		apiErr(w, 400, "INVALID_FIELD", "invalid command body")
		return
	}
	d := f.deviceBy("managementId", body.ClientData[0].ManagementID)
	if d == nil {
		apiErr(w, 404, "NOT_FOUND", "Client not found")
		return
	}
	id := fmt.Sprintf("3f1e8c1a-0000-4000-8000-%012d", len(f.commands)+1)
	f.commands = append(f.commands, map[string]any{
		"uuid": id, "clientManagementId": d["managementId"], "clientType": "MOBILE_DEVICE",
		"commandType": "ERASE_DEVICE", "status": "Pending", "dateSent": f.now.Format(time.RFC3339Nano),
	})
	f.actions[d["mobileDeviceId"].(string)]++
	writeJSON(w, 201, []map[string]string{{"id": id, "href": "/api/v2/mdm/commands/" + id}})
}

func (f *fakeJamf) listCommands(w http.ResponseWriter, r *http.Request) {
	m := filterRE.FindStringSubmatch(r.URL.Query().Get("filter"))
	if m == nil || (m[1] != "clientManagementId" && m[1] != "uuid") {
		apiErr(w, 400, "INVALID_RSQL_FILTER", "All url must contain minimum one filter field")
		return
	}
	var out []map[string]any
	for _, c := range f.commands {
		if c[m[1]] == unquoteRSQL(m[2]) {
			out = append(out, c)
		}
	}
	if r.URL.Query().Get("sort") == "dateSent:desc" {
		slices.Reverse(out)
	}
	writeJSON(w, 200, map[string]any{"totalCount": len(out), "results": append([]map[string]any{}, out...)})
}

func (f *fakeJamf) classic(w http.ResponseWriter, r *http.Request) {
	if r.Method == "PUT" && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/xml") && !strings.HasPrefix(r.Header.Get("Content-Type"), "text/xml") {
		classicErr(w, 415, "Unsupported Media Type")
		return
	}
	if r.Method == "GET" && !strings.Contains(r.Header.Get("Accept"), "xml") {
		classicErr(w, 406, "Not Acceptable")
		return
	}
	appPath := "/JSSResource/mobiledeviceapplications/id/" + strconv.Itoa(appID)
	switch {
	case r.URL.Path == appPath && r.Method == "GET":
		var ex strings.Builder
		for _, g := range f.exclusions {
			fmt.Fprintf(&ex, "<mobile_device_group><id>%d</id><name>%s</name></mobile_device_group>", g.ID, g.Name)
		}
		writeXML(w, 200, `<mobile_device_application><general><id>12</id><name>Threema Work</name><bundle_id>ch.threema.work</bundle_id></general>`+
			`<scope><all_mobile_devices>true</all_mobile_devices><exclusions><mobile_devices/><mobile_device_groups>`+ex.String()+
			`</mobile_device_groups><users/></exclusions></scope></mobile_device_application>`)
	case r.URL.Path == appPath && r.Method == "PUT":
		var app appRecord
		if err := xml.NewDecoder(r.Body).Decode(&app); err != nil || app.Scope == nil || app.Scope.Exclusions == nil || app.Scope.Exclusions.Groups == nil {
			classicErr(w, 400, "Bad Request")
			return
		}
		var next []groupRef
		for _, g := range *app.Scope.Exclusions.Groups {
			if _, ok := f.members[g.ID]; !ok {
				classicErr(w, 409, "Error: Problem with mobile device group in scope")
				return
			}
			next = append(next, groupRef{ID: g.ID, Name: map[int]string{3: "Kiosk iPads", groupID: "Offboarding - remove Threema", smartGroupID: "All iPhones"}[g.ID]})
		}
		f.exclusions = next
		writeXML(w, 201, "<mobile_device_application><id>12</id></mobile_device_application>")
	case strings.HasPrefix(r.URL.Path, "/JSSResource/mobiledevicegroups/id/"):
		gid, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/JSSResource/mobiledevicegroups/id/"))
		members, ok := f.members[gid]
		if !ok {
			classicErr(w, 404, "Not Found")
			return
		}
		if r.Method == "GET" {
			var ds strings.Builder
			for _, id := range members {
				fmt.Fprintf(&ds, "<mobile_device><id>%d</id></mobile_device>", id)
			}
			writeXML(w, 200, fmt.Sprintf("<mobile_device_group><id>%d</id><is_smart>%v</is_smart><mobile_devices><size>%d</size>%s</mobile_devices></mobile_device_group>",
				gid, gid == smartGroupID, len(members), ds.String()))
			return
		}
		var body struct {
			XMLName   xml.Name `xml:"mobile_device_group"`
			Additions []struct {
				ID int `xml:"id"`
			} `xml:"mobile_device_additions>mobile_device"`
		}
		if err := xml.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Additions) == 0 {
			classicErr(w, 400, "Bad Request")
			return
		}
		for _, a := range body.Additions {
			id := strconv.Itoa(a.ID)
			if f.deviceBy("mobileDeviceId", id) == nil {
				classicErr(w, 409, "Error: Problem with mobile device "+id)
				return
			}
			if !slices.Contains(f.members[gid], a.ID) {
				f.members[gid] = append(f.members[gid], a.ID)
				f.actions[id]++
			}
		}
		writeXML(w, 201, fmt.Sprintf("<mobile_device_group><id>%d</id></mobile_device_group>", gid))
	default:
		classicErr(w, 404, "Not Found")
	}
}

// mdmtest.Fake

func (f *fakeJamf) FailNext(status int, h http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = append(f.failNext, failure{status, h})
}

func (f *fakeJamf) RevokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.valid)
}

func (f *fakeJamf) RemoveDevice(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices = slices.DeleteFunc(f.devices, func(d map[string]any) bool { return d["mobileDeviceId"] == id })
}

// CompleteCommands acknowledges the device's commands and, if the device is in a group the
// app's scope excludes, removes the app from its inventory.
func (f *fakeJamf) CompleteCommands(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.deviceBy("mobileDeviceId", id)
	if d == nil {
		return
	}
	for _, c := range f.commands {
		if c["clientManagementId"] == d["managementId"] {
			c["status"] = "Acknowledged"
		}
	}
	n, _ := strconv.Atoi(id)
	for _, g := range f.exclusions {
		if slices.Contains(f.members[g.ID], n) {
			apps := d["applications"].([]any)
			d["applications"] = slices.DeleteFunc(apps, func(a any) bool {
				return a.(map[string]any)["identifier"] == "ch.threema.work"
			})
		}
	}
}

func (f *fakeJamf) Actions(target string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.actions[target]
}

func (f *fakeJamf) TokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued
}
