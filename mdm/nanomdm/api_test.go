package nanomdm

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
)

// TestEnqueueAnswers covers NanoMDM API answers the in-process server cannot produce: those of
// its SQL backends (error texts of MySQL and PostgreSQL) and of proxies in front of it. The
// kv-backend answers are exercised against the real server in TestAgainstNanoMDM.
func TestEnqueueAnswers(t *testing.T) {
	const udid = "UDID-1"
	uuid := commandUUID(kindRemoveApp, "job")
	type answer struct {
		code        int
		contentType string
		header      map[string]string
		body        string
	}
	jsonAnswer := func(code int, body string) answer { return answer{code, "application/json", nil, body} }
	tests := []struct {
		name          string
		enqueue, push answer
		wantNote      string
		wantErr       bool
		retryable     bool
		gone          bool
		status        int
		retryAfter    time.Duration
	}{
		{name: "a clean enqueue with a push is pending without a note",
			enqueue: jsonAnswer(200, `{"status":{"UDID-1":{"push_result":"apns-id"}},"command_uuid":"`+uuid+`","request_type":"RemoveApplication"}`)},
		{name: "a failed push next to a successful enqueue is only a note",
			enqueue:  jsonAnswer(500, `{"push_error":"retrieving push cert for topic \"x\": key not found","command_uuid":"`+uuid+`"}`),
			wantNote: "could not send an APNs push"},
		{name: "MySQL's duplicate entry counts as already enqueued",
			enqueue:  jsonAnswer(500, `{"command_error":"Error 1062 (23000): Duplicate entry '`+uuid+`' for key 'commands.PRIMARY'"}`),
			push:     jsonAnswer(200, `{"status":{"UDID-1":{"push_result":"apns-id"}}}`),
			wantNote: "already enqueued"},
		{name: "PostgreSQL's unique violation counts as already enqueued",
			enqueue:  jsonAnswer(500, `{"command_error":"pq: duplicate key value violates unique constraint \"commands_pkey\""}`),
			push:     jsonAnswer(200, `{}`),
			wantNote: "already enqueued"},
		{name: "a duplicate for an enrollment without push data is gone",
			enqueue: jsonAnswer(500, `{"command_error":"command already exists: `+uuid+`"}`),
			push:    jsonAnswer(500, `{"status":{"UDID-1":{"push_error":"push data missing for id"}}}`),
			wantErr: true, gone: true, status: 500},
		{name: "MySQL's foreign key failure means the enrollment is unknown",
			enqueue: jsonAnswer(500, `{"command_error":"Error 1452 (23000): Cannot add or update a child row: a foreign key constraint fails"}`),
			wantErr: true, gone: true, status: 500},
		{name: "any other enqueue error on a 500 is retryable",
			enqueue: jsonAnswer(500, `{"command_error":"rollback error: driver: bad connection"}`),
			wantErr: true, retryable: true, status: 500},
		{name: "an answer for another command is retryable",
			enqueue: jsonAnswer(200, `{"command_uuid":"75b93457-265e-4913-a5b9-7f43085388cc"}`),
			wantErr: true, retryable: true, status: 200},
		{name: "a proxy's 502 page is retryable",
			enqueue: answer{502, "text/html", nil, "<html>Bad Gateway</html>"},
			wantErr: true, retryable: true, status: 502},
		{name: "a 503 with Retry-After is retryable after that delay",
			enqueue: answer{503, "text/plain", map[string]string{"Retry-After": "30"}, "maintenance"},
			wantErr: true, retryable: true, status: 503, retryAfter: 30 * time.Second},
		{name: "a 403 from a proxy is not retryable",
			enqueue: answer{403, "text/plain", nil, "Forbidden"},
			wantErr: true, status: 403},
		{name: "a 404 means the API is not enabled and is not retryable",
			enqueue: answer{404, "text/plain", nil, "404 page not found"},
			wantErr: true, status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				a := tt.enqueue
				if strings.HasPrefix(r.URL.Path, "/v1/push/") {
					a = tt.push
				}
				w.Header().Set("Content-Type", a.contentType)
				for k, v := range a.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(a.code)
				_, _ = w.Write([]byte(a.body))
			}))
			defer srv.Close()
			c := &httpClient{base: srv.URL, apiKey: "k", http: srv.Client(), now: time.Now}
			note, err := c.enqueue(t.Context(), "remove app", udid, uuid, removeApplication(uuid, bundleID), true)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("enqueue: %v", err)
				}
				if tt.wantNote == "" && note != "" || !strings.Contains(note, tt.wantNote) {
					t.Fatalf("note = %q, want %q", note, tt.wantNote)
				}
				return
			}
			var ve *mdm.VendorError
			if !errors.As(err, &ve) {
				t.Fatalf("error = %v, want a *mdm.VendorError", err)
			}
			if ve.Retryable != tt.retryable || errors.Is(err, mdm.ErrDeviceGone) != tt.gone || ve.StatusCode != tt.status || ve.RetryAfter != tt.retryAfter {
				t.Fatalf("error = %#v, want retryable=%v gone=%v status=%d retryAfter=%s", ve, tt.retryable, tt.gone, tt.status, tt.retryAfter)
			}
		})
	}
}
