package token

import (
	"strings"
	"testing"
)

func TestBearer(t *testing.T) {
	tok := "obs_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", secretLen)
	for name, tc := range map[string]struct {
		header string
		want   string
	}{
		"a static token":                {"Bearer " + tok, tok},
		"a lower-case scheme":           {"bearer " + tok, tok},
		"a JWT":                         {"Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"},
		"extra spaces after the scheme": {"Bearer   abc", "abc"},
		"base64 padding":                {"Bearer abc==", "abc=="},
	} {
		t.Run("extracts "+name, func(t *testing.T) {
			got, ok := Bearer(tc.header)
			if !ok || got != tc.want {
				t.Fatalf("got %q %v", got, ok)
			}
		})
	}
	for name, h := range map[string]string{
		"an empty header":       "",
		"the scheme alone":      "Bearer ",
		"basic auth":            "Basic dXNlcjpwYXNz",
		"no space":              "Bearer" + tok,
		"a trailing space":      "Bearer " + tok + " ",
		"two credentials":       "Bearer a b",
		"a comma":               "Bearer a,b",
		"only padding":          "Bearer ==",
		"padding in the middle": "Bearer a=b",
		"a newline":             "Bearer a\nb",
		"an oversized token":    "Bearer " + strings.Repeat("a", MaxBearerLen+1),
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			if got, ok := Bearer(h); ok {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func FuzzBearer(f *testing.F) {
	f.Add("Bearer obs_aaaaaaaaaaaaaaaa_bbbb")
	f.Add("bearer eyJ.e30.c2ln==")
	f.Add("Basic x")
	f.Fuzz(func(t *testing.T, h string) {
		cred, ok := Bearer(h)
		if !ok {
			return
		}
		if cred == "" || len(cred) > MaxBearerLen || strings.ContainsAny(cred, " ,\r\n\t\x00") || !strings.HasSuffix(h, cred) {
			t.Fatalf("accepted %q from %q", cred, h)
		}
	})
}
