// Package vendorfake is the plumbing the SaaS MDM vendor fakes (intunetest, jamftest,
// workspaceonetest) share: the TLS httptest server, the clock, the request log, the queue of
// injected failures and the access tokens issued, so that a fix to how a fake fails or checks
// tokens lands once for every vendor. What a vendor answers, and in which error format, stays in
// its own fake.
package vendorfake

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm/mdmtest"
)

// Base is embedded in a vendor fake and gives it the accessors mdmtest.Fake and Offboard's
// end-to-end tests use. Its zero value is not usable; call Start.
type Base struct {
	// Mu guards the Base and the vendor's own state alike: the vendor's handler holds it while
	// it serves a request, and the helpers documented "with Mu held" expect it held. Accessors
	// take it themselves.
	Mu sync.Mutex

	srv      *httptest.Server
	handler  http.Handler // serves requests; the vendor's handler unless wrapped
	now      func() time.Time
	issued   int
	valid    map[string]bool
	failNext []failure
	actions  map[string]int
	log      []Request
}

// Request is one request a fake received.
type Request struct {
	Method, Path, Query string
	At                  time.Time
}

// String is the method and path, as a test failure shows a request.
func (r Request) String() string { return r.Method + " " + r.Path }

type failure struct {
	status int
	header http.Header
}

// Start serves h on a TLS httptest server that stops when the test ends. The clock stands two
// minutes after mdmtest.Occurred until SetClock or SetNow, so what the fake stamps follows the
// suite's leaver event.
func Start(t testing.TB, h http.Handler) *Base {
	start := mdmtest.Occurred.Add(2 * time.Minute)
	b := &Base{
		handler: h,
		now:     func() time.Time { return start },
		valid:   map[string]bool{},
		actions: map[string]int{},
	}
	b.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Mu.Lock()
		h := b.handler
		b.Mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// URL is the fake server's base URL.
func (b *Base) URL() string { return b.srv.URL }

// Server is the underlying TLS server (its Certificate and Client trust each other).
func (b *Base) Server() *httptest.Server { return b.srv }

// Client returns an HTTP client that trusts the fake's certificate.
func (b *Base) Client() *http.Client { return b.srv.Client() }

// Wrap puts wrap around the fake's handler (to inject answers the vendor may give).
func (b *Base) Wrap(wrap func(next http.Handler) http.Handler) {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	b.handler = wrap(b.handler)
}

// SetClock makes the fake read its time (the request log, the dates it records) from now.
func (b *Base) SetClock(now func() time.Time) {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	b.now = now
}

// SetNow fixes the fake's time at t.
func (b *Base) SetNow(t time.Time) { b.SetClock(func() time.Time { return t }) }

// Now is the fake's current time.
func (b *Base) Now() time.Time {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	return b.now()
}

// NowLocked is Now for a caller that holds Mu.
func (b *Base) NowLocked() time.Time { return b.now() }

// Record adds r to the request log; call it with Mu held.
func (b *Base) Record(r *http.Request) {
	b.log = append(b.log, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, At: b.now()})
}

// Requests lists the requests received so far, oldest first.
func (b *Base) Requests() []Request {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	return slices.Clone(b.log)
}

// FailNext makes the next API call (not a token request) answer status with header.
func (b *Base) FailNext(status int, header http.Header) {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	b.failNext = append(b.failNext, failure{status, header})
}

// PopFailure takes the next failure FailNext queued and copies its header onto w; the caller
// then answers status in the vendor's error format. ok is false when none is queued. Call it
// with Mu held.
func (b *Base) PopFailure(w http.ResponseWriter) (status int, ok bool) {
	if len(b.failNext) == 0 {
		return 0, false
	}
	fl := b.failNext[0]
	b.failNext = b.failNext[1:]
	for k, v := range fl.header {
		w.Header()[k] = v
	}
	return fl.status, true
}

// IssueToken makes a new access token, prefix and a sequence number, valid until RevokeTokens;
// call it with Mu held.
func (b *Base) IssueToken(prefix string) string {
	b.issued++
	tok := prefix + strconv.Itoa(b.issued)
	b.valid[tok] = true
	return tok
}

// Bearer reports whether r's Authorization header carries a token IssueToken issued and
// RevokeTokens has not revoked; call it with Mu held.
func (b *Base) Bearer(r *http.Request) bool {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return b.valid[tok]
}

// RevokeTokens invalidates every access token issued so far.
func (b *Base) RevokeTokens() {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	clear(b.valid)
}

// TokenRequests counts the access tokens issued.
func (b *Base) TokenRequests() int {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	return b.issued
}

// CountAction counts one effect the vendor applied to target (see Actions); call it with Mu
// held.
func (b *Base) CountAction(target string) { b.actions[target]++ }

// Actions counts the effects the vendor applied to a target (a device ID): each fake's
// documentation says which.
func (b *Base) Actions(target string) int {
	b.Mu.Lock()
	defer b.Mu.Unlock()
	return b.actions[target]
}
