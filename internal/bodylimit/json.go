package bodylimit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Sentinel kinds of *Error. Suggested mapping for SCIM: ErrTooLarge → 413;
// ErrType and ErrForbiddenKey → 400 scimType "invalidValue"; all others → 400
// scimType "invalidSyntax".
var (
	ErrTooLarge        = errors.New("body too large")
	ErrBOM             = errors.New("body starts with a byte order mark")
	ErrInvalidEncoding = errors.New("body is not valid UTF-8")
	ErrSyntax          = errors.New("body is not valid JSON")
	ErrTrailingData    = errors.New("body has data after the JSON value")
	ErrNotObject       = errors.New("body is not a JSON object")
	ErrTooDeep         = errors.New("body nests too deeply")
	ErrForbiddenKey    = errors.New("body has a forbidden object key")
	ErrDuplicateKey    = errors.New("body has a duplicate object key")
	ErrType            = errors.New("body does not match the expected shape")
)

// Error is a refused body. Its Kind is one of the sentinels above (errors.Is
// works on the *Error). Detail and Key are safe to show the client: they
// describe the position and the offending key, never other content.
type Error struct {
	Kind   error
	Offset int64  // byte offset near the problem, when known
	Key    string // the offending object key, truncated, for key errors
	Detail string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Key != "" {
		fmt.Fprintf(&b, " %q", e.Key)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Offset > 0 {
		fmt.Fprintf(&b, " (at byte %d)", e.Offset)
	}
	return b.String()
}

// Unwrap returns the Kind.
func (e *Error) Unwrap() error { return e.Kind }

// DecodeOption configures DecodeJSON and CheckJSON.
type DecodeOption func(*decodeOptions)

type decodeOptions struct {
	dollar, nul, dot bool
	duplicates       bool
	object           bool
	unknownFields    bool
	useNumber        bool
	maxDepth         int
}

// RejectUnsafeKeys refuses object keys that begin with "$" or contain NUL, at
// any depth: operator injection and key truncation in document stores.
func RejectUnsafeKeys() DecodeOption {
	return func(o *decodeOptions) { o.dollar, o.nul = true, true }
}

// RejectDotKeys refuses object keys containing ".". Do NOT use it on SCIM
// bodies: the enterprise extension's key
// "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User" contains a dot,
// and Entra ID sends it in every user it provisions (and as keys of PATCH
// values). Store such documents with escaped keys or as raw JSON instead.
func RejectDotKeys() DecodeOption { return func(o *decodeOptions) { o.dot = true } }

// RejectDuplicateKeys refuses an object with two keys that are equal ignoring
// case. SCIM attribute names are case-insensitive, and Go's decoder silently
// keeps one of {"active":true,"ACTIVE":false}; refusing removes the ambiguity.
func RejectDuplicateKeys() DecodeOption { return func(o *decodeOptions) { o.duplicates = true } }

// RequireObject refuses a top-level value that is not an object.
func RequireObject() DecodeOption { return func(o *decodeOptions) { o.object = true } }

// DisallowUnknownFields makes decoding into a struct fail on fields it lacks.
func DisallowUnknownFields() DecodeOption { return func(o *decodeOptions) { o.unknownFields = true } }

// UseNumber decodes numbers into interface values as json.Number.
func UseNumber() DecodeOption { return func(o *decodeOptions) { o.useNumber = true } }

// MaxDepth sets the deepest nesting of arrays and objects (default 32).
func MaxDepth(n int) DecodeOption { return func(o *decodeOptions) { o.maxDepth = n } }

// DefaultMaxDepth is the nesting allowed unless MaxDepth says otherwise.
const DefaultMaxDepth = 32

// DecodeJSON reads at most limit bytes from r, checks them with CheckJSON and
// decodes them into v (v may be nil to only check). A body longer than limit,
// or a read failing with *http.MaxBytesError, is ErrTooLarge. Other read errors
// (a client that went away) are returned as they are.
func DecodeJSON(r io.Reader, limit int64, v any, opts ...DecodeOption) error {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Kind: ErrTooLarge, Detail: fmt.Sprintf("limit is %d bytes", mbe.Limit)}
	}
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if int64(len(data)) > limit {
		return &Error{Kind: ErrTooLarge, Detail: fmt.Sprintf("limit is %d bytes", limit)}
	}
	return Unmarshal(data, v, opts...)
}

