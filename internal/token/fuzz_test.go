package token

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add("obs_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", secretLen))
	f.Add("obm_abcdefghijklmnop_" + strings.Repeat("7", secretLen))
	f.Add("oba_")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		scope, id, secret, err := Parse(in)
		if err != nil {
			if scope != "" || id != "" || secret != "" {
				t.Fatal("parts returned with an error")
			}
			return
		}
		if len(in) != Len || len(id) != idLen || len(secret) != secretLen {
			t.Fatalf("accepted wrong lengths: %d %d %d", len(in), len(id), len(secret))
		}
		if prefixes[scope]+id+"_"+secret != in {
			t.Fatal("parts do not reassemble the input")
		}
		if _, err := encoding.DecodeString(id); err != nil {
			t.Fatalf("id not canonical base32: %v", err)
		}
		if b, err := encoding.DecodeString(secret); err != nil || encoding.EncodeToString(b) != secret {
			t.Fatalf("secret not canonical base32: %v", err)
		}
	})
}
