package oidcauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/offboard/offboard/internal/testclock"
)

// Key generation is slow; the test keys are made once per test binary.
var (
	rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
		var ks []*rsa.PrivateKey
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			ks = append(ks, k)
		}
		return ks
	})
	ecKey = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func rsaKey(i int, kid string) signingKey {
	return signingKey{kid: kid, alg: jose.RS256, priv: rsaKeys()[i]}
}

// testIssuer is a real OpenID provider on a local TLS server: discovery document
// and JWKS, with switchable keys and failure modes, counting requests.
type testIssuer struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	published []signingKey
	extraJWKS []map[string]any
	docIssuer string
	failing   bool

	discoveryHits atomic.Int32
	jwksHits      atomic.Int32
}

func newIssuer(t *testing.T, tls bool) *testIssuer {
	t.Helper()
	i := &testIssuer{t: t}
	h := http.HandlerFunc(i.serve)
	if tls {
		i.srv = httptest.NewTLSServer(h)
	} else {
		i.srv = httptest.NewServer(h)
	}
	t.Cleanup(i.srv.Close)
	i.docIssuer = i.srv.URL
	i.publish(rsaKey(0, "k1"))
	return i
}

func (i *testIssuer) serve(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch {
	case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") || r.URL.Path == "/alt-discovery":
		i.discoveryHits.Add(1)
		if i.failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                i.docIssuer,
			"jwks_uri":                              i.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "HS256", "none"},
		})
	case r.URL.Path == "/keys":
		i.jwksHits.Add(1)
		if i.failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var keys []any
		for _, k := range i.published {
			keys = append(keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		for _, k := range i.extraJWKS {
			keys = append(keys, k)
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	default:
		http.NotFound(w, r)
	}
}

func (i *testIssuer) publish(keys ...signingKey) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = keys
}

func (i *testIssuer) setFailing(f bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failing = f
}

func (i *testIssuer) config() Config {
	return Config{Issuer: i.docIssuer, Audience: "offboard-scim", Claims: map[string]string{"tid": "acme-tid"}}
}

// claims are valid claims for config() at now; tests change what they test.
func (i *testIssuer) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": i.docIssuer,
		"aud": "offboard-scim",
		"sub": "provisioning-service",
		"tid": "acme-tid",
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

func sign(t *testing.T, k signingKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newClock() *testclock.Clock { return testclock.New(time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)) }

func newVerifier(i *testIssuer, clk *testclock.Clock, opts ...Option) *Verifier {
	return New(append([]Option{WithHTTPClient(i.srv.Client()), WithClock(clk.Now)}, opts...)...)
}
