// Package secretbox owns the encryption at rest of connector secrets (MDM
// credentials, webhook secrets): AES-256-GCM under a keyring of a current key and
// older keys, a versioned text envelope naming the key, associated data that
// binds a ciphertext to its owner, and the loading and creation of the key
// material itself.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// EnvKey is the environment variable the server reads keys from: one base64
// 32-byte key, or a comma-separated list "new,old1,old2" during rotation.
const EnvKey = "OFFBOARD_SECRET_KEY"

// KeySize is the size of every key: AES-256.
const KeySize = 32

const (
	version  = "v1"
	kidLen   = 8 // hex characters
	nonceLen = 12
	tagLen   = 16
	// maxEnvelope bounds what Open will even look at. Connector secrets are small.
	maxEnvelope = 1 << 20
)

// Sentinel errors. None of them carries key material or plaintext.
var (
	// ErrInvalidKey is returned for key material that is not base64 of 32 bytes.
	ErrInvalidKey = errors.New("secretbox: invalid key")
	// ErrMalformed is returned for a string that is not a well-formed envelope.
	ErrMalformed = errors.New("secretbox: malformed ciphertext")
	// ErrUnknownKey is returned when the envelope names a key the keyring lacks.
	ErrUnknownKey = errors.New("secretbox: ciphertext key not in keyring")
	// ErrDecrypt is returned when authentication fails: tampering, wrong key
	// material under a colliding id, or wrong associated data.
	ErrDecrypt = errors.New("secretbox: decryption failed")
	// ErrInsecureKeyFile is returned for a key file readable by group or others.
	ErrInsecureKeyFile = errors.New("secretbox: key file is accessible by group or others")
)

// Keyring encrypts with its current key and decrypts with any of its keys. It is
// safe for concurrent use.
type Keyring struct {
	current string
	keys    map[string]cipher.AEAD
	order   []string // current first
}

// NewKeyring builds a keyring from raw 32-byte keys; the first is the current key,
// the rest are older keys still accepted for decryption.
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	kr := &Keyring{keys: map[string]cipher.AEAD{}}
	for i, k := range append([][]byte{current}, old...) {
		if len(k) != KeySize {
			return nil, fmt.Errorf("key %d: %w: want %d bytes, got %d", i, ErrInvalidKey, KeySize, len(k))
		}
		kid := KeyID(k)
		if _, dup := kr.keys[kid]; dup {
			continue
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, ErrInvalidKey)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, ErrInvalidKey)
		}
		kr.keys[kid] = aead
		kr.order = append(kr.order, kid)
	}
	kr.current = kr.order[0]
	return kr, nil
}

// ParseKeys builds a keyring from the text form used by OFFBOARD_SECRET_KEY and
// key files: base64 (standard or URL alphabet, padded or not) 32-byte keys
// separated by commas or newlines, current key first.
func ParseKeys(s string) (*Keyring, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' })
	var keys [][]byte
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, err := decodeKey(f)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no keys: %w", ErrInvalidKey)
	}
	return NewKeyring(keys[0], keys[1:]...)
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("%w: want %d bytes, got %d", ErrInvalidKey, KeySize, len(k))
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: not base64", ErrInvalidKey)
}

// GenerateKey returns a fresh random key in the base64 text form ParseKeys reads.
func GenerateKey() string {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k) // never fails since Go 1.24
	return base64.StdEncoding.EncodeToString(k)
}

// KeyID is the short public identifier of a key stored in each envelope: the
// first 8 hex characters of a domain-separated SHA-256 of the key. It reveals
// nothing useful about the key and needs no separate bookkeeping.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("offboard secretbox key id\x00"), key...))
	return hex.EncodeToString(sum[:])[:kidLen]
}

// CurrentKeyID is the id of the key Seal uses.
func (kr *Keyring) CurrentKeyID() string { return kr.current }

// KeyIDs lists the ids of all keys, current first.
func (kr *Keyring) KeyIDs() []string { return append([]string(nil), kr.order...) }

// Seal encrypts plaintext with the current key. aad is authenticated but not
// stored: the server passes something like tenant id + connector id, and Open
// must be given the same bytes, so a ciphertext copied to another connector or
// tenant does not decrypt. The result is "v1:<kid>:<base64url(nonce|ciphertext)>".
func (kr *Keyring) Seal(plaintext, aad []byte) (string, error) {
	aead := kr.keys[kr.current]
	nonce := make([]byte, nonceLen, nonceLen+len(plaintext)+tagLen)
	_, _ = rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, plaintext, fullAAD(kr.current, aad))
	return version + ":" + kr.current + ":" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts an envelope made by Seal with any key of the keyring.
func (kr *Keyring) Open(envelope string, aad []byte) ([]byte, error) {
	kid, sealed, err := parseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	aead, ok := kr.keys[kid]
	if !ok {
		return nil, fmt.Errorf("open: %w (key id %s)", ErrUnknownKey, kid)
	}
	pt, err := aead.Open(nil, sealed[:nonceLen], sealed[nonceLen:], fullAAD(kid, aad))
	if err != nil {
		return nil, fmt.Errorf("open: %w", ErrDecrypt)
	}
	return pt, nil
}

// Rewrap re-encrypts an envelope under the current key, for the key rotation
// command. changed is false (and the input returned) when it already uses the
// current key. The same aad must be given as at Seal.
func (kr *Keyring) Rewrap(envelope string, aad []byte) (newEnvelope string, changed bool, err error) {
	kid, _, err := parseEnvelope(envelope)
	if err != nil {
		return "", false, err
	}
	pt, err := kr.Open(envelope, aad)
	if err != nil {
		return "", false, err
	}
	defer clear(pt)
	if kid == kr.current {
		return envelope, false, nil
	}
	out, err := kr.Seal(pt, aad)
	if err != nil {
		return "", false, err
	}
	return out, true, nil
}

// fullAAD binds the envelope header to the ciphertext as well as the caller's aad.
// The header has a fixed length, so the concatenation is unambiguous.
func fullAAD(kid string, aad []byte) []byte {
	b := make([]byte, 0, len(version)+1+kidLen+1+len(aad))
	b = append(b, version+":"+kid+":"...)
	return append(b, aad...)
}

// parseEnvelope checks the envelope's shape strictly and returns the key id and
// nonce|ciphertext|tag.
func parseEnvelope(s string) (kid string, sealed []byte, err error) {
	if len(s) > maxEnvelope {
		return "", nil, ErrMalformed
	}
	ver, rest, ok := strings.Cut(s, ":")
	if !ok || ver != version {
		return "", nil, ErrMalformed
	}
	kid, body, ok := strings.Cut(rest, ":")
	if !ok || len(kid) != kidLen || !isLowerHex(kid) {
		return "", nil, ErrMalformed
	}
	if !isBase64URL(body) { // the decoder alone would skip CR and LF
		return "", nil, ErrMalformed
	}
	sealed, err = base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(sealed) < nonceLen+tagLen {
		return "", nil, ErrMalformed
	}
	return kid, sealed, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
