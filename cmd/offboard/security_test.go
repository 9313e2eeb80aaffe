package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/internal/connectors"
	"github.com/offboard/offboard/internal/connectors/builtin"
	"github.com/offboard/offboard/internal/embedded"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/secretbox"
	"github.com/offboard/offboard/internal/testenv"
)

func TestTheDefaultSecretKeyFileIsGeneratedPrivateAndAnnounced(t *testing.T) {
	t.Setenv(secretbox.EnvKey, "")
	data := filepath.Join(t.TempDir(), "data")
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	c := &serveConfig{data: data}

	kr, err := secretKeys(c, log, true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(data, "secret.key")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no key file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	if dir, _ := os.Stat(data); dir.Mode().Perm()&0o077 != 0 {
		t.Errorf("data directory mode %04o lets others in", dir.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "generated a new secret key") || !strings.Contains(logs.String(), path) {
		t.Fatalf("the generated key is not announced with its path: %s", logs.String())
	}
	key, _ := os.ReadFile(path)
	if strings.Contains(logs.String(), strings.TrimSpace(string(key))) {
		t.Fatal("the key itself was logged")
	}

	t.Run("the second start reuses the file silently", func(t *testing.T) {
		var again testenv.LogBuffer
		kr2, err := secretKeys(c, slog.New(slog.NewJSONHandler(&again, nil)), true)
		if err != nil {
			t.Fatal(err)
		}
		if kr2.CurrentKeyID() != kr.CurrentKeyID() || again.String() != "" {
			t.Fatalf("key %s then %s; log %q", kr.CurrentKeyID(), kr2.CurrentKeyID(), again.String())
		}
	})
	t.Run("a key file others can read is refused", func(t *testing.T) {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		if _, err := secretKeys(c, log, true); err == nil {
			t.Fatal("a world-readable key file was accepted")
		}
	})
	t.Run("OFFBOARD_SECRET_KEY wins and writes no file", func(t *testing.T) {
		k := secretbox.GenerateKey()
		t.Setenv(secretbox.EnvKey, k)
		other := &serveConfig{data: filepath.Join(t.TempDir(), "d2")}
		kr, err := secretKeys(other, log, true)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := secretbox.ParseKeys(k)
		if kr.CurrentKeyID() != want.CurrentKeyID() {
			t.Fatal("the environment key is not the current key")
		}
		if _, err := os.Stat(filepath.Join(other.data, "secret.key")); err == nil {
			t.Fatal("a key file was written although OFFBOARD_SECRET_KEY is set")
		}
	})
	t.Run("key rotation never generates a key", func(t *testing.T) {
		t.Setenv(secretbox.EnvKey, "")
		if _, err := secretKeys(&serveConfig{data: t.TempDir()}, log, false); err == nil {
			t.Fatal("keys rewrap would have run with a freshly generated key")
		}
	})
}

func TestKeysRewrapMovesEveryConnectorToTheCurrentKey(t *testing.T) {
	ctx := context.Background()
	// A database of its own (this package's TestMain belongs to the fault tests).
	db, err := embedded.Start(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store, err := mongostore.Connect(ctx, db.URI(), "rewrap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(ctx) })
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	k1, k2 := secretbox.GenerateKey(), secretbox.GenerateKey()
	ring := func(s string) *secretbox.Keyring {
		kr, err := secretbox.ParseKeys(s)
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	discard := slog.New(slog.DiscardHandler)
	old := connectors.New(store, ring(k1), builtin.Kinds(), http.DefaultClient, discard)
	var ids []string
	for _, c := range []struct{ name, typ, cfg string }{
		{"hr", "webhook", `{"url":"https://hooks.example/offboard","secret":"rewrap-webhook-secret-0123"}`},
		{"apple", "nanomdm", `{"url":"https://mdm.example","apiKey":"rewrap-nano-key","appBundleId":"ch.threema.work.iapp"}`},
	} {
		for _, tenant := range []string{"tenant-a", "tenant-b"} {
			created, err := old.Create(ctx, tenant, c.name, c.typ, json.RawMessage(c.cfg))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tenant+"/"+created.Connector.ID)
		}
	}
	kid1, kid2 := ring(k1).CurrentKeyID(), ring(k2).CurrentKeyID()
	envelopes := func() string {
		cur, err := store.Database().Collection("connectors").Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		var all []bson.Raw
		if err := cur.All(ctx, &all); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, d := range all {
			b.WriteString(d.String())
		}
		return b.String()
	}
	if e := envelopes(); !strings.Contains(e, "v1:"+kid1+":") || strings.Contains(e, kid2) {
		t.Fatalf("before rotation the envelopes should all be under K1 (%s)", kid1)
	}

	flags := []string{"rewrap", "--mongo-uri", db.URI(), "--database", store.Database().Name(), "--data", t.TempDir()}
	t.Setenv(secretbox.EnvKey, k2+","+k1)
	if err := keys(flags); err != nil {
		t.Fatalf("offboard keys rewrap: %v", err)
	}
	e := envelopes()
	if strings.Contains(e, kid1) || strings.Count(e, "v1:"+kid2+":") != 2*len(ids)-2 {
		// 4 connectors, 2 of them with a hook secret: 6 envelopes, all under K2.
		t.Fatalf("after rewrap: want every envelope under K2 %s, none under K1 %s:\n%s", kid2, kid1, e)
	}

	t.Run("K1 can be dropped: K2 alone opens every connector", func(t *testing.T) {
		m := connectors.New(store, ring(k2), builtin.Kinds(), http.DefaultClient, discard)
		for _, id := range ids {
			tenant, cid, _ := strings.Cut(id, "/")
			if _, err := m.Open(ctx, tenant, cid); err != nil {
				t.Fatalf("open %s with K2 only: %v", id, err)
			}
		}
		m1 := connectors.New(store, ring(k1), builtin.Kinds(), http.DefaultClient, discard)
		tenant, cid, _ := strings.Cut(ids[0], "/")
		if _, err := m1.Open(ctx, tenant, cid); err == nil {
			t.Fatal("K1 still opens a rewrapped connector")
		}
	})
	t.Run("a second rewrap changes nothing", func(t *testing.T) {
		out := captureStdout(t, func() {
			if err := keys(flags); err != nil {
				t.Fatal(err)
			}
		})
		if !strings.Contains(out, "rewrapped 0 connector(s)") {
			t.Fatalf("second rewrap: %q", out)
		}
	})
	t.Run("rewrap without the old key fails loudly and changes nothing", func(t *testing.T) {
		t.Setenv(secretbox.EnvKey, secretbox.GenerateKey())
		if err := keys(flags); err == nil {
			t.Fatal("rewrap with an unrelated key succeeded")
		}
		if envelopes() != e {
			t.Fatal("a failed rewrap changed envelopes")
		}
	})
}

func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	fn()
	os.Stdout = orig
	w.Close()
	return <-done
}

func TestTheServerDropsSlowAndOversizedClients(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := newHTTPServer("127.0.0.1:0", h, slog.New(slog.DiscardHandler))

	t.Run("the timeouts are those documented in SECURITY.md", func(t *testing.T) {
		if srv.ReadHeaderTimeout != 10*time.Second || srv.ReadTimeout != 30*time.Second ||
			srv.WriteTimeout != 60*time.Second || srv.IdleTimeout != 120*time.Second || srv.MaxHeaderBytes != 64<<10 {
			t.Fatalf("timeouts %v %v %v %v, header bytes %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
		}
	})

	// The same server with its header timeout shortened, so the test is quick.
	srv.ReadHeaderTimeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	t.Run("a slowloris client is disconnected after ReadHeaderTimeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		_, _ = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		// Trickle one header byte at a time, never finishing the header block.
		var writeErr error
		for i := 0; i < 50 && writeErr == nil; i++ {
			time.Sleep(50 * time.Millisecond)
			_, writeErr = io.WriteString(conn, "X")
			if writeErr == nil {
				_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := conn.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
					writeErr = err
				}
			}
		}
		elapsed := time.Since(start)
		if writeErr == nil {
			t.Fatalf("still connected after %s of trickling headers", elapsed)
		}
		if elapsed > 2*time.Second {
			t.Fatalf("disconnected only after %s", elapsed)
		}
	})
	t.Run("a header block over MaxHeaderBytes is refused with 431", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 80<<10)+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("a prompt client is served", func(t *testing.T) {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestTheGeneratedOperatorTokenIsPrintedOnceAndRevokedWhenReplaced runs the real binary on one
// data directory: without OFFBOARD_ADMIN_TOKEN the first start prints a token (later starts
// don't); setting the variable revokes that token; unsetting it again issues a new one.
func TestTheGeneratedOperatorTokenIsPrintedOnceAndRevokedWhenReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary; skipped with -short")
	}
	data := filepath.Join(t.TempDir(), "data")
	key := secretKey(t)
	addr := freeAddr(t)
	printed := regexp.MustCompile(`export OFFBOARD_ADMIN_TOKEN=(oba_\S+)`)
	run := func(name, adminToken string) string {
		t.Helper()
		p := start(t, name, []string{"OFFBOARD_ADMIN_TOKEN=" + adminToken, "OFFBOARD_SECRET_KEY=" + key, "OFFBOARD_LOG_LEVEL=warn"},
			"serve", "--listen", addr, "--data", data)
		waitReady(t, p, "http://"+addr)
		p.stop()
		b, err := os.ReadFile(p.log.Name())
		if err != nil {
			t.Fatal(err)
		}
		if m := printed.FindAllStringSubmatch(string(b), -1); len(m) == 1 {
			return m[0][1]
		} else if len(m) > 1 {
			t.Fatalf("%s printed %d tokens", name, len(m))
		}
		return ""
	}
	status := func(name, adminToken, bearer string) int {
		t.Helper()
		p := start(t, name, []string{"OFFBOARD_ADMIN_TOKEN=" + adminToken, "OFFBOARD_SECRET_KEY=" + key, "OFFBOARD_LOG_LEVEL=warn"},
			"serve", "--listen", addr, "--data", data)
		defer p.stop()
		waitReady(t, p, "http://"+addr)
		req, _ := http.NewRequest("GET", "http://"+addr+"/admin/v1/tenants", nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	first := run("first", "")
	if first == "" {
		t.Fatal("the first start printed no operator token")
	}
	if again := run("second", ""); again != "" {
		t.Fatal("a later start printed another token")
	}
	if st := status("generated", "", first); st != 200 {
		t.Fatalf("generated token: %d", st)
	}
	const chosen = "operator-chosen-token-0123456789"
	if st := status("replaced", chosen, first); st != 401 {
		t.Fatalf("generated token after OFFBOARD_ADMIN_TOKEN was set: %d, want 401", st)
	}
	if st := status("chosen", chosen, chosen); st != 200 {
		t.Fatalf("OFFBOARD_ADMIN_TOKEN: %d", st)
	}
	next := run("unset", "")
	if next == "" || next == first {
		t.Fatalf("unsetting OFFBOARD_ADMIN_TOKEN issued %q (first %q)", next, first)
	}
	if st := status("old", "", first); st != 401 {
		t.Fatalf("the first generated token came back: %d", st)
	}
	if st := status("new", "", next); st != 200 {
		t.Fatalf("the new generated token: %d", st)
	}
}
