// Package jamftest is an httptest fake of the parts of the Jamf Pro API and Classic API that the
// Jamf connector uses. It refuses what Jamf refuses (missing or stale bearer tokens, RSQL it cannot
// parse, JSON or XML bodies of the wrong shape or content type), fails the test if more than 5
// requests are in flight, and implements mdmtest.Fake, so the connector's own tests and Offboard's
// end-to-end tests drive the same wire format.
package jamftest

import (
	_ "embed"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm/mdmtest"
	"github.com/offboard/offboard/mdm/mdmtest/vendorfake"
)

// The API client, app and groups the fake knows.
const (
	ClientID     = "2f1c5a7e-9b3d-4e8f-a6c0-1d2e3f4a5b6c"
	ClientSecret = "jamf-api-client-s3cret-0123456789"
	AppID        = 12
	GroupID      = 7
	SmartGroupID = 9
	// KioskGroupID is a group the app's scope already excludes.
	KioskGroupID = 3
	// BundleID is the app's bundle id.
	BundleID = "ch.threema.work"
)

// Jane has two devices: an Institutional iPhone and a personal iPad.
const (
	JaneEmail    = "jane.doe@example.com"
	JaneUsername = "jdoe"
	JaneIPhone   = "17"
	JaneIPad     = "23"
)

//go:embed testdata/mobile_devices.json
var mobileDevicesJSON []byte

//go:embed testdata/app.xml
var appXML []byte

var _ mdmtest.Fake = (*Jamf)(nil)

// Jamf is the fake. Its zero value is not usable; call New. Its URL is the Jamf Pro server's
// URL; Actions counts the erases and offboarding-group additions applied to a device.
type Jamf struct {
	*vendorfake.Base
	t testing.TB

	// The fields below are guarded by Base.Mu.

	// gate, when set, holds every API request until closed (for the concurrency test).
	gate     chan struct{}
	arrived  chan struct{} // told of each request held at the gate
	inflight int
	peak     int

	devices    []map[string]any
	exclusions []groupRef
	members    map[int][]int // group id -> device ids
	commands   []map[string]any
}

// Request is one request the fake received.
type Request = vendorfake.Request

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

// New starts a fake on a TLS httptest server that stops when the test ends. Its clock stands
// two minutes after mdmtest.Occurred until SetClock or SetNow.
func New(t testing.TB) *Jamf {
	f := &Jamf{t: t, members: map[int][]int{KioskGroupID: {}, GroupID: {}, SmartGroupID: {}}}
	if err := json.Unmarshal(mobileDevicesJSON, &f.devices); err != nil {
		t.Fatal(err)
	}
	var app appRecord
	if err := xml.Unmarshal(appXML, &app); err != nil {
		t.Fatal(err)
	}
	f.exclusions = *app.Scope.Exclusions.Groups
	f.Base = vendorfake.Start(t, f)
	return f
}

// Hold makes every API request wait until gate is closed; each held request is first announced
// on arrived.
func (f *Jamf) Hold(gate, arrived chan struct{}) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.gate, f.arrived = gate, arrived
}

// Peak is the most requests that were in flight at once.
func (f *Jamf) Peak() int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return f.peak
}

// Exclusions lists the ids of the groups the app's scope excludes.
func (f *Jamf) Exclusions() []int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []int
	for _, g := range f.exclusions {
		out = append(out, g.ID)
	}
	return out
}

// Members lists the device ids in a static group.
func (f *Jamf) Members(group int) []int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return slices.Clone(f.members[group])
}

// SetCommandStatus sets the status of the n-th MDM command sent (0-based).
func (f *Jamf) SetCommandStatus(n int, status string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.commands[n]["status"] = status
}

// Commands counts the MDM commands sent.
func (f *Jamf) Commands() int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return len(f.commands)
}

