package scim

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	scimfilter "github.com/elimity-com/scim/filter"
	"github.com/elimity-com/scim/schema"
	"github.com/scim2/filter-parser/v2"
)

// The library parses PATCH paths with filter-parser, whose grammar takes at most one and/or
// inside a value filter and no parentheses: `emails[type eq "work" and primary eq true and
// value co "@x"]` or `members[value eq "a" or value eq "b" or value eq "c"]` are refused as
// invalid paths although RFC 7644 §3.5.2 allows any valFilter there. For such a path the
// request's own filter parser (filter.go) reads the value filter, it is validated against the
// attribute's sub-attributes as the library would, and the library is handed the same path with
// a placeholder filter it can parse; the handler puts the real filter back (restoreValueFilters)
// before applying the operations. Paths the library parses go through unchanged.

// libraryValueFilter returns, for a filtered path the library cannot parse, the path with a
// placeholder filter and the real filter. f is nil when the library can parse the path (or our
// parser cannot either: the library then reports the invalid path).
func libraryValueFilter(r pathTarget, canonicalPath string) (placeholder string, f filter.Expression, err error) {
	expr, perr := parseFilter(r.filterText)
	if perr != nil {
		return "", nil, nil
	}
	if logicalNodes(expr) <= 1 && !strings.ContainsAny(r.filterText, "()") {
		return "", nil, nil // the common case (Entra's emails[type eq "work"].value): no parse twice
	}
	if _, err := filter.ParsePath([]byte(canonicalPath)); err == nil {
		return "", nil, nil
	}
	subs := r.attr.SubAttributes()
	if len(subs) == 0 || hasValuePath(expr) {
		return "", nil, patchError(scimerrors.ScimTypeInvalidFilter, "the value filter of %s is not valid here", r.attr.Name())
	}
	if err := scimfilter.NewFilterValidator(expr, schema.Schema{Attributes: subs}).Validate(); err != nil {
		return "", nil, patchError(scimerrors.ScimTypeInvalidFilter, "the value filter of %s: %v", r.attr.Name(), err)
	}
	escapeStrings(expr)
	placeholder = resolved{urn: r.urn, attr: r.attr}.path() + "[" + subs[0].Name() + " pr]"
	if r.sub != nil {
		placeholder += "." + r.sub.Name()
	}
	return placeholder, expr, nil
}

// logicalNodes counts the and/or nodes of e.
func logicalNodes(e filter.Expression) int {
	switch e := e.(type) {
	case *filter.LogicalExpression:
		return 1 + logicalNodes(e.Left) + logicalNodes(e.Right)
	case *filter.NotExpression:
		return logicalNodes(e.Expression)
	}
	return 0
}

// hasValuePath reports whether e nests a value path (attr[...]), which a value filter cannot.
func hasValuePath(e filter.Expression) bool {
	switch e := e.(type) {
	case *filter.ValuePath:
		return true
	case *filter.LogicalExpression:
		return hasValuePath(e.Left) || hasValuePath(e.Right)
	case *filter.NotExpression:
		return hasValuePath(e.Expression)
	}
	return false
}

// escapeStrings re-encodes decoded string values the way filter-parser leaves them (JSON escapes
// kept), since the PATCH applier decodes them (unescape) as it does the library's.
func escapeStrings(e filter.Expression) {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		if s, ok := e.CompareValue.(string); ok {
			b, _ := json.Marshal(s)
			e.CompareValue = string(b[1 : len(b)-1])
		}
	case *filter.LogicalExpression:
		escapeStrings(e.Left)
		escapeStrings(e.Right)
	case *filter.NotExpression:
		escapeStrings(e.Expression)
	}
}

// restoreValueFilters puts the value filters back that the library was handed placeholders
// for. The library validates operation by operation, in order, so indexes match; a mismatch
// is a programming error and refuses the request rather than apply a placeholder.
func (rq *request) restoreValueFilters(ops []scim.PatchOperation) ([]scim.PatchOperation, error) {
	if rq == nil || rq.valueFilters == nil {
		return ops, nil
	}
	if len(ops) != len(rq.valueFilters) {
		return nil, errors.New("scim: the library changed the number of PATCH operations")
	}
	out := make([]scim.PatchOperation, len(ops))
	for i, op := range ops {
		if f := rq.valueFilters[i]; f != nil {
			if op.Path == nil || op.Path.ValueExpression == nil {
				return nil, errors.New("scim: a PATCH placeholder filter went missing")
			}
			p := *op.Path
			p.ValueExpression = f
			op.Path = &p
		}
		out[i] = op
	}
	return out, nil
}
