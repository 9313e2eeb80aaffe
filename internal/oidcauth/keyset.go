package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxKeys bounds how many keys of one JWKS document are kept.
const maxKeys = 64

var errNoMatchingKey = errors.New("no key of the issuer verifies the signature")

// keySet is the issuer's JWKS as an oidc.KeySet. It does what go-oidc's
// RemoteKeySet does (cache the keys, refetch when a token names a key the cache
// lacks, so issuer key rotation just works) and adds what Offboard needs on an
// internet-facing endpoint:
//   - refetches are throttled (minRefresh): RemoteKeySet refetches on every token
//     whose signature does not verify, so a stream of forged tokens would become a
//     stream of JWKS requests to the issuer;
//   - the cache expires (maxAge), so a key the issuer withdrew stops verifying;
//   - fetches go through the Verifier's *http.Client with a bounded body and the
//     request's context, and time comes from the injected clock;
//   - only public asymmetric signing keys are kept, and a key's "alg", when set,
//     must match the token's.
type keySet struct {
	url        string
	fetch      func(ctx context.Context, url string) ([]byte, error)
	now        func() time.Time
	minRefresh time.Duration
	maxAge     time.Duration

	sem chan struct{} // one fetch at a time; holders may update the fields below

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	gen       int // bumped on every successful fetch
	fetchedAt time.Time
	triedAt   time.Time // last fetch attempt, successful or not
}

func newKeySet(url string, fetch func(context.Context, string) ([]byte, error), now func() time.Time, minRefresh, maxAge time.Duration) *keySet {
	return &keySet{url: url, fetch: fetch, now: now, minRefresh: minRefresh, maxAge: maxAge, sem: make(chan struct{}, 1)}
}

func (ks *keySet) snapshot() ([]jose.JSONWebKey, int, time.Time) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.keys, ks.gen, ks.fetchedAt
}

// ensure makes sure keys have been fetched once and are not older than maxAge
// (a failed refresh of old keys keeps them: availability over an issuer outage).
func (ks *keySet) ensure(ctx context.Context) error {
	keys, gen, fetchedAt := ks.snapshot()
	if len(keys) > 0 && ks.now().Sub(fetchedAt) < ks.maxAge {
		return nil
	}
	_, err := ks.refresh(ctx, gen, len(keys) == 0)
	if err != nil && len(keys) > 0 {
		return nil
	}
	return err
}

// refresh fetches the JWKS unless another caller already did since generation
// seen, or a fetch was attempted less than minRefresh ago (unless force). It
// reports whether keys newer than seen are now available.
func (ks *keySet) refresh(ctx context.Context, seen int, force bool) (bool, error) {
	select {
	case ks.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-ks.sem }()

	ks.mu.Lock()
	gen, triedAt := ks.gen, ks.triedAt
	ks.mu.Unlock()
	if gen != seen {
		return true, nil
	}
	now := ks.now()
	if !force && !triedAt.IsZero() && now.Sub(triedAt) < ks.minRefresh {
		return false, nil
	}
	body, err := ks.fetch(ctx, ks.url)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil { // a caller giving up does not throttle the next one
			ks.triedAt = now
		}
		return false, fmt.Errorf("fetch JWKS: %w", err)
	}
	ks.triedAt = now
	keys, err := parseJWKS(body)
	if err != nil {
		return false, err
	}
	ks.keys, ks.fetchedAt = keys, now
	ks.gen++
	return true, nil
}

// VerifySignature implements oidc.KeySet.
func (ks *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, joseAlgs())
	if err != nil {
		return nil, fmt.Errorf("parse JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errMalformedJWT
	}
	if err := ks.ensure(ctx); err != nil {
		return nil, err
	}
	keys, gen, _ := ks.snapshot()
	if payload, ok := verifyWith(jws, keys); ok {
		return payload, nil
	}
	// Unknown key or bad signature: maybe the issuer rotated its keys.
	newer, err := ks.refresh(ctx, gen, false)
	if err != nil {
		return nil, err
	}
	if newer {
		keys, _, _ = ks.snapshot()
		if payload, ok := verifyWith(jws, keys); ok {
			return payload, nil
		}
	}
	return nil, errNoMatchingKey
}

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey) ([]byte, bool) {
	h := jws.Signatures[0].Header
	for i := range keys {
		k := &keys[i]
		if h.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if payload, err := jws.Verify(k); err == nil {
			return payload, true
		}
	}
	return nil, false
}

func joseAlgs() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(allowedAlgs))
	for i, a := range allowedAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}

// parseJWKS keeps the usable keys of a JWKS document: public RSA, EC and Ed25519
// keys meant for signatures. Keys it cannot parse are skipped, as go-oidc does,
// so one exotic key does not break an issuer.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if !k.IsPublic() || !k.Valid() || (k.Use != "" && k.Use != "sig") {
			continue // symmetric ("oct") and private keys never verify anything here
		}
		if k.Algorithm != "" && !algAllowed(k.Algorithm) {
			continue
		}
		keys = append(keys, k)
		if len(keys) == maxKeys {
			break
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable signing key")
	}
	return keys, nil
}
