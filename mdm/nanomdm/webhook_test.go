package nanomdm

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/micromdm/plist"

	"github.com/offboard/offboard/mdm"
)

// capturedEvents reads the webhook events NanoMDM v0.9.0 sent in the captured run.
func capturedEvents(t *testing.T) []json.RawMessage {
	t.Helper()
	b, err := os.ReadFile("testdata/webhook-events.json")
	if err != nil {
		t.Fatal(err)
	}
	var evs []json.RawMessage
	if err := json.Unmarshal(b, &evs); err != nil {
		t.Fatal(err)
	}
	return evs
}

// ackEvent builds an acknowledge event from the captured Acknowledged one, with the command
// UUID and the device's report replaced.
func ackEvent(t *testing.T, uuid string, report map[string]any) []byte {
	t.Helper()
	var tmpl map[string]any
	for _, raw := range capturedEvents(t) {
		var ev map[string]any
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ack, ok := ev["acknowledge_event"].(map[string]any); ok && ack["status"] == "Acknowledged" {
			tmpl = ev
			break
		}
	}
	if tmpl == nil {
		t.Fatal("no Acknowledged event in the capture")
	}
	ack := tmpl["acknowledge_event"].(map[string]any)
	report["UDID"] = "SIMULATED-UDID-0001"
	if uuid != "" {
		report["CommandUUID"] = uuid
		ack["command_uuid"] = uuid
	} else {
		delete(ack, "command_uuid")
	}
	ack["status"] = report["Status"]
	raw, err := plist.MarshalIndent(report, "\t")
	if err != nil {
		t.Fatal(err)
	}
	ack["raw_payload"] = base64.StdEncoding.EncodeToString(raw)
	b, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(h http.Handler, body []byte, sign []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if sign != nil {
		m := hmac.New(sha256.New, sign)
		m.Write(body)
		req.Header.Set(hmacHeader, base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestWebhookOnCapturedEvents(t *testing.T) {
	log := newMemLog()
	h := NewWebhookHandler(connectorID, log)
	for i, ev := range capturedEvents(t) {
		if rec := post(h, ev, nil); rec.Code != http.StatusOK {
			t.Errorf("event %d: HTTP %d, want 200 (NanoMDM logs anything else as a failure)", i, rec.Code)
		}
	}
	t.Run("acknowledgements of commands Offboard never sent are not recorded", func(t *testing.T) {
		for _, id := range []string{"75b93457-265e-4913-a5b9-7f43085388cc", "e8ee749f-fdd5-496c-9107-6e3af2979b84"} {
			if _, ok, _ := log.Lookup(context.Background(), connectorID, id); ok {
				t.Errorf("recorded foreign command %s", id)
			}
		}
	})
	t.Run("the closing CheckOut marks the enrollment as gone", func(t *testing.T) {
		got, ok, _ := log.Lookup(context.Background(), connectorID, checkOutID("SIMULATED-UDID-0001"))
		if !ok || got.State != mdm.CommandDone || !strings.Contains(got.Detail, "checked out") {
			t.Fatalf("check-out marker = %+v (found %v)", got, ok)
		}
		if log.records != 1 {
			t.Errorf("%d records, want only the check-out", log.records)
		}
	})
}

func TestWebhookRecordsDeviceAnswers(t *testing.T) {
	remove := commandUUID(kindRemoveApp, "job")
	erase := commandUUID(kindErase, "job")
	verify := commandUUID(kindVerify, remove)
	tests := []struct {
		name       string
		uuid       string
		report     map[string]any
		want       mdm.CommandState // "" means nothing is recorded
		wantDetail []string
	}{
		{"an acknowledged RemoveApplication is done", remove,
			map[string]any{"Status": "Acknowledged"}, mdm.CommandDone, nil},
		{"an acknowledged EraseDevice is done", erase,
			map[string]any{"Status": "Acknowledged"}, mdm.CommandDone, nil},
		{"Error is failed with every ErrorChain entry in the detail", remove,
			map[string]any{"Status": "Error", "ErrorChain": []any{
				map[string]any{"ErrorCode": 12029, "ErrorDomain": "MCMDMErrorDomain", "USEnglishDescription": "The app is not managed."},
				map[string]any{"ErrorCode": 4, "ErrorDomain": "NSPOSIXErrorDomain", "LocalizedDescription": "Interrupted"},
			}}, mdm.CommandFailed, []string{"MCMDMErrorDomain 12029: The app is not managed.", "NSPOSIXErrorDomain 4: Interrupted"}},
		{"Error without an ErrorChain is failed and says so", erase,
			map[string]any{"Status": "Error"}, mdm.CommandFailed, []string{"no ErrorChain"}},
		{"CommandFormatError is failed", remove,
			map[string]any{"Status": "CommandFormatError"}, mdm.CommandFailed, []string{"CommandFormatError"}},
		{"NotNow stays pending with a note", remove,
			map[string]any{"Status": "NotNow"}, mdm.CommandPending, []string{"NotNow"}},
		{"a ManagedApplicationList without the app confirms the removal", verify,
			map[string]any{"Status": "Acknowledged", "ManagedApplicationList": map[string]any{}}, mdm.CommandDone, nil},
		{"a ManagedApplicationList that shows the app uninstalled confirms the removal", verify,
			map[string]any{"Status": "Acknowledged", "ManagedApplicationList": map[string]any{
				bundleID: map[string]any{"Status": "ManagedButUninstalled"}}}, mdm.CommandDone, nil},
		{"a ManagedApplicationList that shows the app managed fails the check", verify,
			map[string]any{"Status": "Acknowledged", "ManagedApplicationList": map[string]any{
				bundleID: map[string]any{"Status": "Managed"}}}, mdm.CommandFailed, []string{bundleID + " (Managed)"}},
		{"an unknown app status counts as installed", verify,
			map[string]any{"Status": "Acknowledged", "ManagedApplicationList": map[string]any{
				bundleID: map[string]any{"Status": "SomethingNew"}}}, mdm.CommandFailed, []string{"SomethingNew"}},
		{"Idle is ignored", "",
			map[string]any{"Status": "Idle"}, "", nil},
		{"another tool's command is ignored", "6f1c2b9e-0c4e-4d0f-9a43-2d1b7c9d8e11",
			map[string]any{"Status": "Acknowledged"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := newMemLog()
			var woken []string
			h := NewWebhookHandler(connectorID, log, WithWake(func(conn, id string) { woken = append(woken, id) }))
			if rec := post(h, ackEvent(t, tt.uuid, tt.report), nil); rec.Code != http.StatusOK {
				t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
			}
			got, ok, _ := log.Lookup(context.Background(), connectorID, resultID(tt.uuid, "SIMULATED-UDID-0001"))
			if tt.want == "" {
				if log.records != 0 || len(woken) != 0 {
					t.Fatalf("recorded %d results and woke %v, want none", log.records, woken)
				}
				return
			}
			if !ok || got.State != tt.want {
				t.Fatalf("recorded %+v (found %v), want %s for %s", got, ok, tt.want, tt.uuid)
			}
			for _, d := range tt.wantDetail {
				if !strings.Contains(got.Detail, d) {
					t.Errorf("detail %q lacks %q", got.Detail, d)
				}
			}
			if len(woken) != 1 || woken[0] != tt.uuid {
				t.Errorf("woken = %v, want [%s]", woken, tt.uuid)
			}
		})
	}
}

func TestWebhookNeverReopensAFinishedCommand(t *testing.T) {
	log := newMemLog()
	h := NewWebhookHandler(connectorID, log)
	id := commandUUID(kindRemoveApp, "job")
	post(h, ackEvent(t, id, map[string]any{"Status": "Acknowledged"}), nil)
	post(h, ackEvent(t, id, map[string]any{"Status": "NotNow"}), nil)
	if got, _, _ := log.Lookup(context.Background(), connectorID, resultID(id, "SIMULATED-UDID-0001")); got.State != mdm.CommandDone {
		t.Fatalf("state after a late NotNow = %s, want done", got.State)
	}
}

func TestWebhookBindsAnswersToTheReportingEnrollment(t *testing.T) {
	log := newMemLog()
	h := NewWebhookHandler(connectorID, log)
	id := commandUUID(kindRemoveApp, "job")
	post(h, ackEvent(t, id, map[string]any{"Status": "Acknowledged"}), nil) // from SIMULATED-UDID-0001
	if _, ok, _ := log.Lookup(context.Background(), connectorID, resultID(id, "OTHER-UDID")); ok {
		t.Fatal("an answer from one enrollment counted for another")
	}
	c, err := Open(json.RawMessage(`{"url":"https://nanomdm.example","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`),
		mdm.Deps{HTTPClient: &http.Client{}, Commands: log, ConnectorID: connectorID})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.(*Connector).CommandStatus(context.Background(), mdm.Device{ID: "OTHER-UDID"}, mdm.Command{ID: id})
	if err != nil || st.State != mdm.CommandPending {
		t.Fatalf("status for the device the command was sent to = %+v, %v; want pending", st, err)
	}
}

func TestWebhookRejectsWhatIsNotASignedNanoMDMEvent(t *testing.T) {
	key := []byte("hmac-key")
	body := ackEvent(t, commandUUID(kindRemoveApp, "job"), map[string]any{"Status": "Acknowledged"})
	tests := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"an unsigned event is refused", func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
		}, http.StatusUnauthorized},
		{"an event signed with another key is refused", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
			m := hmac.New(sha256.New, []byte("other"))
			m.Write(body)
			r.Header.Set(hmacHeader, base64.StdEncoding.EncodeToString(m.Sum(nil)))
			return r
		}, http.StatusUnauthorized},
		{"GET is not allowed", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/hook", nil)
		}, http.StatusMethodNotAllowed},
		{"a body that is not JSON is a bad request", func() *http.Request {
			bad := []byte("<plist/>")
			m := hmac.New(sha256.New, key)
			m.Write(bad)
			r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(bad))
			r.Header.Set(hmacHeader, base64.StdEncoding.EncodeToString(m.Sum(nil)))
			return r
		}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := newMemLog()
			rec := httptest.NewRecorder()
			NewWebhookHandler(connectorID, log, WithHMACKey(key)).ServeHTTP(rec, tt.req())
			if rec.Code != tt.want {
				t.Fatalf("HTTP %d, want %d", rec.Code, tt.want)
			}
			if log.records != 0 {
				t.Fatalf("recorded %d results", log.records)
			}
		})
	}
	t.Run("a correctly signed event is recorded", func(t *testing.T) {
		log := newMemLog()
		if rec := post(NewWebhookHandler(connectorID, log, WithHMACKey(key)), body, key); rec.Code != http.StatusOK || log.records != 1 {
			t.Fatalf("HTTP %d, %d records; want 200 and 1", rec.Code, log.records)
		}
	})
}

