package clientcreds_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/internal/testclock"
	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/internal/clientcreds"
)

// tokenServer issues numbered tokens for the right credentials and accepts on /api only the
// token it issued last (unless acceptAny).
type tokenServer struct {
	mu        sync.Mutex
	issued    int
	expiresIn string
	reject401 bool // /api answers 401 whatever the token
}

func (ts *tokenServer) handler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		switch r.URL.Path {
		case "/token":
			if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			r.ParseForm()
			if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "api://x/.default" {
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, `{"error":"unsupported_grant_type"}`)
				return
			}
			if r.PostForm.Get("client_id") != "id" || r.PostForm.Get("client_secret") != "s3cret-value" {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","trace_id":"t"}`)
				return
			}
			ts.issued++
			fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%s}`, ts.issued, ts.expiresIn)
		case "/api":
			if ts.reject401 || r.Header.Get("Authorization") != fmt.Sprintf("Bearer tok-%d", ts.issued) {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			io.WriteString(w, "ok")
		}
	})
}

func newSource(t *testing.T, ts *tokenServer, secret string) (*clientcreds.Source, *httptest.Server, *testclock.Clock) {
	t.Helper()
	srv := httptest.NewServer(ts.handler(t))
	t.Cleanup(srv.Close)
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	src := clientcreds.New(clientcreds.Config{
		Vendor: "test", TokenURL: srv.URL + "/token", ClientID: "id", ClientSecret: secret, Scope: "api://x/.default",
	}, srv.Client(), clk.Now)
	return src, srv, clk
}

func TestTokenCaching(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn string
		after     time.Duration
		fetches   int
	}{
		{"a token is reused well before it expires", "3599", 58 * time.Minute, 1},
		{"a token is replaced a minute before it expires", "3599", 58*time.Minute + 59*time.Second, 2},
		{"a short-lived token is replaced at half its lifetime", "60", 31 * time.Second, 2},
		{"a lifetime sent as a string is understood", `"3599"`, 30 * time.Minute, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, _, clk := newSource(t, &tokenServer{expiresIn: tc.expiresIn}, "s3cret-value")
			if _, err := src.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			clk.Advance(tc.after)
			if _, err := src.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := src.Fetches(); got != tc.fetches {
				t.Fatalf("fetches = %d, want %d", got, tc.fetches)
			}
		})
	}
}

func TestDo(t *testing.T) {
	get := func(srv *httptest.Server) func(ctx context.Context) (*http.Request, error) {
		return func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api", nil)
		}
	}

	t.Run("a revoked token is replaced once and the request sent again", func(t *testing.T) {
		ts := &tokenServer{expiresIn: "3600"}
		src, srv, _ := newSource(t, ts, "s3cret-value")
		src.Token(context.Background())
		ts.mu.Lock()
		ts.issued++ // the vendor rotated: the cached token is no longer accepted
		ts.mu.Unlock()
		resp, err := src.Do(context.Background(), srv.Client(), "get", get(srv))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || src.Fetches() != 2 {
			t.Fatalf("status %d after %d fetches, want 200 after 2", resp.StatusCode, src.Fetches())
		}
	})

	t.Run("a second 401 is returned, not retried forever", func(t *testing.T) {
		ts := &tokenServer{expiresIn: "3600", reject401: true}
		src, srv, _ := newSource(t, ts, "s3cret-value")
		resp, err := src.Do(context.Background(), srv.Client(), "get", get(srv))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || src.Fetches() != 2 {
			t.Fatalf("status %d after %d fetches, want 401 after 2", resp.StatusCode, src.Fetches())
		}
	})

	t.Run("bad credentials are a non-retryable error that does not echo the secret", func(t *testing.T) {
		src, srv, _ := newSource(t, &tokenServer{expiresIn: "3600"}, "wrong-secret-value")
		_, err := src.Do(context.Background(), srv.Client(), "get", get(srv))
		var ve *mdm.VendorError
		if !errors.As(err, &ve) || ve.Retryable || ve.StatusCode != http.StatusUnauthorized {
			t.Fatalf("got %v, want non-retryable 401", err)
		}
		if strings.Contains(err.Error(), "wrong-secret-value") || strings.Contains(err.Error(), "trace_id") {
			t.Fatalf("error leaks more than the OAuth error: %v", err)
		}
		if !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("error lacks the OAuth error code: %v", err)
		}
	})

	t.Run("an unreachable token endpoint is retryable", func(t *testing.T) {
		src, srv, _ := newSource(t, &tokenServer{expiresIn: "3600"}, "s3cret-value")
		srv.Close()
		_, err := src.Token(context.Background())
		if !mdm.IsRetryable(err) {
			t.Fatalf("got %v, want retryable", err)
		}
	})
}
