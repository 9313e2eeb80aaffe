package threemawork

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/mdmtest"
)

// conformanceFake adapts the Threema Work fake to mdmtest.Fake: Actions counts the credentials
// of the person that were deleted.
type conformanceFake struct {
	f        *fake
	mu       sync.Mutex
	failNext []func(http.ResponseWriter)
}

func (c *conformanceFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	var fail func(http.ResponseWriter)
	if len(c.failNext) > 0 && r.Header.Get("X-Api-Key") == apiKey {
		fail, c.failNext = c.failNext[0], c.failNext[1:]
	}
	c.mu.Unlock()
	if fail != nil {
		fail(w)
		return
	}
	c.f.ServeHTTP(w, r)
}

func (c *conformanceFake) FailNext(status int, h http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext = append(c.failNext, func(w http.ResponseWriter) {
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
	})
}

func (c *conformanceFake) RevokeTokens()           {}
func (c *conformanceFake) TokenRequests() int      { return 0 }
func (c *conformanceFake) RemoveDevice(string)     {}
func (c *conformanceFake) CompleteCommands(string) {}

func (c *conformanceFake) Actions(string) int {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	return len(c.f.deleted)
}

func TestConformance(t *testing.T) {
	mdmtest.Run(t, mdmtest.Harness{
		New: func(t *testing.T, bad bool) (mdm.Connector, mdmtest.Fake) {
			cf := &conformanceFake{f: &fake{creds: map[string]string{"c1": "jane.doe@example.com", "c2": "bob@example.com"}}}
			srv := httptest.NewServer(cf)
			t.Cleanup(srv.Close)
			key := apiKey
			if bad {
				key = "a-revoked-api-key"
			}
			raw, _ := json.Marshal(map[string]any{"url": srv.URL + "/api/v1", "apiKey": key})
			c, err := Open(raw, mdm.Deps{HTTPClient: srv.Client(), Now: func() time.Time { return mdmtest.Occurred }})
			if err != nil {
				t.Fatal(err)
			}
			return c, cf
		},
		Person:  mdm.Person{ID: "emp-42", UserName: "jane.doe@example.com", ExternalID: "00u1abcd"},
		Config:  json.RawMessage(`{"apiKey":"` + apiKey + `","match":"userName"}`),
		Redact:  Redact,
		Secrets: []string{apiKey, "a-revoked-api-key"},
	})
}
