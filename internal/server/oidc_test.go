package server_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/offboard/offboard/internal/oidcauth"
	"github.com/offboard/offboard/internal/server"
	"github.com/offboard/offboard/internal/testenv"
)

// issuer is a local OpenID provider: discovery and JWKS over httptest, tokens signed with
// go-jose, as Entra ID or Okta would sign them.
type issuer struct {
	srv  *httptest.Server
	key  *rsa.PrivateKey
	kid  string
	tid  string
	aud  string
	jwks []jose.JSONWebKey
}

func newIssuer(t *testing.T, tid, aud string) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{key: key, kid: "k-" + tid, tid: tid, aud: aud}
	iss.jwks = []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: iss.kid, Algorithm: "RS256", Use: "sig"}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: iss.jwks})
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

// url is the issuer identifier: http://127.0.0.1:<port>.
func (i *issuer) url() string { return i.srv.URL }

// config is the tenant OIDC configuration trusting this issuer.
func (i *issuer) config() map[string]any {
	return map[string]any{"issuer": i.url(), "audience": i.aud, "claims": map[string]string{"tid": i.tid}}
}

// claims are a valid token's claims, shaped like Entra ID's provisioning token.
func (i *issuer) claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": i.url(), "aud": i.aud, "sub": "provisioning-" + i.tid, "tid": i.tid,
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// sign signs claims with key under kid (RS256).
func signRS256(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// token signs the issuer's claims after change.
func (i *issuer) token(t *testing.T, change func(map[string]any)) string {
	c := i.claims()
	if change != nil {
		change(c)
	}
	return signRS256(t, i.key, i.kid, c)
}

// unsigned builds a compact JWS by hand with any header and an HMAC-SHA256 signature under
// secret (nil: an empty signature).
func unsigned(header, claims map[string]any, secret []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	if secret == nil {
		return input + "."
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// insecureIssuers lets the environment trust http://127.0.0.1 issuers, as
// OFFBOARD_ALLOW_INSECURE_ISSUER=1 does for `offboard serve`.
func insecureIssuers(c *server.Config) {
	c.AllowInsecureIssuer = true
	c.OIDC = oidcauth.New(oidcauth.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}), oidcauth.AllowInsecureIssuer())
}

// behindProxy makes the environment trust X-Forwarded-For from loopback, so a test can send
// from many client addresses (and stay clear of the failed-authentication throttle).
func behindProxy(c *server.Config) {
	c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

var clientCounter atomic.Uint32

// freshClient is an X-Forwarded-For header pair naming a client address not used before.
func freshClient() []string {
	n := clientCounter.Add(1)
	return []string{"X-Forwarded-For", fmt.Sprintf("198.18.%d.%d", n/250%250, n%250+1)}
}

func TestSCIMAcceptsOnlyTheTenantsOwnIdPTokens(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Server: func(c *server.Config) { insecureIssuers(c); behindProxy(c) }})
	acme, beta := env.CreateTenant("acme", 10), env.CreateTenant("beta", 10)
	idpA := newIssuer(t, "tid-acme", "offboard-scim")
	idpB := newIssuer(t, "tid-beta", "offboard-scim")
	for _, c := range []struct {
		tn  *testenv.Tenant
		idp *issuer
	}{{acme, idpA}, {beta, idpB}} {
		if r := c.tn.Admin("PUT", "/oidc", c.idp.config()); r.Status != 200 {
			t.Fatalf("configure OIDC: %d %s", r.Status, r.Raw)
		}
	}
	get := func(tn *testenv.Tenant, jwt string) testenv.Response {
		return env.Do("GET", tn.SCIMBase+"/Users", jwt, nil, freshClient()...)
	}
	refused := func(t *testing.T, tn *testenv.Tenant, jwt string) {
		t.Helper()
		r := get(tn, jwt)
		scimError(t, r, 401, "")
		if !strings.Contains(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
	}

	t.Run("a valid token of the tenant's issuer is accepted and audited as the IdP", func(t *testing.T) {
		jwt := idpA.token(t, nil)
		if r := get(acme, jwt); r.Status != 200 {
			t.Fatalf("valid JWT: %d %s", r.Status, r.Raw)
		}
		created := env.Do("POST", acme.SCIMBase+"/Users", jwt, entraUser("jwt.user@acme.com", "jwt-1"))
		if created.Status != 201 {
			t.Fatalf("create with JWT: %d %s", created.Status, created.Raw)
		}
		emp := acme.Admin("GET", "/employees/"+created.JSON["id"].(string), nil)
		if !strings.Contains(string(emp.Raw), `"oidc:provisioning-tid-acme"`) {
			t.Errorf("the timeline does not name the IdP's subject: %s", emp.Raw)
		}
	})
	t.Run("an expired token is refused", func(t *testing.T) {
		refused(t, acme, idpA.token(t, func(c map[string]any) {
			c["exp"] = time.Now().Add(-2 * time.Minute).Unix()
			c["iat"] = time.Now().Add(-time.Hour).Unix()
		}))
	})
	t.Run("a token not valid yet is refused", func(t *testing.T) {
		refused(t, acme, idpA.token(t, func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() }))
	})
	t.Run("a token for another audience is refused", func(t *testing.T) {
		refused(t, acme, idpA.token(t, func(c map[string]any) { c["aud"] = "https://graph.microsoft.com" }))
	})
	t.Run("a token naming another issuer is refused", func(t *testing.T) {
		refused(t, acme, idpA.token(t, func(c map[string]any) { c["iss"] = idpB.url() }))
		refused(t, acme, idpA.token(t, func(c map[string]any) { c["iss"] = idpA.url() + "/" }))
	})
	t.Run("a token signed by a key the issuer does not publish is refused", func(t *testing.T) {
		other, _ := rsa.GenerateKey(rand.Reader, 2048)
		refused(t, acme, signRS256(t, other, idpA.kid, idpA.claims()))
		refused(t, acme, signRS256(t, other, "unknown-kid", idpA.claims()))
	})
	t.Run("an unsigned token (alg none) is refused", func(t *testing.T) {
		refused(t, acme, unsigned(map[string]any{"alg": "none", "typ": "JWT"}, idpA.claims(), nil))
		refused(t, acme, unsigned(map[string]any{"alg": "none", "kid": idpA.kid}, idpA.claims(), nil)+"c2ln")
	})
	t.Run("an HS256 token keyed with the issuer's public key is refused", func(t *testing.T) {
		der, _ := x509.MarshalPKIXPublicKey(&idpA.key.PublicKey)
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		jwk, _ := json.Marshal(idpA.jwks[0])
		for _, secret := range [][]byte{der, pemKey, jwk, idpA.key.PublicKey.N.Bytes()} {
			refused(t, acme, unsigned(map[string]any{"alg": "HS256", "typ": "JWT", "kid": idpA.kid}, idpA.claims(), secret))
		}
	})
	t.Run("a token without the required tid claim is refused", func(t *testing.T) {
		refused(t, acme, idpA.token(t, func(c map[string]any) { delete(c, "tid") }))
	})
	t.Run("a token with another tid is refused", func(t *testing.T) {
		refused(t, acme, idpA.token(t, func(c map[string]any) { c["tid"] = "tid-beta" }))
		refused(t, acme, idpA.token(t, func(c map[string]any) { c["tid"] = []string{"tid-acme"} }))
	})
	t.Run("a token of tenant A's issuer is refused on tenant B", func(t *testing.T) {
		refused(t, beta, idpA.token(t, nil))
		// Even dressed up with B's audience and tid: the signature and issuer are A's.
		refused(t, beta, idpA.token(t, func(c map[string]any) { c["tid"] = idpB.tid }))
		// And B's token is refused on A.
		refused(t, acme, idpB.token(t, nil))
		if r := get(beta, idpB.token(t, nil)); r.Status != 200 {
			t.Fatalf("B's own token: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("garbage, oversized and empty bearers are refused", func(t *testing.T) {
		refused(t, acme, "not-a-jwt")
		refused(t, acme, "a.b.c")
		refused(t, acme, strings.Repeat("A", 15000)+"."+strings.Repeat("B", 100)+".C")
		refused(t, acme, "")
	})
	t.Run("static SCIM tokens keep working beside OIDC", func(t *testing.T) {
		if r := acme.SCIM("GET", "/Users", nil); r.Status != 200 {
			t.Fatalf("static token: %d", r.Status)
		}
	})
	t.Run("a tenant without OIDC refuses every JWT", func(t *testing.T) {
		gamma := env.CreateTenant("gamma", 1)
		refused(t, gamma, idpA.token(t, nil))
	})
	t.Run("removing the OIDC configuration stops JWTs at once", func(t *testing.T) {
		jwt := idpB.token(t, nil)
		if r := beta.Admin("DELETE", "/oidc", nil); r.Status != 204 {
			t.Fatalf("delete OIDC: %d %s", r.Status, r.Raw)
		}
		refused(t, beta, jwt)
	})
	t.Run("a discovery document naming another issuer is refused when configured", func(t *testing.T) {
		cfg := idpA.config()
		cfg["discoveryUrl"] = idpB.url() + "/.well-known/openid-configuration"
		if r := beta.Admin("PUT", "/oidc", cfg); r.Status != 400 {
			t.Fatalf("mismatched discovery: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("a failed probe does not tell the tenant about the deployment's network", func(t *testing.T) {
		for _, iss := range []string{"http://127.0.0.1:1", "https://127.0.0.1:1/tid"} {
			r := beta.Admin("PUT", "/oidc", map[string]any{"issuer": iss, "audience": "x"})
			if r.Status != 400 || !strings.Contains(string(r.Raw), "could not connect to") {
				t.Fatalf("%s: %d %s", iss, r.Status, r.Raw)
			}
			for _, leak := range []string{"dial", "lookup", "refused", ":53", "no such host", "tcp"} {
				if strings.Contains(string(r.Raw), leak) {
					t.Errorf("%s: the answer shows %q: %s", iss, leak, r.Raw)
				}
			}
		}
	})
	t.Run("OIDC configuration is validated strictly", func(t *testing.T) {
		for _, body := range []any{
			map[string]any{"issuer": idpA.url(), "audiance": "x"},
			map[string]any{"issuer": idpA.url()},
			map[string]any{"issuer": "ftp://127.0.0.1/", "audience": "x"},
			map[string]any{"issuer": idpA.url() + "?x=1", "audience": "x"},
			map[string]any{"issuer": idpA.url(), "audience": "x", "claims": map[string]string{"exp": "1"}},
			`{"issuer": {"$ne": null}, "audience": "x"}`,
		} {
			if r := beta.Admin("PUT", "/oidc", body); r.Status != 400 {
				t.Errorf("%v: %d %s", body, r.Status, r.Raw)
			}
		}
	})
}

func TestPlainHTTPIssuersNeedTheInsecureFlag(t *testing.T) {
	idp := newIssuer(t, "tid-dev", "offboard-scim")
	t.Run("without OFFBOARD_ALLOW_INSECURE_ISSUER an http issuer is refused", func(t *testing.T) {
		env := testenv.Start(t)
		dev := env.CreateTenant("dev", 1)
		r := dev.Admin("PUT", "/oidc", idp.config())
		if r.Status != 400 || !strings.Contains(string(r.Raw), oidcauth.EnvAllowInsecureIssuer) {
			t.Fatalf("http issuer without the flag: %d %s", r.Status, r.Raw)
		}
		if got := dev.Admin("GET", "", nil); got.JSON["oidc"] != nil {
			t.Fatalf("the refused configuration was stored: %s", got.Raw)
		}
		scimError(t, env.Do("GET", dev.SCIMBase+"/Users", idp.token(t, nil), nil), 401, "")
	})
	t.Run("the server flag alone does not make the verifier accept http", func(t *testing.T) {
		env := testenv.Start(t, testenv.Options{Server: func(c *server.Config) { c.AllowInsecureIssuer = true }})
		dev := env.CreateTenant("dev", 1)
		if r := dev.Admin("PUT", "/oidc", idp.config()); r.Status != 400 {
			t.Fatalf("http issuer with a strict verifier: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("with the flag a loopback http issuer works", func(t *testing.T) {
		env := testenv.Start(t, testenv.Options{Server: insecureIssuers})
		dev := env.CreateTenant("dev", 1)
		if r := dev.Admin("PUT", "/oidc", idp.config()); r.Status != 200 {
			t.Fatalf("http issuer with the flag: %d %s", r.Status, r.Raw)
		}
		if r := env.Do("GET", dev.SCIMBase+"/Users", idp.token(t, nil), nil); r.Status != 200 {
			t.Fatalf("JWT of the dev issuer: %d %s", r.Status, r.Raw)
		}
	})
	t.Run("even with the flag a non-loopback http issuer is refused", func(t *testing.T) {
		env := testenv.Start(t, testenv.Options{Server: insecureIssuers})
		dev := env.CreateTenant("dev", 1)
		cfg := idp.config()
		cfg["issuer"] = "http://login.example.com/tid"
		if r := dev.Admin("PUT", "/oidc", cfg); r.Status != 400 {
			t.Fatalf("http non-loopback issuer: %d %s", r.Status, r.Raw)
		}
	})
}
