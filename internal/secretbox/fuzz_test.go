package secretbox

import (
	"bytes"
	"testing"
)

func FuzzOpen(f *testing.F) {
	kr, _ := NewKeyring(bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize))
	sealed, _ := kr.Seal([]byte("secret"), []byte("aad"))
	f.Add(sealed, []byte("aad"))
	f.Add("v1:"+KeyID(bytes.Repeat([]byte{2}, KeySize))+":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte(nil))
	f.Add("v1:zzzzzzzz:", []byte(nil))
	f.Add("v1::", []byte("x"))
	f.Fuzz(func(t *testing.T, envelope string, aad []byte) {
		kid, body, err := parseEnvelope(envelope)
		if err == nil && (len(kid) != kidLen || len(body) < nonceLen+tagLen) {
			t.Fatalf("accepted kid %q body %d", kid, len(body))
		}
		pt, err := kr.Open(envelope, aad)
		// Only genuine seals open: the seed (sealed in whichever process built the
		// corpus) is the one thing under this keyring, and only with its aad.
		if err == nil && (string(pt) != "secret" || string(aad) != "aad") {
			t.Fatalf("forged envelope opened: %q", envelope)
		}
		if _, _, err := kr.Rewrap(envelope, aad); err == nil && string(aad) != "aad" {
			t.Fatalf("forged envelope rewrapped: %q", envelope)
		}
	})
}
