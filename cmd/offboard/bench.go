package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/offboard/offboard/internal/bench"
)

const benchUsage = `Usage:
  offboard bench sync  [flags]   initial provisioning cycle: lookup + create per user (Okta: + PUT), then groups
  offboard bench storm [flags]   provision users, then deactivate them all; time lock-out, revocation, webhook

Run the server with --trusted-proxies 127.0.0.1/32 (the bench gives each simulated messenger app
its own X-Forwarded-For address), for the storm's receiver on 127.0.0.1 --egress-allow 127.0.0.1/32,
and, for rates above the default limits, --token-rate/--ip-rate.
See BENCHMARKS.md.
`

// benchConfig holds the flags shared by the bench scenarios.
type benchConfig struct {
	server, token, prefix, out, style, active, receiverListen, receiverURL string
	users, concurrency, groups, serverPID, window                          int
	wait                                                                   time.Duration
	noProgress, noXFF                                                      bool
}

func runBench(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, benchUsage)
		return nil
	}
	scenario := args[0]
	if scenario != "sync" && scenario != "storm" {
		return fmt.Errorf("unknown bench scenario %q\n%s", scenario, benchUsage)
	}
	c := &benchConfig{}
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.StringVar(&c.server, "server", env("OFFBOARD_SERVER", "http://127.0.0.1:8080"), "server base URL (OFFBOARD_SERVER)")
	fs.StringVar(&c.token, "token", os.Getenv("OFFBOARD_ADMIN_TOKEN"), "operator admin token (OFFBOARD_ADMIN_TOKEN)")
	fs.IntVar(&c.users, "users", 1000, "number of users")
	fs.IntVar(&c.concurrency, "concurrency", 8, "concurrent requests")
	fs.StringVar(&c.style, "style", "entra", "request shapes to replay: entra or okta")
	fs.IntVar(&c.groups, "groups", 50, "sync: members per group pushed after the users (0: no groups; Entra style only)")
	fs.IntVar(&c.serverPID, "server-pid", 0, "pid of a local server: read its memory and CPU from /proc (default: its /metrics)")
	fs.IntVar(&c.window, "window", 0, "users per cost window (default: users/10, at least 100)")
	fs.StringVar(&c.prefix, "prefix", "", "userName prefix of this run (default: random)")
	fs.StringVar(&c.out, "out", "", "also write the JSON summary to this file")
	fs.StringVar(&c.active, "active", "auto", `storm: how active=false is sent: string ("False", as Entra does), bool, or auto (string, then bool if rejected)`)
	fs.StringVar(&c.receiverListen, "receiver-listen", "127.0.0.1:0", "storm: address of the bench's webhook receiver")
	fs.StringVar(&c.receiverURL, "receiver-url", "", "storm: URL the server reaches the receiver at (default: http://<receiver-listen>/offboard)")
	fs.DurationVar(&c.wait, "wait", time.Minute, "storm: how long to wait for effects after the last deactivation")
	fs.BoolVar(&c.noProgress, "no-progress", false, "no progress bar")
	fs.BoolVar(&c.noXFF, "no-forwarded-for", false, "do not give each simulated messenger app its own X-Forwarded-For address")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if c.token == "" {
		return errors.New("no admin token: set OFFBOARD_ADMIN_TOKEN or --token")
	}
	if c.style != string(bench.Entra) && c.style != string(bench.Okta) {
		return fmt.Errorf("--style must be entra or okta")
	}
	if c.prefix == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.prefix = "b" + hex.EncodeToString(b[:])
	}
	if c.window <= 0 {
		c.window = max(c.users/10, 100)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var summary *benchSummary
	var err error
	loadStart := machineLoad()
	if scenario == "sync" {
		summary, err = benchSync(ctx, c)
	} else {
		summary, err = benchStorm(ctx, c)
	}
	if summary != nil {
		summary.Load = map[string]any{"start": loadStart, "end": machineLoad(), "benchCpuSeconds": round2(selfCPU())}
		out, _ := json.MarshalIndent(summary, "", "  ")
		fmt.Println(string(out))
		if c.out != "" {
			if werr := os.WriteFile(c.out, append(out, '\n'), 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}

// benchSummary is the final JSON summary.
type benchSummary struct {
	Scenario       string                        `json:"scenario"`
	Server         string                        `json:"server"`
	Machine        map[string]any                `json:"machine"`
	Started        time.Time                     `json:"started"`
	Style          string                        `json:"style"`
	Users          int                           `json:"users"`
	Concurrency    int                           `json:"concurrency"`
	Seconds        float64                       `json:"seconds"`
	UsersPerSecond float64                       `json:"usersPerSecond,omitempty"`
	Requests       map[string]*bench.KindSummary `json:"requests"`
	ServerUse      *bench.ResourceSummary        `json:"serverUse,omitempty"`
	Windows        []bench.Window                `json:"windows,omitempty"`
	CostRatio      map[string]float64            `json:"costRatioLastToFirstWindow,omitempty"`
	Groups         int                           `json:"groups,omitempty"`
	Storm          *bench.StormResult            `json:"storm,omitempty"`
	Setup          map[string]*bench.KindSummary `json:"setup,omitempty"`
	Notes          []string                      `json:"notes,omitempty"`
	Errors         int                           `json:"errors"`
	// Load is what else ran on the machine: CPU pressure (share of time some task waited for a
	// CPU, /proc/pressure/cpu) and load average at the start and end, and the bench's own CPU.
	Load map[string]any `json:"machineLoad,omitempty"`
}

// machineLoad reads the machine's CPU pressure and load average.
func machineLoad() map[string]string {
	out := map[string]string{}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		out["cpuPressure"] = strings.TrimPrefix(line, "some ")
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			out["loadavg"] = strings.Join(f[:3], " ")
		}
	}
	return out
}

// selfCPU is this process's CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func machine() map[string]any {
	m := map[string]any{"cpus": runtime.NumCPU(), "goos": runtime.GOOS, "goarch": runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpuModel"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m["memory"] = strings.Join(strings.Fields(line)[1:], " ")
	}
	return m
}

