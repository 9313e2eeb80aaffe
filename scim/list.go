package scim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/scim2/filter-parser/v2"

	"github.com/offboard/offboard/identity"
)

// listQuery is a validated list request (RFC 7644 §3.4.2).
type listQuery struct {
	filter     filter.Expression // canonical names
	sortBy     string            // canonical attribute path, "" for the default order
	descending bool
	startIndex int // ≥ 1
	count      int // 0 ≤ count ≤ MaxResults
}

func (q listQuery) identity() identity.ListQuery {
	return identity.ListQuery{Filter: q.filter, SortBy: q.sortBy, Descending: q.descending, StartIndex: q.startIndex, Count: q.count}
}

// listResponse is RFC 7644 §3.4.2's ListResponse; Resources is always present.
type listResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

// searchRequest is the body of POST /.search (RFC 7644 §3.4.3). attributes and
// excludedAttributes may be arrays or comma-separated strings; numbers may be strings.
type searchParams struct {
	filter, sortBy, sortOrder, attributes, excluded string
	startIndex, count                               string
}

func paramsFromQuery(q map[string][]string) searchParams {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return searchParams{
		filter: get("filter"), sortBy: get("sortBy"), sortOrder: get("sortOrder"),
		attributes: get("attributes"), excluded: get("excludedAttributes"),
		startIndex: get("startIndex"), count: get("count"),
	}
}

// list serves GET /<Resources> (and, with sp from a body, POST /<Resources>/.search).
func (h *Handler) list(w http.ResponseWriter, r *http.Request, rq *request, kind resourceKind, sp *searchParams) {
	if sp == nil {
		p := paramsFromQuery(rq.query)
		sp = &p
	}
	q, err := h.parseList(rq, *sp)
	if err != nil {
		rq.fail(w, err)
		return
	}
	rq.proj = parseProjection(rq.rs, sp.attributes, sp.excluded)
	page, total, err := kind.query(r.Context(), rq, q)
	if err != nil {
		if errors.Is(err, identity.ErrInvalid) {
			err = &filterError{msg: publicDetail(err)}
		}
		rq.fail(w, err)
		return
	}
	resp := listResponse{
		Schemas: []string{ListSchema}, TotalResults: total, StartIndex: q.startIndex,
		ItemsPerPage: len(page), Resources: make([]any, 0, len(page)),
	}
	for _, wire := range page {
		resp.Resources = append(resp.Resources, rq.proj.apply(rq.rs, wire))
	}
	writeJSON(w, http.StatusOK, resp)
}

// search serves POST /<Resources>/.search.
func (h *Handler) search(w http.ResponseWriter, r *http.Request, rq *request, kind resourceKind) {
	body, err := rq.readJSON(r)
	if err != nil {
		rq.fail(w, err)
		return
	}
	var sp searchParams
	for k, v := range body {
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		case []any:
			parts := make([]string, 0, len(x))
			for _, e := range x {
				if es, ok := e.(string); ok {
					parts = append(parts, es)
				}
			}
			s = strings.Join(parts, ",")
		case nil:
		default:
			rq.fail(w, scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidSyntax, Detail: k + " has the wrong type."})
			return
		}
		switch strings.ToLower(k) {
		case "filter":
			sp.filter = s
		case "sortby":
			sp.sortBy = s
		case "sortorder":
			sp.sortOrder = s
		case "attributes":
			sp.attributes = s
		case "excludedattributes":
			sp.excluded = s
		case "startindex":
			sp.startIndex = s
		case "count":
			sp.count = s
		}
	}
	h.list(w, r, rq, kind, &sp)
}

// parseList validates list parameters (RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a
// negative count is 0, counts above MaxResults are capped).
func (h *Handler) parseList(rq *request, sp searchParams) (listQuery, error) {
	q := listQuery{startIndex: 1, count: h.cfg.MaxResults}
	bad := func(name string) error {
		return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue, Detail: name + " must be an integer."}
	}
	if s := strings.TrimSpace(sp.startIndex); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			if !bigInteger(s) {
				return q, bad("startIndex")
			}
			n = 1 << 62
			if strings.HasPrefix(s, "-") {
				n = 1
			}
		}
		q.startIndex = int(max(n, 1))
		if n > 1<<40 {
			q.startIndex = 1 << 40
		}
	}
	if s := strings.TrimSpace(sp.count); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			if !bigInteger(s) {
				return q, bad("count")
			}
			n = int64(h.cfg.MaxResults)
			if strings.HasPrefix(s, "-") {
				n = 0
			}
		}
		q.count = int(min(max(n, 0), int64(h.cfg.MaxResults)))
	}
	if f := strings.TrimSpace(sp.filter); f != "" {
		e, err := resolveFilter(f, rq.rs)
		if err != nil {
			return q, err
		}
		q.filter = e
	}
	if sb := strings.TrimSpace(sp.sortBy); sb != "" {
		p, err := parseAttrPath(sb)
		if err != nil {
			return q, scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue, Detail: "sortBy must be an attribute path."}
		}
		r, ok := rq.rs.resolve(p.URI(), p.AttributeName, p.SubAttributeName())
		if !ok {
			return q, scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue, Detail: "sortBy names an unknown attribute."}
		}
		q.sortBy = r.path()
	}
	switch strings.ToLower(strings.TrimSpace(sp.sortOrder)) {
	case "", "ascending":
	case "descending":
		q.descending = true
	default:
		return q, scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue, Detail: "sortOrder must be ascending or descending."}
	}
	return q, nil
}

// bigInteger reports whether s is an integer too large for int64.
func bigInteger(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// equality recognises `<attr> eq "<string>"` for one of the attributes with a key lookup.
func equality(e filter.Expression, attrs ...string) (attr, value string, ok bool) {
	ae, isAttr := e.(*filter.AttributeExpression)
	if !isAttr || ae.Operator != filter.EQ || ae.AttributePath.SubAttribute != nil || ae.AttributePath.URIPrefix != nil {
		return "", "", false
	}
	v, isString := ae.CompareValue.(string)
	if !isString {
		return "", "", false
	}
	for _, a := range attrs {
		if ae.AttributePath.AttributeName == a {
			return a, v, true
		}
	}
	return "", "", false
}

// pageOf pages an in-memory result.
func pageOf[T any](all []T, start, count int) []T {
	if start > len(all) || count <= 0 {
		return nil
	}
	end := min(start-1+count, len(all))
	return all[start-1 : end]
}
