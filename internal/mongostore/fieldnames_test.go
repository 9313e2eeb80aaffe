package mongostore

import (
	"reflect"
	"strings"
	"testing"
)

func TestFieldNamesAreEscapedReversibly(t *testing.T) {
	for _, name := range []string{"userName", "$ref", "a.b", "%24ref", "100%", "x\x00y", "$", ".", "%", "%2", "%2E.", "$where.$ne"} {
		esc := FieldName(name)
		if strings.HasPrefix(esc, "$") || strings.ContainsAny(esc, ".\x00") {
			t.Errorf("FieldName(%q) = %q is not a safe field name", name, esc)
		}
		if back := unescapeFieldName(esc); back != name {
			t.Errorf("%q → %q → %q", name, esc, back)
		}
	}
	if FieldName("givenName") != "givenName" {
		t.Error("an ordinary name changed")
	}
	doc := map[string]any{"manager": map[string]any{"$ref": "u", "value": "v"},
		"emails": []any{map[string]any{"value": "a@b", "x.y": 1}}, "plain": "$keep.values"}
	esc := escapeDocument(doc)
	if _, ok := esc["manager"].(map[string]any)["%24ref"]; !ok {
		t.Fatalf("nested key not escaped: %v", esc)
	}
	if !reflect.DeepEqual(unescapeDocument(esc), doc) {
		t.Fatalf("round trip: %v", unescapeDocument(esc))
	}
	if _, ok := doc["manager"].(map[string]any)["$ref"]; !ok {
		t.Fatal("escapeDocument changed its input")
	}
}

func FuzzFieldName(f *testing.F) {
	for _, s := range []string{"$ref", "a.b", "%", "%25", "%2", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		esc := FieldName(s)
		if strings.HasPrefix(esc, "$") || strings.ContainsAny(esc, ".\x00") {
			t.Fatalf("FieldName(%q) = %q", s, esc)
		}
		if unescapeFieldName(esc) != s {
			t.Fatalf("round trip of %q gave %q", s, unescapeFieldName(esc))
		}
	})
}
