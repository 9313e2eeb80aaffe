package scim

import (
	"encoding/json"
	"sort"
	"strings"

	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/schema"
	"github.com/scim2/filter-parser/v2"
)

// Request normalisation: identity providers send bodies that are legal JSON but not what the
// library's schema validation accepts, or that mean something other than what it would read.
// Before a body reaches the library it is rewritten into the canonical form, by pure
// functions of the body and the resource schema:
//
//   - attribute names in any letter case → canonical names (RFC 7643 §2.1);
//   - extension attributes given unqualified at the top level ("department", Entra docs
//     example 2), URN-qualified at the top level, or under a misspelled extension URN
//     ("…:enterprise:2.0User") → under the extension's URN;
//   - unknown attributes and read-only ones (id, meta, groups) → dropped (RFC 7644 §3.5.1;
//     decided lenient for unknown ones, as the library does);
//   - null, "" and [] → unassigned (RFC 7643 §2.5); in PATCH, add/replace of null or "" is a
//     remove of that path;
//   - "True"/"False" strings for boolean attributes → booleans (Entra without aadOptscim062020);
//   - manager as a bare string, an object or a one-element array → {"value": id}; an empty
//     value removes it;
//   - members given as bare strings → {"value": s}; "displayName" in a member → "display";
//   - PATCH op names in any case, and the envelope's keys in any case.

// normError is a body the normaliser refuses.
func normError(scimType scimerrors.ScimType, detail string) error {
	return scimerrors.ScimError{Status: 400, ScimType: scimType, Detail: detail}
}

// sameURN compares schema URNs case-insensitively, tolerating a missing or doubled colon (the
// Entra documentation's "…:enterprise:2.0User").
func sameURN(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	strip := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, ":", "")) }
	return strip(a) == strip(b)
}