// Unmarshal is DecodeJSON for a body already in memory.
func Unmarshal(data []byte, v any, opts ...DecodeOption) error {
	o := decodeOptions{maxDepth: DefaultMaxDepth}
	for _, f := range opts {
		f(&o)
	}
	if err := check(data, &o); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if o.unknownFields {
		dec.DisallowUnknownFields()
	}
	if o.useNumber {
		dec.UseNumber()
	}
	if err := dec.Decode(v); err != nil {
		e := &Error{Kind: ErrType, Offset: dec.InputOffset()}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			e.Detail = fmt.Sprintf("field %q must be %s, not %s", truncate(ute.Field), ute.Type, ute.Value)
			e.Offset = ute.Offset
		} else if strings.HasPrefix(err.Error(), "json: unknown field ") {
			e.Detail = "unknown field " + truncate(strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return e
	}
	return nil
}

// CheckJSON checks data as DecodeJSON does, without decoding it.
func CheckJSON(data []byte, opts ...DecodeOption) error { return Unmarshal(data, nil, opts...) }

func check(data []byte, o *decodeOptions) error {
	if hasBOM(data) {
		return &Error{Kind: ErrBOM}
	}
	if !utf8.Valid(data) {
		return &Error{Kind: ErrInvalidEncoding, Offset: int64(firstInvalidUTF8(data))}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &Error{Kind: ErrSyntax, Detail: "empty body"}
	}
	if !json.Valid(data) {
		// Tell trailing data from a broken value: does one value parse first?
		dec := json.NewDecoder(bytes.NewReader(data))
		var first json.RawMessage
		if err := dec.Decode(&first); err == nil {
			return &Error{Kind: ErrTrailingData, Offset: dec.InputOffset()}
		}
		e := &Error{Kind: ErrSyntax}
		var se *json.SyntaxError
		if errors.As(json.Unmarshal(data, new(json.RawMessage)), &se) {
			e.Offset = se.Offset
		}
		return e
	}
	if o.object && bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
		return &Error{Kind: ErrNotObject}
	}
	return walk(data, o)
}

// frame is an open object or array during walk.
type frame struct {
	object bool
	keys   map[string]struct{} // folded keys seen, only with RejectDuplicateKeys
}

// walk visits every object key of valid JSON data, checking depth and key rules.
func walk(data []byte, o *decodeOptions) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []frame
	expectKey := false
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil { // cannot happen after json.Valid; be safe anyway
			return &Error{Kind: ErrSyntax, Offset: off}
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) >= o.maxDepth {
					return &Error{Kind: ErrTooDeep, Offset: off, Detail: fmt.Sprintf("limit is %d levels", o.maxDepth)}
				}
				f := frame{object: d == '{'}
				if f.object && o.duplicates {
					f.keys = map[string]struct{}{}
				}
				stack = append(stack, f)
				expectKey = f.object
			default:
				stack = stack[:len(stack)-1]
				expectKey = len(stack) > 0 && stack[len(stack)-1].object
			}
			continue
		}
		if expectKey {
			key := tok.(string)
			if err := checkKey(key, o); err != nil {
				err.Offset = off
				return err
			}
			if top := &stack[len(stack)-1]; top.keys != nil {
				folded := strings.ToLower(key)
				if _, dup := top.keys[folded]; dup {
					return &Error{Kind: ErrDuplicateKey, Key: truncate(key), Offset: off}
				}
				top.keys[folded] = struct{}{}
			}
			expectKey = false
			continue
		}
		expectKey = len(stack) > 0 && stack[len(stack)-1].object
	}
}

func checkKey(key string, o *decodeOptions) *Error {
	switch {
	case o.dollar && strings.HasPrefix(key, "$"):
		return &Error{Kind: ErrForbiddenKey, Key: truncate(key), Detail: `keys may not begin with "$"`}
	case o.nul && strings.ContainsRune(key, 0):
		return &Error{Kind: ErrForbiddenKey, Key: truncate(key), Detail: "keys may not contain NUL"}
	case o.dot && strings.Contains(key, "."):
		return &Error{Kind: ErrForbiddenKey, Key: truncate(key), Detail: `keys may not contain "."`}
	}
	return nil
}

func hasBOM(data []byte) bool {
	return bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}) ||
		bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE})
}

func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// truncate keeps client-controlled strings in errors short and printable.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
