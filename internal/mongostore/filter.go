package mongostore

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/scim2/filter-parser/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/identity"
)

// This file translates SCIM filters (RFC 7644 §3.4.2.2) into MongoDB queries. Attribute paths
// are never copied into a query: each one is looked up in a per-resource allow-list (userFields,
// groupFields) that says where the attribute is stored and how it compares (type, caseExact,
// multi-valued), transcribed from the RFC 7643 schemas the SCIM layer serves (a test in scim/
// keeps the two in step).
//
// One MongoDB feature is missing on the embedded store: $elemMatch with field conditions. A
// value path whose filter needs one element to satisfy several conditions
// (emails[type eq "work" and value co "@x"]) is therefore sent as a relaxed query (a superset
// of the matches) and every candidate is checked again in Go by the compiled predicate, which
// implements the same semantics as the query. Query.Exact says whether that check is needed.

// kind is an attribute's SCIM data type.
type kind int

const (
	kindString kind = iota
	kindBool
	kindDateTime
	kindInteger
	kindDecimal
	kindBinary
	kindReference
	kindComplex
)

// field is one filterable attribute (or sub-attribute) and where it is stored.
type field struct {
	name      string // canonical SCIM name, for messages
	path      string // absolute document path; "" means not stored (not filterable)
	rel       string // path relative to one element of the parent multi-valued attribute
	kind      kind
	caseExact bool
	multi     bool
	// folded is the path of a case-folded copy (identity.FoldKey): eq and ordering use it.
	folded string
	// constant is the value every document has (meta.resourceType).
	constant string
	// join names attributes kept in other documents (a group's members).
	join bool
	subs map[string]*field
}

// fields is the allow-list of one resource type: lower-cased canonical names, extension
// attributes as "<lower-cased schema URN>:<lower-cased name>".
type fields struct {
	core       string   // lower-cased core schema URN
	extensions []string // lower-cased extension schema URNs
	attrs      map[string]*field
}

// Schema URNs the allow-lists know.
const (
	userURN       = "urn:ietf:params:scim:schemas:core:2.0:user"
	groupURN      = "urn:ietf:params:scim:schemas:core:2.0:group"
	enterpriseURN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"
	offboardURN   = "urn:ietf:params:scim:schemas:extension:offboard:2.0:user"
)

func str(name, path string) *field { return &field{name: name, path: path, kind: kindString} }

// multiComplex builds a multi-valued complex attribute under res with string sub-attributes
// value, display, type and a boolean primary (the RFC 7643 §2.4 shape).
func multiComplex(name string, subs ...string) *field {
	f := &field{name: name, path: "res." + name, kind: kindComplex, multi: true, subs: map[string]*field{}}
	for _, s := range subs {
		sf := &field{name: name + "." + s, path: f.path + "." + s, rel: s, kind: kindString, multi: true}
		if s == "primary" {
			sf.kind = kindBool
		}
		f.subs[strings.ToLower(s)] = sf
	}
	return f
}

func complexOf(name, path string, subs ...*field) *field {
	f := &field{name: name, path: path, kind: kindComplex, subs: map[string]*field{}}
	for _, s := range subs {
		f.subs[strings.ToLower(s.rel)] = s
	}
	return f
}

func sub(parent, name, path string, k kind) *field {
	return &field{name: parent + "." + name, path: path, rel: name, kind: k}
}

func metaField(resourceType string) *field {
	return complexOf("meta", "",
		sub("meta", "created", "created", kindDateTime),
		sub("meta", "lastModified", "modified", kindDateTime),
		&field{name: "meta.resourceType", rel: "resourceType", kind: kindString, caseExact: true, constant: resourceType},
		&field{name: "meta.location", rel: "location", kind: kindReference},
		&field{name: "meta.version", rel: "version", kind: kindString, caseExact: true},
	)
}

