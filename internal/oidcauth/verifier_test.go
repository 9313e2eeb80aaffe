package oidcauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestVerify(t *testing.T) {
	ctx := context.Background()
	iss := newIssuer(t, true)
	clk := newClock()
	v := newVerifier(iss, clk)
	cfg := iss.config()

	invalid := func(t *testing.T, raw string) {
		t.Helper()
		_, err := v.Verify(ctx, cfg, raw)
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v, want ErrInvalidToken", err)
		}
		if len(raw) > 20 && strings.Contains(err.Error(), raw[len(raw)-20:]) {
			t.Fatalf("error echoes the token: %v", err)
		}
	}
	with := func(change func(map[string]any)) string {
		c := iss.claims(clk.Now())
		change(c)
		return sign(t, rsaKey(0, "k1"), c)
	}

	t.Run("a valid token verifies and returns its claims", func(t *testing.T) {
		c, err := v.Verify(ctx, cfg, with(func(map[string]any) {}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "provisioning-service" || c.Issuer != cfg.Issuer || c.All["tid"] != "acme-tid" || len(c.Audience) != 1 {
			t.Fatalf("claims %+v", c)
		}
	})
	t.Run("a token with several audiences verifies when one matches", func(t *testing.T) {
		raw := with(func(c map[string]any) { c["aud"] = []string{"other", "offboard-scim"} })
		if _, err := v.Verify(ctx, cfg, raw); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an expired token is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { c["exp"] = clk.Now().Add(-time.Second).Unix() }))
	})
	t.Run("a token without exp is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { delete(c, "exp") }))
	})
	t.Run("a token that becomes valid later is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { c["nbf"] = clk.Now().Add(10 * time.Minute).Unix() }))
	})
	t.Run("a token for another audience is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { c["aud"] = "someone-else" }))
	})
	t.Run("a token from another issuer is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { c["iss"] = "https://evil.example/" }))
	})
	t.Run("a token with the issuer's trailing slash changed is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { c["iss"] = cfg.Issuer + "/" }))
	})
	t.Run("a token without the required claim is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { delete(c, "tid") }))
	})
	t.Run("a token with another value of the required claim is rejected", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { c["tid"] = "other-tid" }))
	})
	t.Run("a required claim must be a string, not an array containing it", func(t *testing.T) {
		invalid(t, with(func(c map[string]any) { c["tid"] = []string{"acme-tid"} }))
	})
	t.Run("a token signed by a key the issuer never published is rejected", func(t *testing.T) {
		invalid(t, sign(t, rsaKey(2, "k-unknown"), iss.claims(clk.Now())))
	})
	t.Run("a token signed by another key under a published key id is rejected", func(t *testing.T) {
		invalid(t, sign(t, rsaKey(2, "k1"), iss.claims(clk.Now())))
	})
	t.Run("a token with alg none is rejected", func(t *testing.T) {
		invalid(t, unsigned(t, map[string]any{"alg": "none", "typ": "JWT", "kid": "k1"}, iss.claims(clk.Now()), ""))
		invalid(t, unsigned(t, map[string]any{"alg": "none", "typ": "JWT", "kid": "k1"}, iss.claims(clk.Now()), "x"))
	})
	t.Run("an HS256 token keyed with the issuer's public key is rejected", func(t *testing.T) {
		invalid(t, hs256WithPublicKey(t, iss.claims(clk.Now())))
	})
	t.Run("a token with a tampered payload is rejected", func(t *testing.T) {
		raw := with(func(map[string]any) {})
		parts := strings.Split(raw, ".")
		c := iss.claims(clk.Now())
		c["sub"] = "admin"
		b, _ := json.Marshal(c)
		invalid(t, parts[0]+"."+base64.RawURLEncoding.EncodeToString(b)+"."+parts[2])
	})
	for name, raw := range map[string]string{
		"empty":              "",
		"one word":           "garbage",
		"two parts":          "a.b",
		"four parts":         "a.b.c.d",
		"empty signature":    "eyJhbGciOiJSUzI1NiJ9.e30.",
		"padding":            "eyJhbGciOiJSUzI1NiJ9=.e30.c2ln",
		"non-JSON header":    "bm90IGpzb24.e30.c2ln",
		"JSON serialization": `{"payload":"e30","signatures":[]}`,
		"huge":               strings.Repeat("a", maxTokenLen+1),
		"static token":       "obs_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 56),
	} {
		t.Run("garbage is rejected: "+name, func(t *testing.T) { invalid(t, raw) })
	}
}

