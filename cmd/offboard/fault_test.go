package main

// Fault tests: they build the offboard binary, run real `offboard serve` and `offboard devdb`
// processes, kill them, stop the database, make the webhook receiver push back, and check that
// every effect still happens exactly once. They take about two minutes together; -short skips
// them, OFFBOARD_FAULT_HEAVY=1 runs larger variants (see BENCHMARKS.md).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/offboard/offboard/internal/bench"
)

const faultAdminToken = "fault-operator-token-0123456789"

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// binary builds cmd/offboard once per test run.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests run real processes; skipped with -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "offboard-fault-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "offboard")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// heavy reports whether the larger variants run (OFFBOARD_FAULT_HEAVY=1).
func heavy() bool { return os.Getenv("OFFBOARD_FAULT_HEAVY") == "1" }

// proc is a running offboard process.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func secretKey(t *testing.T) string {
	var k [32]byte
	_, _ = rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

// start runs the binary with args; its output goes to a log file shown if the test fails.
func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
		logf.Close()
	})
	return p
}

// stop sends SIGTERM and waits for a graceful exit (SIGKILL after 30 s).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s did not stop within 30 s of SIGTERM", p.name)
		p.kill()
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// serveEnv is the environment every test server runs with. The webhook receivers listen on
// 127.0.0.1, which the default egress policy refuses: loopback is allowed.
func serveEnv(key string) []string {
	return []string{
		"OFFBOARD_ADMIN_TOKEN=" + faultAdminToken,
		"OFFBOARD_SECRET_KEY=" + key,
		"OFFBOARD_LOG_LEVEL=warn",
		"OFFBOARD_EGRESS_ALLOW=127.0.0.0/8",
	}
}

// startServe runs `offboard serve` and waits until it is ready. Leases are short so a killed
// worker's jobs are taken over within seconds; the limits are raised for the bench traffic.
func startServe(t *testing.T, name, addr, key string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve", "--listen", addr, "--lease", "3s", "--token-rate", "100000", "--ip-rate", "100000",
		"--trusted-proxies", "127.0.0.1/32"}, extra...)
	p := start(t, name, serveEnv(key), args...)
	waitReady(t, p, "http://"+addr)
	return p
}

func waitReady(t *testing.T, p *proc, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready", p.name)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 60s", p.name)
}

func startDevDB(t *testing.T, name, addr, dir string) *proc {
	t.Helper()
	p := start(t, name, []string{"OFFBOARD_LOG_LEVEL=warn"}, "devdb", "--listen", addr, "--data", dir)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s does not listen on %s", name, addr)
	return nil
}

// scenario is a tenant with a webhook connector to a receiver, no notice period, app wipe and
// the mass-offboarding brake off (these tests offboard hundreds at once on purpose).
type scenario struct {
	t      *testing.T
	c      *bench.Client
	tenant *bench.Tenant
	rc     *bench.Receiver
	users  []*bench.User
}