// normalizeResource rewrites a POST or PUT body for resource schema rs.
func normalizeResource(body map[string]any, rs *resourceSchema) (map[string]any, error) {
	out := map[string]any{}
	exts := map[string]map[string]any{}
	var hasCore bool
	set := func(dst map[string]any, key string, v any) error {
		if _, dup := dst[key]; dup {
			return normError(scimerrors.ScimTypeInvalidSyntax, "Attribute "+key+" is given more than once.")
		}
		dst[key] = v
		return nil
	}
	ext := func(urn string) map[string]any {
		if exts[urn] == nil {
			exts[urn] = map[string]any{}
		}
		return exts[urn]
	}
	for _, k := range sortedKeys(body) {
		v := body[k]
		if strings.EqualFold(k, "schemas") {
			list, _ := v.([]any)
			for _, u := range list {
				if s, ok := u.(string); ok && strings.EqualFold(s, rs.core.ID) {
					hasCore = true
				}
			}
			continue
		}
		if isEmpty(v) {
			continue
		}
		// An extension's container.
		if e, ok := rs.extensionLoose(k); ok {
			m, isMap := v.(map[string]any)
			if !isMap {
				return nil, normError(scimerrors.ScimTypeInvalidSyntax, "The value of "+e.ID+" must be an object.")
			}
			dst := ext(e.ID)
			for _, sk := range sortedKeys(m) {
				a, found := e.Attributes.ContainsAttribute(sk)
				if !found || isReadOnly(a) {
					continue
				}
				nv, keep, err := normalizeValue(a, m[sk])
				if err != nil {
					return nil, err
				}
				if keep {
					if err := set(dst, a.Name(), nv); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		r, ok := rs.resolveKey(k)
		if !ok || isReadOnly(r.attr) || r.sub != nil {
			continue // unknown or read-only: ignored
		}
		nv, keep, err := normalizeValue(r.attr, v)
		if err != nil {
			return nil, err
		}
		if !keep {
			continue
		}
		dst := out
		if r.urn != "" {
			dst = ext(r.urn)
		}
		if err := set(dst, r.attr.Name(), nv); err != nil {
			return nil, err
		}
	}
	if !hasCore {
		return nil, normError(scimerrors.ScimTypeInvalidSyntax, "schemas must include "+rs.core.ID+".")
	}
	schemas := []any{rs.core.ID}
	for _, e := range rs.extensions {
		if m := exts[e.ID]; len(m) > 0 {
			out[e.ID] = m
			schemas = append(schemas, e.ID)
		}
	}
	out["schemas"] = schemas
	return out, nil
}

// extensionLoose finds the extension whose URN k is (tolerating misspellings, see sameURN).
func (s *resourceSchema) extensionLoose(k string) (schema.Schema, bool) {
	if !strings.HasPrefix(strings.ToLower(k), "urn:") {
		return schema.Schema{}, false
	}
	for _, e := range s.extensions {
		if sameURN(e.ID, k) {
			return e, true
		}
	}
	return schema.Schema{}, false
}

// resolveKey resolves an attribute key of a body or of a path-less PATCH value: a name, a
// dotted "name.sub", or either qualified by a schema URN.
func (s *resourceSchema) resolveKey(k string) (resolved, bool) {
	uri, rest := "", k
	if i := strings.LastIndexByte(k, ':'); i >= 0 {
		uri, rest = k[:i], k[i+1:]
		if !strings.EqualFold(uri, s.core.ID) {
			e, ok := s.extensionLoose(uri)
			if !ok {
				return resolved{}, false
			}
			uri = e.ID
		}
	}
	name, sub, _ := strings.Cut(rest, ".")
	return s.resolve(uri, name, sub)
}

func isReadOnly(a schema.CoreAttribute) bool { return a.Mutability() == "readOnly" }

// isEmpty is the RFC 7643 §2.5 unassigned value: null, "" or an empty array/object.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// normalizeValue rewrites the value of attribute a; keep is false for an unassigned value.
func normalizeValue(a schema.CoreAttribute, v any) (any, bool, error) {
	if isEmpty(v) {
		return nil, false, nil
	}
	if a.Name() == "manager" {
		return normalizeManager(v)
	}
	if a.MultiValued() {
		list, ok := v.([]any)
		if !ok {
			list = []any{v} // a single value for a multi-valued attribute
		}
		out := make([]any, 0, len(list))
		for _, el := range list {
			nv, keep, err := normalizeSingle(a, el)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out = append(out, nv)
			}
		}
		return out, len(out) > 0, nil
	}
	return normalizeSingle(a, v)
}

// normalizeSingle rewrites one value (an element of a multi-valued attribute, or the value of
// a single-valued one).
func normalizeSingle(a schema.CoreAttribute, v any) (any, bool, error) {
	if isEmpty(v) {
		return nil, false, nil
	}
	if a.AttributeType() != "complex" {
		return coerce(a, v), true, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		if s, isStr := v.(string); isStr && a.Name() == "members" {
			return map[string]any{"value": s}, true, nil // a bare member id
		}
		return v, true, nil // the library reports the type error
	}
	out := map[string]any{}
	for _, k := range sortedKeys(m) {
		name := k
		if a.Name() == "members" && strings.EqualFold(k, "displayName") {
			name = "display" // MS collection's member "displayName"
			if _, both := m["display"]; both {
				continue
			}
		}
		sa, found := a.SubAttributes().ContainsAttribute(name)
		if !found || isEmpty(m[k]) || isReadOnly(sa) {
			continue
		}
		if _, dup := out[sa.Name()]; dup {
			return nil, false, normError(scimerrors.ScimTypeInvalidSyntax, "Sub-attribute "+a.Name()+"."+sa.Name()+" is given more than once.")
		}
		out[sa.Name()] = coerce(sa, m[k])
	}
	return out, len(out) > 0, nil
}

// coerce turns "True"/"False" strings into booleans for boolean attributes.
func coerce(a schema.CoreAttribute, v any) any {
	if a.AttributeType() == "boolean" {
		if s, ok := v.(string); ok {
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "true":
				return true
			case "false":
				return false
			}
		}
	}
	return v
}

// normalizeManager accepts the manager shapes Entra sends and returns {"value": id}; keep is
// false when it names no one (which clears the manager).
func normalizeManager(v any) (any, bool, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil, false, nil
		}
		return map[string]any{"value": x}, true, nil
	case []any:
		if len(x) == 0 {
			return nil, false, nil
		}
		if len(x) > 1 {
			return nil, false, normError(scimerrors.ScimTypeInvalidValue, "manager is single-valued.")
		}
		return normalizeManager(x[0])
	case map[string]any:
		for k, val := range x {
			if strings.EqualFold(k, "value") {
				return normalizeManager(val)
			}
		}
		return nil, false, nil
	case nil:
		return nil, false, nil
	}
	return nil, false, normError(scimerrors.ScimTypeInvalidValue, "manager must be a user id or {\"value\": id}.")
}

// patchOp is one PATCH operation as JSON.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
	// filter is the path's value filter when the library cannot parse it (see
	// libraryValueFilter): Path then carries a placeholder filter the library can.
	filter filter.Expression
}