// unsigned builds a JWS by hand with the given header and signature bytes.
func unsigned(t *testing.T, header, claims map[string]any, sig string) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(sig))
}

// hs256WithPublicKey forges the classic algorithm-confusion token: HS256 with
// the issuer's RSA public key (PEM, as a naive verifier would load it) as secret.
func hs256WithPublicKey(t *testing.T, claims map[string]any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(rsaKeys()[0].Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"})
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestKeySetRejectsConfusedAlgorithmsOnItsOwn(t *testing.T) {
	// The key set is the last line of defence if the pre-parse ever changed.
	iss := newIssuer(t, true)
	iss.extraJWKS = []map[string]any{{"kty": "oct", "kid": "k1", "k": base64.RawURLEncoding.EncodeToString([]byte("secret"))}}
	clk := newClock()
	v := newVerifier(iss, clk)
	ks, err := v.keySetFor(context.Background(), iss.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("an HS256 token does not verify even with a symmetric key in the JWKS", func(t *testing.T) {
		if _, err := ks.VerifySignature(context.Background(), hs256WithPublicKey(t, iss.claims(clk.Now()))); err == nil {
			t.Fatal("verified")
		}
		h, _ := json.Marshal(map[string]any{"alg": "HS256", "kid": "k1"})
		input := base64.RawURLEncoding.EncodeToString(h) + ".e30"
		mac := hmac.New(sha256.New, []byte("secret"))
		mac.Write([]byte(input))
		if _, err := ks.VerifySignature(context.Background(), input+"."+base64.RawURLEncoding.EncodeToString(mac.Sum(nil))); err == nil {
			t.Fatal("verified with the oct key")
		}
	})
	t.Run("symmetric keys are dropped from the cached JWKS", func(t *testing.T) {
		keys, _, _ := ks.snapshot()
		for _, k := range keys {
			if !k.IsPublic() {
				t.Fatalf("kept key %q", k.KeyID)
			}
		}
	})
}

func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	iss := newIssuer(t, true)
	clk := newClock()
	v := newVerifier(iss, clk)
	cfg := iss.config()
	if _, err := v.Verify(ctx, cfg, sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))); err != nil {
		t.Fatal(err)
	}
	if iss.jwksHits.Load() != 1 {
		t.Fatalf("JWKS fetched %d times", iss.jwksHits.Load())
	}

	iss.publish(rsaKey(1, "k2"), signingKey{kid: "k3", alg: jose.ES256, priv: ecKey()})
	clk.Advance(DefaultKeyRefreshMin + time.Second)

	t.Run("a token signed with the new key verifies after the JWKS refetch", func(t *testing.T) {
		if _, err := v.Verify(ctx, cfg, sign(t, rsaKey(1, "k2"), iss.claims(clk.Now()))); err != nil {
			t.Fatal(err)
		}
		if iss.jwksHits.Load() != 2 {
			t.Fatalf("JWKS fetched %d times", iss.jwksHits.Load())
		}
	})
	t.Run("an ES256 key of the new set verifies from the cache", func(t *testing.T) {
		if _, err := v.Verify(ctx, cfg, sign(t, signingKey{kid: "k3", alg: jose.ES256, priv: ecKey()}, iss.claims(clk.Now()))); err != nil {
			t.Fatal(err)
		}
		if iss.jwksHits.Load() != 2 {
			t.Fatalf("JWKS fetched %d times", iss.jwksHits.Load())
		}
	})
	t.Run("a token of the withdrawn key no longer verifies", func(t *testing.T) {
		if _, err := v.Verify(ctx, cfg, sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("forged tokens do not make the verifier hammer the JWKS endpoint", func(t *testing.T) {
		before := iss.jwksHits.Load()
		for range 50 {
			v.Verify(ctx, cfg, sign(t, rsaKey(2, "k-forged"), iss.claims(clk.Now())))
		}
		if got := iss.jwksHits.Load() - before; got > 1 {
			t.Fatalf("JWKS fetched %d more times", got)
		}
	})
	t.Run("cached keys expire, so the issuer's current set is refetched", func(t *testing.T) {
		before := iss.jwksHits.Load()
		clk.Advance(DefaultKeyMaxAge + time.Second)
		if _, err := v.Verify(ctx, cfg, sign(t, rsaKey(1, "k2"), iss.claims(clk.Now()))); err != nil {
			t.Fatal(err)
		}
		if iss.jwksHits.Load() != before+1 {
			t.Fatalf("JWKS fetched %d more times", iss.jwksHits.Load()-before)
		}
	})
}

func TestIssuerUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("an unreachable issuer gives ErrUnavailable, not a crash", func(t *testing.T) {
		iss := newIssuer(t, true)
		clk := newClock()
		v := newVerifier(iss, clk)
		raw := sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))
		iss.srv.Close()
		_, err := v.Verify(ctx, iss.config(), raw)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v", err)
		}
		if strings.Contains(err.Error(), raw[len(raw)-20:]) {
			t.Fatal("error echoes the token")
		}
	})
	t.Run("a failing issuer is not asked again until the retry interval passed", func(t *testing.T) {
		iss := newIssuer(t, true)
		clk := newClock()
		v := newVerifier(iss, clk)
		raw := sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))
		iss.setFailing(true)
		for range 5 {
			if _, err := v.Verify(ctx, iss.config(), raw); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("got %v", err)
			}
		}
		if iss.discoveryHits.Load() != 1 {
			t.Fatalf("discovery fetched %d times", iss.discoveryHits.Load())
		}
		iss.setFailing(false)
		clk.Advance(DefaultRetryAfterError + time.Second)
		if _, err := v.Verify(ctx, iss.config(), raw); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a JWKS outage after a good fetch keeps the cached keys", func(t *testing.T) {
		iss := newIssuer(t, true)
		clk := newClock()
		v := newVerifier(iss, clk)
		if _, err := v.Verify(ctx, iss.config(), sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))); err != nil {
			t.Fatal(err)
		}
		iss.setFailing(true)
		clk.Advance(DefaultDiscoveryTTL + time.Second)
		if _, err := v.Verify(ctx, iss.config(), sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a discovery document naming another issuer is refused", func(t *testing.T) {
		iss := newIssuer(t, true)
		clk := newClock()
		v := newVerifier(iss, clk)
		cfg := iss.config()
		iss.docIssuer = "https://evil.example"
		_, err := v.Verify(ctx, cfg, sign(t, rsaKey(0, "k1"), map[string]any{"iss": cfg.Issuer, "aud": cfg.Audience, "tid": "acme-tid", "exp": clk.Now().Add(time.Hour).Unix()}))
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("garbage is rejected before any request to the issuer", func(t *testing.T) {
		iss := newIssuer(t, true)
		v := newVerifier(iss, newClock())
		v.Verify(ctx, iss.config(), "garbage")
		v.Verify(ctx, iss.config(), unsigned(t, map[string]any{"alg": "none"}, map[string]any{}, "x"))
		if iss.discoveryHits.Load()+iss.jwksHits.Load() != 0 {
			t.Fatal("issuer was contacted")
		}
	})
}

