package ratelimit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// EnvTrustedProxies is the environment variable the server is expected to read
// the trusted proxy list from (comma-separated CIDRs or addresses).
const EnvTrustedProxies = "OFFBOARD_TRUSTED_PROXIES"

// maxForwardedHops bounds how much of X-Forwarded-For is looked at.
const maxForwardedHops = 32

// IPResolver finds the client address of a request: the connection's peer
// (RemoteAddr) by default. Only when that peer is a configured trusted proxy is
// X-Forwarded-For read, right to left, skipping further trusted proxies; the
// first address that is not a trusted proxy is the client. Anything a client
// wrote into the header itself stays to the left of that and is never used.
type IPResolver struct {
	trusted []netip.Prefix
}

// NewIPResolver returns a resolver trusting X-Forwarded-For from the given
// proxy networks only.
func NewIPResolver(trustedProxies ...netip.Prefix) *IPResolver {
	ps := make([]netip.Prefix, len(trustedProxies))
	for i, p := range trustedProxies {
		ps[i] = p.Masked()
	}
	return &IPResolver{trusted: ps}
}

// ParseTrustedProxies parses a comma-separated list of CIDRs or single addresses.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

func (r *IPResolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the client address, or an invalid Addr when RemoteAddr is not
// an IP address (as with some test or unix-socket setups).
func (r *IPResolver) ClientIP(req *http.Request) netip.Addr {
	peer := parseAddr(req.RemoteAddr)
	if !peer.IsValid() || !r.isTrusted(peer) {
		return peer
	}
	var hops []string
	for _, h := range req.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	if len(hops) > maxForwardedHops {
		hops = hops[len(hops)-maxForwardedHops:]
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			break // a trusted proxy never writes this: keep the last good hop
		}
		client = a
		if !r.isTrusted(a) {
			break
		}
	}
	return client
}

// Key is a KeyFunc counting requests per client: IPv4 addresses as they are,
// IPv6 addresses by their /64, since one host or customer usually holds a whole
// /64 and could otherwise walk through 2^64 keys.
func (r *IPResolver) Key(req *http.Request) (string, bool) {
	a := r.ClientIP(req)
	if !a.IsValid() {
		return "", false
	}
	return IPKey(a), true
}

// IPKey is the rate-limit key of an address, as Key computes it.
func IPKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}

// parseAddr reads "host:port", a bare address, or a bracketed IPv6 address, and
// drops any zone.
func parseAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}