// normalizePatch rewrites a PATCH body for resource schema rs. It returns the operations to
// hand to the library; it may return none (every operation only touched ignored attributes).
func normalizePatch(body map[string]any, rs *resourceSchema) ([]patchOp, error) {
	var ops []any
	var hasSchema bool
	for k, v := range body {
		switch strings.ToLower(k) {
		case "schemas":
			list, _ := v.([]any)
			for _, u := range list {
				if s, ok := u.(string); ok && strings.EqualFold(s, PatchOpSchema) {
					hasSchema = true
				}
			}
		case "operations":
			list, ok := v.([]any)
			if !ok {
				return nil, normError(scimerrors.ScimTypeInvalidSyntax, "Operations must be an array.")
			}
			ops = list
		}
	}
	if !hasSchema {
		return nil, normError(scimerrors.ScimTypeInvalidSyntax, "schemas must be [\""+PatchOpSchema+"\"].")
	}
	if len(ops) == 0 {
		return nil, normError(scimerrors.ScimTypeInvalidSyntax, "Operations must hold at least one operation.")
	}
	var out []patchOp
	for _, raw := range ops {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, normError(scimerrors.ScimTypeInvalidSyntax, "Each operation must be an object.")
		}
		var op patchOp
		var hasValue bool
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				s, _ := v.(string)
				op.Op = strings.ToLower(strings.TrimSpace(s))
			case "path":
				s, _ := v.(string)
				op.Path = strings.TrimSpace(s)
			case "value":
				op.Value, hasValue = v, true
			}
		}
		switch op.Op {
		case "add", "replace", "remove":
		default:
			return nil, normError(scimerrors.ScimTypeInvalidValue, "op must be add, replace or remove.")
		}
		if op.Path == "" {
			if op.Op == "remove" {
				return nil, normError(scimerrors.ScimTypeNoTarget, "remove needs a path.")
			}
			more, err := normalizePathless(op, rs)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
			continue
		}
		r, canonicalPath, ok := rs.resolvePath(op.Path)
		if !ok {
			out = append(out, op) // the library reports the invalid path
			continue
		}
		op.Path = canonicalPath
		if isReadOnly(r.target()) || isReadOnly(r.attr) {
			return nil, normError(scimerrors.ScimTypeMutability, r.path()+" is read-only.")
		}
		if r.filtered {
			placeholder, f, err := libraryValueFilter(r, canonicalPath)
			if err != nil {
				return nil, err
			}
			if f != nil {
				op.Path, op.filter = placeholder, f
				canonicalPath = placeholder
			}
		}
		if !hasValue || op.Op == "remove" && op.Value == nil {
			op.Value = nil
			out = append(out, op)
			continue
		}
		nv, keep, err := normalizePathValue(r, op)
		if err != nil {
			return nil, err
		}
		if !keep {
			if op.Op == "remove" {
				continue // a value list naming nothing removes nothing (not everything)
			} else {
				op = patchOp{Op: "remove", Path: canonicalPath, filter: op.filter} // null or "": unassign
			}
		} else {
			op.Value = nv
		}
		out = append(out, op)
	}
	return out, nil
}

// normalizePathValue rewrites the value of an operation with a path resolved to r.
func normalizePathValue(r pathTarget, op patchOp) (any, bool, error) {
	a := r.attr
	switch {
	case r.sub != nil:
		return normalizeSingle(*r.sub, op.Value)
	case r.filtered:
		// attr[filter]: the value is one element (or a list of them).
		if list, ok := op.Value.([]any); ok {
			return normalizeValue(a, list)
		}
		return normalizeSingle(a, op.Value)
	case a.Name() == "manager":
		return normalizeManager(op.Value)
	}
	return normalizeValue(a, op.Value)
}

// pathTarget is a PATCH path resolved against the schema.
type pathTarget struct {
	resolved
	filtered   bool   // the path has a value filter: attr[...]
	filterText string // the value filter as sent, without the brackets
}