func TestEntraShapedIssuer(t *testing.T) {
	ctx := context.Background()
	iss := newIssuer(t, true)
	iss.docIssuer = iss.srv.URL + "/0f1e2d3c-aaaa-bbbb-cccc-000000000000/"
	clk := newClock()
	v := newVerifier(iss, clk)
	cfg := Config{
		Issuer:   iss.docIssuer,
		Audience: "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
		Claims:   map[string]string{"tid": "0f1e2d3c-aaaa-bbbb-cccc-000000000000"},
	}
	claims := map[string]any{
		"iss": iss.docIssuer, "aud": cfg.Audience, "tid": "0f1e2d3c-aaaa-bbbb-cccc-000000000000",
		"iat": clk.Now().Unix(), "nbf": clk.Now().Unix(), "exp": clk.Now().Add(time.Hour).Unix(),
	}
	t.Run("an issuer with a tenant path and trailing slash verifies", func(t *testing.T) {
		if _, err := v.Verify(ctx, cfg, sign(t, rsaKey(0, "k1"), claims)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a discovery URL override still requires the configured issuer", func(t *testing.T) {
		c := cfg
		c.DiscoveryURL = iss.srv.URL + "/alt-discovery"
		if _, err := v.Verify(ctx, c, sign(t, rsaKey(0, "k1"), claims)); err != nil {
			t.Fatal(err)
		}
		c.Issuer = iss.srv.URL + "/another-tenant/"
		other := map[string]any{}
		for k, val := range claims {
			other[k] = val
		}
		other["iss"] = c.Issuer
		if _, err := v.Verify(ctx, c, sign(t, rsaKey(0, "k1"), other)); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestInsecureIssuer(t *testing.T) {
	ctx := context.Background()
	iss := newIssuer(t, false) // http://127.0.0.1:port
	clk := newClock()
	raw := sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))
	t.Run("an http issuer is refused by default", func(t *testing.T) {
		_, err := newVerifier(iss, clk).Verify(ctx, iss.config(), raw)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), EnvAllowInsecureIssuer) {
			t.Fatalf("got %v", err)
		}
		if iss.discoveryHits.Load() != 0 {
			t.Fatal("issuer was contacted")
		}
	})
	t.Run("an http loopback issuer works with the insecure-dev option", func(t *testing.T) {
		if _, err := newVerifier(iss, clk, AllowInsecureIssuer()).Verify(ctx, iss.config(), raw); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	good := Config{Issuer: "https://sts.windows.net/tid/", Audience: "aud"}
	t.Run("an https issuer with an audience is valid", func(t *testing.T) {
		if err := good.Validate(false); err != nil {
			t.Fatal(err)
		}
	})
	for name, tc := range map[string]struct {
		cfg      Config
		insecure bool
	}{
		"http issuer":                          {Config{Issuer: "http://idp.example", Audience: "a"}, false},
		"http non-loopback even when insecure": {Config{Issuer: "http://10.0.0.1:8080", Audience: "a"}, true},
		"http loopback without the option":     {Config{Issuer: "http://localhost:9000", Audience: "a"}, false},
		"issuer with user info":                {Config{Issuer: "https://u:p@idp.example", Audience: "a"}, false},
		"issuer with query":                    {Config{Issuer: "https://idp.example/?x=1", Audience: "a"}, false},
		"issuer with fragment":                 {Config{Issuer: "https://idp.example/#x", Audience: "a"}, false},
		"issuer without host":                  {Config{Issuer: "https:///path", Audience: "a"}, false},
		"relative issuer":                      {Config{Issuer: "idp.example", Audience: "a"}, false},
		"file issuer":                          {Config{Issuer: "file:///etc/passwd", Audience: "a"}, true},
		"missing audience":                     {Config{Issuer: "https://idp.example"}, false},
		"http discovery URL":                   {Config{Issuer: "https://idp.example", Audience: "a", DiscoveryURL: "http://idp.example/d"}, false},
		"claim the verifier checks itself":     {Config{Issuer: "https://idp.example", Audience: "a", Claims: map[string]string{"aud": "x"}}, false},
		"empty claim name":                     {Config{Issuer: "https://idp.example", Audience: "a", Claims: map[string]string{"": "x"}}, false},
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			if err := tc.cfg.Validate(tc.insecure); !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("loopback names are accepted with the insecure option", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:5556", "http://localhost:5556/dex", "http://[::1]:5556"} {
			if err := (Config{Issuer: u, Audience: "a"}).Validate(true); err != nil {
				t.Errorf("%s: %v", u, err)
			}
		}
	})
	t.Run("ParseConfig rejects unknown fields", func(t *testing.T) {
		if _, err := ParseConfig([]byte(`{"issuer":"https://i.example","audiance":"a"}`), false); !errors.Is(err, ErrConfig) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ParseConfig reads the documented shape", func(t *testing.T) {
		c, err := ParseConfig([]byte(`{"issuer":"https://i.example/","audience":"a","claims":{"tid":"t"}}`), false)
		if err != nil || c.Claims["tid"] != "t" {
			t.Fatalf("got %+v %v", c, err)
		}
	})
}

func TestProbe(t *testing.T) {
	iss := newIssuer(t, true)
	v := newVerifier(iss, newClock())
	t.Run("probing a working issuer fetches discovery and keys", func(t *testing.T) {
		if err := v.Probe(context.Background(), iss.config()); err != nil {
			t.Fatal(err)
		}
		if iss.jwksHits.Load() != 1 {
			t.Fatal("keys not fetched")
		}
	})
	t.Run("probing a failing issuer reports it unavailable", func(t *testing.T) {
		other := newIssuer(t, true)
		other.setFailing(true)
		if err := newVerifier(other, newClock()).Probe(context.Background(), other.config()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestConcurrentFirstUse(t *testing.T) {
	t.Run("concurrent first requests share one discovery and one JWKS fetch", func(t *testing.T) {
		iss := newIssuer(t, true)
		clk := newClock()
		v := newVerifier(iss, clk)
		raw := sign(t, rsaKey(0, "k1"), iss.claims(clk.Now()))
		errs := make(chan error, 20)
		for range 20 {
			go func() {
				_, err := v.Verify(context.Background(), iss.config(), raw)
				errs <- err
			}()
		}
		for range 20 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if d, j := iss.discoveryHits.Load(), iss.jwksHits.Load(); d != 1 || j != 1 {
			t.Fatalf("discovery %d, JWKS %d fetches", d, j)
		}
	})
}