// userFields maps User attributes to employee documents (see scim/convert.go for the layout:
// the resource under res, extensions under res.enterprise / res.offboard).
var userFields = func() *fields {
	a := map[string]*field{
		"id":         {name: "id", path: "_id", kind: kindString, caseExact: true},
		"externalid": {name: "externalId", path: "externalId", kind: kindString, caseExact: true},
		"username":   {name: "userName", path: "userName", kind: kindString, folded: "userNameKey"},
		"name": complexOf("name", "res.name",
			sub("name", "formatted", "res.name.formatted", kindString),
			sub("name", "familyName", "res.name.familyName", kindString),
			sub("name", "givenName", "res.name.givenName", kindString),
			sub("name", "middleName", "res.name.middleName", kindString),
			sub("name", "honorificPrefix", "res.name.honorificPrefix", kindString),
			sub("name", "honorificSuffix", "res.name.honorificSuffix", kindString),
		),
		"displayname":       str("displayName", "res.displayName"),
		"nickname":          str("nickName", "res.nickName"),
		"profileurl":        {name: "profileUrl", path: "res.profileUrl", kind: kindReference},
		"title":             str("title", "res.title"),
		"usertype":          str("userType", "res.userType"),
		"preferredlanguage": str("preferredLanguage", "res.preferredLanguage"),
		"locale":            str("locale", "res.locale"),
		"timezone":          str("timezone", "res.timezone"),
		"active":            {name: "active", path: "active", kind: kindBool},
		"password":          {name: "password", kind: kindString}, // returned never: not filterable
		"emails":            multiComplex("emails", "value", "display", "type", "primary"),
		"phonenumbers":      multiComplex("phoneNumbers", "value", "display", "type", "primary"),
		"ims":               multiComplex("ims", "value", "display", "type", "primary"),
		"photos":            multiComplex("photos", "value", "display", "type", "primary"),
		"addresses":         multiComplex("addresses", "formatted", "streetAddress", "locality", "region", "postalCode", "country", "type", "primary"),
		"entitlements":      multiComplex("entitlements", "value", "display", "type", "primary"),
		"roles":             multiComplex("roles", "value", "display", "type", "primary"),
		"x509certificates":  multiComplex("x509Certificates", "value", "display", "type", "primary"),
		"groups": {name: "groups", path: "groups", kind: kindComplex, multi: true, subs: map[string]*field{
			"value":   {name: "groups.value", path: "groups.id", rel: "id", kind: kindString, caseExact: true, multi: true},
			"display": {name: "groups.display", rel: "display", kind: kindString, multi: true},
			"$ref":    {name: "groups.$ref", rel: "$ref", kind: kindReference, multi: true},
			"type":    {name: "groups.type", rel: "type", kind: kindString, multi: true, constant: "direct"},
		}},
		"meta":                            metaField("User"),
		enterpriseURN + ":employeenumber": str("employeeNumber", "res.enterprise.employeeNumber"),
		enterpriseURN + ":costcenter":     str("costCenter", "res.enterprise.costCenter"),
		enterpriseURN + ":organization":   str("organization", "res.enterprise.organization"),
		enterpriseURN + ":division":       str("division", "res.enterprise.division"),
		enterpriseURN + ":department":     str("department", "res.enterprise.department"),
		enterpriseURN + ":manager": complexOf("manager", "res.enterprise.manager",
			sub("manager", "value", "res.enterprise.manager.value", kindString),
			&field{name: "manager.$ref", rel: "$ref", kind: kindReference},
			&field{name: "manager.displayName", rel: "displayName", kind: kindString},
		),
		offboardURN + ":leavedate":             {name: "leaveDate", path: "res.offboard.leaveDate", kind: kindDateTime},
		offboardURN + ":employeeleavedatetime": {name: "employeeLeaveDateTime", path: "res.offboard.employeeLeaveDateTime", kind: kindDateTime},
	}
	// The values of emails, phoneNumbers, ims, photos, entitlements, roles and x509Certificates
	// are the identifiers the RFC makes case-insensitive except where noted in RFC 7643 §4.1.2
	// (x509 certificate values are binary).
	a["x509certificates"].subs["value"].kind = kindBinary
	a["photos"].subs["value"].kind = kindReference
	return &fields{core: userURN, extensions: []string{enterpriseURN, offboardURN}, attrs: a}
}()

// groupFields maps Group attributes to group documents; members live in member documents.
var groupFields = func() *fields {
	a := map[string]*field{
		"id":          {name: "id", path: "_id", kind: kindString, caseExact: true},
		"externalid":  {name: "externalId", path: "externalId", kind: kindString, caseExact: true},
		"displayname": {name: "displayName", path: "displayName", kind: kindString, folded: "displayNameKey"},
		"members": {name: "members", path: "members", kind: kindComplex, multi: true, join: true, subs: map[string]*field{
			"value":   {name: "members.value", path: "value", rel: "value", kind: kindString, caseExact: true, multi: true},
			"display": {name: "members.display", path: "display", rel: "display", kind: kindString, multi: true},
			"type":    {name: "members.type", path: "type", rel: "type", kind: kindString, multi: true},
			"$ref":    {name: "members.$ref", rel: "$ref", kind: kindReference, multi: true},
		}},
		"meta": metaField("Group"),
	}
	return &fields{core: groupURN, attrs: a}
}()

