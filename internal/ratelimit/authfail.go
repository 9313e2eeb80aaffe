package ratelimit

import (
	"net/http"
	"sync"
	"time"
)

// Defaults of the failed-authentication throttle: 20 failures within a minute
// lock the key out for 5 minutes.
const (
	DefaultAuthMaxFailures = 20
	DefaultAuthWindow      = time.Minute
	DefaultAuthLockout     = 5 * time.Minute
)

// AuthThrottle counts failed authentications per key (usually the client IP)
// and, after maxFailures within window, refuses every request under that key for
// lockout, whatever credentials it carries.
//
// Trade-offs, so the wiring can pick the key and numbers deliberately:
//   - Offboard's tokens have 280-bit secrets, so guessing is hopeless anyway; the
//     throttle protects the server's CPU and storage, the IdPs' JWKS endpoints,
//     and an operator-chosen weak OFFBOARD_ADMIN_TOKEN, and makes scanning slow.
//   - A lockout also refuses valid tokens from that key, or an attacker could keep
//     probing at full speed between its own valid requests. The price: clients
//     behind one NAT or proxy share fate. Entra ID's and Okta's provisioning
//     services send from shared cloud egress IPs, so one tenant's misconfigured
//     (say, rotated) token can make those IPs fail for every tenant. For the SCIM
//     API, key by client IP plus tenant (from the URL), which keeps a broken
//     tenant from locking out the others; IdPs retry 429 with backoff.
//   - Successes do not reset the count: a valid client sharing the attacker's IP
//     would otherwise hand the attacker fresh attempts.
//
// It is safe for concurrent use.
type AuthThrottle struct {
	max     int
	window  time.Duration
	lockout time.Duration
	now     func() time.Time

	mu     sync.Mutex
	states *lru[*failState]
}

type failState struct {
	windowStart time.Time
	count       int
	lockedUntil time.Time
}

// NewAuthThrottle returns an AuthThrottle locking a key out for lockout after
// maxFailures failures within window.
func NewAuthThrottle(maxFailures int, window, lockout time.Duration, opts ...Option) *AuthThrottle {
	o := buildOptions(opts)
	return &AuthThrottle{max: maxFailures, window: window, lockout: lockout, now: o.now, states: newLRU[*failState](o.maxKeys)}
}

// Blocked reports whether key is locked out and for how much longer.
func (a *AuthThrottle) Blocked(key string) (bool, time.Duration) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.states.get(key)
	if !ok || !now.Before(s.lockedUntil) {
		return false, 0
	}
	return true, s.lockedUntil.Sub(now)
}

// Failure records a failed authentication for key and reports whether key is
// now locked out.
func (a *AuthThrottle) Failure(key string) (locked bool) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.states.get(key)
	if !ok {
		s = &failState{windowStart: now}
		a.states.add(key, s)
	}
	if now.Before(s.lockedUntil) {
		return true
	}
	if now.Sub(s.windowStart) >= a.window {
		s.windowStart, s.count = now, 0
	}
	s.count++
	if s.count >= a.max {
		s.lockedUntil = now.Add(a.lockout)
		s.windowStart, s.count = s.lockedUntil, 0 // a fresh window after the lockout
		return true
	}
	return false
}

// Len is the number of keys tracked.
func (a *AuthThrottle) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.states.len()
}

// Middleware answers 429 with Retry-After for a locked-out key without calling
// next, and counts every 401 that next answers as a failure. Put it outside the
// authentication middleware.
func (a *AuthThrottle) Middleware(key KeyFunc, deny DenyFunc) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k, ok := key(r)
			if !ok {
				next.ServeHTTP(w, r)
				return
			}
			if blocked, wait := a.Blocked(k); blocked {
				TooManyRequests(w, r, wait, deny)
				return
			}
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status == http.StatusUnauthorized {
				a.Failure(k)
			}
		})
	}
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