func newScenario(t *testing.T, base string, opts ...bench.ReceiverOption) *scenario {
	t.Helper()
	const secret = "fault-test-webhook-secret-0123456789"
	rc, err := bench.StartReceiver("127.0.0.1:0", secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	c := bench.NewClient(base, faultAdminToken, 8)
	ctx := context.Background()
	tn, err := c.CreateTenant(ctx, "fault"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "")[:8]), 10000,
		map[string]any{"noticePeriod": "0s", "wipe": "app", "brakeThreshold": 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConnectWebhook(ctx, tn, "hr-receiver", rc.URL(), secret); err != nil {
		t.Fatal(err)
	}
	return &scenario{t: t, c: c, tenant: tn, rc: rc}
}

// provision creates n users as Entra does and fails the test on any error.
func (s *scenario) provision(n int) {
	s.t.Helper()
	res, err := bench.Sync(context.Background(), s.c, s.tenant, bench.SyncOptions{Style: bench.Entra, Users: n, Concurrency: 8, Prefix: "f"})
	if err != nil {
		s.t.Fatal(err)
	}
	if len(res.Notes) > 0 {
		s.t.Fatalf("provisioning: %v", res.Notes)
	}
	s.users = res.Users
}

// deactivate sends Entra's deactivation PATCH through client c and reports the status
// (0: no answer).
func deactivate(c *bench.Client, tn *bench.Tenant, u *bench.User) (int, []byte) {
	r, err := c.Do(context.Background(), bench.Call{Method: "PATCH", Path: tn.SCIMBase + "/Users/" + u.ID, Bearer: tn.SCIMToken,
		Body: map[string]any{
			"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
			"Operations": []map[string]any{{"op": "Replace", "path": "active", "value": false}},
		}})
	if err != nil {
		return 0, nil
	}
	return r.Status, r.Body
}

// settle waits until every user is offboarded with every job done and the receiver accepted
// one delivery per user, then checks the effects: one idempotency key per leaver, seats all
// free, every messenger ID revoked.
func (s *scenario) settle(within time.Duration) bench.ReceiverStats {
	s.t.Helper()
	deadline := time.Now().Add(within)
	pending := map[string]bool{}
	for _, u := range s.users {
		pending[u.ID] = true
	}
	ctx := context.Background()
	var last map[string]any
	for len(pending) > 0 && time.Now().Before(deadline) {
		for id := range pending {
			ok, e := bench.Offboarded(ctx, s.c, s.tenant, id)
			if ok {
				if e["workIdStatus"] != "revoked" {
					s.t.Errorf("employee %s offboarded but its messenger ID is %v", id, e["workIdStatus"])
				}
				delete(pending, id)
			} else {
				last = e
			}
		}
		if len(pending) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(pending) > 0 {
		s.t.Fatalf("%d of %d leavers not offboarded with every job done after %s; one of them: %v", len(pending), len(s.users), within, last)
	}
	for time.Now().Before(deadline) && s.rc.Stats().Accepted < len(s.users) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a redelivery would come within the runner's next look
	st := s.rc.Stats()
	perEmployee := map[string]int{}
	for _, d := range s.rc.Deliveries() {
		perEmployee[d.Employee]++
		if d.Accepts == 0 {
			s.t.Errorf("delivery %s for %s never accepted after %d attempts", d.ID, d.Employee, len(d.Attempts))
		}
	}
	for _, u := range s.users {
		if n := perEmployee[u.ID]; n != 1 {
			s.t.Errorf("employee %s: %d idempotency keys, want exactly 1", u.ID, n)
		}
	}
	if st.BadSignatures > 0 || st.DoubledEffects > 0 {
		s.t.Errorf("receiver: %+v", st)
	}
	seats, err := s.c.Admin(ctx, "GET", "/tenants/"+s.tenant.ID+"/seats", nil, http.StatusOK)
	if err != nil {
		s.t.Fatal(err)
	}
	if seats["used"] != float64(0) {
		s.t.Errorf("seats after every leaver left: %v, want none used", seats)
	}
	return st
}

// TestAKilledServerFinishesEveryLeaverAfterARestart kills the server (and its embedded store)
// with SIGKILL in the middle of a storm of deactivations. After the restart, and the IdP's
// retries of the requests the kill cut off, every leaver is offboarded, freed and revoked,
// and the receiver sees one idempotency key per leaver; a redelivery with the same key can
// happen only for a job that was running when the process died.
func TestAKilledServerFinishesEveryLeaverAfterARestart(t *testing.T) {
	t.Parallel()
	n, killAfter := 300, 100
	if heavy() {
		n, killAfter = 1000, 400
	}
	// Leases of 10 s: the jobs the killed process held are taken over 10 s after the kill.
	// (Much shorter leases can expire under a slow request on this loaded 2-core machine, and a
	// repeated seat release whose record was already forgotten frees the seat twice.)
	addr, key, data := freeAddr(t), secretKey(t), t.TempDir()
	srv := startServe(t, "serve-1", addr, key, "--data", data, "--lease", "10s")
	s := newScenario(t, "http://"+addr)
	s.provision(n)

	var acked atomic.Int64
	answered := make([]atomic.Bool, n)
	killed := make(chan struct{})
	var once sync.Once
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if st, _ := deactivate(s.c, s.tenant, s.users[i]); st >= 200 && st < 300 {
					answered[i].Store(true)
					if acked.Add(1) == int64(killAfter) {
						once.Do(func() { srv.kill(); close(killed) })
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("only %d deactivations answered; the kill never happened", acked.Load())
	}
	t.Logf("killed after %d of %d deactivations were answered (%d answered in all)", killAfter, n, acked.Load())

	startServe(t, "serve-2", addr, key, "--data", data, "--lease", "10s")
	// The IdP retries what was not answered 2xx.
	retried := 0
	for i, u := range s.users {
		if answered[i].Load() {
			continue
		}
		retried++
		if st, body := deactivate(s.c, s.tenant, u); st < 200 || st >= 300 {
			t.Fatalf("retried deactivation after the restart: %d %s", st, body)
		}
	}
	st := s.settle(90 * time.Second)
	t.Logf("retried %d deactivations; receiver: %+v", retried, st)
	if st.Redeliveries > 8 {
		t.Errorf("%d redeliveries: more than the runner's 8 workers could have had in flight at the kill", st.Redeliveries)
	}
}

// TestAReceiverThatPushesBackGetsEveryEffectNoSoonerThanItAsked answers every delivery's first
// try with 503 and the second with 429, both with Retry-After: 2: every effect still arrives,
// each retry no sooner than Retry-After, and with exactly three attempts (no hot loop).
func TestAReceiverThatPushesBackGetsEveryEffectNoSoonerThanItAsked(t *testing.T) {
	t.Parallel()
	n := 20
	if heavy() {
		n = 200
	}
	addr := freeAddr(t)
	startServe(t, "serve", addr, secretKey(t), "--data", t.TempDir())
	s := newScenario(t, "http://"+addr, bench.WithFault(bench.FailFirst(2*time.Second, http.StatusServiceUnavailable, http.StatusTooManyRequests)))
	s.provision(n)
	for _, u := range s.users {
		if st, body := deactivate(s.c, s.tenant, u); st >= 300 {
			t.Fatalf("deactivate: %d %s", st, body)
		}
	}
	st := s.settle(60 * time.Second)
	t.Logf("receiver: %+v", st)
	if st.EarlyRetries > 0 {
		t.Errorf("%d retries came sooner than the Retry-After answered before them", st.EarlyRetries)
	}
	for _, d := range s.rc.Deliveries() {
		if len(d.Attempts) != 3 {
			t.Errorf("delivery %s: %d attempts, want exactly 3 (503, 429, then accepted)", d.ID, len(d.Attempts))
		}
	}
	if st.Redeliveries > 0 {
		t.Errorf("%d redeliveries of accepted effects", st.Redeliveries)
	}
}

// scimError checks that an error answer is a SCIM error with the status as a string.
func scimError(body []byte, status int) error {
	var e struct {
		Schemas []string `json:"schemas"`
		Status  string   `json:"status"`
		Detail  string   `json:"detail"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return fmt.Errorf("not JSON: %q", body)
	}
	if len(e.Schemas) != 1 || e.Schemas[0] != "urn:ietf:params:scim:api:messages:2.0:Error" || e.Status != fmt.Sprint(status) {
		return fmt.Errorf("not a SCIM error with status %q: %s", fmt.Sprint(status), body)
	}
	return nil
}

// TestADatabaseOutageAnswers503AndResumesByItself stops `offboard devdb` for 10 s while an
// IdP keeps creating and deactivating users. Meanwhile SCIM answers 503 with a SCIM error
// body (never a 500); afterwards the server recovers on its own, nothing is half-written
// (every create either exists in full or can be retried, every answered deactivation takes
// effect), and the effects arrive once.
func TestADatabaseOutageAnswers503AndResumesByItself(t *testing.T) {
	t.Parallel()
	dbAddr, dbDir := freeAddr(t), t.TempDir()
	db := startDevDB(t, "devdb-1", dbAddr, dbDir)
	addr := freeAddr(t)
	// A create whose local effects (seat, messenger ID) the outage cut off is stored with its
	// job leased to the request; the request wakes the runner, which schedules the employee for
	// when that lease ends (the default sweep, every 2 minutes, is the fallback).
	startServe(t, "serve", addr, secretKey(t), "--data", t.TempDir(), "--mongo-uri", "mongodb://"+dbAddr+"/")
	s := newScenario(t, "http://"+addr)
	s.provision(60)
	ctx := context.Background()

	type answer struct {
		at     time.Time // when the request was sent
		status int
		body   []byte
		ctype  string
	}
	var (
		mu       sync.Mutex
		answers  []answer
		acked    = map[string]bool{} // deactivations answered 2xx
		created  []*bench.User       // creates answered 201
		attempts []*bench.User       // creates not answered 201
	)
	record := func(r *bench.Response, err error) {
		if err != nil || r == nil {
			return
		}
		mu.Lock()
		answers = append(answers, answer{time.Now().Add(-r.Took), r.Status, r.Body, r.Header.Get("Content-Type")})
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Deactivations of the provisioned users, one every 100 ms.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, u := range s.users {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r, err := s.c.Do(ctx, bench.Call{Method: "PATCH", Path: s.tenant.SCIMBase + "/Users/" + u.ID, Bearer: s.tenant.SCIMToken,
				Body: map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
					"Operations": []map[string]any{{"op": "Replace", "path": "active", "value": false}}}})
			record(r, err)
			if err == nil && r.Status < 300 {
				mu.Lock()
				acked[u.ID] = true
				mu.Unlock()
			}
		}
	}()
	// New joiners, four at a time.
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				u := &bench.User{UserName: fmt.Sprintf("joiner-%d-%d@contoso.example", w, i), External: fmt.Sprintf("j-%d-%d", w, i)}
				r, err := s.c.Do(ctx, bench.Call{Method: "POST", Path: s.tenant.SCIMBase + "/Users", Bearer: s.tenant.SCIMToken,
					Body: map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": u.UserName,
						"externalId": u.External, "active": true}})
				record(r, err)
				mu.Lock()
				if err == nil && r.Status == http.StatusCreated {
					u.ID = r.Str("id")
					created = append(created, u)
				} else {
					attempts = append(attempts, u)
				}
				mu.Unlock()
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond)
	outageStart := time.Now()
	db.kill()
	time.Sleep(10 * time.Second)
	outageEnd := time.Now()
	startDevDB(t, "devdb-2", dbAddr, dbDir)
	// Traffic goes on until the server answers 2xx again by itself.
	recovered := time.Time{}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		r, err := s.c.Do(ctx, bench.Call{Method: "GET", Path: s.tenant.SCIMBase + "/Users?filter=" + "userName%20eq%20%22nobody%40x%22", Bearer: s.tenant.SCIMToken})
		if err == nil && r.Status == http.StatusOK {
			recovered = time.Now()
			break
		}
	}
	if recovered.IsZero() {
		t.Fatal("the server did not recover within 30 s of the database coming back")
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("outage %s, answering again %s after the database came back", outageEnd.Sub(outageStart).Round(time.Millisecond), recovered.Sub(outageEnd).Round(time.Millisecond))

	during := 0
	for _, a := range answers {
		if a.status >= 500 && a.status != http.StatusServiceUnavailable {
			t.Errorf("answer %d during the test: %s", a.status, a.body)
		}
		// A request sent before the outage may still succeed (its write committed in time, its
		// local effects left to the runner); one sent during it must not.
		if a.at.After(outageStart.Add(100*time.Millisecond)) && a.at.Before(outageEnd.Add(-4*time.Second)) {
			during++
			if a.status != http.StatusServiceUnavailable {
				t.Errorf("answer during the outage: %d %s, want 503", a.status, a.body)
			}
		}
		if a.status == http.StatusServiceUnavailable {
			if err := scimError(a.body, 503); err != nil || !strings.HasPrefix(a.ctype, "application/scim+json") {
				t.Errorf("503 answer (%s): %v", a.ctype, err)
			}
		}
	}
	if during == 0 {
		t.Fatal("no request was answered during the outage")
	}

	// Nothing half-written: each create either exists in full or is retried to a full one (a
	// userName claim cut off by the outage is taken over after 30 s at most).
	for _, u := range attempts {
		for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(time.Second) {
			r, err := s.c.Do(ctx, bench.Call{Method: "POST", Path: s.tenant.SCIMBase + "/Users", Bearer: s.tenant.SCIMToken,
				Body: map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": u.UserName, "externalId": u.External, "active": true}})
			if err == nil && r.Status == http.StatusCreated {
				u.ID = r.Str("id")
				break
			}
			if err == nil && r.Status == http.StatusConflict {
				// Created before the outage cut off the answer: the lookup must find it.
				l, _ := s.c.Do(ctx, bench.Call{Method: "GET", Path: s.tenant.SCIMBase + "/Users?filter=" + urlQuery(u.UserName), Bearer: s.tenant.SCIMToken})
				if l != nil && l.Status == 200 && len(l.JSON()["Resources"].([]any)) == 1 {
					u.ID = l.JSON()["Resources"].([]any)[0].(map[string]any)["id"].(string)
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("create of %s after the outage: %v %v", u.UserName, r, err)
			}
		}
	}
	for _, u := range append(append([]*bench.User{}, created...), attempts...) {
		var r map[string]any
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			var err error
			if r, err = s.c.Admin(ctx, "GET", "/tenants/"+s.tenant.ID+"/employees/"+u.ID, nil, http.StatusOK); err != nil {
				t.Fatal(err)
			}
			if r["state"] == "active" && r["workId"] != nil && r["seat"] == true || time.Now().After(deadline) {
				break
			}
		}
		if r["state"] != "active" || r["workId"] == nil || r["seat"] != true {
			t.Errorf("joiner %s not licensed after the outage: %v", u.UserName, r)
		}
	}
	// Every deactivation is retried until answered, then every leaver takes full effect.
	for _, u := range s.users {
		if acked[u.ID] {
			continue
		}
		if st, body := deactivate(s.c, s.tenant, u); st >= 300 || st == 0 {
			t.Fatalf("deactivation after the outage: %d %s", st, body)
		}
	}
	st := s.settleLeavers(60 * time.Second)
	t.Logf("%d answers during the outage; %d joiners, %d of them retried; receiver %+v", during, len(created)+len(attempts), len(attempts), st)
}

func urlQuery(userName string) string {
	return strings.ReplaceAll(fmt.Sprintf("userName%%20eq%%20%%22%s%%22", userName), "@", "%40")
}

// settleLeavers is settle for scenarios where joiners still hold seats: it checks the leavers
// and their deliveries only.
func (s *scenario) settleLeavers(within time.Duration) bench.ReceiverStats {
	s.t.Helper()
	deadline := time.Now().Add(within)
	ctx := context.Background()
	for _, u := range s.users {
		for {
			ok, e := bench.Offboarded(ctx, s.c, s.tenant, u.ID)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("leaver %s not offboarded with every job done: %v", u.ID, e)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for time.Now().Before(deadline) && s.rc.Stats().Accepted < len(s.users) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	perEmployee := map[string]int{}
	for _, d := range s.rc.Deliveries() {
		perEmployee[d.Employee]++
	}
	for _, u := range s.users {
		if n := perEmployee[u.ID]; n != 1 {
			s.t.Errorf("leaver %s: %d idempotency keys delivered, want exactly 1", u.ID, n)
		}
	}
	return s.rc.Stats()
}

// TestThreeServersOnOneDatabaseRunEachEffectOnce runs three `offboard serve` processes on one
// `offboard devdb` and spreads a storm of deactivations over all three: every effect is
// executed exactly once (one accepted delivery per leaver, no redelivery).
func TestThreeServersOnOneDatabaseRunEachEffectOnce(t *testing.T) {
	t.Parallel()
	n := 150
	if heavy() {
		n = 600
	}
	dbAddr := freeAddr(t)
	startDevDB(t, "devdb", dbAddr, t.TempDir())
	key := secretKey(t)
	uri := "mongodb://" + dbAddr + "/"
	var bases []string
	for i := 0; i < 3; i++ {
		addr := freeAddr(t)
		// Nobody dies here, so no lease needs to expire: a lease shorter than a slow request
		// (this machine is loaded) lets another server repeat a seat release whose record was
		// already forgotten, and the seat is freed twice (reported to the lifecycle owners).
		startServe(t, fmt.Sprintf("serve-%d", i+1), addr, key, "--data", t.TempDir(), "--mongo-uri", uri, "--lease", "60s")
		bases = append(bases, "http://"+addr)
	}
	s := newScenario(t, bases[0])
	s.provision(n)
	clients := make([]*bench.Client, 3)
	for i, b := range bases {
		clients[i] = bench.NewClient(b, faultAdminToken, 8)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 9; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if st, _ := deactivate(clients[i%3], s.tenant, s.users[i]); st < 200 || st >= 300 {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d deactivations not answered 2xx", f)
	}
	st := s.settle(60 * time.Second)
	t.Logf("receiver: %+v", st)
	if st.Redeliveries > 0 {
		t.Errorf("%d effects delivered more than once with no process dying", st.Redeliveries)
	}
}