// lookup resolves an attribute path to its field and, for sub-attributes, the sub-field.
// Unqualified names not in the core schema resolve to the one extension defining them.
func (fs *fields) lookup(p filter.AttributePath) (attr, subf *field, err error) {
	uri := strings.ToLower(p.URI())
	name := strings.ToLower(p.AttributeName)
	switch {
	case uri == "" || uri == fs.core:
		attr = fs.attrs[name]
		if attr == nil && uri == "" {
			for _, ext := range fs.extensions {
				if f := fs.attrs[ext+":"+name]; f != nil {
					attr = f
					break
				}
			}
		}
	default:
		attr = fs.attrs[uri+":"+name]
	}
	if attr == nil {
		return nil, nil, invalidFilter("unknown attribute %q", p.String())
	}
	if s := p.SubAttributeName(); s != "" {
		subf = attr.subs[strings.ToLower(s)]
		if subf == nil {
			return nil, nil, invalidFilter("unknown attribute %q", p.String())
		}
	}
	return attr, subf, nil
}

// FilterError is a filter the store cannot evaluate: an unknown attribute, a comparison the
// attribute's type does not allow, a malformed value. Its message is safe to show the client.
type FilterError struct{ msg string }

func (e *FilterError) Error() string { return e.msg }

// PublicDetail is the message for the client.
func (e *FilterError) PublicDetail() string { return e.msg }

// Unwrap makes a FilterError an identity.ErrInvalid.
func (e *FilterError) Unwrap() error { return identity.ErrInvalid }

func invalidFilter(format string, args ...any) error {
	return &FilterError{msg: fmt.Sprintf(format, args...)}
}

// maxFilterNodes bounds the work one filter may ask for (the SCIM layer bounds length and depth
// before parsing; this guards direct callers).
const maxFilterNodes = 256

// Query is a compiled filter.
type Query struct {
	// Filter is the MongoDB query: exactly the matching documents when Exact, else a superset.
	Filter bson.D
	// Exact reports whether Filter alone is the answer; otherwise check candidates with Match.
	Exact bool
	root  *node
}

// Match reports whether a document (decoded into plain values, see Plain) passes the filter.
func (q *Query) Match(doc map[string]any) bool {
	if q.root == nil {
		return true
	}
	return q.root.match(doc)
}

// node is one compiled filter node: its query and an equivalent Go predicate.
type node struct {
	match func(doc map[string]any) bool
}

// joinFunc turns a condition on member documents into a condition on group documents and a
// predicate on group ids (the member documents are read once, at compile time).
type joinFunc func(cond bson.D) (bson.D, func(id string) bool, error)

// compiler holds the state of one translation.
type compiler struct {
	fs    *fields
	join  joinFunc
	nodes int
}

// matchNothing is a query no document satisfies (every document has an _id).
var matchNothing = bson.D{{Key: "_id", Value: bson.D{{Key: "$exists", Value: false}}}}

// compileFilter translates a parsed SCIM filter for the resource type described by fs.
func compileFilter(expr filter.Expression, fs *fields, join joinFunc) (*Query, error) {
	if expr == nil {
		return &Query{Filter: bson.D{}, Exact: true}, nil
	}
	c := &compiler{fs: fs, join: join}
	q, exact, n, err := c.expr(expr, true)
	if err != nil {
		return nil, err
	}
	return &Query{Filter: q, Exact: exact, root: n}, nil
}

// UserFilter translates a SCIM filter on Users into a MongoDB query on employee documents.
func UserFilter(expr filter.Expression) (*Query, error) { return compileFilter(expr, userFields, nil) }