func newBenchClient(c *benchConfig, rec *bench.Recorder) *bench.Client {
	cl := bench.NewClient(c.server, c.token, c.concurrency)
	cl.Rec = rec
	if !c.noXFF {
		cl.ForwardedFor = func(kind string, i int) string {
			if kind != "check" {
				return ""
			}
			// Each messenger app calls from its own address (10.0.0.0/8, one per user).
			n := i + 1
			return fmt.Sprintf("10.%d.%d.%d", (n>>16)&255, (n>>8)&255, n&255)
		}
	}
	return cl
}

func progressBar(c *benchConfig, n int, what string) (func(), func()) {
	if c.noProgress {
		return func() {}, func() {}
	}
	bar := progressbar.NewOptions(n,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("users"),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
	)
	return func() { _ = bar.Add(1) }, func() { _ = bar.Finish() }
}

func newSummary(c *benchConfig, scenario string) *benchSummary {
	return &benchSummary{Scenario: scenario, Server: c.server, Machine: machine(), Started: time.Now().UTC(),
		Style: c.style, Users: c.users, Concurrency: c.concurrency}
}

// syncPhase provisions c.users users into t, sampling the server, and fills s.
func syncPhase(ctx context.Context, c *benchConfig, cl *bench.Client, t *bench.Tenant, s *benchSummary, groups int) (*bench.SyncResult, []bench.ServerStats, error) {
	var (
		done atomic.Int64
		note string
	)
	tick, finish := progressBar(c, c.users, "sync "+c.style)
	probe := &bench.Probe{Base: cl.Base, PID: c.serverPID, HTTP: &http.Client{Timeout: 5 * time.Second}}
	sampler := bench.StartSampler(probe, 500*time.Millisecond, func() int { return int(done.Load()) })
	res, err := bench.Sync(ctx, cl, t, bench.SyncOptions{
		Style: bench.Style(c.style), Users: c.users, Concurrency: c.concurrency, Prefix: c.prefix,
		Progress: func() { done.Add(1); tick() },
	})
	samples := sampler.Stop()
	finish()
	if res != nil {
		s.Seconds = round2(res.Duration.Seconds())
		if res.Duration > 0 {
			s.UsersPerSecond = round2(float64(c.users) / res.Duration.Seconds())
		}
		s.Notes = append(s.Notes, res.Notes...)
	}
	if err == nil && groups > 0 && c.style == string(bench.Entra) {
		s.Groups, note, err = bench.PushGroups(ctx, cl, t, c.prefix, groups, c.concurrency, res.Users)
		if note != "" {
			s.Notes = append(s.Notes, note)
		}
	}
	return res, samples, err
}

