package threemawork

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
)

const apiKey = "test-api-key-123"

// fake speaks the Threema Work API as documented (X-Api-Key, /credentials?filterUsername=,
// DELETE /credentials/{id}, 429 when the daily quota is exceeded).
type fake struct {
	mu        sync.Mutex
	creds     map[string]string // id -> username
	deleted   []string
	throttled int
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("X-Api-Key") != apiKey {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f.throttled > 0 {
		f.throttled--
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/credentials":
		want := r.URL.Query().Get("filterUsername")
		out := []map[string]any{}
		for id, u := range f.creds {
			if strings.HasPrefix(u, want) {
				out = append(out, map[string]any{"id": id, "username": u, "usage": 1, "hashed": false, "locked": true})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"credentials": out, "paging": map[string]any{}})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/v1/credentials/"):
		id := strings.TrimPrefix(r.URL.Path, "/api/v1/credentials/")
		if _, ok := f.creds[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		delete(f.creds, id)
		f.deleted = append(f.deleted, id)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/users":
		_ = json.NewEncoder(w).Encode(map[string]any{"users": []any{}})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func open(t *testing.T, f *fake, cfg map[string]any) *Connector {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg["url"] = srv.URL + "/api/v1"
	raw, _ := json.Marshal(cfg)
	c, err := Open(raw, mdm.Deps{HTTPClient: srv.Client(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Connector)
}

func TestOffboardingDeletesOnlyTheLeaversCredentialsAndRetriesAreHarmless(t *testing.T) {
	f := &fake{creds: map[string]string{"c1": "jane.doe", "c2": "jane.doe2", "c3": "bob"}}
	c := open(t, f, map[string]any{"apiKey": apiKey, "match": "localPart"})
	req := mdm.Request{Key: "k", Action: mdm.ActionWipeApp, Person: mdm.Person{UserName: "jane.doe@contoso.com"}}
	for i := 0; i < 2; i++ {
		if err := c.Notify(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.deleted) != 1 || f.deleted[0] != "c1" {
		t.Fatalf("deleted %v, want only c1 (not the prefix match jane.doe2)", f.deleted)
	}
}

func TestTheDailyQuotaIsRetryableAfterRetryAfter(t *testing.T) {
	f := &fake{creds: map[string]string{"c1": "jane"}, throttled: 1}
	c := open(t, f, map[string]any{"apiKey": apiKey})
	err := c.Notify(context.Background(), mdm.Request{Person: mdm.Person{UserName: "jane"}})
	var ve *mdm.VendorError
	if !errors.As(err, &ve) || !ve.Retryable || ve.RetryAfter != 30*time.Second {
		t.Fatalf("throttled: %v", err)
	}
	if err := c.Notify(context.Background(), mdm.Request{Person: mdm.Person{UserName: "jane"}}); err != nil {
		t.Fatal(err)
	}
}

func TestAWrongKeyIsNotRetriedAndFailsTheHealthCheck(t *testing.T) {
	f := &fake{}
	c := open(t, f, map[string]any{"apiKey": "wrong-key-456"})
	err := c.CheckHealth(context.Background())
	var ve *mdm.VendorError
	if !errors.As(err, &ve) || ve.Retryable || strings.Contains(err.Error(), "wrong-key") {
		t.Fatalf("health with a wrong key: %v", err)
	}
}

func TestConfigurationIsValidatedAndTheKeyRedacted(t *testing.T) {
	if _, err := Open(json.RawMessage(`{"apiKey":"x"}`), mdm.Deps{HTTPClient: http.DefaultClient}); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := Open(json.RawMessage(`{"apiKey":"abcdefgh","url":"http://work.example/api"}`), mdm.Deps{HTTPClient: http.DefaultClient}); err == nil {
		t.Fatal("plain http accepted")
	}
	if got := string(Redact(json.RawMessage(`{"apiKey":"secret-value","match":"email"}`))); strings.Contains(got, "secret-value") {
		t.Fatalf("redacted: %s", got)
	}
}
