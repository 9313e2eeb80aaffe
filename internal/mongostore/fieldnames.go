package mongostore

import "strings"

// Field names chosen by clients (SCIM attribute names such as the schema's own "$ref",
// extension keys, anything a future schema allows) are stored escaped, so that no request
// value is ever a MongoDB field name that starts with '$' (an operator) or contains '.' (a
// path) or NUL (a C-string end). The escape is reversible and leaves ordinary names as they
// are: '%' → "%25", '$' → "%24", '.' → "%2E", NUL → "%00".

// FieldName escapes one client-chosen name for use as a stored field name (and in a query
// path that addresses it).
func FieldName(name string) string {
	if !strings.ContainsAny(name, "%$.\x00") {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '%':
			b.WriteString("%25")
		case '$':
			b.WriteString("%24")
		case '.':
			b.WriteString("%2E")
		case 0:
			b.WriteString("%00")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeFieldName reverses FieldName.
func unescapeFieldName(name string) string {
	if !strings.Contains(name, "%") {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] == '%' && i+2 < len(name) {
			switch name[i+1 : i+3] {
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			case "24":
				b.WriteByte('$')
				i += 2
				continue
			case "2E":
				b.WriteByte('.')
				i += 2
				continue
			case "00":
				b.WriteByte(0)
				i += 2
				continue
			}
		}
		b.WriteByte(name[i])
	}
	return b.String()
}

// escapeDocument returns a copy of a client-shaped document (a SCIM resource) with every
// field name escaped at any depth. Values are shared, not copied.
func escapeDocument(m map[string]any) map[string]any {
	return mapKeys(m, FieldName)
}

// unescapeDocument reverses escapeDocument in place of a decoded document.
func unescapeDocument(m map[string]any) map[string]any {
	return mapKeys(m, unescapeFieldName)
}

func mapKeys(m map[string]any, f func(string) string) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[f(k)] = mapValueKeys(v, f)
	}
	return out
}

func mapValueKeys(v any, f func(string) string) any {
	switch x := v.(type) {
	case map[string]any:
		return mapKeys(x, f)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = mapValueKeys(e, f)
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = mapKeys(e, f)
		}
		return out
	}
	return v
}
