package bench

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Recorder collects latencies, statuses and errors per request kind. It is safe for concurrent
// use.
type Recorder struct {
	mu    sync.Mutex
	kinds map[string]*kindStats
	start time.Time
}

type kindStats struct {
	samples []time.Duration
	status  map[int]int
	errors  int
	first   time.Time
	last    time.Time
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{kinds: map[string]*kindStats{}, start: time.Now()} }

func (r *Recorder) kind(name string) *kindStats {
	k, ok := r.kinds[name]
	if !ok {
		k = &kindStats{status: map[int]int{}}
		r.kinds[name] = k
	}
	return k
}

// Observe records one request of kind that took d and answered status (0: no answer). ok
// tells whether the answer was the expected one; anything else counts as an error.
func (r *Recorder) Observe(kind string, start time.Time, d time.Duration, status int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kind(kind)
	k.samples = append(k.samples, d)
	k.status[status]++
	if !ok {
		k.errors++
	}
	if k.first.IsZero() || start.Before(k.first) {
		k.first = start
	}
	if end := start.Add(d); end.After(k.last) {
		k.last = end
	}
}

// Latency records a measured duration that is not one request (e.g. time until a webhook).
func (r *Recorder) Latency(kind string, start time.Time, d time.Duration) {
	r.Observe(kind, start, d, 0, true)
}

// Errors is the number of unexpected answers across all kinds.
func (r *Recorder) Errors() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.kinds {
		n += k.errors
	}
	return n
}

// KindSummary is the summary of one request kind.
type KindSummary struct {
	Count      int            `json:"count"`
	Errors     int            `json:"errors"`
	PerSecond  float64        `json:"perSecond"`
	MeanMs     float64        `json:"meanMs"`
	P50Ms      float64        `json:"p50Ms"`
	P95Ms      float64        `json:"p95Ms"`
	P99Ms      float64        `json:"p99Ms"`
	MaxMs      float64        `json:"maxMs"`
	Status     map[string]int `json:"status,omitempty"`
	RoundTrips *float64       `json:"dbRoundTripsPerRequest,omitempty"`
}

// Summary summarises every kind.
func (r *Recorder) Summary() map[string]*KindSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*KindSummary{}
	for name, k := range r.kinds {
		s := summarize(k.samples)
		s.Errors = k.errors
		if span := k.last.Sub(k.first).Seconds(); span > 0 {
			s.PerSecond = round(float64(len(k.samples))/span, 1)
		}
		for code, n := range k.status {
			if code == 0 {
				continue
			}
			if s.Status == nil {
				s.Status = map[string]int{}
			}
			s.Status[strconv.Itoa(code)] = n
		}
		out[name] = s
	}
	return out
}

func summarize(samples []time.Duration) *KindSummary {
	s := &KindSummary{Count: len(samples)}
	if len(samples) == 0 {
		return s
	}
	sorted := append([]time.Duration(nil), samples...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	s.MeanMs = ms(sum / time.Duration(len(sorted)))
	s.P50Ms = ms(percentile(sorted, 0.50))
	s.P95Ms = ms(percentile(sorted, 0.95))
	s.P99Ms = ms(percentile(sorted, 0.99))
	s.MaxMs = ms(sorted[len(sorted)-1])
	return s
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 2) }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}
