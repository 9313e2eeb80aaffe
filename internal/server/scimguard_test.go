package server

import (
	"strings"
	"testing"
)

func TestCheckFilter(t *testing.T) {
	for _, c := range []struct {
		name   string
		filter string
		ok     bool
	}{
		{"Entra's userName lookup", `userName eq "jane.doe@contoso.com"`, true},
		{"a group member check", `id eq "g1" and members[value eq "u1"]`, true},
		{"operators inside strings do not count", `displayName eq "` + strings.Repeat("a or b and (c) ", 200) + `"`, true},
		{"escaped quotes stay inside the string", `userName eq "a\" or (((((((((((((((((x"`, true},
		{"16 levels of nesting", strings.Repeat("(", 16) + `userName pr` + strings.Repeat(")", 16), true},
		{"17 levels of nesting", strings.Repeat("(", 17) + `userName pr` + strings.Repeat(")", 17), false},
		{"17 levels of value paths", strings.Repeat("a[", 17) + `b pr` + strings.Repeat("]", 17), false},
		{"128 terms", strings.Repeat(`userName pr or `, 127) + `userName pr`, true},
		{"129 terms", strings.Repeat(`userName pr OR `, 128) + `userName pr`, false},
		{"too long", `userName eq "` + strings.Repeat("x", maxFilterLength) + `"`, false},
		{"an unterminated string", `userName eq "abc`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := checkFilter(c.filter); (err == nil) != c.ok {
				t.Fatalf("checkFilter = %v, want ok %v", err, c.ok)
			}
		})
	}
}

func FuzzCheckFilter(f *testing.F) {
	for _, s := range []string{`userName eq "x"`, `a[b eq "c"] and (d pr or e sw "\"")`, `((((`, `"\`, `and or and`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := checkFilter(s)
		if err == nil && len(s) > maxFilterLength {
			t.Fatalf("accepted a %d-byte filter", len(s))
		}
		if err == nil && strings.Count(s, "(")+strings.Count(s, "[") > maxFilterDepth && !strings.Contains(s, `"`) &&
			!strings.ContainsAny(s, ")]") {
			t.Fatalf("accepted %d unclosed openings", strings.Count(s, "(")+strings.Count(s, "["))
		}
	})
}