// HasApp reports whether the device's inventory lists the app.
func (f *Jamf) HasApp(id string) bool {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	d := f.deviceBy("mobileDeviceId", id)
	if d == nil {
		return false
	}
	return slices.ContainsFunc(d["applications"].([]any), func(a any) bool {
		return a.(map[string]any)["identifier"] == BundleID
	})
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

func (f *Jamf) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.Mu.Lock()
	f.inflight++
	f.peak = max(f.peak, f.inflight)
	if f.inflight > 5 {
		f.t.Errorf("%d requests in flight to one Jamf server", f.inflight)
	}
	gate, arrived := f.gate, f.arrived
	f.Mu.Unlock()
	defer func() { f.Mu.Lock(); f.inflight--; f.Mu.Unlock() }()
	if gate != nil {
		arrived <- struct{}{}
		<-gate
	}

	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Record(r)
	if r.URL.Path == "/api/oauth/token" {
		f.token(w, r)
		return
	}
	classic := strings.HasPrefix(r.URL.Path, "/JSSResource/")
	if !f.Bearer(r) {
		if classic {
			classicErr(w, http.StatusUnauthorized, "The request requires user authentication")
		} else {
			apiErr(w, http.StatusUnauthorized, "INVALID_TOKEN", "Unauthorized")
		}
		return
	}
	if status, ok := f.PopFailure(w); ok {
		apiErr(w, status, "INJECTED", "injected failure")
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

func (f *Jamf) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	r.ParseForm()
	if r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if r.PostForm.Get("client_id") != ClientID || r.PostForm.Get("client_secret") != ClientSecret {
		writeJSON(w, 401, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"})
		return
	}
	tok := f.IssueToken("jamf-token-")
	writeJSON(w, 200, map[string]any{"access_token": tok, "scope": "api-role:2", "token_type": "Bearer", "expires_in": 299})
}

func unquoteRSQL(s string) string {
	return regexp.MustCompile(`\\(.)`).ReplaceAllString(s, "$1")
}

func (f *Jamf) inventory(w http.ResponseWriter, r *http.Request) {
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

func (f *Jamf) deviceBy(key, value string) map[string]any {
	for _, d := range f.devices {
		if d[key] == value {
			return d
		}
	}
	return nil
}

func (f *Jamf) sendCommand(w http.ResponseWriter, r *http.Request) {
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
		"commandType": "ERASE_DEVICE", "status": "Pending", "dateSent": f.NowLocked().UTC().Format(time.RFC3339Nano),
	})
	f.CountAction(d["mobileDeviceId"].(string))
	writeJSON(w, 201, []map[string]string{{"id": id, "href": "/api/v2/mdm/commands/" + id}})
}

func (f *Jamf) listCommands(w http.ResponseWriter, r *http.Request) {
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

func (f *Jamf) classic(w http.ResponseWriter, r *http.Request) {
	if r.Method == "PUT" && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/xml") && !strings.HasPrefix(r.Header.Get("Content-Type"), "text/xml") {
		classicErr(w, 415, "Unsupported Media Type")
		return
	}
	if r.Method == "GET" && !strings.Contains(r.Header.Get("Accept"), "xml") {
		classicErr(w, 406, "Not Acceptable")
		return
	}
	appPath := "/JSSResource/mobiledeviceapplications/id/" + strconv.Itoa(AppID)
	switch {
	case r.URL.Path == appPath && r.Method == "GET":
		var ex strings.Builder
		for _, g := range f.exclusions {
			fmt.Fprintf(&ex, "<mobile_device_group><id>%d</id><name>%s</name></mobile_device_group>", g.ID, g.Name)
		}
		writeXML(w, 200, `<mobile_device_application><general><id>12</id><name>Threema Work</name><bundle_id>`+BundleID+`</bundle_id></general>`+
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
			next = append(next, groupRef{ID: g.ID, Name: map[int]string{KioskGroupID: "Kiosk iPads", GroupID: "Offboarding - remove Threema", SmartGroupID: "All iPhones"}[g.ID]})
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
				gid, gid == SmartGroupID, len(members), ds.String()))
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
				f.CountAction(id)
			}
		}
		writeXML(w, 201, fmt.Sprintf("<mobile_device_group><id>%d</id></mobile_device_group>", gid))
	default:
		classicErr(w, 404, "Not Found")
	}
}

// mdmtest.Fake (FailNext, RevokeTokens, Actions and TokenRequests come with the Base)

// RemoveDevice makes Jamf forget a device.
func (f *Jamf) RemoveDevice(id string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.devices = slices.DeleteFunc(f.devices, func(d map[string]any) bool { return d["mobileDeviceId"] == id })
}

// CompleteCommands acknowledges the device's commands and, if the device is in a group the
// app's scope excludes, removes the app from its inventory.
func (f *Jamf) CompleteCommands(id string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
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
				return a.(map[string]any)["identifier"] == BundleID
			})
		}
	}
}
