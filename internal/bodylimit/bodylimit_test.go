package bodylimit

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func scimError(w http.ResponseWriter, _ *http.Request, status int) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	io.WriteString(w, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"`+http.StatusText(status)+`"}`)
}

func TestMiddleware(t *testing.T) {
	var decodeErr error
	h := Middleware(64, scimError, MaxHeaderBytes(512))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		decodeErr = DecodeJSON(r.Body, 1<<20, &v)
		w.WriteHeader(http.StatusNoContent)
	}))
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	t.Run("a small body passes", func(t *testing.T) {
		if rec := serve(httptest.NewRequest("POST", "/Users", strings.NewReader(`{"userName":"a"}`))); rec.Code != http.StatusNoContent || decodeErr != nil {
			t.Fatalf("status %d, %v", rec.Code, decodeErr)
		}
	})
	t.Run("a declared oversized body gets 413 from the caller's writer without reaching the handler", func(t *testing.T) {
		decodeErr = errors.New("untouched")
		rec := serve(httptest.NewRequest("POST", "/Users", strings.NewReader(strings.Repeat("x", 65))))
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "scim") {
			t.Fatalf("status %d body %q", rec.Code, rec.Body)
		}
		if decodeErr == nil || decodeErr.Error() != "untouched" {
			t.Fatal("handler ran")
		}
	})
	t.Run("an undeclared oversized body is cut off and reported as too large", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/Users", io.MultiReader(strings.NewReader(`{"a":"`), strings.NewReader(strings.Repeat("x", 100)+`"}`)))
		r.ContentLength = -1
		serve(r)
		if !errors.Is(decodeErr, ErrTooLarge) {
			t.Fatalf("got %v", decodeErr)
		}
	})
	t.Run("oversized headers get 431", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/Users", nil)
		r.Header.Set("X-Big", strings.Repeat("h", 600))
		if rec := serve(r); rec.Code != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("an oversized URI counts against the header budget", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/Users?filter="+strings.Repeat("a", 600), nil)
		if rec := serve(r); rec.Code != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d", rec.Code)
		}
	})
}

func TestDecodeJSON(t *testing.T) {
	type user struct {
		UserName string `json:"userName"`
		Active   bool   `json:"active"`
	}
	t.Run("a well-formed body decodes", func(t *testing.T) {
		var u user
		if err := DecodeJSON(strings.NewReader(" {\"userName\":\"ana\",\"active\":true}\n"), 1024, &u); err != nil || u.UserName != "ana" || !u.Active {
			t.Fatalf("got %+v, %v", u, err)
		}
	})
	t.Run("a body of exactly the limit passes and one byte more is too large", func(t *testing.T) {
		body := `{"userName":"ana"}`
		if err := DecodeJSON(strings.NewReader(body), int64(len(body)), nil); err != nil {
			t.Fatal(err)
		}
		if err := DecodeJSON(strings.NewReader(body), int64(len(body)-1), nil); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v", err)
		}
	})
	enterprise := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],` +
		`"userName":"ana@acme.example","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"7"}}`
	t.Run("Entra ID's enterprise extension passes the safe-key checks", func(t *testing.T) {
		if err := CheckJSON([]byte(enterprise), RejectUnsafeKeys(), RejectDuplicateKeys(), RequireObject()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the dot rule, which SCIM must not use, would refuse it", func(t *testing.T) {
		if err := CheckJSON([]byte(enterprise), RejectDotKeys()); !errors.Is(err, ErrForbiddenKey) {
			t.Fatalf("got %v", err)
		}
	})
	for _, tc := range []struct {
		name string
		body string
		opts []DecodeOption
		kind error
	}{
		{"empty body", "", nil, ErrSyntax},
		{"whitespace only", " \n", nil, ErrSyntax},
		{"invalid JSON", `{"userName":}`, nil, ErrSyntax},
		{"unterminated object", `{"userName":"a"`, nil, ErrSyntax},
		{"single quotes", `{'userName':'a'}`, nil, ErrSyntax},
		{"trailing second value", `{"userName":"a"}{"userName":"b"}`, nil, ErrTrailingData},
		{"trailing garbage", `{"userName":"a"} x`, nil, ErrTrailingData},
		{"UTF-8 BOM", "\xEF\xBB\xBF{}", nil, ErrBOM},
		{"UTF-16 BOM", "\xFF\xFE{\x00}\x00", nil, ErrBOM},
		{"invalid UTF-8 in a string", "{\"userName\":\"\xC3\x28\"}", nil, ErrInvalidEncoding},
		{"a top-level array where an object is required", `[{}]`, []DecodeOption{RequireObject()}, ErrNotObject},
		{"a dollar key", `{"filter":{"$where":"1"}}`, []DecodeOption{RejectUnsafeKeys()}, ErrForbiddenKey},
		{"an escaped dollar key", `{"\u0024ne":1}`, []DecodeOption{RejectUnsafeKeys()}, ErrForbiddenKey},
		{"a dollar key inside an array", `{"emails":[{"$gt":""}]}`, []DecodeOption{RejectUnsafeKeys()}, ErrForbiddenKey},
		{"a NUL in a key", `{"user\u0000Name":"a"}`, []DecodeOption{RejectUnsafeKeys()}, ErrForbiddenKey},
		{"a dotted key", `{"name.givenName":"a"}`, []DecodeOption{RejectDotKeys()}, ErrForbiddenKey},
		{"keys equal ignoring case", `{"active":true,"ACTIVE":false}`, []DecodeOption{RejectDuplicateKeys()}, ErrDuplicateKey},
		{"exact duplicate keys in a nested object", `{"name":{"givenName":"a","givenName":"b"}}`, []DecodeOption{RejectDuplicateKeys()}, ErrDuplicateKey},
		{"nesting past the limit", strings.Repeat("[", 5) + strings.Repeat("]", 5), []DecodeOption{MaxDepth(4)}, ErrTooDeep},
		{"a wrong type", `{"active":"yes"}`, nil, ErrType},
		{"an unknown field when disallowed", `{"activ":true}`, []DecodeOption{DisallowUnknownFields()}, ErrType},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			var u user
			err := DecodeJSON(strings.NewReader(tc.body), 1024, &u, tc.opts...)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want %v", err, tc.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not *Error", err)
			}
		})
	}
	t.Run("a dollar value (not key) is fine", func(t *testing.T) {
		if err := CheckJSON([]byte(`{"displayName":"$money","x":["$y"]}`), RejectUnsafeKeys()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("equal keys in different objects are not duplicates", func(t *testing.T) {
		if err := CheckJSON([]byte(`{"a":{"value":1},"b":{"value":2},"c":[{"value":1},{"value":2}]}`), RejectDuplicateKeys()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("nesting at the limit is fine", func(t *testing.T) {
		if err := CheckJSON([]byte(`[[[[1]]]]`), MaxDepth(4)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("error texts stay short for long keys", func(t *testing.T) {
		err := CheckJSON([]byte(`{"$`+strings.Repeat("k", 5000)+`":1}`), RejectUnsafeKeys())
		if len(err.Error()) > 200 {
			t.Fatalf("error of %d bytes", len(err.Error()))
		}
	})
	t.Run("read errors other than the size limit pass through", func(t *testing.T) {
		boom := errors.New("connection reset")
		err := DecodeJSON(io.MultiReader(strings.NewReader("{"), errReader{boom}), 1024, nil)
		if !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestBufferedMiddleware(t *testing.T) {
	var got string
	h := Middleware(64, scimError, Buffer())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	serve := func(body io.Reader) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/Users", body)
		r.ContentLength = -1 // chunked: no declared length
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	t.Run("an undeclared body within the limit reaches the handler whole", func(t *testing.T) {
		got = ""
		if rec := serve(strings.NewReader(strings.Repeat("y", 64))); rec.Code != http.StatusNoContent || got != strings.Repeat("y", 64) {
			t.Fatalf("status %d, body %q", rec.Code, got)
		}
	})
	t.Run("an undeclared oversized body gets 413 in the caller's format without reaching the handler", func(t *testing.T) {
		got = "untouched"
		rec := serve(strings.NewReader(strings.Repeat("y", 65)))
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "scim") || got != "untouched" {
			t.Fatalf("status %d body %q, handler saw %q", rec.Code, rec.Body, got)
		}
		if rec.Header().Get("Connection") != "close" {
			t.Error("the connection is kept open for the rest of the body")
		}
	})
	t.Run("a body that cannot be read gets 400", func(t *testing.T) {
		got = "untouched"
		rec := serve(io.MultiReader(strings.NewReader("abc"), errReader{errors.New("connection reset")}))
		if rec.Code != http.StatusBadRequest || got != "untouched" {
			t.Fatalf("status %d, handler saw %q", rec.Code, got)
		}
	})
}
