package oidcauth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func FuzzPrecheck(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2ln")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
	f.Add("eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiYjY0Il19.e30.c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		h, err := precheck(raw)
		if err != nil {
			return
		}
		if len(raw) > maxTokenLen || strings.Count(raw, ".") != 2 {
			t.Fatalf("accepted bad shape, %d bytes", len(raw))
		}
		if !algAllowed(h.Alg) || strings.HasPrefix(h.Alg, "HS") || strings.EqualFold(h.Alg, "none") {
			t.Fatalf("accepted alg %q", h.Alg)
		}
		for _, p := range strings.Split(raw, ".") {
			if p == "" {
				t.Fatal("accepted an empty part")
			}
			if _, err := base64.RawURLEncoding.DecodeString(p); err != nil && p == strings.Split(raw, ".")[0] {
				t.Fatal("accepted an undecodable header")
			}
		}
	})
}