// resolvePath resolves a PATCH path and rewrites its attribute part to the canonical spelling
// (an unqualified extension attribute gets its URN). ok is false for a path that does not
// parse or names no known attribute.
func (s *resourceSchema) resolvePath(p string) (pathTarget, string, bool) {
	// A light split, not filter.ParsePath (which costs ~0.3 ms a path): the library parses and
	// validates the path again anyway.
	attrPart, filterPart, subPart := p, "", ""
	if open := strings.IndexByte(p, '['); open >= 0 {
		close := strings.LastIndexByte(p, ']')
		if close < open {
			return pathTarget{}, "", false
		}
		attrPart, filterPart, subPart = p[:open], p[open:close+1], p[close+1:]
		if subPart != "" {
			if subPart[0] != '.' || !isAttrName(subPart[1:]) {
				return pathTarget{}, "", false
			}
			subPart = subPart[1:]
		}
	}
	ap, err := parseAttrPath(attrPart)
	if err != nil || filterPart != "" && ap.SubAttribute != nil {
		return pathTarget{}, "", false
	}
	uri := ap.URI()
	if uri != "" && !strings.EqualFold(uri, s.core.ID) {
		e, ok := s.extensionLoose(uri)
		if !ok {
			return pathTarget{}, "", false
		}
		uri = e.ID
	}
	subName := ap.SubAttributeName()
	if subPart != "" {
		subName = subPart
	}
	r, ok := s.resolve(uri, ap.AttributeName, subName)
	if !ok {
		return pathTarget{}, "", false
	}
	t := pathTarget{resolved: r, filtered: filterPart != ""}
	if t.filtered {
		t.filterText = filterPart[1 : len(filterPart)-1]
	}
	if !t.filtered {
		return t, r.path(), true
	}
	// Keep the value filter as sent; canonicalise the attribute and the trailing sub-attribute.
	out := resolved{urn: r.urn, attr: r.attr}.path() + filterPart
	if r.sub != nil {
		out += "." + r.sub.Name()
	}
	return t, out, true
}

// keyPath reads a path-less PATCH value's key (an attribute path without value filter) as a
// filter.Path.
func keyPath(k string) (filter.Path, error) {
	ap, err := parseAttrPath(k)
	if err != nil {
		return filter.Path{}, err
	}
	return filter.Path{AttributePath: ap}, nil
}

// normalizePathless rewrites a path-less add/replace: its value's keys are attribute paths
// (Entra sends "name.givenName" and "urn:…:User:employeeNumber" as keys). Keys naming
// unknown or read-only attributes are dropped; null or "" values become remove operations.
func normalizePathless(op patchOp, rs *resourceSchema) ([]patchOp, error) {
	m, ok := op.Value.(map[string]any)
	if !ok {
		return nil, normError(scimerrors.ScimTypeInvalidValue, "An operation without a path needs an object value.")
	}
	value := map[string]any{}
	var removes []patchOp
	put := func(r resolved, v any) error {
		path := r.path()
		if isEmpty(v) {
			removes = append(removes, patchOp{Op: "remove", Path: path})
			return nil
		}
		var nv any
		var keep bool
		var err error
		if r.sub != nil {
			nv, keep, err = normalizeSingle(*r.sub, v)
		} else {
			nv, keep, err = normalizeValue(r.attr, v)
		}
		if err != nil {
			return err
		}
		if !keep {
			removes = append(removes, patchOp{Op: "remove", Path: path})
			return nil
		}
		if _, dup := value[path]; dup {
			return normError(scimerrors.ScimTypeInvalidSyntax, "Attribute "+path+" is given more than once.")
		}
		value[path] = nv
		return nil
	}
	for _, k := range sortedKeys(m) {
		v := m[k]
		if strings.EqualFold(k, "schemas") {
			continue
		}
		if e, ok := rs.extensionLoose(k); ok {
			em, isMap := v.(map[string]any)
			if !isMap {
				if isEmpty(v) {
					continue
				}
				return nil, normError(scimerrors.ScimTypeInvalidValue, "The value of "+e.ID+" must be an object.")
			}
			for _, sk := range sortedKeys(em) {
				name, sub, _ := strings.Cut(sk, ".")
				r, found := rs.resolve(e.ID, name, sub)
				if !found || isReadOnly(r.attr) {
					continue
				}
				if err := put(r, em[sk]); err != nil {
					return nil, err
				}
			}
			continue
		}
		r, found := rs.resolveKey(k)
		if !found || isReadOnly(r.attr) || r.sub != nil && isReadOnly(*r.sub) {
			continue
		}
		if err := put(r, v); err != nil {
			return nil, err
		}
	}
	var out []patchOp
	if len(value) > 0 {
		out = append(out, patchOp{Op: op.Op, Value: value})
	}
	return append(out, removes...), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// canonicalJSON marshals a normalised body for the library.
func canonicalJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
