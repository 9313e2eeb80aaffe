package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// target is a server that counts the requests that reach it.
type target struct {
	*httptest.Server
	hits atomic.Int32
}

func newTarget(t *testing.T, network, addr string) *target {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	tg := &target{}
	tg.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tg.hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	tg.Listener = ln
	tg.Start()
	t.Cleanup(tg.Close)
	return tg
}

func port(t *testing.T, s *httptest.Server) string {
	t.Helper()
	_, p, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// refusal fetches url through the policy's client and returns the refusal, failing the test on any
// other outcome.
func refusal(t *testing.T, p *Policy, url string) *RefusedError {
	t.Helper()
	resp, err := p.Client(5 * time.Second).Get(url)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s: status %d, want an egress refusal", url, resp.StatusCode)
	}
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("GET %s: %v, want an egress refusal", url, err)
	}
	return re
}

// refusedUnreached wants url refused for reason, with tg never reached.
func refusedUnreached(t *testing.T, p *Policy, tg *target, url, reason string) *RefusedError {
	t.Helper()
	re := refusal(t, p, url)
	if re.Reason != reason {
		t.Fatalf("GET %s: refused as %q, want %q", url, re.Reason, reason)
	}
	if n := tg.hits.Load(); n != 0 {
		t.Fatalf("GET %s: the server got %d requests", url, n)
	}
	return re
}

func allowed(t *testing.T, p *Policy, url string) {
	t.Helper()
	resp, err := p.Client(5 * time.Second).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
}

func prefixes(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	ps, err := ParseCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestALoopbackServerIsRefusedByDefaultWithAClearError(t *testing.T) {
	tg := newTarget(t, "tcp", "127.0.0.1:0")
	// The text names the address and the reason: not the URL's path or query.
	re := refusedUnreached(t, New(nil, nil), tg, tg.URL+"/secret-path?token=hunter2", "loopback address")
	want := "egress to " + tg.Listener.Addr().String() + " refused: loopback address (allow with --egress-allow)"
	if re.Error() != want {
		t.Fatalf("error %q, want %q", re.Error(), want)
	}
}

func TestLoopbackIsAllowedWhenTheAllowListHasIt(t *testing.T) {
	tg := newTarget(t, "tcp", "127.0.0.1:0")
	allowed(t, New(prefixes(t, "127.0.0.0/8"), nil), tg.URL)
	allowed(t, New(Loopback(), nil), tg.URL)
	if tg.hits.Load() != 2 {
		t.Fatalf("the server got %d requests, want 2", tg.hits.Load())
	}
}

func TestADenyEntryBlocksAnOtherwiseAllowedRange(t *testing.T) {
	tg := newTarget(t, "tcp", "127.0.0.1:0")
	p := New(prefixes(t, "127.0.0.0/8"), prefixes(t, "127.0.0.1/32"))
	re := refusedUnreached(t, p, tg, tg.URL, "in denied range 127.0.0.1/32")
	if !strings.HasSuffix(re.Error(), "refused: in denied range 127.0.0.1/32 (denied with --egress-deny)") {
		t.Fatalf("error %q", re.Error())
	}
	// A private range allowed by default, denied by the operator.
	if err := New(nil, prefixes(t, "10.0.0.0/8")).Check("10.1.2.3:443"); err == nil {
		t.Fatal("10.1.2.3 allowed although 10.0.0.0/8 is denied")
	}
}

func TestIPv6AndIPv4MappedLoopbackAreRefused(t *testing.T) {
	t.Run("::1", func(t *testing.T) {
		tg := newTarget(t, "tcp6", "[::1]:0")
		refusedUnreached(t, New(nil, nil), tg, tg.URL, "loopback address")
	})
	t.Run("::ffff:127.0.0.1", func(t *testing.T) {
		tg := newTarget(t, "tcp", "127.0.0.1:0")
		refusedUnreached(t, New(nil, nil), tg, "http://[::ffff:127.0.0.1]:"+port(t, tg.Server)+"/", "loopback address")
		// The check itself, on the mapped form as a dialer could hand it over.
		if err := New(nil, nil).Check("[::ffff:127.0.0.1]:80"); err == nil {
			t.Fatal("::ffff:127.0.0.1 allowed")
		}
	})
}

func TestCloudMetadataIsRefusedBeforeAnyPacketIsSent(t *testing.T) {
	// The refusal comes from Control, before connect(2): no network is needed, and the answer
	// is immediate rather than a timeout.
	c := New(nil, nil).Client(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", nil)
	start := time.Now()
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("metadata answered %d", resp.StatusCode)
	}
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error %v, want an egress refusal", err)
	}
	if want := "egress to 169.254.169.254:80 refused: link-local address (allow with --egress-allow)"; re.Error() != want {
		t.Fatalf("error %q, want %q", re.Error(), want)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %s", d)
	}
}