// expr translates e. positive is the polarity (false under an odd number of nots): inexact
// translations must be supersets of the matches at positive polarity and subsets at negative
// polarity, so that the query stays a superset of the whole filter's matches.
func (c *compiler) expr(e filter.Expression, positive bool) (bson.D, bool, *node, error) {
	c.nodes++
	if c.nodes > maxFilterNodes {
		return nil, false, nil, invalidFilter("the filter is too complex")
	}
	switch e := e.(type) {
	case *filter.AttributeExpression:
		attr, subf, err := c.fs.lookup(e.AttributePath)
		if err != nil {
			return nil, false, nil, err
		}
		if attr.join {
			return c.joined(attr, func(prefix string) (bson.D, error) {
				return c.memberCondition(attr, subf, e)
			}, e)
		}
		q, n, err := c.compare(attr, subf, e.Operator, e.CompareValue, "")
		return q, true, n, err
	case *filter.ValuePath:
		attr, _, err := c.fs.lookup(e.AttributePath)
		if err != nil {
			return nil, false, nil, err
		}
		if attr.kind != kindComplex || !attr.multi {
			return nil, false, nil, invalidFilter("%s is not a multi-valued complex attribute", attr.name)
		}
		if attr.join {
			return c.joined(attr, func(string) (bson.D, error) {
				q, _, _, err := c.element(attr, e.ValueFilter, true, true)
				return q, err
			}, nil)
		}
		return c.valuePath(attr, e.ValueFilter, positive)
	case *filter.LogicalExpression:
		lq, lx, ln, err := c.expr(e.Left, positive)
		if err != nil {
			return nil, false, nil, err
		}
		rq, rx, rn, err := c.expr(e.Right, positive)
		if err != nil {
			return nil, false, nil, err
		}
		return logical(e.Operator, lq, rq), lx && rx, logicalNode(e.Operator, ln, rn), nil
	case *filter.NotExpression:
		q, exact, n, err := c.expr(e.Expression, !positive)
		if err != nil {
			return nil, false, nil, err
		}
		return bson.D{{Key: "$nor", Value: bson.A{q}}}, exact, &node{match: func(d map[string]any) bool { return !n.match(d) }}, nil
	case nil:
		return nil, false, nil, invalidFilter("empty filter")
	default:
		return nil, false, nil, invalidFilter("unsupported filter expression %T", e)
	}
}

func logical(op filter.LogicalOperator, l, r bson.D) bson.D {
	key := "$and"
	if op == filter.OR {
		key = "$or"
	}
	return bson.D{{Key: key, Value: bson.A{l, r}}}
}

func logicalNode(op filter.LogicalOperator, l, r *node) *node {
	if op == filter.OR {
		return &node{match: func(d map[string]any) bool { return l.match(d) || r.match(d) }}
	}
	return &node{match: func(d map[string]any) bool { return l.match(d) && r.match(d) }}
}

// joined resolves a condition on a joined attribute (a group's members) through c.join.
func (c *compiler) joined(attr *field, cond func(string) (bson.D, error), e *filter.AttributeExpression) (bson.D, bool, *node, error) {
	if e != nil && e.Operator == filter.PR && e.AttributePath.SubAttribute == nil {
		// members pr: the group has at least one member.
		q := bson.D{{Key: "memberCount", Value: bson.D{{Key: "$gt", Value: 0}}}}
		return q, true, &node{match: func(d map[string]any) bool {
			n, _ := toFloat(d["memberCount"])
			return n > 0
		}}, nil
	}
	if c.join == nil {
		return nil, false, nil, invalidFilter("filtering on %s is not supported", attr.name)
	}
	mc, err := cond("")
	if err != nil {
		return nil, false, nil, err
	}
	q, has, err := c.join(mc)
	if err != nil {
		return nil, false, nil, err
	}
	return q, true, &node{match: func(d map[string]any) bool {
		id, _ := d["_id"].(string)
		return has(id)
	}}, nil
}

// memberCondition is an attribute expression on members as a condition on member documents.
func (c *compiler) memberCondition(attr, subf *field, e *filter.AttributeExpression) (bson.D, error) {
	if subf == nil {
		subf = attr.subs["value"] // RFC 7644 §3.4.2.2: a complex attribute compares by its value
	}
	q, _, err := c.compare(subf, nil, e.Operator, e.CompareValue, "member")
	return q, err
}

// valuePath translates attr[filter]: at least one element of attr satisfies filter.
func (c *compiler) valuePath(attr *field, f filter.Expression, positive bool) (bson.D, bool, *node, error) {
	q, exact, _, err := c.element(attr, f, positive, false)
	if err != nil {
		return nil, false, nil, err
	}
	pred, err := c.elementPredicate(attr, f)
	if err != nil {
		return nil, false, nil, err
	}
	n := &node{match: func(d map[string]any) bool {
		for _, el := range elements(lookupPath(d, attr.path)) {
			if pred(el) {
				return true
			}
		}
		return false
	}}
	return q, exact, n, nil
}

