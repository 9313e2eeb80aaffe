package ratelimit

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestIPResolver(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.1,2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	trusting := NewIPResolver(proxies...)
	for _, tc := range []struct {
		name   string
		r      *IPResolver
		remote string
		xff    []string
		want   string
	}{
		{"without trusted proxies RemoteAddr is the client", NewIPResolver(), "203.0.113.5:5555", []string{"1.2.3.4"}, "203.0.113.5"},
		{"X-Forwarded-For from an untrusted peer is ignored", trusting, "203.0.113.5:5555", []string{"1.2.3.4"}, "203.0.113.5"},
		{"a trusted proxy's X-Forwarded-For names the client", trusting, "10.1.2.3:5555", []string{"198.51.100.8"}, "198.51.100.8"},
		{"a spoofed left part is skipped", trusting, "10.1.2.3:5555", []string{"1.2.3.4, 198.51.100.8"}, "198.51.100.8"},
		{"chains of trusted proxies are walked", trusting, "10.1.2.3:5555", []string{"198.51.100.8, 192.0.2.1", "10.9.9.9"}, "198.51.100.8"},
		{"only trusted hops fall back to the leftmost", trusting, "10.1.2.3:5555", []string{"10.0.0.5"}, "10.0.0.5"},
		{"garbage stops the walk at the last good hop", trusting, "10.1.2.3:5555", []string{"not-an-ip, 10.0.0.7"}, "10.0.0.7"},
		{"an empty header leaves the proxy", trusting, "10.1.2.3:5555", nil, "10.1.2.3"},
		{"IPv6 peers are read", NewIPResolver(), "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"IPv4-mapped IPv6 is unmapped", NewIPResolver(), "[::ffff:203.0.113.5]:443", nil, "203.0.113.5"},
		{"a trusted IPv6 proxy is honoured", trusting, "[2001:db8:ffff::1]:443", []string{"2001:db8:1::5"}, "2001:db8:1::5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, h := range tc.xff {
				r.Header.Add("X-Forwarded-For", h)
			}
			if got := tc.r.ClientIP(r); got != netip.MustParseAddr(tc.want) {
				t.Fatalf("got %v", got)
			}
		})
	}
	t.Run("an unparsable RemoteAddr yields no key", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "@"
		if _, ok := NewIPResolver().Key(r); ok {
			t.Fatal("got a key")
		}
	})
	t.Run("IPv6 clients of one /64 share a key", func(t *testing.T) {
		if IPKey(netip.MustParseAddr("2001:db8:1:2::1")) != IPKey(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
			t.Fatal("different keys")
		}
		if IPKey(netip.MustParseAddr("2001:db8:1:2::1")) == IPKey(netip.MustParseAddr("2001:db8:1:3::1")) {
			t.Fatal("same key across /64s")
		}
	})
	t.Run("a bad proxy list is an error", func(t *testing.T) {
		if _, err := ParseTrustedProxies("10.0.0.0/8,example.com"); err == nil {
			t.Fatal("no error")
		}
	})
}
