package scim

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/schema"
	"github.com/scim2/filter-parser/v2"
)

// The PATCH applier (RFC 7644 §3.5.2): the library validates operations against the schema;
// this applies them, in order, to a resource in wire form (canonical names, extensions under
// their URN). It is pure; the caller stores the result in one write (all or nothing).
//
// Decisions beyond the RFC, each for an identity provider:
//   - replace or add of attr[filter].sub (or attr[filter]) when no element matches creates the
//     element from the filter's eq terms (Entra uses Replace for a work email that does not
//     exist yet; the RFC says noTarget, which Entra retries forever). A filter that is not a
//     conjunction of eq terms still fails with noTarget;
//   - remove of attr[filter] that matches nothing is a no-op, so one request can remove and
//     add (Okta's membership updates);
//   - remove of a multi-valued attribute with a value list removes only the listed values
//     (Entra's "Remove members" with [{"value": id}]); without a value it removes all;
//   - adding a value that is already present changes nothing (no duplicates);
//   - a primary=true value added or set clears primary on the attribute's other values.

// patchError returns a 400 SCIM error.
func patchError(t scimerrors.ScimType, format string, args ...any) error {
	return scimerrors.ScimError{Status: 400, ScimType: t, Detail: fmt.Sprintf(format, args...)}
}

// applyPatch applies ops to res (wire form, without id/meta/schemas) for resource schema rs.
func applyPatch(rs *resourceSchema, res map[string]any, ops []scim.PatchOperation) error {
	for i, op := range ops {
		if err := applyOp(rs, res, op); err != nil {
			var se scimerrors.ScimError
			if ok := asScimError(err, &se); ok {
				se.Detail = fmt.Sprintf("Operation %d: %s", i+1, se.Detail)
				return se
			}
			return err
		}
	}
	return nil
}

func asScimError(err error, se *scimerrors.ScimError) bool {
	if e, ok := err.(scimerrors.ScimError); ok {
		*se = e
		return true
	}
	return false
}

func applyOp(rs *resourceSchema, res map[string]any, op scim.PatchOperation) error {
	if op.Path == nil {
		m, ok := op.Value.(map[string]any)
		if !ok {
			return patchError(scimerrors.ScimTypeInvalidValue, "an operation without a path needs an object value")
		}
		for _, k := range sortedKeys(m) {
			if e, isExt := rs.extension(k); isExt {
				em, _ := m[k].(map[string]any)
				for _, sk := range sortedKeys(em) {
					p := filter.Path{AttributePath: filter.AttributePath{URIPrefix: &e.ID, AttributeName: sk}}
					if err := applyPath(rs, res, op.Op, p, em[sk]); err != nil {
						return err
					}
				}
				continue
			}
			p, err := keyPath(k)
			if err != nil {
				return patchError(scimerrors.ScimTypeInvalidPath, "%q is not an attribute path", k)
			}
			if err := applyPath(rs, res, op.Op, p, m[k]); err != nil {
				return err
			}
		}
		return nil
	}
	return applyPath(rs, res, op.Op, *op.Path, op.Value)
}

// applyPath applies one operation on one path.
func applyPath(rs *resourceSchema, res map[string]any, op string, p filter.Path, value any) error {
	subName := p.AttributePath.SubAttributeName()
	if p.SubAttribute != nil {
		subName = *p.SubAttribute
	}
	r, ok := rs.resolve(p.AttributePath.URI(), p.AttributePath.AttributeName, subName)
	if !ok {
		return patchError(scimerrors.ScimTypeInvalidPath, "%s names no attribute", p)
	}
	if isReadOnly(r.attr) || r.sub != nil && isReadOnly(*r.sub) {
		return patchError(scimerrors.ScimTypeMutability, "%s is read-only", r.path())
	}
	container := res
	if r.urn != "" {
		ext, _ := res[r.urn].(map[string]any)
		if ext == nil {
			if op == scim.PatchOperationRemove {
				return nil
			}
			ext = map[string]any{}
			res[r.urn] = ext
		}
		container = ext
		defer func() {
			if len(ext) == 0 {
				delete(res, r.urn)
			}
		}()
	}
	name := r.attr.Name()
	defer func() { prune(container, name) }()
	if p.ValueExpression != nil {
		return applyFiltered(r, container, op, p.ValueExpression, value)
	}
	switch {
	case r.sub == nil && !r.attr.MultiValued():
		return applySingle(r.attr, container, op, value)
	case r.sub == nil:
		return applyMulti(r.attr, container, op, value)
	case !r.attr.MultiValued():
		m, _ := container[name].(map[string]any)
		if m == nil {
			if op == scim.PatchOperationRemove {
				return nil
			}
			m = map[string]any{}
			container[name] = m
		}
		return applySingle(*r.sub, m, op, value)
	}
	// name.sub on a multi-valued attribute without a filter: every element.
	list, _ := container[name].([]any)
	if len(list) == 0 && op != scim.PatchOperationRemove {
		container[name] = []any{map[string]any{r.sub.Name(): value}}
		return nil
	}
	for _, el := range list {
		if m, ok := el.(map[string]any); ok {
			if err := applySingle(*r.sub, m, op, value); err != nil {
				return err
			}
		}
	}
	return nil
}