// element translates the filter inside a value path. With rel, paths are relative to one
// element (a member document); otherwise they are absolute and MongoDB's any-element semantics
// apply to each condition separately, which is exact only for a single condition or a
// disjunction of single conditions.
func (c *compiler) element(attr *field, f filter.Expression, positive, rel bool) (bson.D, bool, *node, error) {
	c.nodes++
	if c.nodes > maxFilterNodes {
		return nil, false, nil, invalidFilter("the filter is too complex")
	}
	switch e := f.(type) {
	case *filter.AttributeExpression:
		if e.AttributePath.URIPrefix != nil || e.AttributePath.SubAttribute != nil {
			return nil, false, nil, invalidFilter("%s inside %s[...] must name a sub-attribute", e.AttributePath, attr.name)
		}
		subf := attr.subs[strings.ToLower(e.AttributePath.AttributeName)]
		if subf == nil {
			return nil, false, nil, invalidFilter("unknown attribute %s.%s", attr.name, e.AttributePath.AttributeName)
		}
		var prefix string
		if rel {
			prefix = "member"
		}
		q, _, err := c.compare(subf, nil, e.Operator, e.CompareValue, prefix)
		return q, true, nil, err
	case *filter.LogicalExpression:
		lq, lx, _, err := c.element(attr, e.Left, positive, rel)
		if err != nil {
			return nil, false, nil, err
		}
		rq, rx, _, err := c.element(attr, e.Right, positive, rel)
		if err != nil {
			return nil, false, nil, err
		}
		if rel || e.Operator == filter.OR {
			return logical(e.Operator, lq, rq), lx && rx, nil, nil
		}
		// Two conditions that may hold in different elements: relax or tighten.
		if positive {
			return logical(filter.AND, lq, rq), false, nil, nil
		}
		return matchNothing, false, nil, nil
	case *filter.NotExpression:
		q, exact, _, err := c.element(attr, e.Expression, !positive, rel)
		if err != nil {
			return nil, false, nil, err
		}
		if rel {
			return bson.D{{Key: "$nor", Value: bson.A{q}}}, exact, nil, nil
		}
		if positive {
			return bson.D{{Key: attr.path, Value: bson.D{{Key: "$exists", Value: true}}}}, false, nil, nil
		}
		return matchNothing, false, nil, nil
	case *filter.ValuePath:
		return nil, false, nil, invalidFilter("value paths cannot nest")
	default:
		return nil, false, nil, invalidFilter("unsupported filter expression %T", f)
	}
}

// elementPredicate compiles the filter inside a value path into a predicate on one element.
func (c *compiler) elementPredicate(attr *field, f filter.Expression) (func(map[string]any) bool, error) {
	switch e := f.(type) {
	case *filter.AttributeExpression:
		subf := attr.subs[strings.ToLower(e.AttributePath.AttributeName)]
		if subf == nil {
			return nil, invalidFilter("unknown attribute %s.%s", attr.name, e.AttributePath.AttributeName)
		}
		_, n, err := c.compare(subf, nil, e.Operator, e.CompareValue, "element")
		if err != nil {
			return nil, err
		}
		return n.match, nil
	case *filter.LogicalExpression:
		l, err := c.elementPredicate(attr, e.Left)
		if err != nil {
			return nil, err
		}
		r, err := c.elementPredicate(attr, e.Right)
		if err != nil {
			return nil, err
		}
		if e.Operator == filter.OR {
			return func(m map[string]any) bool { return l(m) || r(m) }, nil
		}
		return func(m map[string]any) bool { return l(m) && r(m) }, nil
	case *filter.NotExpression:
		p, err := c.elementPredicate(attr, e.Expression)
		if err != nil {
			return nil, err
		}
		return func(m map[string]any) bool { return !p(m) }, nil
	default:
		return nil, invalidFilter("unsupported filter expression %T", f)
	}
}

