// Package nanomdmtest runs a real NanoMDM v0.9.0 in-process, wired the way cmd/nanomdm wires it
// with -api, -cert-header, -webhook-url and -webhook-hmac-key, and simulates enrolled Apple
// devices that talk to it. The NanoMDM connector's tests and Offboard's end-to-end tests use it
// to exercise the Apple MDM path against the real server instead of a fake.
//
// In front of NanoMDM's API sits a thin test layer that can fail the next call (FailNext), wrap
// the API handler (Intercept) and counts the commands NanoMDM actually stored per enrollment
// (Enqueued), which is how tests assert that a retry did not queue a command twice.
package nanomdmtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	nlhttp "github.com/micromdm/nanolib/http"
	"github.com/micromdm/nanolib/log"
	"github.com/micromdm/nanolib/log/stdlogfmt"
	"github.com/micromdm/nanomdm/certverify"
	httpapi "github.com/micromdm/nanomdm/http/api"
	httpmdm "github.com/micromdm/nanomdm/http/mdm"
	"github.com/micromdm/nanomdm/push/nanopush"
	pushsvc "github.com/micromdm/nanomdm/push/service"
	"github.com/micromdm/nanomdm/service"
	"github.com/micromdm/nanomdm/service/certauth"
	"github.com/micromdm/nanomdm/service/multi"
	nanosvc "github.com/micromdm/nanomdm/service/nanomdm"
	"github.com/micromdm/nanomdm/service/webhook"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/inmem"
	"github.com/micromdm/plist"
)

// CertHeader is the header the simulated TLS-terminating proxy puts the device's client
// certificate in (nanomdm -cert-header), as in the captured run.
const CertHeader = "X-Ssl-Client-Cert"

// APIKey is the key NanoMDM's API is started with (nanomdm -api).
const APIKey = "test-api-key-0123456789"

// Version is what /version reports.
const Version = "v0.9.0"

// Options configure a Server.
type Options struct {
	// Storage is NanoMDM's storage backend; nil is NanoMDM's in-memory one.
	Storage storage.AllStorage
	// HMACKey, if set, signs webhook events (nanomdm -webhook-hmac-key).
	HMACKey []byte
	// WebhookClient sends the webhook events; nil is a plain client.
	WebhookClient *http.Client
}

// Server is one NanoMDM. It serves from New on (so its URL can go into a connector's
// configuration); NanoMDM itself answers once Start gave it its webhook URL, until then every
// request is answered 503.
type Server struct {
	// URL is the base URL: /mdm for devices, /v1 for the API, /version.
	URL string
	// APIKey is the API's key.
	APIKey string

	t     testing.TB
	opts  Options
	srv   *httptest.Server
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey

	mu        sync.Mutex
	mdm       http.Handler // NanoMDM; nil until Start
	api       http.Handler // NanoMDM's API behind the test layer
	failNext  []failure
	intercept []func(http.Handler) http.Handler
	enqueued  map[string][]string // enrollment id -> RequestTypes NanoMDM stored, in order
}

type failure struct {
	status int
	header http.Header
}

// New starts serving and returns the server; call Start to bring NanoMDM up.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Storage == nil {
		opts.Storage = inmem.New()
	}
	if opts.WebhookClient == nil {
		opts.WebhookClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{t: t, opts: opts, APIKey: APIKey, enqueued: map[string][]string{}}
	s.ca, s.caKey = newCA(t)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	return s
}