// applySingle applies an operation to a single-valued attribute a of container.
func applySingle(a schema.CoreAttribute, container map[string]any, op string, value any) error {
	name := a.Name()
	switch op {
	case scim.PatchOperationRemove:
		delete(container, name)
	case scim.PatchOperationAdd, scim.PatchOperationReplace:
		if a.AttributeType() == "complex" {
			// RFC 7644 §3.5.2.1/3: sub-attributes given replace, the others stay.
			v, ok := value.(map[string]any)
			if !ok {
				return patchError(scimerrors.ScimTypeInvalidValue, "%s takes an object", name)
			}
			cur, _ := container[name].(map[string]any)
			if cur == nil || name == "manager" {
				cur = map[string]any{}
			}
			for k, x := range v {
				cur[k] = x
			}
			container[name] = cur
			return nil
		}
		container[name] = value
	default:
		return patchError(scimerrors.ScimTypeInvalidValue, "unknown op %q", op)
	}
	return nil
}

// applyMulti applies an operation to a whole multi-valued attribute.
func applyMulti(a schema.CoreAttribute, container map[string]any, op string, value any) error {
	name := a.Name()
	cur, _ := container[name].([]any)
	vals, _ := value.([]any)
	if value != nil && vals == nil {
		vals = []any{value}
	}
	switch op {
	case scim.PatchOperationRemove:
		if value == nil {
			delete(container, name)
			return nil
		}
		// Entra: remove the listed values only.
		var keep []any
		for _, el := range cur {
			if !containsValue(vals, el) {
				keep = append(keep, el)
			}
		}
		container[name] = keep
	case scim.PatchOperationAdd:
		for _, v := range vals {
			if !containsValue(cur, v) {
				cur = append(cur, v)
			}
		}
		container[name] = primaryLast(cur, vals)
	case scim.PatchOperationReplace:
		container[name] = primaryLast(append([]any(nil), vals...), vals)
	default:
		return patchError(scimerrors.ScimTypeInvalidValue, "unknown op %q", op)
	}
	return nil
}

// containsValue reports whether list holds v: the same "value" sub-attribute for complex
// values that have one, else the same value.
func containsValue(list []any, v any) bool {
	for _, el := range list {
		if sameValue(el, v) {
			return true
		}
	}
	return false
}

func sameValue(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		av, ahas := am["value"]
		bv, bhas := bm["value"]
		if ahas && bhas {
			return reflect.DeepEqual(av, bv) && (am["type"] == nil || bm["type"] == nil || am["type"] == bm["type"])
		}
	}
	return reflect.DeepEqual(a, b)
}

// primaryLast keeps primary=true only on the last of the just-set values that claim it
// (RFC 7643 §2.4: at most one primary).
func primaryLast(list, touched []any) []any {
	var winner map[string]any
	for _, v := range touched {
		if m, ok := v.(map[string]any); ok && m["primary"] == true {
			winner = m
		}
	}
	if winner == nil {
		return list
	}
	for _, el := range list {
		if m, ok := el.(map[string]any); ok && m["primary"] == true && !sameElement(m, winner) {
			delete(m, "primary")
		}
	}
	return list
}

func sameElement(a, b map[string]any) bool { return reflect.DeepEqual(a, b) }