// compare translates one comparison. scope "" uses absolute paths; "member" uses the member
// document path (f.path of a members sub-field); "element" builds a predicate on one element
// of a multi-valued attribute (f.rel).
func (c *compiler) compare(attr, subf *field, op filter.CompareOperator, value any, scope string) (bson.D, *node, error) {
	f := attr
	if subf != nil {
		f = subf
	} else if attr.kind == kindComplex {
		// RFC 7644 §3.4.2.2: a filter on a complex attribute without a sub-attribute compares
		// its "value" sub-attribute; pr asks whether it has any.
		if op == filter.PR {
			return exists(attr.path, scope, attr.rel)
		}
		v := attr.subs["value"]
		if v == nil {
			return nil, nil, invalidFilter("%s is complex: name a sub-attribute", attr.name)
		}
		f = v
	}
	path := f.path
	get := func(d map[string]any) []any { return values(lookupPath(d, path)) }
	if scope == "element" {
		rel := f.rel
		get = func(d map[string]any) []any { return values(lookupPath(d, rel)) }
	}
	if f.constant != "" {
		return constantCompare(f, op, value)
	}
	if path == "" && scope != "element" || scope == "element" && f.rel == "" {
		return nil, nil, invalidFilter("%s cannot be filtered", f.name)
	}
	if op == filter.PR {
		return exists(path, scope, f.rel)
	}
	if value == nil {
		// eq null: unassigned; ne null: present (RFC 7643 §2.5: null is unassigned).
		switch op {
		case filter.EQ:
			q, n, err := exists(path, scope, f.rel)
			if err != nil {
				return nil, nil, err
			}
			return bson.D{{Key: "$nor", Value: bson.A{q}}}, &node{match: func(d map[string]any) bool { return !n.match(d) }}, nil
		case filter.NE:
			return exists(path, scope, f.rel)
		}
		return nil, nil, invalidFilter("%s %s null is not a comparison", f.name, op)
	}
	switch f.kind {
	case kindString, kindReference, kindBinary:
		s, ok := value.(string)
		if !ok {
			return nil, nil, invalidFilter("%s compares with a string", f.name)
		}
		return stringCompare(f, path, op, s, get)
	case kindBool:
		b, ok := value.(bool)
		if s, isStr := value.(string); isStr {
			b, ok = parseBool(s)
		}
		if !ok {
			return nil, nil, invalidFilter("%s compares with true or false", f.name)
		}
		if op != filter.EQ && op != filter.NE {
			return nil, nil, invalidFilter("%s is boolean: only eq, ne and pr apply", f.name)
		}
		q := bson.D{{Key: path, Value: b}}
		match := func(d map[string]any) bool { return anyOf(get(d), func(v any) bool { return v == b }) }
		return negateIf(op == filter.NE, q, match)
	case kindDateTime:
		s, ok := value.(string)
		if !ok {
			return nil, nil, invalidFilter("%s compares with an xsd:dateTime string", f.name)
		}
		t, err := ParseDateTime(s)
		if err != nil {
			return nil, nil, invalidFilter("%s: %q is not an xsd:dateTime", f.name, s)
		}
		return timeCompare(f, path, op, t, get)
	case kindInteger, kindDecimal:
		n, ok := toFloat(value)
		if !ok {
			return nil, nil, invalidFilter("%s compares with a number", f.name)
		}
		return numberCompare(f, path, op, n, get)
	}
	return nil, nil, invalidFilter("%s cannot be filtered", f.name)
}

// exists is "pr": the attribute has a value. Stored resources never hold null, "" or [].
func exists(path, scope, rel string) (bson.D, *node, error) {
	if scope == "element" {
		if rel == "" {
			return nil, nil, invalidFilter("attribute cannot be filtered")
		}
		return nil, &node{match: func(d map[string]any) bool { return len(values(lookupPath(d, rel))) > 0 }}, nil
	}
	if path == "" {
		return nil, nil, invalidFilter("attribute cannot be filtered")
	}
	q := bson.D{{Key: path, Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: nil}}}}
	return q, &node{match: func(d map[string]any) bool { return len(values(lookupPath(d, path))) > 0 }}, nil
}

func negateIf(neg bool, q bson.D, match func(map[string]any) bool) (bson.D, *node, error) {
	if neg {
		return bson.D{{Key: "$nor", Value: bson.A{q}}}, &node{match: func(d map[string]any) bool { return !match(d) }}, nil
	}
	return q, &node{match: match}, nil
}

func constantCompare(f *field, op filter.CompareOperator, value any) (bson.D, *node, error) {
	s, ok := value.(string)
	if !ok && op != filter.PR {
		return nil, nil, invalidFilter("%s compares with a string", f.name)
	}
	var hit bool
	switch op {
	case filter.PR:
		hit = true
	case filter.EQ:
		hit = strings.EqualFold(f.constant, s)
	case filter.NE:
		hit = !strings.EqualFold(f.constant, s)
	case filter.CO:
		hit = strings.Contains(strings.ToLower(f.constant), strings.ToLower(s))
	case filter.SW:
		hit = strings.HasPrefix(strings.ToLower(f.constant), strings.ToLower(s))
	case filter.EW:
		hit = strings.HasSuffix(strings.ToLower(f.constant), strings.ToLower(s))
	default:
		return nil, nil, invalidFilter("%s supports eq, ne, co, sw, ew and pr", f.name)
	}
	if hit {
		return bson.D{}, &node{match: func(map[string]any) bool { return true }}, nil
	}
	return matchNothing, &node{match: func(map[string]any) bool { return false }}, nil
}

