package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/offboard/offboard/internal/bench"
)

// TestConnectorsCannotReachTheServersOwnNetwork runs the real binary with the default egress
// policy (the test servers elsewhere allow loopback for their receivers). A tenant admin aims
// webhook connectors at a receiver on 127.0.0.1, at the server's own pprof listener and at the
// cloud metadata address: every check answers the egress refusal and nothing is delivered.
// Restarted with OFFBOARD_EGRESS_ALLOW=127.0.0.1/32, the receiver's check passes.
func TestConnectorsCannotReachTheServersOwnNetwork(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	addr, pprofAddr, data, key := freeAddr(t), freeAddr(t), t.TempDir(), secretKey(t)
	run := func(name string, env ...string) *proc {
		t.Helper()
		p := start(t, name, append(serveEnv(key), env...), "serve", "--listen", addr, "--data", data, "--pprof", pprofAddr)
		waitReady(t, p, "http://"+addr)
		return p
	}
	p := run("serve-default", "OFFBOARD_EGRESS_ALLOW=", "OFFBOARD_LOG_LEVEL=info")

	ctx := context.Background()
	c := bench.NewClient("http://"+addr, faultAdminToken, 1)
	tn, err := c.CreateTenant(ctx, "egress", 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(name, url string) string {
		t.Helper()
		created, err := c.Admin(ctx, "POST", "/tenants/"+tn.ID+"/connectors", map[string]any{"type": "webhook", "name": name,
			"config": map[string]any{"url": url, "secret": "egress-test-webhook-secret-0123"}}, http.StatusCreated)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := created["id"].(string)
		if id == "" {
			t.Fatalf("create connector: answer without id: %v", created)
		}
		return id
	}
	check := func(id string) map[string]any {
		t.Helper()
		h, err := c.Admin(ctx, "POST", "/tenants/"+tn.ID+"/connectors/"+id+"/check", nil, http.StatusOK)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	receiverAddr := strings.TrimPrefix(receiver.URL, "http://")
	hr := connect("hr-receiver", receiver.URL+"/offboard?token=receiver-query-secret")
	for _, tc := range []struct{ name, connector, url, want string }{
		{"a receiver on loopback", "", "", "egress to " + receiverAddr + " refused: loopback address (allow with --egress-allow)"},
		{"the server's own pprof listener", "pprof", "http://" + pprofAddr + "/debug/pprof/cmdline", "egress to " + pprofAddr + " refused: loopback address"},
		{"cloud metadata", "metadata", "http://169.254.169.254/latest/meta-data/", "egress to 169.254.169.254:80 refused: link-local address (allow with --egress-allow)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := hr
			if tc.url != "" {
				id = connect(tc.connector, tc.url)
			}
			h := check(id)
			msg, _ := h["error"].(string)
			if h["ok"] != false || !strings.Contains(msg, tc.want) {
				t.Fatalf("check answered %v, want ok false and an error containing %q", h, tc.want)
			}
			if strings.Contains(msg, "receiver-query-secret") || strings.Contains(msg, "/offboard") {
				t.Errorf("the refusal shows the URL: %q", msg)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the receiver got %d requests although egress to loopback is refused", n)
	}
	p.stop()
	logs, err := os.ReadFile(p.log.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), `"msg":"egress policy"`) || !strings.Contains(string(logs), `"allow":"none"`) {
		t.Errorf("the effective egress policy is not logged at start:\n%s", logs)
	}

	t.Run("OFFBOARD_EGRESS_ALLOW lets the receiver in", func(t *testing.T) {
		run("serve-allow", "OFFBOARD_EGRESS_ALLOW=127.0.0.1/32")
		if h := check(hr); h["ok"] != true {
			t.Fatalf("check with loopback allowed: %v", h)
		}
		if n := hits.Load(); n != 1 {
			t.Fatalf("the receiver got %d requests, want the one ping", n)
		}
	})
}

func TestAnInvalidEgressRangeStopsTheStart(t *testing.T) {
	for _, tc := range []struct {
		c    serveConfig
		want string
	}{
		{serveConfig{egressAllow: "127.0.0.1/32, 10.0.0.0/33"}, `--egress-allow (OFFBOARD_EGRESS_ALLOW): "10.0.0.0/33" is not a CIDR`},
		{serveConfig{egressDeny: "intranet.example"}, `--egress-deny (OFFBOARD_EGRESS_DENY): "intranet.example" is not a CIDR`},
	} {
		if _, err := egressPolicy(&tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
	// Before anything is written: the data directory is not even created.
	data := filepath.Join(t.TempDir(), "data")
	t.Setenv("OFFBOARD_EGRESS_DENY", "10.0.0.0/33")
	if err := serve([]string{"--data", data, "--listen", "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "OFFBOARD_EGRESS_DENY") {
		t.Fatalf("serve with an invalid deny range: %v", err)
	}
	if _, err := os.Stat(data); err == nil {
		t.Error("the data directory was created before the configuration was refused")
	}
}

func TestTheInsecureIssuerFlagAlsoAllowsLoopbackEgress(t *testing.T) {
	p, err := egressPolicy(&serveConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Check("127.0.0.1:8443") == nil {
		t.Fatal("loopback allowed by default")
	}
	p, err = egressPolicy(&serveConfig{allowInsecureIssuer: true, egressDeny: "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, ok := range map[string]bool{"127.0.0.1:8443": true, "[::1]:8443": true, "169.254.169.254:80": false, "10.0.0.1:443": false} {
		if err := p.Check(addr); (err == nil) != ok {
			t.Errorf("%s with --allow-insecure-issuer: %v, want allowed=%v", addr, err, ok)
		}
	}
}