func benchSync(ctx context.Context, c *benchConfig) (*benchSummary, error) {
	s := newSummary(c, "sync")
	rec := bench.NewRecorder()
	cl := newBenchClient(c, rec)
	t, err := cl.CreateTenant(ctx, "bench-"+c.prefix, c.users+10, nil)
	if err != nil {
		return nil, err
	}
	_, samples, err := syncPhase(ctx, c, cl, t, s, c.groups)
	s.Requests = rec.Summary()
	s.Errors = rec.Errors()
	s.ServerUse = bench.Resources(samples, c.users, c.serverPID)
	s.Windows = bench.Windows(samples, c.window)
	s.CostRatio = costRatio(s.Windows)
	return s, err
}

// costRatio compares the last window's cost per user with the first's.
func costRatio(ws []bench.Window) map[string]float64 {
	if len(ws) < 2 {
		return nil
	}
	a, b := ws[0], ws[len(ws)-1]
	out := map[string]float64{}
	if a.WallMsPerUnit > 0 {
		out["wall"] = round2(b.WallMsPerUnit / a.WallMsPerUnit)
	}
	if a.CPUMsPerUnit > 0 {
		out["serverCpu"] = round2(b.CPUMsPerUnit / a.CPUMsPerUnit)
	}
	if a.DBPerUnit > 0 {
		out["dbRoundTrips"] = round2(b.DBPerUnit / a.DBPerUnit)
	}
	return out
}

func benchStorm(ctx context.Context, c *benchConfig) (*benchSummary, error) {
	s := newSummary(c, "storm")
	setup := bench.NewRecorder()
	cl := newBenchClient(c, setup)

	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	rc, err := bench.StartReceiver(c.receiverListen, hex.EncodeToString(secret))
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	defer rc.Close()
	hookURL := c.receiverURL
	if hookURL == "" {
		hookURL = rc.URL()
	}
	// No notice period, app wipe, and the mass-offboarding brake off: with the default brake
	// (25 an hour) a storm's wipes would wait for an admin's confirmation, by design.
	t, err := cl.CreateTenant(ctx, "bench-"+c.prefix, c.users+10,
		map[string]any{"noticePeriod": "0s", "wipe": "app", "brakeThreshold": 0})
	if err != nil {
		return nil, err
	}
	if err := cl.ConnectWebhook(ctx, t, "bench-receiver", hookURL, hex.EncodeToString(secret)); err != nil {
		return nil, err
	}
	syncRes, _, err := syncPhase(ctx, c, cl, t, &benchSummary{}, 0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "reading license credentials (bcrypt on the server)...")
	if err := bench.Credentials(ctx, cl, t, syncRes.Users, c.concurrency); err != nil {
		return nil, err
	}
	// The credentials work before the storm (a sample: each check costs a bcrypt compare).
	for _, u := range syncRes.Users[:min(10, len(syncRes.Users))] {
		r, err := cl.Do(ctx, bench.Call{Kind: "check_before", Method: "POST", Path: "/messenger/v1/check", Basic: [2]string{u.WorkID, u.Password}, Index: u.Index})
		if err != nil || r.Status != http.StatusOK {
			return nil, fmt.Errorf("license check before the storm: status %d, %v", r.Status, err)
		}
	}
	s.Setup = setup.Summary()

	rec := bench.NewRecorder()
	cl.Rec = rec
	var done atomic.Int64
	tick, finish := progressBar(c, c.users, "storm")
	probe := &bench.Probe{Base: cl.Base, PID: c.serverPID, HTTP: &http.Client{Timeout: 5 * time.Second}}
	sampler := bench.StartSampler(probe, 500*time.Millisecond, func() int { return int(done.Load()) })
	res, err := bench.Storm(ctx, cl, t, syncRes.Users, bench.StormOptions{
		Concurrency: c.concurrency, Active: bench.ActiveValue(c.active), Receiver: rc, Wait: c.wait,
		Progress: func() { done.Add(1); tick() },
	})
	samples := sampler.Stop()
	finish()
	s.Requests = rec.Summary()
	s.Errors = rec.Errors()
	s.ServerUse = bench.Resources(samples, c.users, c.serverPID)
	s.Storm = res
	if res != nil {
		s.Seconds = res.Seconds
		s.Notes = append(s.Notes, res.Notes...)
		if st := s.Requests["check"]; st != nil && st.Status["429"] > 0 {
			s.Notes = append(s.Notes, "license checks were throttled (429): run the server with --trusted-proxies covering the bench")
		}
	}
	return s, err
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }
