package ratelimit

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func FuzzClientIP(f *testing.F) {
	f.Add("10.1.2.3:5555", "1.2.3.4, 198.51.100.8")
	f.Add("203.0.113.5:1", "10.0.0.1")
	f.Add("[2001:db8:ffff::1]:443", "2001:db8::5,,garbage")
	f.Add("@", "")
	r := NewIPResolver(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48"))
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", xff)
		got := r.ClientIP(req)
		peer := parseAddr(remote)
		if !peer.IsValid() || !r.isTrusted(peer) {
			if got != peer {
				t.Fatalf("untrusted peer %v, client %v: the header was believed", peer, got)
			}
		}
		if got.IsValid() && got.Zone() != "" {
			t.Fatal("zone kept")
		}
		if k, ok := r.Key(req); ok && k == "" {
			t.Fatal("empty key")
		}
	})
}
