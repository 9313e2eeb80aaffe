package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

func mustKeyring(t *testing.T, current []byte, old ...[]byte) *Keyring {
	t.Helper()
	kr, err := NewKeyring(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

var aad = []byte("tenant/acme/connector/intune")

func TestSealOpen(t *testing.T) {
	kr := mustKeyring(t, key(1))
	secret := []byte(`{"clientSecret":"s3cr3t"}`)
	env, err := kr.Seal(secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a sealed secret opens with the same associated data", func(t *testing.T) {
		got, err := kr.Open(env, aad)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("the envelope names the version and key and hides the plaintext", func(t *testing.T) {
		if !strings.HasPrefix(env, "v1:"+KeyID(key(1))+":") {
			t.Fatalf("envelope %q", env)
		}
		if strings.Contains(env, "s3cr3t") {
			t.Fatal("plaintext visible")
		}
	})
	t.Run("sealing twice gives different ciphertexts", func(t *testing.T) {
		env2, _ := kr.Seal(secret, aad)
		if env2 == env {
			t.Fatal("nonce reused")
		}
	})
	t.Run("an empty secret round-trips", func(t *testing.T) {
		e, _ := kr.Seal(nil, nil)
		got, err := kr.Open(e, nil)
		if err != nil || len(got) != 0 {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("other associated data does not open it", func(t *testing.T) {
		for _, other := range [][]byte{nil, []byte("tenant/evil/connector/intune"), append(aad, 0)} {
			if _, err := kr.Open(env, other); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("aad %q: got %v", other, err)
			}
		}
	})
	t.Run("any flipped ciphertext byte is detected", func(t *testing.T) {
		raw, _ := base64.RawURLEncoding.DecodeString(env[len("v1:12345678:"):])
		for i := range raw {
			tampered := bytes.Clone(raw)
			tampered[i] ^= 0x01
			e := env[:len("v1:12345678:")] + base64.RawURLEncoding.EncodeToString(tampered)
			if _, err := kr.Open(e, aad); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("byte %d: got %v", i, err)
			}
		}
	})
	t.Run("a truncated ciphertext is malformed or fails to decrypt", func(t *testing.T) {
		for n := len(env) - 1; n > 0; n-- {
			if _, err := kr.Open(env[:n], aad); err == nil {
				t.Fatalf("prefix of %d chars opened", n)
			}
		}
	})
	t.Run("another keyring cannot open it", func(t *testing.T) {
		other := mustKeyring(t, key(2))
		if _, err := other.Open(env, aad); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a rewritten key id does not open it under another key", func(t *testing.T) {
		both := mustKeyring(t, key(2), key(1))
		forged := "v1:" + KeyID(key(2)) + env[len("v1:12345678"):]
		if _, err := both.Open(forged, aad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("errors do not contain the plaintext or key", func(t *testing.T) {
		_, err := kr.Open(env, nil)
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), b64(key(1))) {
			t.Fatal(err)
		}
	})
}

func TestRotation(t *testing.T) {
	oldKR := mustKeyring(t, key(1))
	env, _ := oldKR.Seal([]byte("old secret"), aad)
	rotated := mustKeyring(t, key(2), key(1))

	t.Run("an old key still decrypts after rotation", func(t *testing.T) {
		got, err := rotated.Open(env, aad)
		if err != nil || string(got) != "old secret" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("new secrets are sealed with the new key", func(t *testing.T) {
		e, _ := rotated.Seal([]byte("x"), aad)
		if !strings.HasPrefix(e, "v1:"+KeyID(key(2))+":") || rotated.CurrentKeyID() != KeyID(key(2)) {
			t.Fatalf("envelope %q", e)
		}
	})
	t.Run("rewrap moves a ciphertext to the current key", func(t *testing.T) {
		e, changed, err := rotated.Rewrap(env, aad)
		if err != nil || !changed {
			t.Fatalf("changed %v, %v", changed, err)
		}
		if !strings.HasPrefix(e, "v1:"+KeyID(key(2))+":") {
			t.Fatalf("envelope %q", e)
		}
		onlyNew := mustKeyring(t, key(2))
		got, err := onlyNew.Open(e, aad)
		if err != nil || string(got) != "old secret" {
			t.Fatalf("got %q, %v", got, err)
		}
		e2, changed, err := rotated.Rewrap(e, aad)
		if err != nil || changed || e2 != e {
			t.Fatalf("second rewrap: changed %v, %v", changed, err)
		}
	})
	t.Run("rewrap with the wrong associated data fails", func(t *testing.T) {
		if _, _, err := rotated.Rewrap(env, []byte("other")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a dropped old key no longer decrypts", func(t *testing.T) {
		if _, err := mustKeyring(t, key(2)).Open(env, aad); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestParseKeys(t *testing.T) {
	t.Run("a comma-separated list puts the first key in front", func(t *testing.T) {
		kr, err := ParseKeys(b64(key(3)) + ", " + base64.RawURLEncoding.EncodeToString(key(4)) + ",\n" + b64(key(5)))
		if err != nil {
			t.Fatal(err)
		}
		ids := kr.KeyIDs()
		if len(ids) != 3 || ids[0] != KeyID(key(3)) || kr.CurrentKeyID() != ids[0] {
			t.Fatalf("ids %v", ids)
		}
	})
	t.Run("a generated key parses", func(t *testing.T) {
		if _, err := ParseKeys(GenerateKey()); err != nil {
			t.Fatal(err)
		}
	})
	for name, in := range map[string]string{
		"empty":          "",
		"only commas":    ",,",
		"short key":      b64(key(1)[:16]),
		"long key":       b64(append(key(1), 0)),
		"not base64":     "!!!!",
		"one bad of two": b64(key(1)) + ",zz",
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			if _, err := ParseKeys(in); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("the error does not echo the key", func(t *testing.T) {
		k := b64(key(9)[:31])
		_, err := ParseKeys(k)
		if strings.Contains(err.Error(), k) {
			t.Fatal(err)
		}
	})
}

func TestParseEnvelope(t *testing.T) {
	kr := mustKeyring(t, key(1))
	for name, in := range map[string]string{
		"empty":                "",
		"unknown version":      "v2:" + KeyID(key(1)) + ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"upper-case key id":    "v1:ABCDEF12:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"short key id":         "v1:abc:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"missing body":         "v1:" + KeyID(key(1)),
		"too short for tag":    "v1:" + KeyID(key(1)) + ":AAAA",
		"padded base64":        "v1:" + KeyID(key(1)) + ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"std alphabet":         "v1:" + KeyID(key(1)) + ":++++++++++++++++++++++++++++++++++++++++",
		"embedded newline":     "v1:" + KeyID(key(1)) + ":AAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAA",
		"plaintext not sealed": "hunter2",
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			if _, err := kr.Open(in, nil); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v", err)
			}
		})
	}
}
