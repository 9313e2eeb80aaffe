package killtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm/webhook"
)

const (
	adminToken = "kill-test-operator-token-0123456789"
	hookSecret = "kill-test-webhook-secret-0123"
	users      = 200
)

// receiver is the tenant's webhook endpoint: it checks signatures, accepts each delivery id
// once and counts repeats separately, as the webhook's documentation asks receivers to.
type receiver struct {
	mu        sync.Mutex
	accepted  map[string]map[string]any // delivery id -> event
	employees map[string]string         // employee id -> delivery id
	dups      int
	badSig    int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !webhook.Verify(hookSecret, body, r.Header.Get(webhook.HeaderSignature)) {
		rc.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if ev["action"] == "ping" {
		return
	}
	id, _ := ev["id"].(string)
	if _, seen := rc.accepted[id]; seen {
		rc.dups++
		return
	}
	rc.accepted[id] = ev
	emp, _ := ev["employee"].(map[string]any)
	empID, _ := emp["id"].(string)
	if prev, ok := rc.employees[empID]; ok {
		// A second, different delivery id for the same leaver: a doubled effect.
		rc.employees[empID+"#dup"] = prev
	}
	rc.employees[empID] = id
}

func (rc *receiver) counts() (accepted, dups, employees int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.accepted), rc.dups, len(rc.employees)
}

// server is one life of `offboard serve`.
type server struct {
	cmd  *exec.Cmd
	done chan error
	log  *bytes.Buffer
}

type env struct {
	t      *testing.T
	bin    string
	data   string
	listen string
	base   string
	client *http.Client
	srv    *server
}

