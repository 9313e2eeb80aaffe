package bodylimit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{"userName":"a","active":true}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}`,
		`{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"x"}}}`,
		`{"$where":1}`, `{"\u0024ne":1}`, `{"a\u0000":1}`, `{"a":1,"A":2}`, `{} {}`, "\xEF\xBB\xBF{}",
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`, `"str"`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckJSON(data, RejectUnsafeKeys(), RequireObject())
		// An independent judgement: the standard decoder plus a recursive walk.
		var v any
		want := !bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}) && !bytes.HasPrefix(data, []byte{0xFE, 0xFF}) &&
			!bytes.HasPrefix(data, []byte{0xFF, 0xFE}) && utf8.Valid(data) && json.Valid(data) && json.Unmarshal(data, &v) == nil
		if want {
			_, isObject := v.(map[string]any)
			want = isObject && depth(v) <= DefaultMaxDepth && keysSafe(v)
		}
		if want != (err == nil) {
			t.Fatalf("CheckJSON says %v, independent check says ok=%v", err, want)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind == nil {
				t.Fatalf("untyped error %v", err)
			}
		}
		// Duplicate detection never accepts what the plain check refuses.
		if dupErr := CheckJSON(data, RejectUnsafeKeys(), RequireObject(), RejectDuplicateKeys()); dupErr == nil && err != nil {
			t.Fatal("duplicate check accepted a refused body")
		}
	})
}

func depth(v any) int {
	switch x := v.(type) {
	case map[string]any:
		d := 0
		for _, c := range x {
			d = max(d, depth(c))
		}
		return d + 1
	case []any:
		d := 0
		for _, c := range x {
			d = max(d, depth(c))
		}
		return d + 1
	}
	return 0
}

func keysSafe(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if strings.HasPrefix(k, "$") || strings.ContainsRune(k, 0) || !keysSafe(c) {
				return false
			}
		}
	case []any:
		for _, c := range x {
			if !keysSafe(c) {
				return false
			}
		}
	}
	return true
}
