package nanomdmtest

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/micromdm/plist"
)

// Topic is the APNs topic of the simulated enrollments, as in the captured run.
const Topic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"

// Device simulates an iPhone talking to NanoMDM's /mdm endpoint through a TLS proxy that passes
// the client certificate in CertHeader (query-escaped PEM, like nginx $ssl_client_escaped_cert).
type Device struct {
	// UDID is the device's id, which is also its NanoMDM enrollment id.
	UDID string

	t      testing.TB
	url    string
	cert   string
	client *http.Client

	mu       sync.Mutex
	received []string // RequestTypes handed to the device, in order
}

// NewDevice returns a device with a client certificate from the server's CA. It is not enrolled
// yet.
func (s *Server) NewDevice(udid string) *Device {
	s.t.Helper()
	return &Device{
		UDID:   udid,
		t:      s.t,
		url:    s.URL + "/mdm",
		cert:   url.QueryEscape(string(s.issueDeviceCert(udid))),
		client: &http.Client{},
	}
}

// Command is a command NanoMDM handed to the device.
type Command struct {
	CommandUUID string `plist:"CommandUUID"`
	Command     struct {
		RequestType      string   `plist:"RequestType"`
		Identifier       string   `plist:"Identifier"`
		Identifiers      []string `plist:"Identifiers"`
		PreserveDataPlan bool     `plist:"PreserveDataPlan"`
	} `plist:"Command"`
}

// Enroll sends the Authenticate and TokenUpdate check-ins of a fresh enrollment.
func (d *Device) Enroll() {
	d.t.Helper()
	d.CheckIn(map[string]any{
		"MessageType":  "Authenticate",
		"Topic":        Topic,
		"UDID":         d.UDID,
		"DeviceName":   "Sim iPhone",
		"SerialNumber": "SIMSERIAL01",
		"BuildVersion": "22A3354",
		"OSVersion":    "18.0",
		"ProductName":  "iPhone15,2",
	})
	d.CheckIn(map[string]any{
		"MessageType": "TokenUpdate",
		"Topic":       Topic,
		"UDID":        d.UDID,
		"PushMagic":   "sim-push-magic",
		"Token":       bytes.Repeat([]byte{0}, 32),
	})
}

// CheckOut tells NanoMDM the MDM profile was removed.
func (d *Device) CheckOut() {
	d.t.Helper()
	d.CheckIn(map[string]any{"MessageType": "CheckOut", "Topic": Topic, "UDID": d.UDID})
}

// CheckIn sends one check-in message.
func (d *Device) CheckIn(msg map[string]any) {
	d.t.Helper()
	if code, body := d.put("application/x-apple-aspen-mdm-checkin", msg); code != http.StatusOK {
		d.t.Fatalf("%s check-in: HTTP %d: %s", msg["MessageType"], code, body)
	}
}

// Idle reports Idle and returns the next queued command, or nil when the queue is empty.
func (d *Device) Idle() *Command {
	d.t.Helper()
	return d.report(map[string]any{"Status": "Idle", "UDID": d.UDID})
}

// Answer reports status for cmd with extra report keys and returns the next command.
func (d *Device) Answer(cmd *Command, status string, extra map[string]any) *Command {
	d.t.Helper()
	msg := map[string]any{"Status": status, "UDID": d.UDID, "CommandUUID": cmd.CommandUUID}
	for k, v := range extra {
		msg[k] = v
	}
	return d.report(msg)
}

// Complete fetches and acknowledges every queued command, as a device that carries them out
// does: a ManagedApplicationList is answered with an empty list (the app is gone). It returns
// the RequestTypes it acknowledged.
func (d *Device) Complete() []string {
	d.t.Helper()
	var done []string
	for cmd := d.Idle(); cmd != nil; {
		var extra map[string]any
		if cmd.Command.RequestType == "ManagedApplicationList" {
			extra = map[string]any{"ManagedApplicationList": map[string]any{}}
		}
		done = append(done, cmd.Command.RequestType)
		cmd = d.Answer(cmd, "Acknowledged", extra)
	}
	return done
}

// Received lists the RequestTypes NanoMDM handed to the device so far (a command handed out
// again after NotNow counts twice).
func (d *Device) Received() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.received...)
}

func (d *Device) report(msg map[string]any) *Command {
	d.t.Helper()
	code, body := d.put("application/x-apple-aspen-mdm", msg)
	if code != http.StatusOK {
		d.t.Fatalf("command report %v: HTTP %d: %s", msg["Status"], code, body)
	}
	if len(body) == 0 {
		return nil
	}
	var cmd Command
	if err := plist.Unmarshal(body, &cmd); err != nil {
		d.t.Fatalf("decoding command from NanoMDM: %v\n%s", err, body)
	}
	d.mu.Lock()
	d.received = append(d.received, cmd.Command.RequestType)
	d.mu.Unlock()
	return &cmd
}

func (d *Device) put(contentType string, msg map[string]any) (int, []byte) {
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
	req.Header.Set(CertHeader, d.cert)
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
