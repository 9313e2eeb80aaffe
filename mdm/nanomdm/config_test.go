package nanomdm

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/offboard/offboard/mdm"
)

func testDeps() mdm.Deps {
	return mdm.Deps{HTTPClient: &http.Client{}, Commands: newMemLog(), ConnectorID: "c1", Tenant: "acme"}
}

func TestOpenValidatesTheConfig(t *testing.T) {
	const secret = "s3cr3t-api-key"
	tests := []struct {
		name    string
		cfg     string
		wantErr string // "" means valid
	}{
		{"an https URL, a key and a bundle id are valid",
			`{"url":"https://nanomdm.example","apiKey":"` + secret + `","appBundleId":"ch.threema.work.iapp"}`, ""},
		{"a base path with a trailing slash is valid",
			`{"url":"https://mdm.example/nanomdm/","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, ""},
		{"plain http is valid on loopback",
			`{"url":"http://127.0.0.1:9000","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, ""},
		{"plain http is valid on localhost",
			`{"url":"http://localhost:9000","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, ""},
		{"plain http to another host is refused because the key would travel in clear",
			`{"url":"http://nanomdm.example","apiKey":"` + secret + `","appBundleId":"ch.threema.work.iapp"}`, "must use https"},
		{"a missing url is named",
			`{"apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, `"url" is required`},
		{"a relative url is refused",
			`{"url":"nanomdm.example","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, "absolute http(s) URL"},
		{"another scheme is refused",
			`{"url":"ftp://nanomdm.example","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, "absolute http(s) URL"},
		{"credentials in the url are refused",
			`{"url":"https://nanomdm:k@nanomdm.example","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, "credentials"},
		{"a query in the url is refused",
			`{"url":"https://nanomdm.example/?x=1","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`, "query"},
		{"a missing apiKey is named",
			`{"url":"https://nanomdm.example","appBundleId":"ch.threema.work.iapp"}`, `"apiKey" is required`},
		{"a missing appBundleId is named",
			`{"url":"https://nanomdm.example","apiKey":"k"}`, `"appBundleId" is required`},
		{"an appBundleId that is no bundle id is refused",
			`{"url":"https://nanomdm.example","apiKey":"k","appBundleId":"Threema Work"}`, "not a bundle identifier"},
		{"a misspelt key is refused rather than ignored",
			`{"url":"https://nanomdm.example","api_key":"` + secret + `","appBundleId":"ch.threema.work.iapp"}`, `unknown field "api_key"`},
		{"all problems are reported at once",
			`{}`, `"url" is required (the base URL of the NanoMDM server); "apiKey" is required`},
		{"a body that is not an object is refused",
			`[]`, "nanomdm config"},
		{"trailing data is refused",
			`{"url":"https://nanomdm.example","apiKey":"k","appBundleId":"a.b"} {}`, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Open(json.RawMessage(tt.cfg), testDeps())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if c.Type() != "nanomdm" {
					t.Fatalf("Type() = %q", c.Type())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("Open error %q reveals the API key", err)
			}
		})
	}
}

func TestOpenRequiresItsDependencies(t *testing.T) {
	cfg := json.RawMessage(`{"url":"https://nanomdm.example","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`)
	tests := []struct {
		name    string
		mutate  func(*mdm.Deps)
		wantErr string
	}{
		{"without an HTTP client", func(d *mdm.Deps) { d.HTTPClient = nil }, "HTTPClient"},
		{"without a command log", func(d *mdm.Deps) { d.Commands = nil }, "Commands"},
		{"without a connector id", func(d *mdm.Deps) { d.ConnectorID = "" }, "ConnectorID"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" Open fails", func(t *testing.T) {
			d := testDeps()
			tt.mutate(&d)
			if _, err := Open(cfg, d); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open error = %v, want it to name %s", err, tt.wantErr)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"the API key is removed and everything else kept",
			`{"url":"https://nanomdm.example","apiKey":"s3cr3t","appBundleId":"ch.threema.work.iapp"}`,
			`{"appBundleId":"ch.threema.work.iapp","url":"https://nanomdm.example"}`},
		{"the API key is removed whatever its case, as encoding/json accepts any",
			`{"APIKEY":"s3cr3t","ApiKey":"s3cr3t","url":"https://x.example"}`, `{"url":"https://x.example"}`},
		{"a config without a key is unchanged", `{"url":"https://x.example"}`, `{"url":"https://x.example"}`},
		{"something that is not an object becomes empty", `"s3cr3t"`, `{}`},
		{"invalid JSON becomes empty", `{"apiKey":"s3cr3t"`, `{}`},
		{"null becomes empty", `null`, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Redact(json.RawMessage(tt.in))); got != tt.want {
				t.Fatalf("Redact = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRequestsThatCannotWorkAreRefusedBeforeNanoMDMIsCalled(t *testing.T) {
	// The URL points nowhere: any call to NanoMDM would be a retryable transport error.
	c, err := Open(json.RawMessage(`{"url":"http://127.0.0.1:1","apiKey":"k","appBundleId":"ch.threema.work.iapp"}`), testDeps())
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*Connector)
	tests := []struct {
		name string
		req  mdm.Request
	}{
		{"a request without an idempotency key", request("UDID-1", "", mdm.OwnershipCompany)},
		{"a request without a device", mdm.Request{Key: "k"}},
		{"a device id with a comma, which NanoMDM would read as two devices", request("UDID-1,UDID-2", "k", mdm.OwnershipCompany)},
		{"a device id with a slash", request("UDID/../x", "k", mdm.OwnershipCompany)},
		{"an empty device id", request("", "k", mdm.OwnershipCompany)},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is not retryable", func(t *testing.T) {
			_, err := conn.RemoveApp(t.Context(), tt.req)
			var ve *mdm.VendorError
			if !errors.As(err, &ve) || ve.Retryable || ve.StatusCode != 0 {
				t.Fatalf("RemoveApp error = %v, want a non-retryable VendorError", err)
			}
		})
	}
	t.Run("a command id this connector did not issue is not retryable", func(t *testing.T) {
		_, err := conn.CommandStatus(t.Context(), mdm.Device{ID: "UDID-1"}, mdm.Command{ID: "75b93457-265e-4913-a5b9-7f43085388cc"})
		var ve *mdm.VendorError
		if !errors.As(err, &ve) || ve.Retryable {
			t.Fatalf("CommandStatus error = %v, want a non-retryable VendorError", err)
		}
	})
}
