package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ServerStats is one reading of the server process: resident memory, CPU time and the database
// commands it sent.
type ServerStats struct {
	At         time.Time
	RSS        int64 // bytes; 0 if unknown
	PeakRSS    int64 // bytes (VmHWM) when read from /proc; else the largest RSS seen
	CPUSeconds float64
	DBCommands map[string]float64 // "find employees" -> count
	Progress   int                // the scenario's completed units at this reading
}

// DBTotal is the number of database commands counted.
func (s ServerStats) DBTotal() float64 {
	var t float64
	for _, v := range s.DBCommands {
		t += v
	}
	return t
}

// Probe reads the server's statistics from /proc/<pid> (memory, CPU) when pid > 0 and from
// its /metrics (database commands; memory and CPU too when there is no pid).
type Probe struct {
	Base string
	PID  int
	HTTP *http.Client
}

// Read takes one reading.
func (p *Probe) Read(ctx context.Context) (ServerStats, error) {
	s := ServerStats{At: time.Now()}
	m, merr := p.metrics(ctx)
	if merr == nil {
		s.RSS = int64(m["offboard_process_resident_memory_bytes"])
		s.CPUSeconds = m["offboard_process_cpu_seconds_total"]
		s.DBCommands = map[string]float64{}
		for k, v := range m {
			if rest, ok := strings.CutPrefix(k, "offboard_db_commands_total{"); ok {
				s.DBCommands[labelsKey(rest)] = v
			}
		}
	}
	if p.PID > 0 {
		rss, hwm, err := procStatus(p.PID)
		if err != nil {
			return s, err
		}
		s.RSS, s.PeakRSS = rss, hwm
		if cpu, err := procCPU(p.PID); err == nil {
			s.CPUSeconds = cpu
		}
		return s, nil
	}
	return s, merr
}

// labelsKey turns `collection="employees",command="find"}` into "find employees".
func labelsKey(s string) string {
	s = strings.TrimSuffix(s, "}")
	var cmd, coll string
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		v = strings.Trim(v, `"`)
		switch k {
		case "command":
			cmd = v
		case "collection":
			coll = v
		}
	}
	if coll == "" {
		return cmd
	}
	return cmd + " " + coll
}

func (p *Probe) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.Base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	c := p.HTTP
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// procStatus reads VmRSS and VmHWM (peak resident set) of a process, in bytes.
func procStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}

// procCPU reads a process's user+system CPU time in seconds (assumes 100 ticks per second,
// the Linux default).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil
}

// Sampler reads a Probe periodically while a scenario runs.
type Sampler struct {
	probe    *Probe
	progress func() int
	mu       sync.Mutex
	samples  []ServerStats
	stop     chan struct{}
	done     chan struct{}
}

// StartSampler reads p every interval, tagging each reading with progress().
func StartSampler(p *Probe, interval time.Duration, progress func() int) *Sampler {
	s := &Sampler{probe: p, progress: progress, stop: make(chan struct{}), done: make(chan struct{})}
	s.take()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				s.take()
				return
			case <-t.C:
				s.take()
			}
		}
	}()
	return s
}

func (s *Sampler) take() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.probe.Read(ctx)
	if err != nil && st.RSS == 0 && st.DBCommands == nil {
		return
	}
	st.Progress = s.progress()
	s.mu.Lock()
	s.samples = append(s.samples, st)
	s.mu.Unlock()
}

// Stop takes a last reading and returns every reading.
func (s *Sampler) Stop() []ServerStats {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ServerStats(nil), s.samples...)
}

// ResourceSummary is the server's resource use during a phase.
type ResourceSummary struct {
	Source       string  `json:"source"`
	StartRSSMiB  float64 `json:"startRssMiB"`
	PeakRSSMiB   float64 `json:"peakRssMiB"`
	EndRSSMiB    float64 `json:"endRssMiB"`
	CPUSeconds   float64 `json:"cpuSeconds"`
	DBRoundTrips float64 `json:"dbRoundTrips"`
	// DBPerUnit is the database commands per user (sync) or per deactivation (storm), by
	// command and collection, with the total under "total".
	DBPerUnit map[string]float64 `json:"dbRoundTripsPerUnit,omitempty"`
}

// Resources summarises samples over units of work.
func Resources(samples []ServerStats, units int, pid int) *ResourceSummary {
	if len(samples) == 0 {
		return nil
	}
	first, last := samples[0], samples[len(samples)-1]
	r := &ResourceSummary{Source: "/metrics", StartRSSMiB: mib(first.RSS), EndRSSMiB: mib(last.RSS),
		CPUSeconds: round(last.CPUSeconds-first.CPUSeconds, 2)}
	if pid > 0 {
		r.Source = fmt.Sprintf("/proc/%d/status", pid)
	}
	var peak int64
	for _, s := range samples {
		peak = max(peak, s.RSS, s.PeakRSS)
	}
	r.PeakRSSMiB = mib(peak)
	if last.DBCommands != nil {
		r.DBRoundTrips = last.DBTotal() - first.DBTotal()
		if units > 0 {
			r.DBPerUnit = map[string]float64{"total": round(r.DBRoundTrips/float64(units), 2)}
			for k, v := range last.DBCommands {
				if d := v - first.DBCommands[k]; d > 0 {
					r.DBPerUnit[k] = round(d/float64(units), 2)
				}
			}
		}
	}
	return r
}

func mib(b int64) float64 { return round(float64(b)/(1<<20), 1) }

// Window is the cost of one slice of a scenario's units (users 1-1000, 1001-2000, ...).
type Window struct {
	From, To      int     `json:"-"`
	Range         string  `json:"users"`
	PerSecond     float64 `json:"perSecond"`
	WallMsPerUnit float64 `json:"wallMsPerUser"`
	CPUMsPerUnit  float64 `json:"serverCpuMsPerUser,omitempty"`
	DBPerUnit     float64 `json:"dbRoundTripsPerUser,omitempty"`
	PeakRSSMiB    float64 `json:"peakRssMiB,omitempty"`
}

// Windows cuts samples into windows of size units each, by the progress they were taken at.
func Windows(samples []ServerStats, size int) []Window {
	if size <= 0 || len(samples) < 2 {
		return nil
	}
	var out []Window
	start := 0
	for start < len(samples)-1 {
		from := samples[start].Progress
		end := start + 1
		for end < len(samples)-1 && samples[end].Progress-from < size {
			end++
		}
		a, b := samples[start], samples[end]
		n := b.Progress - a.Progress
		if n > 0 {
			w := Window{From: a.Progress, To: b.Progress, Range: fmt.Sprintf("%d-%d", a.Progress+1, b.Progress)}
			secs := b.At.Sub(a.At).Seconds()
			w.PerSecond = round(float64(n)/secs, 1)
			w.WallMsPerUnit = round(secs*1000/float64(n), 2)
			w.CPUMsPerUnit = round((b.CPUSeconds-a.CPUSeconds)*1000/float64(n), 2)
			if a.DBCommands != nil && b.DBCommands != nil {
				w.DBPerUnit = round((b.DBTotal()-a.DBTotal())/float64(n), 2)
			}
			var peak int64
			for _, s := range samples[start : end+1] {
				peak = max(peak, s.RSS)
			}
			w.PeakRSSMiB = mib(peak)
			out = append(out, w)
		}
		start = end
	}
	return out
}
