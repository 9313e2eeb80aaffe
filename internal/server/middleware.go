package server

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/offboard/offboard/scim"
)

// httpMetrics are the HTTP request metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg *prometheus.Registry) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "offboard", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by API and status code.",
		}, []string{"api", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "offboard", Subsystem: "http", Name: "request_duration_seconds",
			Help: "HTTP request latency by API.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"api"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type apiKey struct{}

// api labels a route group for metrics and logs.
func (s *Server) api(name string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			s.metrics.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
			s.metrics.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
		})
	}
}

// logRequests logs one line per request: method, route pattern, status, duration. Never bodies,
// tokens or query strings (SCIM filters carry personal data).
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := routePattern(r)
		level := slog.LevelDebug
		if sw.status >= 500 {
			level = slog.LevelWarn
		}
		s.cfg.Log.Log(r.Context(), level, "request served", "method", r.Method, "route", route,
			"status", sw.status, "duration_ms", time.Since(start).Milliseconds())
	})
}

// recoverer turns a panic into a 500 without internals (in the SCIM error format on the SCIM
// API), and logs it with its stack.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.cfg.Log.Error("handler panicked", "panic", v, "route", routePattern(r), "stack", string(debug.Stack()))
				if strings.HasPrefix(r.URL.Path, "/scim/") {
					scim.WriteError(w, http.StatusInternalServerError, "", "Internal error.")
					return
				}
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// secureHeaders marks every answer as not to be cached (SCIM resources, tokens and license
// passwords are personal or secret) and not to be content-sniffed. Handlers may override them.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// routePattern is the matched route ("/hooks/{type}/{connector}/{secret}"), which is what logs
// name: a request's path can carry ids and hook secrets.
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		return rc.RoutePattern()
	}
	return ""
}
