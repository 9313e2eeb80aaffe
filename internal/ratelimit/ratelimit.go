// Package ratelimit owns Offboard's abuse limits as net/http middleware building
// blocks: per-key token buckets (per token id, per client IP), throttling of
// clients that keep failing authentication, and the resolution of the client IP
// behind trusted proxies. Every table is bounded in memory and every decision
// takes time from an injected clock. Response bodies are left to the caller,
// since the SCIM and admin APIs render errors differently.
package ratelimit

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults. Microsoft documents Entra ID provisioning at up to 25 requests per
// second per tenant; a token gets twice that with a burst of 100 so a healthy
// IdP never sees 429. Several tenants (and Okta and Entra for different
// companies) can share one egress IP of the IdP's cloud, so the per-IP limit is
// higher still.
const (
	DefaultTokenRate  = 50.0
	DefaultTokenBurst = 100
	DefaultIPRate     = 200.0
	DefaultIPBurst    = 400
	// DefaultMaxKeys bounds each table; at roughly 200 bytes an entry a full
	// table stays around 10 MB.
	DefaultMaxKeys = 50_000
)

// KeyFunc picks the key a request is counted under. ok false lets the request
// through uncounted (for example when the key is not known yet).
type KeyFunc func(r *http.Request) (key string, ok bool)

// DenyFunc writes the rejection: it must call w.WriteHeader(status) and may write
// a body in its API's error format. The Retry-After header is already set.
type DenyFunc func(w http.ResponseWriter, r *http.Request, status int)

// Option configures a Limiter or an AuthThrottle.
type Option func(*options)

type options struct {
	now     func() time.Time
	maxKeys int
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now, maxKeys: DefaultMaxKeys}
	for _, f := range opts {
		f(&o)
	}
	if o.maxKeys < 1 {
		o.maxKeys = 1
	}
	return o
}

// WithClock sets the time source.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMaxKeys bounds how many keys are tracked (default DefaultMaxKeys). When
// the table is full, the least recently seen key is forgotten.
func WithMaxKeys(n int) Option { return func(o *options) { o.maxKeys = n } }

// Limiter is a set of token buckets, one per key, each refilling at the same rate
// up to the same burst. Forgetting an idle key is harmless (its bucket would be
// full again); forgetting a busy one, which takes a flood of more distinct keys
// than the table holds, only gives that key a fresh burst. It is safe for
// concurrent use.
type Limiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets *lru[*rate.Limiter]
}

// New returns a Limiter allowing perSecond requests per key with bursts of burst.
func New(perSecond float64, burst int, opts ...Option) *Limiter {
	o := buildOptions(opts)
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, now: o.now, buckets: newLRU[*rate.Limiter](o.maxKeys)}
}

// Allow takes one token from key's bucket. When none is left it reports how long
// until one is.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, found := l.buckets.get(key)
	if !found {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets.add(key, b)
	}
	r := b.ReserveN(now, 1)
	if !r.OK() { // burst 0: never
		return false, time.Duration(math.MaxInt64)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len is the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buckets.len()
}

// Middleware rejects requests whose key is out of tokens with 429 and an integer
// Retry-After.
func (l *Limiter) Middleware(key KeyFunc, deny DenyFunc) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if k, ok := key(r); ok {
				if allowed, wait := l.Allow(k); !allowed {
					TooManyRequests(w, r, wait, deny)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TooManyRequests sets Retry-After from wait and lets deny write a 429.
func TooManyRequests(w http.ResponseWriter, r *http.Request, wait time.Duration, deny DenyFunc) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(wait)))
	deny(w, r, http.StatusTooManyRequests)
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least 1, as the
// Retry-After header needs (a client retrying after 0 s would just be refused
// again).
func RetryAfterSeconds(wait time.Duration) int {
	const maxSeconds = 24 * 60 * 60
	if wait <= 0 {
		return 1
	}
	s := int64((wait + time.Second - 1) / time.Second)
	if s > maxSeconds || s < 1 {
		return maxSeconds
	}
	return int(s)
}
