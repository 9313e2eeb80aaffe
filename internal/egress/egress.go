// Package egress decides which addresses the server may connect to when it fetches a URL that a
// tenant administrator chose: MDM connectors, webhook receivers, OIDC discovery and keys.
//
// The check runs in net.Dialer.Control, on the IP address actually being connected after DNS
// resolution, for every connection attempt. A host name that resolves (or later re-resolves) to
// a denied address is refused, and so is every hop of a redirect, whatever the URL said.
//
// By default loopback, link-local (cloud metadata at 169.254.169.254), unspecified, multicast
// and broadcast addresses and the well-known cloud metadata addresses outside those ranges are
// denied, also in their IPv4-mapped IPv6 forms; everything else, the RFC 1918 private ranges
// included, is allowed (on-premises MDMs and webhook receivers live there). The operator's allow
// list overrides the default denials and the operator's deny list adds ranges; between the two
// lists the most specific range decides (deny on a tie).
//
// With HTTP_PROXY/HTTPS_PROXY set, connections go to the proxy: the proxy's address is what is
// checked, and the proxy must restrict the targets itself.
package egress

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// rule is a range denied by default, with the reason a refusal names.
type rule struct {
	prefix netip.Prefix
	reason string
}

// defaultDenied are the ranges refused unless the operator allows them. IPv4-mapped IPv6
// addresses are unmapped before matching, so ::ffff:127.0.0.1 is loopback here too.
var defaultDenied = []rule{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback address"},
	{netip.MustParsePrefix("::1/128"), "loopback address"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local address"},
	{netip.MustParsePrefix("fe80::/10"), "link-local address"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified address"},
	{netip.MustParsePrefix("::/128"), "unspecified address"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast address"},
	{netip.MustParsePrefix("ff00::/8"), "multicast address"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast address"},
	// Instance metadata services outside the link-local range: AWS over IPv6, Alibaba Cloud.
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata address"},
	{netip.MustParsePrefix("100.100.100.200/32"), "cloud metadata address"},
}

// Loopback returns the loopback ranges, for a development set-up that must reach itself
// (a local OIDC issuer or webhook receiver).
func Loopback() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// Policy is the set of addresses outbound requests may connect to. The zero value applies the
// default denials only.
type Policy struct {
	allow, deny []netip.Prefix
}

// New returns the policy with the operator's allow and deny ranges on top of the defaults.
func New(allow, deny []netip.Prefix) *Policy {
	return &Policy{allow: normalize(allow), deny: normalize(deny)}
}

func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// ParseCIDRs parses a comma-separated list of CIDRs; a single address stands for itself
// (/32 or /128). Blank entries are skipped.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

// RefusedError is the error of a connection the policy refused. Its text names the address
// and the reason only: no URL, path or credential.
type RefusedError struct {
	Addr   string // the address dialled, host:port
	Reason string // e.g. "loopback address"
	Hint   string // what would allow it
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("egress to %s refused: %s (%s)", e.Addr, e.Reason, e.Hint)
}

// Check returns nil if a connection to addr (an IP address and port, as net.Dialer.Control
// receives it) is permitted, else a *RefusedError.
func (p *Policy) Check(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return &RefusedError{Addr: addr, Reason: "not an IP address and port", Hint: "the policy needs one"}
	}
	// A zone (fe80::1%eth0) would make every Contains false: match the bare address.
	a := ap.Addr().Unmap().WithZone("")
	if hit, allowed, ok := p.operatorDecision(a); ok {
		if allowed {
			return nil
		}
		return &RefusedError{Addr: addr, Reason: "in denied range " + hit.String(), Hint: "denied with --egress-deny"}
	}
	for _, r := range defaultDenied {
		if r.prefix.Contains(a) {
			return &RefusedError{Addr: addr, Reason: r.reason, Hint: "allow with --egress-allow"}
		}
	}
	return nil
}

// operatorDecision returns the most specific operator range containing a (deny on a tie) and
// whether it allows; ok is false when no operator range contains a.
func (p *Policy) operatorDecision(a netip.Addr) (hit netip.Prefix, allowed, ok bool) {
	best := -1
	for _, d := range p.deny {
		if d.Contains(a) && d.Bits() > best {
			best, hit = d.Bits(), d
		}
	}
	for _, al := range p.allow {
		if al.Contains(a) && al.Bits() > best {
			best, hit, allowed = al.Bits(), al, true
		}
	}
	return hit, allowed, best >= 0
}

// Control is a net.Dialer.Control function: it refuses a connection to an address the policy
// does not permit before the connection is attempted.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	return p.Check(address)
}

// Dialer returns a dialer with http.DefaultTransport's timeouts that checks every address it
// connects to.
func (p *Policy) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.Control}
}

// Transport returns a transport with http.DefaultTransport's settings (proxy from the
// environment, HTTP/2, idle connection limits, TLS handshake timeout) whose connections pass
// the policy. With a proxy configured, the proxy's address is the one checked.
func (p *Policy) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           p.Dialer().DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}

// Client returns a client on Transport with an overall timeout per request. It never follows
// redirects: a redirect's target is a URL nobody configured.
func (p *Policy) Client(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport:     p.Transport(),
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// LogValue describes the effective policy for the start-up log.
func (p *Policy) LogValue() slog.Value {
	seen := map[string]bool{}
	var denied []string
	for _, r := range defaultDenied {
		if !seen[r.reason] {
			seen[r.reason] = true
			denied = append(denied, r.reason)
		}
	}
	return slog.GroupValue(
		slog.String("allow", joinPrefixes(p.allow)),
		slog.String("deny", joinPrefixes(p.deny)),
		slog.String("denied_by_default", strings.Join(denied, ", ")+" (IPv4-mapped forms too)"),
		slog.String("allowed_by_default", "everything else, private ranges included"),
	)
}

func joinPrefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
