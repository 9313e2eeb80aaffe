// Package testenv runs a whole Offboard server in-process for end-to-end tests: the real HTTP
// handlers, lifecycle service, job runner and connectors, on a fresh database of the test
// store, behind an httptest server, with helpers to call the SCIM and admin APIs.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/connectors"
	"github.com/offboard/offboard/internal/connectors/builtin"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/oidcauth"
	"github.com/offboard/offboard/internal/secretbox"
	"github.com/offboard/offboard/internal/server"
	"github.com/offboard/offboard/internal/testclock"
	"github.com/offboard/offboard/internal/testdb"
)

// AdminToken is the operator token of every test environment.
const AdminToken = "test-operator-token-0123456789"

// Env is a running Offboard.
type Env struct {
	T          testing.TB
	URL        string
	Store      *mongostore.Store
	Service    *lifecycle.Service
	Runner     *lifecycle.Runner
	Connectors *connectors.Manager
	HTTP       *http.Client
	Keys       *secretbox.Keyring
	Clock      *Clock
	stop       func()
}

// Options adjust an environment.
type Options struct {
	// Clock, if set, drives the service (notice periods, leave dates, backoff).
	Clock *Clock
	// NoRunner leaves the job runner stopped (tests drive it with Runner.Process).
	NoRunner bool
	// Store, if set, is used instead of a fresh database (restarts on the same data).
	Store *mongostore.Store
	// Server adjusts the server configuration.
	Server func(*server.Config)
	// Runner adds runner options.
	Runner []lifecycle.RunnerOption
	// Service adds lifecycle service options (a short lease for crash tests).
	Service []lifecycle.Option
	// ConnectorClient, if set, is the HTTP client connectors call vendors with (one that trusts
	// the test servers' certificates).
	ConnectorClient *http.Client
	// Log, if set, receives the server's log (debug level) as text.
	Log io.Writer
	// Keys, if set, seal connector secrets instead of a fresh key (restarts on the same data).
	Keys *secretbox.Keyring
	// Logger, if set, receives every log line of the server, service, runner and connectors
	// (instead of Log).
	Logger *slog.Logger
}

// Clock is the settable test clock (internal/testclock).
type Clock = testclock.Clock

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return testclock.New(t) }

// Start runs an environment until the test ends.
func Start(t testing.TB, opt ...Options) *Env {
	t.Helper()
	var o Options
	if len(opt) > 0 {
		o = opt[0]
	}
	now := time.Now
	if o.Clock != nil {
		now = o.Clock.Now
	}
	store := o.Store
	if store == nil {
		store = testdb.New(t, mongostore.WithClock(now))
	}
	keys := o.Keys
	if keys == nil {
		var key [32]byte
		_, _ = rand.Read(key[:])
		var err error
		if keys, err = secretbox.ParseKeys(base64.StdEncoding.EncodeToString(key[:])); err != nil {
			t.Fatal(err)
		}
	}
	var logTo []io.Writer
	if o.Log != nil {
		logTo = append(logTo, o.Log)
	}
	if os.Getenv("OFFBOARD_TEST_LOG") != "" {
		logTo = append(logTo, os.Stderr)
	}
	log := slog.New(slog.DiscardHandler)
	if len(logTo) > 0 {
		log = slog.New(slog.NewTextHandler(io.MultiWriter(logTo...), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.Logger != nil {
		log = o.Logger
	}
	client := &http.Client{Timeout: 20 * time.Second}
	connClient := client
	if o.ConnectorClient != nil {
		connClient = o.ConnectorClient
	}
	conns := connectors.New(store, keys, builtin.Kinds(), connClient, log, connectors.WithClock(now))
	svc := lifecycle.NewService(store, conns, append([]lifecycle.Option{lifecycle.WithClock(now), lifecycle.WithLogger(log),
		lifecycle.WithHasher(lifecycle.BcryptHasher{Cost: 4})}, o.Service...)...)
	ropts := append([]lifecycle.RunnerOption{
		lifecycle.WithIntervals(50*time.Millisecond, time.Second),
		lifecycle.WithBackoff(100*time.Millisecond, 2*time.Second, 5),
		lifecycle.WithOnWaiting(conns.Waiting),
	}, o.Runner...)
	runner := lifecycle.NewRunner(svc, ropts...)
	conns.SetWaker(runner.CommandReported)
	cfg := server.Config{
		Store: store, Service: svc, Connectors: conns, PublicURL: "",
		OIDC:          oidcauth.New(oidcauth.WithHTTPClient(client), oidcauth.WithLogger(log)),
		OperatorToken: AdminToken, Log: log, Now: now, Ready: store.Ping,
		TokenRate: 1000, TokenBurst: 2000, IPRate: 5000, IPBurst: 10000,
	}
	if o.Server != nil {
		o.Server(&cfg)
	}
	var handler http.Handler
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	ts.Start()
	if cfg.PublicURL == "" {
		cfg.PublicURL = ts.URL
	}
	handler = server.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if o.NoRunner {
		close(done)
	} else {
		go func() { runner.Run(ctx); close(done) }()
	}
	e := &Env{T: t, URL: ts.URL, Store: store, Service: svc, Runner: runner, Connectors: conns,
		HTTP: &http.Client{Timeout: 30 * time.Second}, Keys: keys, Clock: o.Clock}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			ts.Close()
			cancel()
			<-done
			svc.Close()
		})
	}
	t.Cleanup(e.stop)
	return e
}

