package nanomdm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
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
	"github.com/micromdm/nanomdm/storage/diskv"
	"github.com/micromdm/nanomdm/storage/inmem"
)

// certHeader is the header the simulated TLS-terminating proxy puts the device's client
// certificate in (nanomdm -cert-header), as in the captured run.
const certHeader = "X-Ssl-Client-Cert"

// backends are the NanoMDM storage backends the end-to-end tests run against: filekv (diskv),
// NanoMDM's default, in a temporary directory, and the in-memory one.
var backends = []struct {
	name string
	open func(t *testing.T) storage.AllStorage
}{
	{"filekv", func(t *testing.T) storage.AllStorage { return diskv.New(t.TempDir()) }},
	{"inmem", func(t *testing.T) storage.AllStorage { return inmem.New() }},
}

// nanoServer is a real NanoMDM v0.9.0 assembled in-process the way cmd/nanomdm wires it with
// -api, -cert-header, -webhook-url and -webhook-hmac-key: the MDM endpoint behind header
// certificate extraction and CA verification, the v1 API behind Basic auth, /version open.
type nanoServer struct {
	URL    string
	APIKey string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// startNanoMDM starts NanoMDM on an httptest server; webhook events go to webhookURL, signed
// with hmacKey.
func startNanoMDM(t *testing.T, store storage.AllStorage, webhookURL string, hmacKey []byte, webhookClient *http.Client) *nanoServer {
	t.Helper()
	var logger log.Logger = log.NopLogger
	if os.Getenv("NANOMDM_TEST_LOG") != "" {
		logger = stdlogfmt.New(stdlogfmt.WithDebugFlag(true))
	}

	ca, caKey := newCA(t)
	verifier, err := certverify.NewPoolVerifier(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}

	var svc service.CheckinAndCommandService = nanosvc.New(store, nanosvc.WithLogger(logger))
	wh := webhook.New(webhookURL,
		webhook.WithTokenUpdateTalley(store),
		webhook.WithClient(webhookClient),
		webhook.WithHMACSecret(hmacKey),
	)
	svc = multi.New(logger, svc, wh)
	svc = certauth.New(svc, store, certauth.WithLogger(logger))

	mux := http.NewServeMux()
	mdmMux := nlhttp.NewMWMux(mux)
	mdmMux.Use(func(h http.Handler) http.Handler {
		return httpmdm.CertExtractPEMHeaderMiddleware(h, certHeader, logger)
	})
	mdmMux.Use(func(h http.Handler) http.Handler {
		return httpmdm.CertVerifyMiddleware(h, verifier, logger)
	})
	mdmMux.Handle("/mdm", httpmdm.CheckinAndCommandHandler(svc, logger))

	const apiKey = "test-api-key-0123456789"
	apiMux := nlhttp.NewMWMux(mux)
	apiMux.Use(func(h http.Handler) http.Handler {
		return nlhttp.NewSimpleBasicAuthHandler(h, "nanomdm", apiKey, "nanomdm")
	})
	pusher := pushsvc.New(store, store, nanopush.NewFactory(), logger)
	httpapi.HandleAPIv1("/v1", apiMux, logger, store, pusher)
	mux.HandleFunc("/version", nlhttp.NewJSONVersionHandler("v0.9.0"))

	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &nanoServer{URL: srv.URL, APIKey: apiKey, ca: ca, caKey: caKey}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
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
func (s *nanoServer) issueDeviceCert(t *testing.T, udid string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
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
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
