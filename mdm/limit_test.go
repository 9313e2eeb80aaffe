package mdm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offboard/offboard/internal/testclock"
	"github.com/offboard/offboard/mdm"
)

func TestLimiterWriteBudget(t *testing.T) {
	graph := mdm.Limits{Writes: 200, Per: 20 * time.Second}

	t.Run("the first 200 writes in a window start at once", func(t *testing.T) {
		clk := testclock.New(time.Unix(1_700_000_000, 0))
		l := mdm.NewLimiter("intune", graph, clk.Now, mdm.WithSleep(clk.Sleep))
		start := clk.Now()
		for i := range 200 {
			release, err := l.Acquire(context.Background(), true)
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			release()
		}
		if got := clk.Now().Sub(start); got != 0 {
			t.Fatalf("waited %v for writes within budget", got)
		}
	})

	t.Run("the 201st write waits for the next token", func(t *testing.T) {
		clk := testclock.New(time.Unix(1_700_000_000, 0))
		l := mdm.NewLimiter("intune", graph, clk.Now, mdm.WithSleep(clk.Sleep))
		for range 200 {
			release, _ := l.Acquire(context.Background(), true)
			release()
		}
		start := clk.Now()
		release, err := l.Acquire(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		release()
		if got := clk.Now().Sub(start); got != 100*time.Millisecond {
			t.Fatalf("waited %v, want 100ms (20s/200)", got)
		}
	})

	t.Run("reads do not use the write budget", func(t *testing.T) {
		clk := testclock.New(time.Unix(1_700_000_000, 0))
		l := mdm.NewLimiter("intune", mdm.Limits{Writes: 1, Per: time.Hour}, clk.Now, mdm.WithSleep(clk.Sleep))
		for range 50 {
			release, err := l.Acquire(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			release()
		}
		if _, err := l.Acquire(context.Background(), true); err != nil {
			t.Fatalf("first write after reads: %v", err)
		}
	})

	t.Run("a wait longer than MaxWait is a retryable error carrying the delay", func(t *testing.T) {
		clk := testclock.New(time.Unix(1_700_000_000, 0))
		l := mdm.NewLimiter("intune", mdm.Limits{Writes: 1, Per: time.Minute}, clk.Now, mdm.WithSleep(clk.Sleep))
		if _, err := l.Acquire(context.Background(), true); err != nil {
			t.Fatal(err)
		}
		_, err := l.Acquire(context.Background(), true)
		var ve *mdm.VendorError
		if !errors.As(err, &ve) || !ve.Retryable || ve.RetryAfter != time.Minute {
			t.Fatalf("got %#v, want retryable VendorError with RetryAfter 1m", err)
		}
		// The refused reservation was cancelled: after a minute one token is there again.
		clk.Sleep(context.Background(), time.Minute)
		if _, err := l.Acquire(context.Background(), true); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})

	t.Run("a context deadline shorter than the wait fails fast", func(t *testing.T) {
		clk := testclock.New(time.Unix(1_700_000_000, 0))
		l := mdm.NewLimiter("intune", mdm.Limits{Writes: 1, Per: 4 * time.Second}, clk.Now, mdm.WithSleep(clk.Sleep))
		l.Acquire(context.Background(), true)
		ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(time.Second))
		defer cancel()
		_, err := l.Acquire(ctx, true)
		if !mdm.IsRetryable(err) {
			t.Fatalf("got %v, want a retryable error", err)
		}
	})
}

func TestLimiterConcurrency(t *testing.T) {
	t.Run("a sixth request waits while five are in flight", func(t *testing.T) {
		l := mdm.NewLimiter("jamf", mdm.Limits{Concurrency: 5}, nil)
		var releases []func()
		for range 5 {
			r, err := l.Acquire(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			releases = append(releases, r)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := l.Acquire(ctx, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("sixth acquire: got %v, want it to block until the context ends", err)
		}
		releases[0]()
		releases[0]() // releasing twice gives back one slot only
		r, err := l.Acquire(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		r()
	})

	t.Run("the client never has more than five requests in flight", func(t *testing.T) {
		var inflight, peak atomic.Int32
		gate := make(chan struct{})
		arrived := make(chan struct{}, 12)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := inflight.Add(1)
			arrived <- struct{}{}
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-gate
			inflight.Add(-1)
			io.WriteString(w, "ok")
		}))
		defer srv.Close()
		client := mdm.NewLimiter("jamf", mdm.Limits{Concurrency: 5}, nil).Client(srv.Client())

		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				resp, err := client.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		for range 5 {
			<-arrived
		}
		close(gate)
		wg.Wait()
		if got := peak.Load(); got != 5 {
			t.Fatalf("peak in flight = %d, want 5", got)
		}
	})
}

func TestLimitersShareOneLimiterPerKey(t *testing.T) {
	var reg mdm.Limiters
	made := 0
	mk := func() *mdm.Limiter { made++; return mdm.NewLimiter("jamf", mdm.Limits{Concurrency: 5}, nil) }
	a := reg.Get("jamf https://acme.jamfcloud.com", mk)
	b := reg.Get("jamf https://acme.jamfcloud.com", mk)
	c := reg.Get("jamf https://other.jamfcloud.com", mk)
	if a != b || a == c || made != 2 {
		t.Fatalf("sharing broken: a==b %v, a==c %v, made %d", a == b, a == c, made)
	}
	var nilReg *mdm.Limiters
	if nilReg.Get("k", mk) == nilReg.Get("k", mk) {
		t.Fatal("a nil registry must not share")
	}
}