func TestWebhookSecret(t *testing.T) {
	a, err := NewWebhookSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewWebhookSecret()
	t.Run("secrets are 256 random bits in a URL-safe path segment", func(t *testing.T) {
		if len(a) != 43 || a == b || strings.ContainsAny(a, "/+=?#%") {
			t.Fatalf("secrets %q and %q", a, b)
		}
	})
	tests := []struct {
		name      string
		want, got string
		ok        bool
	}{
		{"the same secret is accepted", a, a, true},
		{"another secret is refused", a, b, false},
		{"a prefix is refused", a, a[:42], false},
		{"an empty secret is refused", a, "", false},
		{"nothing matches an unset secret", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckWebhookSecret(tt.want, tt.got); got != tt.ok {
				t.Fatalf("CheckWebhookSecret = %v, want %v", got, tt.ok)
			}
		})
	}
}

func FuzzInterpret(f *testing.F) {
	f.Add([]byte(`<plist><dict><key>Status</key><string>Error</string></dict></plist>`), "Error")
	f.Add([]byte{}, "Acknowledged")
	f.Fuzz(func(t *testing.T, raw []byte, status string) {
		for _, k := range []kind{kindRemoveApp, kindVerify} {
			cmd, ok := interpret(k, "id", status, raw)
			if ok && cmd.State != mdm.CommandDone && cmd.State != mdm.CommandFailed && cmd.State != mdm.CommandPending {
				t.Fatalf("interpret gave state %q", cmd.State)
			}
			if len(cmd.Detail) > maxDetail+len("…") {
				t.Fatalf("detail of %d bytes", len(cmd.Detail))
			}
		}
	})
}
