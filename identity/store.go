package identity

import (
	"github.com/scim2/filter-parser/v2"
)

// ListQuery selects and pages SCIM resources of one tenant.
type ListQuery struct {
	// Filter is the parsed SCIM filter (RFC 7644 §3.4.2.2); nil selects everything.
	Filter filter.Expression
	// SortBy is a validated attribute path; empty sorts by creation (stable).
	SortBy     string
	Descending bool
	// StartIndex is 1-based; Count 0 asks only for the total.
	StartIndex int
	Count      int
}
