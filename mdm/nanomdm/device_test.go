package nanomdm

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/micromdm/plist"
)

// topic is the APNs topic of the simulated enrollment, as in the captured run.
const topic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"

// device simulates an iPhone talking to NanoMDM's /mdm endpoint through a TLS proxy that passes
// the client certificate in certHeader (query-escaped PEM, like nginx $ssl_client_escaped_cert).
type device struct {
	t      *testing.T
	udid   string
	url    string
	cert   string
	client *http.Client
}

func newDevice(t *testing.T, srv *nanoServer, udid string) *device {
	t.Helper()
	return &device{
		t:      t,
		udid:   udid,
		url:    srv.URL + "/mdm",
		cert:   url.QueryEscape(string(srv.issueDeviceCert(t, udid))),
		client: &http.Client{},
	}
}

// serverCommand is a command NanoMDM handed to the device.
type serverCommand struct {
	CommandUUID string `plist:"CommandUUID"`
	Command     struct {
		RequestType      string   `plist:"RequestType"`
		Identifier       string   `plist:"Identifier"`
		Identifiers      []string `plist:"Identifiers"`
		PreserveDataPlan bool     `plist:"PreserveDataPlan"`
	} `plist:"Command"`
}

// enroll sends the Authenticate and TokenUpdate check-ins of a fresh enrollment.
func (d *device) enroll() {
	d.t.Helper()
	d.checkin(map[string]any{
		"MessageType":  "Authenticate",
		"Topic":        topic,
		"UDID":         d.udid,
		"DeviceName":   "Sim iPhone",
		"SerialNumber": "SIMSERIAL01",
		"BuildVersion": "22A3354",
		"OSVersion":    "18.0",
		"ProductName":  "iPhone15,2",
	})
	d.checkin(map[string]any{
		"MessageType": "TokenUpdate",
		"Topic":       topic,
		"UDID":        d.udid,
		"PushMagic":   "sim-push-magic",
		"Token":       bytes.Repeat([]byte{0}, 32),
	})
}

func (d *device) checkin(msg map[string]any) {
	d.t.Helper()
	if code, body := d.put("application/x-apple-aspen-mdm-checkin", msg); code != http.StatusOK {
		d.t.Fatalf("%s check-in: HTTP %d: %s", msg["MessageType"], code, body)
	}
}

// idle reports Idle and returns the next queued command, or nil when the queue is empty.
func (d *device) idle() *serverCommand {
	d.t.Helper()
	return d.report(map[string]any{"Status": "Idle", "UDID": d.udid})
}

// answer reports status for the command with extra report keys and returns the next command.
func (d *device) answer(cmd *serverCommand, status string, extra map[string]any) *serverCommand {
	d.t.Helper()
	msg := map[string]any{"Status": status, "UDID": d.udid, "CommandUUID": cmd.CommandUUID}
	for k, v := range extra {
		msg[k] = v
	}
	return d.report(msg)
}

func (d *device) report(msg map[string]any) *serverCommand {
	d.t.Helper()
	code, body := d.put("application/x-apple-aspen-mdm", msg)
	if code != http.StatusOK {
		d.t.Fatalf("command report %v: HTTP %d: %s", msg["Status"], code, body)
	}
	if len(body) == 0 {
		return nil
	}
	var cmd serverCommand
	if err := plist.Unmarshal(body, &cmd); err != nil {
		d.t.Fatalf("decoding command from NanoMDM: %v\n%s", err, body)
	}
	return &cmd
}

func (d *device) put(contentType string, msg map[string]any) (int, []byte) {
	d.t.Helper()
	b, err := plist.MarshalIndent(msg, "\t")
	if err != nil {
		d.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, d.url, bytes.NewReader(b))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(certHeader, d.cert)
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return resp.StatusCode, body
}