// applyFiltered applies an operation to the elements of a multi-valued attribute selected by a
// value filter (attr[filter] or attr[filter].sub).
func applyFiltered(r resolved, container map[string]any, op string, f filter.Expression, value any) error {
	a := r.attr
	if !a.MultiValued() || a.AttributeType() != "complex" {
		return patchError(scimerrors.ScimTypeInvalidPath, "%s is not a multi-valued complex attribute", a.Name())
	}
	match, err := elementMatcher(a, f)
	if err != nil {
		return err
	}
	list, _ := container[a.Name()].([]any)
	var hits []map[string]any
	var keep []any
	for _, el := range list {
		m, ok := el.(map[string]any)
		if ok && match(m) {
			hits = append(hits, m)
			if op == scim.PatchOperationRemove && r.sub == nil {
				continue
			}
		}
		keep = append(keep, el)
	}
	switch op {
	case scim.PatchOperationRemove:
		if r.sub != nil {
			for _, m := range hits {
				delete(m, r.sub.Name())
			}
		}
		container[a.Name()] = keep
		return nil
	case scim.PatchOperationAdd, scim.PatchOperationReplace:
	default:
		return patchError(scimerrors.ScimTypeInvalidValue, "unknown op %q", op)
	}
	if len(hits) == 0 {
		// Lenient: create the element the filter describes.
		el, ok := elementFromFilter(f)
		if !ok {
			return patchError(scimerrors.ScimTypeNoTarget, "%s[%v] matches no value", a.Name(), f)
		}
		list = append(list, el)
		container[a.Name()] = list
		hits = []map[string]any{el}
	}
	for _, m := range hits {
		if r.sub != nil {
			if r.sub.AttributeType() == "complex" {
				return patchError(scimerrors.ScimTypeInvalidPath, "%s.%s is not simple", a.Name(), r.sub.Name())
			}
			m[r.sub.Name()] = value
			continue
		}
		v, ok := value.(map[string]any)
		if !ok {
			if l, isList := value.([]any); isList && len(l) == 1 {
				v, ok = l[0].(map[string]any)
			}
		}
		if !ok {
			return patchError(scimerrors.ScimTypeInvalidValue, "%s[...] takes an object", a.Name())
		}
		for k, x := range v {
			m[k] = x
		}
	}
	if r.sub != nil && r.sub.Name() == "primary" && value == true || r.sub == nil {
		touched := make([]any, len(hits))
		for i, h := range hits {
			touched[i] = h
		}
		container[a.Name()] = primaryLast(container[a.Name()].([]any), touched)
	}
	return nil
}

// elementFromFilter builds the element described by a conjunction of eq terms.
func elementFromFilter(f filter.Expression) (map[string]any, bool) {
	el := map[string]any{}
	var walk func(filter.Expression) bool
	walk = func(e filter.Expression) bool {
		switch e := e.(type) {
		case *filter.AttributeExpression:
			if e.Operator != filter.EQ || e.AttributePath.SubAttribute != nil || e.CompareValue == nil {
				return false
			}
			v := e.CompareValue
			if s, ok := v.(string); ok {
				v = unescape(s)
			}
			el[e.AttributePath.AttributeName] = v
			return true
		case *filter.LogicalExpression:
			return e.Operator == filter.AND && walk(e.Left) && walk(e.Right)
		}
		return false
	}
	return el, walk(f) && len(el) > 0
}

// elementMatcher compiles a value filter into a predicate on one element of attribute a.
// Names compare case-insensitively; string values by the sub-attribute's caseExact (member and
// group ids are case-exact: RFC 7643 §3.1 makes "id" case-exact, and members.value holds ids).
func elementMatcher(a schema.CoreAttribute, f filter.Expression) (func(map[string]any) bool, error) {
	switch e := f.(type) {
	case *filter.AttributeExpression:
		sa, ok := a.SubAttributes().ContainsAttribute(e.AttributePath.AttributeName)
		if !ok || e.AttributePath.SubAttribute != nil {
			return nil, patchError(scimerrors.ScimTypeInvalidFilter, "%s has no sub-attribute %q", a.Name(), e.AttributePath.AttributeName)
		}
		caseExact := sa.CaseExact() || sa.Name() == "value" && (a.Name() == "members" || a.Name() == "groups")
		cmp, err := comparator(sa, e.Operator, e.CompareValue, caseExact)
		if err != nil {
			return nil, err
		}
		name := sa.Name()
		return func(m map[string]any) bool {
			v, present := lookupFold(m, name)
			if e.Operator == filter.PR {
				return present && !isEmpty(v)
			}
			if !present || v == nil {
				return e.Operator == filter.NE && e.CompareValue != nil || e.Operator == filter.EQ && e.CompareValue == nil
			}
			return cmp(v)
		}, nil
	case *filter.LogicalExpression:
		l, err := elementMatcher(a, e.Left)
		if err != nil {
			return nil, err
		}
		r, err := elementMatcher(a, e.Right)
		if err != nil {
			return nil, err
		}
		if e.Operator == filter.OR {
			return func(m map[string]any) bool { return l(m) || r(m) }, nil
		}
		return func(m map[string]any) bool { return l(m) && r(m) }, nil
	case *filter.NotExpression:
		inner, err := elementMatcher(a, e.Expression)
		if err != nil {
			return nil, err
		}
		return func(m map[string]any) bool { return !inner(m) }, nil
	}
	return nil, patchError(scimerrors.ScimTypeInvalidFilter, "unsupported value filter")
}

