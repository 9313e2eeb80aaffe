package mdm

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits caps the outgoing calls to one vendor account or server. A zero field means no cap.
//
// Limits are enforced per process: with several Offboard replicas each one gets the full budget,
// so size them for one replica or accept that the vendor may throttle (429 + Retry-After is
// honoured either way).
type Limits struct {
	// Concurrency is the most requests in flight at once.
	Concurrency int
	// Writes is how many write requests (every method but GET, HEAD and OPTIONS) may start in any
	// window of length Per. The bucket starts full, so Writes is also the burst.
	Writes int
	Per    time.Duration
	// MaxWait is the longest a request waits for a write token; past it the limiter returns a
	// retryable *VendorError whose RetryAfter says when to come back. Zero means 5 seconds.
	MaxWait time.Duration
}

// Limiter enforces Limits. It is safe for concurrent use; share one per vendor account or server
// (see Limiters).
type Limiter struct {
	vendor  string
	sem     chan struct{}
	writes  *rate.Limiter
	maxWait time.Duration
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
}

// LimiterOption customises a Limiter.
type LimiterOption func(*Limiter)

// WithSleep replaces how the limiter waits for a write token (tests drive a fake clock with it).
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) LimiterOption {
	return func(l *Limiter) { l.sleep = sleep }
}

// NewLimiter returns a limiter for vendor (used in its errors) that reads time from now.
func NewLimiter(vendor string, lim Limits, now func() time.Time, opts ...LimiterOption) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{vendor: vendor, now: now, sleep: sleepCtx, maxWait: lim.MaxWait}
	if l.maxWait <= 0 {
		l.maxWait = 5 * time.Second
	}
	if lim.Concurrency > 0 {
		l.sem = make(chan struct{}, lim.Concurrency)
	}
	if lim.Writes > 0 && lim.Per > 0 {
		every := lim.Per / time.Duration(lim.Writes)
		l.writes = rate.NewLimiter(rate.Every(every), lim.Writes)
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Acquire waits for a write token (if write) and then for a concurrency slot, and returns the
// function that gives the slot back. It never holds a slot while it waits for a token.
func (l *Limiter) Acquire(ctx context.Context, write bool) (release func(), err error) {
	if write && l.writes != nil {
		if err := l.waitWrite(ctx); err != nil {
			return nil, err
		}
	}
	if l.sem == nil {
		return func() {}, nil
	}
	select {
	case l.sem <- struct{}{}:
		return sync.OnceFunc(func() { <-l.sem }), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Limiter) waitWrite(ctx context.Context) error {
	now := l.now()
	r := l.writes.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	deadline, hasDeadline := ctx.Deadline()
	if d > l.maxWait || (hasDeadline && deadline.Before(now.Add(d))) {
		r.CancelAt(now)
		return &VendorError{Vendor: l.vendor, Op: "rate limit", Retryable: true, RetryAfter: d,
			Detail: "local write budget exhausted"}
	}
	if err := l.sleep(ctx, d); err != nil {
		r.CancelAt(l.now())
		return err
	}
	return nil
}

// Client returns a copy of c whose requests pass through the limiter. A concurrency slot is held
// until the response body is closed.
func (l *Limiter) Client(c *http.Client) *http.Client {
	cp := *c
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cp.Transport = &limitedTransport{l: l, next: next}
	return &cp
}

type limitedTransport struct {
	l    *Limiter
	next http.RoundTripper
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	write := req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != http.MethodOptions
	release, err := t.l.Acquire(req.Context(), write)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// releasingBody gives the concurrency slot back when the body is fully read or closed.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.release()
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// Limiters shares limiters between the connectors of one process, keyed by vendor account or
// server (for example "jamf https://acme.jamfcloud.com" or "intune <tenant id>"), so that two
// connector configurations that talk to the same server share one budget and reopening a
// connector keeps it. The zero value is ready to use.
type Limiters struct {
	mu sync.Mutex
	m  map[string]*Limiter
}

// Get returns the limiter stored under key, creating it with newLimiter on first use.
// A nil *Limiters creates a fresh, unshared limiter on every call.
func (r *Limiters) Get(key string, newLimiter func() *Limiter) *Limiter {
	if r == nil {
		return newLimiter()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.m[key]; ok {
		return l
	}
	if r.m == nil {
		r.m = make(map[string]*Limiter)
	}
	l := newLimiter()
	r.m[key] = l
	return l
}
