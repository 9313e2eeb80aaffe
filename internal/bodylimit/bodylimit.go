// Package bodylimit owns the size limits on incoming requests and the strict
// reading of JSON request bodies: a middleware that refuses oversized bodies
// (413) and header sets (431), and DecodeJSON, which accepts exactly one
// well-formed, BOM-free, UTF-8 JSON value and can refuse object keys that are
// dangerous to a document store or ambiguous to a case-insensitive SCIM parser.
// Every refusal is a typed *Error the caller maps to its API's error format.
package bodylimit

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// Defaults for the middleware.
const (
	// DefaultMaxBody fits any SCIM user or PATCH that Entra ID or Okta sends
	// (a few KiB) with plenty of room; bulk requests are not supported.
	DefaultMaxBody = 1 << 20
	// DefaultMaxHeaderBytes is the header budget checked by the middleware. Set
	// http.Server.MaxHeaderBytes to the same value: that limit applies before
	// any handler runs, this one renders the error in the API's format.
	DefaultMaxHeaderBytes = 64 << 10
)

// ErrorWriter writes a refusal: it must call w.WriteHeader(status) and may write
// a body in its API's error format (a SCIM error for the SCIM API, JSON for the
// admin API).
type ErrorWriter func(w http.ResponseWriter, r *http.Request, status int)

// Option configures the Middleware.
type Option func(*limits)

type limits struct {
	maxHeader int
	buffer    bool
}

// MaxHeaderBytes sets the header budget (default DefaultMaxHeaderBytes): the
// request line's URI plus every header name and value.
func MaxHeaderBytes(n int) Option { return func(l *limits) { l.maxHeader = n } }

// Buffer makes the middleware read the whole body (at most maxBody bytes) before calling
// next, so that a body sent without a declared length (chunked) that turns out too large is
// also refused with 413 in the API's format, instead of surfacing as a read error inside a
// handler that cannot tell it from malformed input. A body that cannot be read (the client
// went away, the read timed out) is refused with 400. Use it where bodies are small.
func Buffer() Option { return func(l *limits) { l.buffer = true } }

// Middleware refuses requests whose declared Content-Length exceeds maxBody with
// 413, and requests whose URI and headers exceed the header budget with 431,
// before calling next. Bodies without a declared length are capped with
// http.MaxBytesReader: reading past maxBody fails with *http.MaxBytesError,
// which DecodeJSON reports as ErrTooLarge.
func Middleware(maxBody int64, onError ErrorWriter, opts ...Option) func(http.Handler) http.Handler {
	l := limits{maxHeader: DefaultMaxHeaderBytes}
	for _, o := range opts {
		o(&l)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if headerSize(r) > l.maxHeader {
				onError(w, r, http.StatusRequestHeaderFieldsTooLarge)
				return
			}
			if r.ContentLength > maxBody {
				w.Header().Set("Connection", "close") // do not read the rest of the body
				onError(w, r, http.StatusRequestEntityTooLarge)
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, maxBody)
				if l.buffer {
					b, err := io.ReadAll(r.Body)
					if err != nil {
						w.Header().Set("Connection", "close")
						status := http.StatusBadRequest
						var tooLarge *http.MaxBytesError
						if errors.As(err, &tooLarge) {
							status = http.StatusRequestEntityTooLarge
						}
						onError(w, r, status)
						return
					}
					r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func headerSize(r *http.Request) int {
	n := len(r.RequestURI) + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " and CRLF
		}
	}
	return n
}