func stringCompare(f *field, path string, op filter.CompareOperator, s string, get func(map[string]any) []any) (bson.D, *node, error) {
	if f.folded != "" {
		// A folded copy exists: equality and ordering compare folded keys exactly as the
		// uniqueness index does (Unicode full case folding), the rest is a regex on the value.
		key := identity.FoldKey(s)
		fp := f.folded
		getKey := func(d map[string]any) []any { return values(lookupPath(d, fp)) }
		switch op {
		case filter.EQ, filter.NE:
			q := bson.D{{Key: fp, Value: key}}
			return negateIf(op == filter.NE, q, func(d map[string]any) bool {
				return anyOf(getKey(d), func(v any) bool { return v == key })
			})
		case filter.GT, filter.GE, filter.LT, filter.LE:
			return ordered(fp, op, key, getKey, func(v any) (int, bool) {
				x, ok := v.(string)
				return strings.Compare(x, key), ok
			})
		}
	}
	if !utf8.ValidString(s) {
		return nil, nil, invalidFilter("%s: the value is not valid UTF-8", f.name)
	}
	var pattern string
	q := regexp.QuoteMeta(s)
	switch op {
	case filter.EQ, filter.NE:
		if f.caseExact {
			cond := bson.D{{Key: path, Value: s}}
			return negateIf(op == filter.NE, cond, func(d map[string]any) bool {
				return anyOf(get(d), func(v any) bool { return v == s })
			})
		}
		pattern = "^" + q + `\z`
	case filter.CO:
		pattern = q
	case filter.SW:
		pattern = "^" + q
	case filter.EW:
		pattern = q + `\z`
	case filter.GT, filter.GE, filter.LT, filter.LE:
		// Ordering compares code points (case-sensitively, also for caseExact=false
		// attributes other than the folded ones: the embedded store has no collations).
		return ordered(path, op, s, get, func(v any) (int, bool) {
			x, ok := v.(string)
			return strings.Compare(x, s), ok
		})
	default:
		return nil, nil, invalidFilter("unknown operator %q", op)
	}
	opts := ""
	goPattern := pattern
	if !f.caseExact {
		opts = "i"
		goPattern = "(?i)" + pattern
	}
	// The Go predicate is needed only for inexact queries: compile its regexp on first use.
	var once sync.Once
	var re *regexp.Regexp
	cond := bson.D{{Key: path, Value: bson.D{{Key: "$regex", Value: pattern}, {Key: "$options", Value: opts}}}}
	return negateIf(op == filter.NE, cond, func(d map[string]any) bool {
		once.Do(func() { re = regexp.MustCompile(goPattern) }) // valid UTF-8, QuoteMeta'd: compiles
		return anyOf(get(d), func(v any) bool {
			x, ok := v.(string)
			return ok && re.MatchString(x)
		})
	})
}

func ordered(path string, op filter.CompareOperator, v any, get func(map[string]any) []any, cmp func(any) (int, bool)) (bson.D, *node, error) {
	mop := map[filter.CompareOperator]string{filter.GT: "$gt", filter.GE: "$gte", filter.LT: "$lt", filter.LE: "$lte"}[op]
	q := bson.D{{Key: path, Value: bson.D{{Key: mop, Value: v}}}}
	return q, &node{match: func(d map[string]any) bool {
		return anyOf(get(d), func(x any) bool {
			c, ok := cmp(x)
			if !ok {
				return false
			}
			switch op {
			case filter.GT:
				return c > 0
			case filter.GE:
				return c >= 0
			case filter.LT:
				return c < 0
			default:
				return c <= 0
			}
		})
	}}, nil
}