// Start brings NanoMDM up with its webhook pointed at webhookURL (nanomdm -webhook-url).
func (s *Server) Start(webhookURL string) {
	s.t.Helper()
	var logger log.Logger = log.NopLogger
	if os.Getenv("NANOMDM_TEST_LOG") != "" {
		logger = stdlogfmt.New(stdlogfmt.WithDebugFlag(true))
	}
	store := s.opts.Storage
	verifier, err := certverify.NewPoolVerifier(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ca.Raw}), nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		s.t.Fatal(err)
	}

	var svc service.CheckinAndCommandService = nanosvc.New(store, nanosvc.WithLogger(logger))
	whOpts := []webhook.Option{webhook.WithTokenUpdateTalley(store), webhook.WithClient(s.opts.WebhookClient)}
	if s.opts.HMACKey != nil {
		whOpts = append(whOpts, webhook.WithHMACSecret(s.opts.HMACKey))
	}
	svc = multi.New(logger, svc, webhook.New(webhookURL, whOpts...))
	svc = certauth.New(svc, store, certauth.WithLogger(logger))

	mux := http.NewServeMux()
	mdmMux := nlhttp.NewMWMux(mux)
	mdmMux.Use(func(h http.Handler) http.Handler {
		return httpmdm.CertExtractPEMHeaderMiddleware(h, CertHeader, logger)
	})
	mdmMux.Use(func(h http.Handler) http.Handler {
		return httpmdm.CertVerifyMiddleware(h, verifier, logger)
	})
	mdmMux.Handle("/mdm", httpmdm.CheckinAndCommandHandler(svc, logger))

	apiMux := http.NewServeMux()
	auth := nlhttp.NewMWMux(apiMux)
	auth.Use(func(h http.Handler) http.Handler {
		return nlhttp.NewSimpleBasicAuthHandler(h, "nanomdm", APIKey, "nanomdm")
	})
	pusher := pushsvc.New(store, store, nanopush.NewFactory(), logger)
	httpapi.HandleAPIv1("/v1", auth, logger, store, pusher)
	apiMux.HandleFunc("/version", nlhttp.NewJSONVersionHandler(Version))

	s.mu.Lock()
	defer s.mu.Unlock()
	s.mdm, s.api = mux, apiMux
}

// serve routes device traffic straight to NanoMDM and API traffic through the test layer.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	mdm, api := s.mdm, s.api
	var fail *failure
	if api != nil && r.URL.Path != "/mdm" && len(s.failNext) > 0 {
		fail = &s.failNext[0]
		s.failNext = s.failNext[1:]
	}
	wraps := append([]func(http.Handler) http.Handler(nil), s.intercept...)
	s.mu.Unlock()
	switch {
	case mdm == nil:
		http.Error(w, "NanoMDM is not started", http.StatusServiceUnavailable)
	case r.URL.Path == "/mdm":
		mdm.ServeHTTP(w, r)
	case fail != nil:
		for k, v := range fail.header {
			w.Header()[k] = v
		}
		http.Error(w, "injected failure", fail.status)
	default:
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.countEnqueue(api, w, r) })
		for _, wrap := range wraps {
			h = wrap(h)
		}
		h.ServeHTTP(w, r)
	}
}

// countEnqueue passes an API request to NanoMDM and, for an enqueue, records per enrollment the
// RequestType of the command if NanoMDM stored it (its answer names no command error).
func (s *Server) countEnqueue(api http.Handler, w http.ResponseWriter, r *http.Request) {
	ids, ok := strings.CutPrefix(r.URL.Path, "/v1/enqueue/")
	if !ok || r.Method != http.MethodPut {
		api.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var cmd struct {
		Command struct {
			RequestType string `plist:"RequestType"`
		} `plist:"Command"`
	}
	_ = plist.Unmarshal(body, &cmd)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, r)
	var res struct {
		CommandError string `json:"command_error"`
		Status       map[string]struct {
			CommandError string `json:"command_error"`
		} `json:"status"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &res)
	if res.CommandError == "" {
		s.mu.Lock()
		for _, id := range strings.Split(ids, ",") {
			if id, _ := url.PathUnescape(id); res.Status[id].CommandError == "" {
				s.enqueued[id] = append(s.enqueued[id], cmd.Command.RequestType)
			}
		}
		s.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// FailNext makes the next API request (not device traffic) answer status with header.
func (s *Server) FailNext(status int, header http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, failure{status, header})
}

// Intercept wraps NanoMDM's API handler (after FailNext), for tests that hold or observe calls.
func (s *Server) Intercept(wrap func(next http.Handler) http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.intercept = append(s.intercept, wrap)
}

// Enqueued lists the RequestTypes of the commands NanoMDM stored for an enrollment, in order.
// A duplicate CommandUUID NanoMDM refused is not listed.
func (s *Server) Enqueued(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.enqueued[id]...)
}

func newCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Offboard test MDM CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issueDeviceCert returns a PEM client certificate for udid signed by the server's CA, as the
// device's SCEP-issued identity would be.
func (s *Server) issueDeviceCert(udid string) []byte {
	s.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		s.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: udid},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		s.t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
