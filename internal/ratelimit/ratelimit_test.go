package ratelimit

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func jsonDeny(w http.ResponseWriter, _ *http.Request, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"error":"too many requests"}`)
}

func TestLimiter(t *testing.T) {
	t.Run("a key gets its burst, then waits for the refill", func(t *testing.T) {
		clk := newClock()
		l := New(10, 5, WithClock(clk.Now))
		for i := range 5 {
			if ok, _ := l.Allow("tok"); !ok {
				t.Fatalf("request %d refused", i)
			}
		}
		ok, wait := l.Allow("tok")
		if ok || wait <= 0 || wait > 100*time.Millisecond {
			t.Fatalf("ok %v wait %v", ok, wait)
		}
		clk.Advance(wait)
		if ok, _ := l.Allow("tok"); !ok {
			t.Fatal("not refilled after the announced wait")
		}
		if ok, _ := l.Allow("tok"); ok {
			t.Fatal("refilled more than one token")
		}
		clk.Advance(time.Hour)
		for range 5 {
			if ok, _ := l.Allow("tok"); !ok {
				t.Fatal("burst not restored after idling")
			}
		}
		if ok, _ := l.Allow("tok"); ok {
			t.Fatal("refill exceeded the burst")
		}
	})
	t.Run("keys do not share buckets", func(t *testing.T) {
		clk := newClock()
		l := New(1, 2, WithClock(clk.Now))
		l.Allow("a")
		l.Allow("a")
		if ok, _ := l.Allow("a"); ok {
			t.Fatal("a not limited")
		}
		if ok, _ := l.Allow("b"); !ok {
			t.Fatal("b limited by a's usage")
		}
	})
	t.Run("a flood of distinct keys never grows the table past its bound", func(t *testing.T) {
		clk := newClock()
		l := New(1, 1, WithClock(clk.Now), WithMaxKeys(100))
		for i := range 10_000 {
			l.Allow(fmt.Sprint("ip:", i))
		}
		if l.Len() != 100 {
			t.Fatalf("%d keys tracked", l.Len())
		}
	})
	t.Run("a busy key stays tracked while older keys are evicted", func(t *testing.T) {
		clk := newClock()
		l := New(1, 1, WithClock(clk.Now), WithMaxKeys(10))
		l.Allow("busy")
		for i := range 100 {
			l.Allow(fmt.Sprint("k", i))
			if ok, _ := l.Allow("busy"); ok {
				t.Fatalf("busy key forgotten after %d other keys", i)
			}
		}
	})
	t.Run("a burst of zero refuses everything", func(t *testing.T) {
		if ok, _ := New(10, 0).Allow("x"); ok {
			t.Fatal("allowed")
		}
	})
}

func TestLimiterMiddleware(t *testing.T) {
	clk := newClock()
	l := New(0.5, 2, WithClock(clk.Now))
	h := l.Middleware(func(r *http.Request) (string, bool) {
		k := r.Header.Get("X-Key")
		return k, k != ""
	}, jsonDeny)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	do := func(key string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/scim/v2/Users", nil)
		if key != "" {
			r.Header.Set("X-Key", key)
		}
		h.ServeHTTP(rec, r)
		return rec
	}
	t.Run("requests within the burst pass", func(t *testing.T) {
		for range 2 {
			if rec := do("t1"); rec.Code != http.StatusNoContent {
				t.Fatalf("status %d", rec.Code)
			}
		}
	})
	t.Run("the next one gets 429 with an integer Retry-After and the caller's body", func(t *testing.T) {
		rec := do("t1")
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("status %d", rec.Code)
		}
		if got := rec.Header().Get("Retry-After"); got != "2" {
			t.Fatalf("Retry-After %q, want 2 (one token at 0.5/s)", got)
		}
		if rec.Body.String() != `{"error":"too many requests"}` || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("body %q", rec.Body)
		}
	})
	t.Run("after Retry-After seconds the key is served again", func(t *testing.T) {
		secs, _ := strconv.Atoi(do("t1").Header().Get("Retry-After"))
		clk.Advance(time.Duration(secs) * time.Second)
		if rec := do("t1"); rec.Code != http.StatusNoContent {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("requests without a key are not counted", func(t *testing.T) {
		for range 10 {
			if rec := do(""); rec.Code != http.StatusNoContent {
				t.Fatalf("status %d", rec.Code)
			}
		}
	})
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want int
	}{
		{0, 1}, {-time.Second, 1}, {time.Millisecond, 1}, {time.Second, 1},
		{time.Second + time.Nanosecond, 2}, {90 * time.Second, 90}, {1<<63 - 1, 86400},
	} {
		t.Run(fmt.Sprintf("a wait of %v is announced as %d s", tc.in, tc.want), func(t *testing.T) {
			if got := RetryAfterSeconds(tc.in); got != tc.want {
				t.Fatalf("got %d", got)
			}
		})
	}
}