// timeCompare compares a date stored with millisecond precision (BSON dates) with a filter
// value of any precision, exactly: f > q ⟺ f > ⌊q⌋, f ≥ q ⟺ f ≥ ⌈q⌉ and so on.
func timeCompare(f *field, path string, op filter.CompareOperator, t time.Time, get func(map[string]any) []any) (bson.D, *node, error) {
	t = t.UTC()
	floor := t.Truncate(time.Millisecond)
	ceil := floor
	if !floor.Equal(t) {
		ceil = floor.Add(time.Millisecond)
	}
	cmpTo := func(ref time.Time) func(any) (int, bool) {
		return func(v any) (int, bool) {
			x, ok := v.(time.Time)
			if !ok {
				return 0, false
			}
			return x.Compare(ref), true
		}
	}
	switch op {
	case filter.EQ, filter.NE:
		if !floor.Equal(t) {
			// No stored date has sub-millisecond precision.
			if op == filter.EQ {
				return matchNothing, &node{match: func(map[string]any) bool { return false }}, nil
			}
			return bson.D{}, &node{match: func(map[string]any) bool { return true }}, nil
		}
		q := bson.D{{Key: path, Value: t}}
		return negateIf(op == filter.NE, q, func(d map[string]any) bool {
			return anyOf(get(d), func(v any) bool { x, ok := v.(time.Time); return ok && x.Equal(t) })
		})
	case filter.GT, filter.LE:
		return ordered(path, op, floor, get, cmpTo(floor))
	case filter.GE, filter.LT:
		return ordered(path, op, ceil, get, cmpTo(ceil))
	}
	return nil, nil, invalidFilter("%s is a dateTime: use eq, ne, gt, ge, lt, le or pr", f.name)
}

func numberCompare(f *field, path string, op filter.CompareOperator, n float64, get func(map[string]any) []any) (bson.D, *node, error) {
	cmp := func(v any) (int, bool) {
		x, ok := toFloat(v)
		if !ok {
			return 0, false
		}
		switch {
		case x < n:
			return -1, true
		case x > n:
			return 1, true
		}
		return 0, true
	}
	switch op {
	case filter.EQ, filter.NE:
		q := bson.D{{Key: path, Value: n}}
		return negateIf(op == filter.NE, q, func(d map[string]any) bool {
			return anyOf(get(d), func(v any) bool { c, ok := cmp(v); return ok && c == 0 })
		})
	case filter.GT, filter.GE, filter.LT, filter.LE:
		return ordered(path, op, n, get, cmp)
	}
	return nil, nil, invalidFilter("%s is a number: use eq, ne, gt, ge, lt, le or pr", f.name)
}

// ParseDateTime reads an xsd:dateTime: RFC 3339 with any number of fractional digits, or
// without a zone (UTC).
func ParseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not an xsd:dateTime: %q", s)
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, !math.IsNaN(x)
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil && !math.IsNaN(f)
	case interface{ Float64() (float64, error) }:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// lookupPath follows a dotted path through a plain document; arrays on the way fan out.
func lookupPath(doc any, path string) any {
	if path == "" {
		return doc
	}
	head, rest, _ := strings.Cut(path, ".")
	switch d := doc.(type) {
	case map[string]any:
		v, ok := d[head]
		if !ok {
			return nil
		}
		if rest == "" {
			return v
		}
		return lookupPath(v, rest)
	case []any:
		var out []any
		for _, el := range d {
			switch v := lookupPath(el, path).(type) {
			case nil:
			case []any:
				out = append(out, v...)
			default:
				out = append(out, v)
			}
		}
		return out
	}
	return nil
}

// values flattens a looked-up value into the list of values MongoDB compares against.
func values(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if e != nil {
				out = append(out, e)
			}
		}
		return out
	}
	return []any{v}
}

func elements(v any) []map[string]any {
	var out []map[string]any
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
	case map[string]any:
		out = append(out, x)
	}
	return out
}

func anyOf(vs []any, f func(any) bool) bool {
	for _, v := range vs {
		if f(v) {
			return true
		}
	}
	return false
}

// SortPath maps a SCIM sortBy attribute to the document path to sort on; ok is false for an
// attribute that is unknown or not sortable. Folded keys sort case-insensitively.
func sortPath(fs *fields, attrPath string) (string, error) {
	p, err := filter.ParseAttrPath([]byte(attrPath))
	if err != nil {
		return "", invalidFilter("sortBy %q is not an attribute path", attrPath)
	}
	attr, subf, err := fs.lookup(p)
	if err != nil {
		return "", err
	}
	f := attr
	if subf != nil {
		f = subf
	} else if attr.kind == kindComplex {
		f = attr.subs["value"]
	}
	if f == nil || f.path == "" || f.join || f.kind == kindComplex {
		return "", invalidFilter("cannot sort by %q", attrPath)
	}
	if f.folded != "" {
		return f.folded, nil
	}
	return f.path, nil
}