// Stop stops the server and the runner (the database stays).
func (e *Env) Stop() { e.stop() }

// Response is an HTTP answer with its JSON body decoded.
type Response struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

// Body is a test request body: nil for none, a string or []byte sent as is, anything else
// encoded as JSON.
func Body(t testing.TB, body any) io.Reader {
	t.Helper()
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return strings.NewReader(b)
	case []byte:
		return bytes.NewReader(b)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(raw)
}

// LogBuffer collects log output from concurrent writers (a server's goroutines).
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Do sends a request with a bearer token and a JSON (or raw string) body.
func (e *Env) Do(method, url, bearer string, body any, header ...string) Response {
	e.T.Helper()
	rd := Body(e.T, body)
	if strings.HasPrefix(url, "/") {
		url = e.URL + url
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.T.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 {
		_ = json.Unmarshal(raw, &r.JSON)
	}
	return r
}

// Admin calls the admin API as the operator.
func (e *Env) Admin(method, path string, body any) Response {
	e.T.Helper()
	return e.Do(method, "/admin/v1"+path, AdminToken, body)
}

// Tenant is a tenant created for a test.
type Tenant struct {
	ID, Name, SCIMBase, SCIMToken string
	env                           *Env
}

// CreateTenant creates a tenant with a seat pool through the admin API.
func (e *Env) CreateTenant(name string, seats int) *Tenant {
	e.T.Helper()
	r := e.Admin("POST", "/tenants", map[string]any{"name": name, "seats": seats})
	if r.Status != http.StatusCreated {
		e.T.Fatalf("create tenant: %d %s", r.Status, r.Raw)
	}
	return &Tenant{ID: r.JSON["id"].(string), Name: name, SCIMBase: r.JSON["scimBaseUrl"].(string), SCIMToken: r.JSON["scimToken"].(string), env: e}
}

// On returns the tenant as seen through another environment (a restarted server on the same
// store).
func (t *Tenant) On(e *Env) *Tenant {
	c := *t
	c.env = e
	return &c
}

// SCIM sends a SCIM request to the tenant's endpoint with its token.
func (t *Tenant) SCIM(method, path string, body any, header ...string) Response {
	t.env.T.Helper()
	return t.env.Do(method, t.SCIMBase+path, t.SCIMToken, body, header...)
}

// Admin calls the tenant's admin routes as the operator.
func (t *Tenant) Admin(method, path string, body any) Response {
	t.env.T.Helper()
	return t.env.Admin(method, "/tenants/"+t.ID+path, body)
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