func TestAHostNameThatResolvesToLoopbackIsRefused(t *testing.T) {
	tg := newTarget(t, "tcp", "127.0.0.1:0")
	refusedUnreached(t, New(nil, nil), tg, "http://localhost:"+port(t, tg.Server)+"/", "loopback address")
}

func TestTheClientDoesNotFollowRedirects(t *testing.T) {
	tg := newTarget(t, "tcp", "127.0.0.1:0")
	redirect := httptest.NewServer(http.RedirectHandler(tg.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	resp, err := New(Loopback(), nil).Client(5 * time.Second).Get(redirect.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || tg.hits.Load() != 0 {
		t.Fatalf("status %d, target hits %d: the redirect was followed", resp.StatusCode, tg.hits.Load())
	}
}

func TestTheDefaultPolicy(t *testing.T) {
	p := New(nil, nil)
	for _, addr := range []string{
		"10.0.0.1:443", "172.16.5.4:443", "192.168.1.10:8443", "100.64.0.1:443", "8.8.8.8:443",
		"[2001:db8::1]:443", "[fd12:3456::1]:443", "[::ffff:10.0.0.1]:443",
	} {
		if err := p.Check(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for addr, reason := range map[string]string{
		"127.0.0.1:6060":                "loopback address",
		"127.1.2.3:80":                  "loopback address",
		"[::1]:80":                      "loopback address",
		"[::ffff:127.0.0.1]:80":         "loopback address",
		"[::ffff:7f00:1]:80":            "loopback address",
		"169.254.169.254:80":            "link-local address",
		"[::ffff:169.254.169.254]:80":   "link-local address",
		"[fe80::1]:80":                  "link-local address",
		"[fe80::1%eth0]:80":             "link-local address",
		"0.0.0.0:80":                    "unspecified address",
		"[::]:80":                       "unspecified address",
		"[::ffff:0.0.0.0]:80":           "unspecified address",
		"224.0.0.1:80":                  "multicast address",
		"[ff02::1]:80":                  "multicast address",
		"255.255.255.255:80":            "broadcast address",
		"[fd00:ec2::254]:80":            "cloud metadata address",
		"100.100.100.200:80":            "cloud metadata address",
		"[::ffff:100.100.100.200]:80":   "cloud metadata address",
		"not-an-address:80":             "not an IP address and port",
		"[::ffff:169.254.169.254%x]:80": "link-local address",
	} {
		var re *RefusedError
		if err := p.Check(addr); !errors.As(err, &re) || re.Reason != reason {
			t.Errorf("%s: %v, want refused as %s", addr, err, reason)
		}
	}
}

func TestOperatorRangesTheMostSpecificDecides(t *testing.T) {
	p := New(prefixes(t, "10.1.2.3, 127.0.0.1/32, ::ffff:169.254.0.0/112"), prefixes(t, "10.0.0.0/8, 127.0.0.0/8, 169.254.169.254/32"))
	for addr, ok := range map[string]bool{
		"10.1.2.3:443":       true,  // the allowed host inside a denied range
		"10.1.2.4:443":       false, // the rest of the range
		"127.0.0.1:80":       true,  // allowed /32 beats denied /8
		"127.0.0.2:80":       false, // denied by the operator, not by default
		"169.254.1.1:80":     true,  // a mapped allow range counts as its IPv4 range
		"169.254.169.254:80": false, // a more specific denial inside it
		"192.168.0.1:80":     true,  // untouched by either list
	} {
		if err := p.Check(addr); (err == nil) != ok {
			t.Errorf("%s: %v, want allowed=%v", addr, err, ok)
		}
	}
	tie := New(prefixes(t, "10.0.0.0/8"), prefixes(t, "10.0.0.0/8"))
	if tie.Check("10.0.0.1:443") == nil {
		t.Error("on equal ranges the denial must win")
	}
}

func TestParseCIDRs(t *testing.T) {
	ps, err := ParseCIDRs(" 10.0.0.0/8,, 192.0.2.7 ,2001:db8::/32,::1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 192.0.2.7/32 2001:db8::/32 ::1/128" {
		t.Fatalf("parsed %v", got)
	}
	if ps, err := ParseCIDRs(""); err != nil || len(ps) != 0 {
		t.Fatalf("empty list: %v %v", ps, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8,nope", "fe80::1%eth0", "10.0.0/8"} {
		if _, err := ParseCIDRs(bad); err == nil || !strings.Contains(err.Error(), "is not a CIDR") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestThePolicyIsLoggedReadably(t *testing.T) {
	v := New(prefixes(t, "127.0.0.0/8"), prefixes(t, "10.0.0.0/8")).LogValue()
	s := v.String()
	for _, want := range []string{"allow=127.0.0.0/8", "deny=10.0.0.0/8", "loopback address", "link-local address"} {
		if !strings.Contains(s, want) {
			t.Errorf("log value %s lacks %q", s, want)
		}
	}
}
