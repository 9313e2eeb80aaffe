package ratelimit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestAuthThrottle(t *testing.T) {
	t.Run("failures below the limit do not lock out", func(t *testing.T) {
		clk := newClock()
		a := NewAuthThrottle(3, time.Minute, 5*time.Minute, WithClock(clk.Now))
		a.Failure("ip:1")
		a.Failure("ip:1")
		if blocked, _ := a.Blocked("ip:1"); blocked {
			t.Fatal("blocked")
		}
	})
	t.Run("failures spread over several windows do not lock out", func(t *testing.T) {
		clk := newClock()
		a := NewAuthThrottle(3, time.Minute, 5*time.Minute, WithClock(clk.Now))
		for range 10 {
			a.Failure("ip:1")
			a.Failure("ip:1")
			clk.Advance(time.Minute)
		}
		if blocked, _ := a.Blocked("ip:1"); blocked {
			t.Fatal("blocked")
		}
	})
	t.Run("the limit within the window locks out for the lockout time and then recovers", func(t *testing.T) {
		clk := newClock()
		a := NewAuthThrottle(3, time.Minute, 5*time.Minute, WithClock(clk.Now))
		a.Failure("ip:1")
		a.Failure("ip:1")
		if !a.Failure("ip:1") {
			t.Fatal("third failure did not lock")
		}
		blocked, wait := a.Blocked("ip:1")
		if !blocked || wait != 5*time.Minute {
			t.Fatalf("blocked %v wait %v", blocked, wait)
		}
		if blocked, _ := a.Blocked("ip:2"); blocked {
			t.Fatal("another key is blocked too")
		}
		clk.Advance(5*time.Minute - time.Second)
		if blocked, wait := a.Blocked("ip:1"); !blocked || wait != time.Second {
			t.Fatalf("blocked %v wait %v", blocked, wait)
		}
		clk.Advance(time.Second)
		if blocked, _ := a.Blocked("ip:1"); blocked {
			t.Fatal("still blocked after the lockout")
		}
		if a.Failure("ip:1") {
			t.Fatal("one failure after recovery locked again")
		}
	})
	t.Run("the table of failing keys stays bounded", func(t *testing.T) {
		a := NewAuthThrottle(3, time.Minute, time.Minute, WithMaxKeys(50))
		for i := range 5000 {
			a.Failure(fmt.Sprint("ip:", i))
		}
		if a.Len() != 50 {
			t.Fatalf("%d keys", a.Len())
		}
	})
}

func TestAuthThrottleMiddleware(t *testing.T) {
	clk := newClock()
	a := NewAuthThrottle(2, time.Minute, 10*time.Minute, WithClock(clk.Now))
	// The inner handler stands for the auth middleware: "good" authenticates.
	h := a.Middleware(NewIPResolver().Key, jsonDeny)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte("ok"))
	}))
	do := func(ip, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/scim/v2/Users", nil)
		r.RemoteAddr = ip + ":40000"
		r.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	t.Run("401 answers count as failures", func(t *testing.T) {
		for range 2 {
			if rec := do("203.0.113.9", "Bearer bad"); rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d", rec.Code)
			}
		}
	})
	t.Run("a locked-out IP gets 429 even with a valid token", func(t *testing.T) {
		rec := do("203.0.113.9", "Bearer good")
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "600" {
			t.Fatalf("status %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
		}
	})
	t.Run("other IPs are unaffected", func(t *testing.T) {
		if rec := do("198.51.100.7", "Bearer good"); rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("successes do not count and the IP recovers after the lockout", func(t *testing.T) {
		clk.Advance(10 * time.Minute)
		for range 5 {
			if rec := do("203.0.113.9", "Bearer good"); rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
		}
	})
}
