package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/mdmtest"
	"github.com/offboard/offboard/mdm/webhook"
)

const secret = "0123456789abcdef-receiver-secret"

// receiver is what a correct webhook receiver does: it rejects unsigned or malformed deliveries
// and applies each event id once.
type receiver struct {
	t      *testing.T
	secret string

	mu       sync.Mutex
	failNext *failure
	bodies   [][]byte
	seen     map[string]bool
	applied  map[string]int // employee id -> events applied
}

type failure struct {
	status int
	header http.Header
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	r := &receiver{t: t, secret: secret, seen: map[string]bool{}, applied: map[string]int{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if f := rc.failNext; f != nil {
		rc.failNext = nil
		for k, v := range f.header {
			w.Header()[k] = v
		}
		w.WriteHeader(f.status)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "content type", http.StatusUnsupportedMediaType)
		return
	}
	body, _ := io.ReadAll(r.Body)
	rc.bodies = append(rc.bodies, body)
	if !webhook.Verify(rc.secret, body, r.Header.Get(webhook.HeaderSignature)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID       string `json:"id"`
		Action   string `json:"action"`
		Tenant   string `json:"tenant"`
		Employee *struct {
			ID       string `json:"id"`
			UserName string `json:"userName"`
		} `json:"employee"`
		OccurredAt string `json:"occurredAt"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil || ev.ID == "" || ev.Action == "" || ev.Employee == nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if _, err := time.Parse(time.RFC3339, ev.OccurredAt); err != nil {
		http.Error(w, "bad occurredAt", http.StatusBadRequest)
		return
	}
	if r.Header.Get(webhook.HeaderDelivery) != ev.ID {
		http.Error(w, "delivery header differs from id", http.StatusBadRequest)
		return
	}
	if ev.Action != string(webhook.ActionPing) && !rc.seen[ev.ID] {
		rc.seen[ev.ID] = true
		rc.applied[ev.Employee.ID]++
	}
	w.WriteHeader(http.StatusAccepted)
}

func (rc *receiver) FailNext(status int, h http.Header) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.failNext = &failure{status, h}
}
func (rc *receiver) RevokeTokens()           {}
func (rc *receiver) RemoveDevice(string)     {}
func (rc *receiver) CompleteCommands(string) {}
func (rc *receiver) TokenRequests() int      { return 0 }
func (rc *receiver) Actions(target string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.applied[target]
}

func open(t *testing.T, srv *httptest.Server, s string) *webhook.Connector {
	t.Helper()
	cfg, _ := json.Marshal(webhook.Config{URL: srv.URL + "/hooks/offboard", Secret: s})
	c, err := webhook.Open(cfg, mdm.Deps{HTTPClient: srv.Client(), Now: func() time.Time { return mdmtest.Occurred }})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*webhook.Connector)
}

func TestConformance(t *testing.T) {
	mdmtest.Run(t, mdmtest.Harness{
		New: func(t *testing.T, bad bool) (mdm.Connector, mdmtest.Fake) {
			rc, srv := newReceiver(t)
			s := secret
			if bad {
				s = "a-different-secret-of-enough-length"
			}
			return open(t, srv, s), rc
		},
		Person:  mdm.Person{ID: "emp-42", UserName: "jane.doe@example.com", ExternalID: "00u1abcd"},
		Config:  json.RawMessage(`{"url":"https://hooks.example.com/offboard","secret":"` + secret + `"}`),
		Redact:  webhook.Redact,
		Secrets: []string{secret, "a-different-secret-of-enough-length"},
	})
}

func leaver() mdm.Request {
	return mdm.Request{
		Key:      "acme/emp-42/wipe_app/gen-1",
		Action:   mdm.ActionWipeApp,
		Tenant:   "acme",
		Person:   mdm.Person{ID: "emp-42", UserName: "jane.doe@example.com", ExternalID: "00u1abcd"},
		WorkID:   "WK7Q2P9X",
		Occurred: time.Date(2026, 11, 28, 5, 0, 0, 0, time.FixedZone("CET", 3600)),
	}
}

func TestDelivery(t *testing.T) {
	t.Run("the body matches the documented wire format byte for byte", func(t *testing.T) {
		want, err := os.ReadFile("testdata/wipe_app.json")
		if err != nil {
			t.Fatal(err)
		}
		got, err := webhook.Body(leaver())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.TrimSpace(want)) {
			t.Fatalf("body:\n got %s\nwant %s", got, want)
		}
	})

	t.Run("a retry sends the same bytes, id and signature", func(t *testing.T) {
		rc, srv := newReceiver(t)
		c := open(t, srv, secret)
		var sigs []string
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sigs = append(sigs, r.Header.Get(webhook.HeaderSignature)+" "+r.Header.Get(webhook.HeaderDelivery))
			rc.ServeHTTP(w, r)
		})
		rc.FailNext(http.StatusBadGateway, nil)
		if err := c.Notify(context.Background(), leaver()); !mdm.IsRetryable(err) {
			t.Fatalf("first attempt: got %v, want retryable", err)
		}
		if err := c.Notify(context.Background(), leaver()); err != nil {
			t.Fatal(err)
		}
		if len(rc.bodies) != 1 || len(sigs) != 2 || sigs[0] != sigs[1] {
			t.Fatalf("headers differ between attempts: %q", sigs)
		}
		want, _ := webhook.Body(leaver())
		if !bytes.Equal(rc.bodies[0], want) {
			t.Fatalf("retried body differs")
		}
	})

	statuses := []struct {
		name       string
		status     int
		header     http.Header
		retryable  bool
		retryAfter time.Duration
	}{
		{"408 is retried", http.StatusRequestTimeout, nil, true, 0},
		{"429 with an HTTP-date Retry-After is retried after that date", http.StatusTooManyRequests,
			http.Header{"Retry-After": {mdmtest.Occurred.Add(90 * time.Second).Format(http.TimeFormat)}}, true, 90 * time.Second},
		{"410 fails for good", http.StatusGone, nil, false, 0},
		{"a redirect is not followed and fails for good", http.StatusFound, http.Header{"Location": {"https://elsewhere.example/"}}, false, 0},
	}
	for _, tc := range statuses {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := newReceiver(t)
			c := open(t, srv, secret)
			rc.FailNext(tc.status, tc.header)
			err := c.Notify(context.Background(), leaver())
			var ve *mdm.VendorError
			if !errors.As(err, &ve) || ve.Retryable != tc.retryable || ve.RetryAfter != tc.retryAfter {
				t.Fatalf("got %#v, want retryable=%v after %v", err, tc.retryable, tc.retryAfter)
			}
		})
	}

	t.Run("no answer is retried", func(t *testing.T) {
		_, srv := newReceiver(t)
		c := open(t, srv, secret)
		srv.Close()
		if err := c.Notify(context.Background(), leaver()); !mdm.IsRetryable(err) {
			t.Fatalf("got %v, want retryable", err)
		}
	})
}

func TestVerify(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	good := webhook.Sign([]byte(secret), body)
	tests := []struct {
		name   string
		secret string
		body   []byte
		header string
		want   bool
	}{
		{"the right signature verifies", secret, body, good, true},
		{"surrounding spaces are tolerated", secret, body, " " + good + " ", true},
		{"another secret does not verify", "another-secret-0123456789", body, good, false},
		{"a changed body does not verify", secret, []byte(`{"id":"y"}`), good, false},
		{"a signature without the sha256= prefix does not verify", secret, body, strings.TrimPrefix(good, "sha256="), false},
		{"a signature that is not hex does not verify", secret, body, "sha256=zz", false},
		{"an empty header does not verify", secret, body, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := webhook.Verify(tc.secret, tc.body, tc.header); got != tc.want {
				t.Fatalf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want string
	}{
		{"a missing secret is refused", `{"url":"https://hooks.example.com/x"}`, "secret is required"},
		{"a short secret is refused without echoing it", `{"url":"https://hooks.example.com/x","secret":"tooshort-s3cr"}`, "at least 16"},
		{"a non-http url is refused", `{"url":"ftp://hooks.example.com/x","secret":"0123456789abcdef"}`, "http or https"},
		{"a relative url is refused", `{"url":"/x","secret":"0123456789abcdef"}`, "http or https"},
		{"a missing url is refused", `{"secret":"0123456789abcdef"}`, "url is required"},
		{"a config that is not an object is refused", `[1]`, "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := webhook.Open(json.RawMessage(tc.cfg), mdm.Deps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "tooshort-s3cr") || strings.Contains(err.Error(), "hooks.example.com") {
				t.Fatalf("error echoes configuration values: %v", err)
			}
		})
	}

	t.Run("redaction drops the secret and keeps the url", func(t *testing.T) {
		got := string(webhook.Redact(json.RawMessage(`{"url":"https://hooks.example.com/x","Secret":"0123456789abcdef"}`)))
		if got != `{"url":"https://hooks.example.com/x"}` {
			t.Fatalf("Redact = %s", got)
		}
	})
	t.Run("credentials in the URL are redacted", func(t *testing.T) {
		got := string(webhook.Redact(json.RawMessage(`{"URL":"https://svc:pa55@fn.example.net/api/hook?code=fnkey123&x=1#frag","secret":"0123456789abcdef"}`)))
		if strings.Contains(got, "pa55") || strings.Contains(got, "fnkey123") || strings.Contains(got, "frag") || !strings.Contains(got, "fn.example.net/api/hook") {
			t.Fatalf("Redact = %s", got)
		}
	})
}
