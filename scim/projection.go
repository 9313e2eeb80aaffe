package scim

import (
	"strings"

	"github.com/elimity-com/scim/schema"
)

// projection is a response's attributes / excludedAttributes (RFC 7644 §3.9 and §3.4.2.5):
// lower-cased canonical paths ("username", "name.givenname", "<urn>:employeenumber"; an
// extension's URN alone stands for all of it). id, schemas and meta are always returned, as are
// attributes whose schema says returned "always"; "never" ones never are.
type projection struct {
	include map[string]bool
	exclude map[string]bool
}

// parseProjection reads the two parameters. Unknown names are ignored, and so is a value
// filter inside a name (the MS collection sends attributes=emails[type eq "work"], which the
// RFC does not allow; decided lenient: read as emails).
func parseProjection(rs *resourceSchema, attributes, excluded string) projection {
	return projection{include: attrList(rs, attributes), exclude: attrList(rs, excluded)}
}

func attrList(rs *resourceSchema, s string) map[string]bool {
	if rs == nil || strings.TrimSpace(s) == "" {
		return nil
	}
	out := map[string]bool{}
	for _, item := range splitAttrs(s) {
		if open := strings.IndexByte(item, '['); open >= 0 {
			rest := ""
			if close := strings.LastIndexByte(item, ']'); close > open {
				rest = item[close+1:]
			}
			item = item[:open] + rest
		}
		if e, ok := rs.extensionLoose(item); ok {
			out[strings.ToLower(e.ID)] = true
			continue
		}
		if r, ok := rs.resolveKey(item); ok {
			out[strings.ToLower(r.path())] = true
		}
	}
	return out
}

// splitAttrs splits a comma-separated list, ignoring commas inside brackets or quotes.
func splitAttrs(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == ',' && depth <= 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// empty reports whether the projection returns everything.
func (p projection) empty() bool { return p.include == nil && p.exclude == nil }

// wants reports whether the response will contain core attribute name (e.g. "members"), so
// that expensive attributes are read only when needed.
func (p projection) wants(name string) bool {
	k := strings.ToLower(name)
	if p.include != nil && !p.include[k] && !hasPrefix(p.include, k+".") {
		return false
	}
	return p.exclude == nil || !p.exclude[k]
}

func hasPrefix(set map[string]bool, prefix string) bool {
	for k := range set {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// apply returns the projected copy of a rendered resource.
func (p projection) apply(rs *resourceSchema, wire map[string]any) map[string]any {
	if p.empty() || rs == nil {
		return wire
	}
	out := map[string]any{}
	for k, v := range wire {
		switch k {
		case "id", "schemas", "meta":
			out[k] = v
			continue
		}
		if e, ok := rs.extension(k); ok {
			m, _ := v.(map[string]any)
			urn := strings.ToLower(e.ID)
			if p.exclude[urn] {
				continue
			}
			sub := map[string]any{}
			for ak, av := range m {
				a, found := e.Attributes.ContainsAttribute(ak)
				if !found {
					continue
				}
				if pv, keep := p.attr(urn+":"+strings.ToLower(a.Name()), a, av, p.include != nil && p.include[urn]); keep {
					sub[ak] = pv
				}
			}
			if len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		a, found := rs.core.Attributes.ContainsAttribute(k)
		if !found {
			continue
		}
		if pv, keep := p.attr(strings.ToLower(a.Name()), a, v, false); keep {
			out[k] = pv
		}
	}
	return out
}

// attr projects one attribute at lower-cased path; whole means an enclosing name was included.
func (p projection) attr(path string, a schema.CoreAttribute, v any, whole bool) (any, bool) {
	switch a.Returned() {
	case "always":
		return v, true
	case "never":
		return nil, false
	}
	if p.exclude != nil && p.exclude[path] {
		return nil, false
	}
	if p.include != nil && !whole && !p.include[path] {
		if !hasPrefix(p.include, path+".") {
			return nil, false
		}
		return subAttrs(v, func(sub string) bool { return p.include[path+"."+strings.ToLower(sub)] }), true
	}
	if p.exclude != nil && hasPrefix(p.exclude, path+".") {
		return subAttrs(v, func(sub string) bool { return !p.exclude[path+"."+strings.ToLower(sub)] }), true
	}
	return v, true
}

// subAttrs keeps the sub-attributes keep approves of, in a complex value or in each element of
// a multi-valued one.
func subAttrs(v any, keep func(sub string) bool) any {
	one := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, x := range m {
			if keep(k) {
				out[k] = x
			}
		}
		return out
	}
	switch x := v.(type) {
	case map[string]any:
		return one(x)
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				if pm := one(m); len(pm) > 0 {
					out = append(out, pm)
				}
				continue
			}
			out = append(out, e)
		}
		return out
	}
	return v
}
