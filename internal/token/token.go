// Package token owns Offboard's static bearer tokens: their wire format
// (scope prefix, record id, high-entropy secret), generation, strict parsing and
// constant-time verification against the stored Record. It never stores or logs
// a secret: a Record carries only the SHA-256 of it.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Scope says which API a token opens. Each scope has its own wire prefix, so a
// leaked token is recognisable (secret scanners) and a token of one scope is never
// mistaken for another.
type Scope string

// Scope values.
const (
	ScopeSCIM      Scope = "scim"
	ScopeMessenger Scope = "messenger"
	ScopeAdmin     Scope = "admin"
)

// Sentinel errors. They never carry any part of the presented token.
var (
	// ErrUnknownScope is returned for a scope that is not one of the Scope values.
	ErrUnknownScope = errors.New("token: unknown scope")
	// ErrMalformed is returned by Parse for anything that is not exactly a token.
	ErrMalformed = errors.New("token: malformed token")
	// ErrInvalid is returned by Check when a well-formed token does not match the record.
	ErrInvalid = errors.New("token: invalid token")
)

const (
	prefixLen = 4 // "obs_"
	// idBytes and secretBytes are multiples of 5 so their base32 forms have no
	// padding and no spare bits: every string has exactly one decoding and back.
	idBytes     = 10 // 80 bits: unique record ids without coordination
	secretBytes = 35 // 280 bits from crypto/rand, above the 256 required
	idLen       = idBytes / 5 * 8
	secretLen   = secretBytes / 5 * 8
	// Len is the exact length of every token: prefix, id, "_", secret.
	Len = prefixLen + idLen + 1 + secretLen
)

// encoding is lower-case RFC 4648 base32 without padding: [a-z2-7], no "_" or "-",
// so the separators are unambiguous and tokens survive copy-paste and URLs.
var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var prefixes = map[Scope]string{
	ScopeSCIM:      "obs_",
	ScopeMessenger: "obm_",
	ScopeAdmin:     "oba_",
}

// ParseScope turns an API string ("scim", "messenger", "admin") into a Scope.
func ParseScope(s string) (Scope, error) {
	sc := Scope(s)
	if _, ok := prefixes[sc]; !ok {
		return "", fmt.Errorf("parse scope: %w", ErrUnknownScope)
	}
	return sc, nil
}

// Record is what the server stores for a token: enough to find it by ID with one
// _id lookup and to verify a presented secret, nothing that reveals the secret.
// Revocation deletes (or marks) the record.
type Record struct {
	ID        string    `json:"id" bson:"_id"`
	Scope     Scope     `json:"scope" bson:"scope"`
	Hash      string    `json:"hash" bson:"hash"` // hex SHA-256 of the secret part
	CreatedAt time.Time `json:"createdAt" bson:"createdAt"`
}

// LogValue keeps the hash out of logs: a Record logs as its id and scope only.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token_id", r.ID), slog.String("scope", string(r.Scope)))
}

// New generates a fresh token of the given scope. It returns the plaintext, to be
// shown to the user exactly once, and the Record to store. now is the creation
// time recorded (the caller's injected clock).
func New(scope Scope, now time.Time) (plaintext string, rec Record, err error) {
	prefix, ok := prefixes[scope]
	if !ok {
		return "", Record{}, fmt.Errorf("new token: %w", ErrUnknownScope)
	}
	var id [idBytes]byte
	var secret [secretBytes]byte
	// crypto/rand.Read never returns an error since Go 1.24 (it crashes the
	// program instead of returning predictable bytes).
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(secret[:])
	idStr := encoding.EncodeToString(id[:])
	secretStr := encoding.EncodeToString(secret[:])
	return prefix + idStr + "_" + secretStr, Record{
		ID:        idStr,
		Scope:     scope,
		Hash:      Hash(secretStr),
		CreatedAt: now.UTC(),
	}, nil
}

// Hash returns the hex SHA-256 of a secret, the form stored in Record.Hash.
//
// A fast, unsalted hash is the right tool here, unlike for passwords: the secret
// has 280 bits from crypto/rand, so there is no dictionary to try and brute force
// of the preimage is infeasible at any hash speed. Salting and stretching (bcrypt,
// argon2) would only add CPU cost to every authenticated request, which an
// attacker could turn into a denial of service.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Parse splits a presented token into scope, id and secret. It is strict: exact
// length, a known prefix, lower-case base32 parts, nothing else. The error never
// contains the input.
func Parse(plaintext string) (scope Scope, id, secret string, err error) {
	if len(plaintext) != Len {
		return "", "", "", ErrMalformed
	}
	for sc, p := range prefixes {
		if plaintext[:prefixLen] == p {
			scope = sc
			break
		}
	}
	if scope == "" {
		return "", "", "", ErrMalformed
	}
	id = plaintext[prefixLen : prefixLen+idLen]
	if plaintext[prefixLen+idLen] != '_' {
		return "", "", "", ErrMalformed
	}
	secret = plaintext[prefixLen+idLen+1:]
	if !isBase32(id) || !isBase32(secret) {
		return "", "", "", ErrMalformed
	}
	return scope, id, secret, nil
}

func isBase32(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// Verify reports whether secret matches the record's hash, comparing in constant
// time. It does not check the scope: use Check for the whole decision.
func Verify(rec Record, secret string) bool {
	want, err := hex.DecodeString(rec.Hash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// Check is the whole authentication decision for a presented token whose record
// the caller loaded by the id from Parse: the record id and the token id agree,
// the token's prefix, the record's scope and the wanted scope all agree (a
// re-prefixed token of another scope is rejected), and the secret matches.
func Check(rec Record, plaintext string, want Scope) error {
	scope, id, secret, err := Parse(plaintext)
	if err != nil {
		return err
	}
	ok := Verify(rec, secret)
	if !ok || id != rec.ID || scope != rec.Scope || scope != want {
		return ErrInvalid
	}
	return nil
}

// Equal compares a configured static secret (such as OFFBOARD_ADMIN_TOKEN set by
// an operator, which need not have the token format) with a presented one in
// constant time. Both are hashed first, so not even their lengths leak. An empty
// configured secret never matches.
func Equal(configured, presented string) bool {
	if configured == "" {
		return false
	}
	a := sha256.Sum256([]byte(configured))
	b := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