func (e *env) start() {
	e.t.Helper()
	cmd := exec.Command(e.bin, "serve", "--listen", e.listen, "--data", e.data, "--log-level", "warn", "--workers", "32")
	// The webhook receiver listens on 127.0.0.1, which the default egress policy refuses.
	cmd.Env = append(os.Environ(), "OFFBOARD_ADMIN_TOKEN="+adminToken, "OFFBOARD_EGRESS_ALLOW=127.0.0.0/8")
	log := &bytes.Buffer{}
	lw := &lockedWriter{w: log}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	s := &server{cmd: cmd, done: make(chan error, 1), log: log}
	go func() { s.done <- cmd.Wait() }()
	e.srv = s
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := e.client.Get(e.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-s.done:
			e.t.Fatalf("offboard serve exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("offboard serve not ready after 30s\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) kill() {
	e.t.Helper()
	if err := e.srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
	<-e.srv.done
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// call sends one request; it returns the status (0 when no answer came) and the decoded body.
func (e *env) call(method, url, token string, body any) (int, map[string]any) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// must sends a request until it is answered 2xx, as an IdP retries: after 429, 5xx or no
// answer (the rate limits of one token are part of the product).
func (e *env) must(method, url, token string, body any) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, out := e.call(method, url, token, body)
		if code >= 200 && code < 300 {
			return out
		}
		if code != 0 && code != 429 && code < 500 {
			e.t.Fatalf("%s %s: %d %v", method, url, code, out)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s %s: still %d after 30s", method, url, code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func deactivate() map[string]any {
	return map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "Replace", "path": "active", "value": false}},
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func build(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build the binary")
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("module root: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	// go test caches a passing result unless a file the test consulted changed; the binary is
	// built out of its sight, so consult every source file it is built from.
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "offboard")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/offboard")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestAKilledServerOffboardsEveryAnsweredLeaverOnceAfterARestart runs the real binary on an
// embedded store, fires 200 deactivations at once, SIGKILLs the server mid-burst, restarts it
// on the same data directory and re-sends what was never answered, as an IdP would. Every
// leaver must end offboarded with its seat freed, and the webhook receiver must have accepted
// exactly one delivery per leaver.
func TestAKilledServerOffboardsEveryAnsweredLeaverOnceAfterARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary and SIGKILLs it (CI runs it)")
	}
	began := time.Now()
	phase := func(name string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), name) }
	bin := build(t)
	phase("built the binary")

	rc := &receiver{accepted: map[string]map[string]any{}, employees: map[string]string{}}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	listen := freeAddr(t)
	e := &env{t: t, bin: bin, data: t.TempDir(), listen: listen, base: "http://" + listen,
		client: &http.Client{Timeout: 60 * time.Second}}
	e.start()
	defer func() {
		if e.srv != nil && e.srv.cmd.ProcessState == nil {
			e.kill()
		}
		if t.Failed() {
			t.Logf("server log (last life):\n%s", e.srv.log)
		}
	}()
	phase("server ready")

	admin := e.base + "/admin/v1"
	tn := e.must("POST", admin+"/tenants", adminToken, map[string]any{"name": "acme", "seats": users})
	tenant, scimBase := tn["id"].(string), tn["scimBaseUrl"].(string)
	// The default brake (more than 25 leavers an hour) would hold most of this burst's
	// deliveries for an administrator; this test is about crash recovery, so it is off.
	e.must("PUT", admin+"/tenants/"+tenant+"/policy", adminToken, map[string]any{"noticePeriod": "0s", "wipe": "app", "brakeThreshold": 0})
	e.must("POST", admin+"/tenants/"+tenant+"/connectors", adminToken,
		map[string]any{"type": "webhook", "name": "hr-mdm", "config": map[string]any{"url": hook.URL, "secret": hookSecret}})
	// An IdP spreads its load over a few tokens here so the per-token rate limit does not
	// serialise the burst.
	tokens := []string{tn["scimToken"].(string)}
	for range 3 {
		tok := e.must("POST", admin+"/tenants/"+tenant+"/tokens", adminToken, map[string]any{"scope": "scim"})
		tokens = append(tokens, tok["token"].(string))
	}

	ids := make([]string, users)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			u := e.must("POST", scimBase+"/Users", tokens[i%len(tokens)], map[string]any{
				"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "active": true,
				"userName": fmt.Sprintf("leaver%03d@acme.test", i), "externalId": fmt.Sprintf("ext-%03d", i),
			})
			ids[i] = u["id"].(string)
		}()
	}
	wg.Wait()
	phase(fmt.Sprintf("created %d users", users))

	// The burst: every deactivation at once; the server is killed once a quarter of them have
	// been answered.
	var answered sync.Map
	var nAnswered atomic.Int32
	var statusMu sync.Mutex
	statuses := map[int]int{}
	killAt := int32(users / 4)
	killed := make(chan struct{})
	var killOnce sync.Once
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := e.call("PATCH", scimBase+"/Users/"+ids[i], tokens[i%len(tokens)], deactivate())
			statusMu.Lock()
			statuses[code]++
			statusMu.Unlock()
			if code >= 200 && code < 300 {
				answered.Store(ids[i], true)
				if nAnswered.Add(1) >= killAt {
					killOnce.Do(func() { e.kill(); close(killed) })
				}
			}
		}()
	}
	wg.Wait()
	killOnce.Do(func() { e.kill(); close(killed) })
	<-killed
	acc, dups, _ := rc.counts()
	statusMu.Lock()
	phase(fmt.Sprintf("SIGKILL with %d of %d deactivations answered, %d deliveries accepted; statuses %v (0: no answer)", nAnswered.Load(), users, acc, statuses))
	statusMu.Unlock()
	if dups != 0 {
		t.Logf("%d duplicate deliveries before the kill", dups)
	}

	e.start()
	phase("restarted on the same data directory")
	// A 2xx answer means the offboarding was committed: before anything is re-sent, every
	// answered leaver is offboarded in the database the restarted server reads.
	checked := 0
	answered.Range(func(k, _ any) bool {
		emp := e.must("GET", admin+"/tenants/"+tenant+"/employees/"+k.(string), adminToken, nil)
		if emp["state"] != "offboarded" || emp["licenseUsername"] != nil {
			t.Errorf("answered leaver %s after the restart: state %v, credentials %v", k, emp["state"], emp["licenseUsername"])
		}
		checked++
		return true
	})
	phase(fmt.Sprintf("all %d answered leavers were committed before the kill", checked))
	resent := 0
	for i, id := range ids {
		if _, ok := answered.Load(id); ok {
			continue
		}
		resent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			e.must("PATCH", scimBase+"/Users/"+id, tokens[i%len(tokens)], deactivate())
		}()
	}
	wg.Wait()
	phase(fmt.Sprintf("re-sent the %d unanswered deactivations", resent))

	// Work the dead process had leased (its requests' seat releases, its runner's deliveries)
	// is taken over once those leases expire (lifecycle.DefaultLeaseFor). A seat released by
	// the dead process shows free in the counter before its job is recorded, so the test waits
	// for the jobs, not the counter.
	deadline := began.Add(5 * time.Minute) // a bound, not a speed requirement: typically 35-60 s
	open := func(state string) int {
		out := e.must("GET", admin+"/tenants/"+tenant+"/jobs?state="+state, adminToken, nil)
		jobs, _ := out["jobs"].([]any)
		return len(jobs)
	}
	var seats map[string]any
	lastLog := time.Now()
	for {
		// The listing scans every employee: ask it only once the receiver has everything.
		acc, _, _ := rc.counts()
		pending, running := -1, -1
		if acc >= users {
			pending, running = open("pending"), open("running")
			if pending == 0 && running == 0 {
				break
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			phase(fmt.Sprintf("%d deliveries accepted", acc))
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d of %d deliveries accepted, %d jobs pending, %d running (-1: not asked)",
				time.Since(began).Round(time.Second), acc, users, pending, running)
		}
		time.Sleep(500 * time.Millisecond)
	}
	phase("every leaver's jobs done")
	seats = e.must("GET", admin+"/tenants/"+tenant+"/seats", adminToken, nil)
	if seats["used"] != float64(0) || seats["free"] != float64(users) {
		t.Errorf("seats after the restart: %v", seats)
	}
	for _, id := range ids {
		emp := e.must("GET", admin+"/tenants/"+tenant+"/employees/"+id, adminToken, nil)
		if emp["state"] != "offboarded" || emp["workIdStatus"] != "revoked" || emp["seat"] != false {
			t.Errorf("employee %s: state %v id %v seat %v", id, emp["state"], emp["workIdStatus"], emp["seat"])
		}
	}
	acc, dups, emps := rc.counts()
	if acc != users || emps != users {
		t.Errorf("receiver accepted %d deliveries for %d leavers, want exactly %d each", acc, emps, users)
	}
	if rc.badSig != 0 {
		t.Errorf("%d deliveries with a bad signature", rc.badSig)
	}
	t.Logf("accepted %d deliveries, %d duplicate deliveries after the kill (deduplicated by id)", acc, dups)
	phase("checked")
}