func lookupFold(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// comparator compares an element's value with a filter's comparison value.
func comparator(sa schema.CoreAttribute, op filter.CompareOperator, want any, caseExact bool) (func(any) bool, error) {
	if op == filter.PR {
		return func(any) bool { return true }, nil
	}
	if s, ok := want.(string); ok {
		want = unescape(s)
	}
	switch sa.AttributeType() {
	case "boolean":
		wb, ok := want.(bool)
		if s, isStr := want.(string); isStr {
			wb, ok = strings.EqualFold(s, "true"), strings.EqualFold(s, "true") || strings.EqualFold(s, "false")
		}
		if !ok || op != filter.EQ && op != filter.NE {
			return nil, patchError(scimerrors.ScimTypeInvalidFilter, "%s is boolean", sa.Name())
		}
		return func(v any) bool { return (v == wb) == (op == filter.EQ) }, nil
	case "integer", "decimal":
		wn, ok := number(want)
		if !ok {
			return nil, patchError(scimerrors.ScimTypeInvalidFilter, "%s is a number", sa.Name())
		}
		return func(v any) bool {
			n, ok := number(v)
			if !ok {
				return false
			}
			return ordered(op, compareFloat(n, wn))
		}, nil
	}
	ws, ok := want.(string)
	if !ok {
		return nil, patchError(scimerrors.ScimTypeInvalidFilter, "%s compares with a string", sa.Name())
	}
	var re *regexp.Regexp
	var pattern string
	if !caseExact {
		prefix := "(?i)"
		switch op {
		case filter.EQ, filter.NE:
			return func(v any) bool {
				s, ok := v.(string)
				return ok && strings.EqualFold(s, ws) == (op == filter.EQ)
			}, nil
		case filter.CO:
			pattern = prefix + regexp.QuoteMeta(ws)
		case filter.SW:
			pattern = prefix + "^" + regexp.QuoteMeta(ws)
		case filter.EW:
			pattern = prefix + regexp.QuoteMeta(ws) + `\z`
		}
	}
	if pattern != "" {
		var err error
		if re, err = regexp.Compile(pattern); err != nil {
			return nil, patchError(scimerrors.ScimTypeInvalidFilter, "%s: the value cannot be compared", sa.Name())
		}
	}
	return func(v any) bool {
		s, ok := v.(string)
		if !ok {
			return false
		}
		if re != nil {
			return re.MatchString(s) != (op == filter.NE)
		}
		switch op {
		case filter.EQ:
			return s == ws
		case filter.NE:
			return s != ws
		case filter.CO:
			return strings.Contains(s, ws)
		case filter.SW:
			return strings.HasPrefix(s, ws)
		case filter.EW:
			return strings.HasSuffix(s, ws)
		}
		return ordered(op, strings.Compare(s, ws))
	}, nil
}

func ordered(op filter.CompareOperator, c int) bool {
	switch op {
	case filter.EQ:
		return c == 0
	case filter.NE:
		return c != 0
	case filter.GT:
		return c > 0
	case filter.GE:
		return c >= 0
	case filter.LT:
		return c < 0
	case filter.LE:
		return c <= 0
	}
	return false
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// unescape decodes the JSON escapes that filter-parser leaves in string values.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	if u, err := strconv.Unquote(`"` + s + `"`); err == nil {
		return u
	}
	var out string
	if err := json.Unmarshal([]byte(`"`+s+`"`), &out); err == nil {
		return out
	}
	return s
}

// prune removes an attribute left unassigned: nil, "", an empty list or object, and empty
// elements of a list.
func prune(container map[string]any, name string) {
	v, ok := container[name]
	if !ok {
		return
	}
	switch x := v.(type) {
	case []any:
		out := x[:0]
		for _, el := range x {
			if m, isMap := el.(map[string]any); isMap {
				for k := range m {
					prune(m, k)
				}
			}
			if !isEmpty(el) {
				out = append(out, el)
			}
		}
		if len(out) == 0 {
			delete(container, name)
			return
		}
		container[name] = out
	case map[string]any:
		for k := range x {
			prune(x, k)
		}
		if len(x) == 0 {
			delete(container, name)
		}
	default:
		if isEmpty(v) {
			delete(container, name)
		}
	}
}
