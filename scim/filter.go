package scim

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/scim2/filter-parser/v2"
)

// This file parses SCIM filters (RFC 7644 §3.4.2.2) into github.com/scim2/filter-parser/v2
// expression trees and resolves their attribute names against the resource schema. It is our
// own parser, not filter.ParseFilter, because that grammar (the RFC's with erratum 4690) allows
// at most one and/or inside brackets, keeps escape sequences of strings undecoded, and has no
// bound on nesting; and because identity providers send shapes the RFC grammar lacks:
//
//   - Entra ID: emails[type eq "work"].value eq "u@x" (an attribute after the brackets), read
//     as emails[type eq "work" and value eq "u@x"];
//   - the Microsoft and Entra documentation: unquoted values (externalId eq jyoung,
//     meta.lastModified gt 2015-10-10T14:38:21.8617979-07:00), read as strings. Decided lenient:
//     a bare word that is not true, false, null or a number cannot mean anything else.
//
// Names and operators are case-insensitive; "not" needs parentheses (RFC); precedence is
// not > and > or.

// Bounds on a filter: longer or deeper ones are invalidFilter before any work is done.
const (
	MaxFilterLength = 4096
	maxFilterDepth  = 16
	maxFilterTerms  = 128
)

// filterError is an invalid filter; its message is safe to show the client.
type filterError struct{ msg string }

func (e *filterError) Error() string { return e.msg }

func badFilter(format string, args ...any) error {
	return &filterError{msg: fmt.Sprintf(format, args...)}
}

type tokKind int

const (
	tEOF tokKind = iota
	tWord
	tString
	tLParen
	tRParen
	tLBracket
	tRBracket
)

type token struct {
	kind tokKind
	text string // word text, or the decoded string
	pos  int
}

func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{tLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")", i})
			i++
		case c == '[':
			out = append(out, token{tLBracket, "[", i})
			i++
		case c == ']':
			out = append(out, token{tRBracket, "]", i})
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, badFilter("unterminated string at position %d", i)
			}
			var v string
			if err := json.Unmarshal([]byte(s[i:j+1]), &v); err != nil {
				return nil, badFilter("invalid string at position %d", i)
			}
			out = append(out, token{tString, v, i})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()[]\"", rune(s[j])) {
				j++
			}
			out = append(out, token{tWord, s[i:j], i})
			i = j
		}
		if len(out) > 4*maxFilterTerms {
			return nil, badFilter("the filter has too many terms")
		}
	}
	return append(out, token{kind: tEOF, pos: len(s)}), nil
}

type filterParser struct {
	toks    []token
	i       int
	terms   int
	bracket bool // inside attr[...]: names are sub-attributes, no nested brackets
}

// parseFilter parses a filter string into an expression tree (names not yet resolved).
func parseFilter(s string) (filter.Expression, error) {
	if len(s) > MaxFilterLength {
		return nil, badFilter("the filter is longer than %d bytes", MaxFilterLength)
	}
	if strings.TrimSpace(s) == "" {
		return nil, badFilter("the filter is empty")
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	e, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, badFilter("unexpected %q at position %d", t.text, t.pos)
	}
	return e, nil
}

func (p *filterParser) peek() token { return p.toks[p.i] }
func (p *filterParser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *filterParser) isWord(w string) bool {
	t := p.peek()
	return t.kind == tWord && strings.EqualFold(t.text, w)
}

func (p *filterParser) or(depth int) (filter.Expression, error) {
	left, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.isWord("or") {
		p.next()
		right, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		left = &filter.LogicalExpression{Left: left, Right: right, Operator: filter.OR}
	}
	return left, nil
}

func (p *filterParser) and(depth int) (filter.Expression, error) {
	left, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.isWord("and") {
		p.next()
		right, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		left = &filter.LogicalExpression{Left: left, Right: right, Operator: filter.AND}
	}
	return left, nil
}

func (p *filterParser) unary(depth int) (filter.Expression, error) {
	if depth > maxFilterDepth {
		return nil, badFilter("the filter nests deeper than %d levels", maxFilterDepth)
	}
	if p.terms++; p.terms > maxFilterTerms {
		return nil, badFilter("the filter has more than %d terms", maxFilterTerms)
	}
	t := p.peek()
	switch {
	case t.kind == tWord && strings.EqualFold(t.text, "not") && p.toks[p.i+1].kind == tLParen:
		p.next()
		e, err := p.group(depth)
		if err != nil {
			return nil, err
		}
		return &filter.NotExpression{Expression: e}, nil
	case t.kind == tLParen:
		return p.group(depth)
	case t.kind == tWord:
		return p.attrExp(depth)
	case t.kind == tEOF:
		return nil, badFilter("the filter ends where an expression was expected")
	}
	return nil, badFilter("unexpected %q at position %d", t.text, t.pos)
}

func (p *filterParser) group(depth int) (filter.Expression, error) {
	open := p.next()
	e, err := p.or(depth + 1)
	if err != nil {
		return nil, err
	}
	if t := p.next(); t.kind != tRParen {
		return nil, badFilter("missing ')' for '(' at position %d", open.pos)
	}
	return e, nil
}

// isAttrName reports whether s is an ATTRNAME (RFC 7643 §2.1), optionally "$"-prefixed ($ref).
func isAttrName(s string) bool {
	s = strings.TrimPrefix(s, "$")
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

var (
	numberRE  = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	operators = map[string]filter.CompareOperator{
		"eq": filter.EQ, "ne": filter.NE, "co": filter.CO, "sw": filter.SW, "ew": filter.EW,
		"gt": filter.GT, "ge": filter.GE, "lt": filter.LT, "le": filter.LE, "pr": filter.PR,
	}
)

// parseAttrPath reads "[urn:...:]name[.sub]".
func parseAttrPath(w string) (filter.AttributePath, error) {
	var p filter.AttributePath
	rest := w
	if i := strings.LastIndexByte(w, ':'); i >= 0 {
		uri := w[:i]
		p.URIPrefix = &uri
		rest = w[i+1:]
	}
	name, sub, hasSub := strings.Cut(rest, ".")
	if !isAttrName(name) || hasSub && !isAttrName(sub) {
		return p, badFilter("%q is not an attribute path", w)
	}
	p.AttributeName = name
	if hasSub {
		p.SubAttribute = &sub
	}
	return p, nil
}

func (p *filterParser) attrExp(depth int) (filter.Expression, error) {
	w := p.next()
	path, err := parseAttrPath(w.text)
	if err != nil {
		return nil, err
	}
	if p.peek().kind == tLBracket {
		if p.bracket {
			return nil, badFilter("value filters cannot nest (position %d)", p.peek().pos)
		}
		open := p.next()
		p.bracket = true
		inner, err := p.or(depth + 1)
		p.bracket = false
		if err != nil {
			return nil, err
		}
		if t := p.next(); t.kind != tRBracket {
			return nil, badFilter("missing ']' for '[' at position %d", open.pos)
		}
		vp := &filter.ValuePath{AttributePath: path, ValueFilter: inner}
		// Entra ID: attr[filter].sub op value.
		if t := p.peek(); t.kind == tWord && strings.HasPrefix(t.text, ".") {
			p.next()
			sub := t.text[1:]
			if !isAttrName(sub) {
				return nil, badFilter("%q is not a sub-attribute", sub)
			}
			cmp, err := p.comparison(filter.AttributePath{AttributeName: sub})
			if err != nil {
				return nil, err
			}
			vp.ValueFilter = &filter.LogicalExpression{Left: inner, Right: cmp, Operator: filter.AND}
		}
		return vp, nil
	}
	return p.comparison(path)
}

func (p *filterParser) comparison(path filter.AttributePath) (*filter.AttributeExpression, error) {
	t := p.next()
	if t.kind != tWord {
		return nil, badFilter("missing operator after %s", path)
	}
	op, ok := operators[strings.ToLower(t.text)]
	if !ok {
		return nil, badFilter("unknown operator %q at position %d", t.text, t.pos)
	}
	e := &filter.AttributeExpression{AttributePath: path, Operator: op}
	if op == filter.PR {
		return e, nil
	}
	v := p.next()
	switch v.kind {
	case tString:
		e.CompareValue = v.text
	case tWord:
		switch w := strings.ToLower(v.text); {
		case w == "true":
			e.CompareValue = true
		case w == "false":
			e.CompareValue = false
		case w == "null":
			e.CompareValue = nil
		case (w[0] == '-' || w[0] >= '0' && w[0] <= '9') && numberRE.MatchString(v.text):
			if n, err := strconv.ParseInt(v.text, 10, 64); err == nil {
				e.CompareValue = n
			} else if f, err := strconv.ParseFloat(v.text, 64); err == nil {
				e.CompareValue = f
			} else {
				return nil, badFilter("number %q out of range", v.text)
			}
		case w == "and" || w == "or" || w == "not":
			return nil, badFilter("missing value after %s %s", path, op)
		default:
			e.CompareValue = v.text // unquoted string (lenient, see above)
		}
	default:
		return nil, badFilter("missing value after %s %s", path, op)
	}
	return e, nil
}

// resolveFilter parses a filter and rewrites every attribute path to its canonical spelling
// in the resource schema (core names unqualified, extension names with their URN). Unknown
// attributes are invalid: a filter never reaches the store with a name outside the schema.
func resolveFilter(s string, rs *resourceSchema) (filter.Expression, error) {
	e, err := parseFilter(s)
	if err != nil {
		return nil, err
	}
	if err := rs.canonical(e, nil); err != nil {
		return nil, err
	}
	return e, nil
}

// canonical resolves the names in e; in is the attribute of an enclosing value path.
func (s *resourceSchema) canonical(e filter.Expression, in *resolved) error {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		return s.canonicalPath(&e.AttributePath, in)
	case *filter.ValuePath:
		if in != nil {
			return badFilter("value filters cannot nest")
		}
		if err := s.canonicalPath(&e.AttributePath, nil); err != nil {
			return err
		}
		r, _ := s.resolve(e.AttributePath.URI(), e.AttributePath.AttributeName, "")
		if !r.attr.MultiValued() || !r.attr.HasSubAttributes() {
			return badFilter("%s is not a multi-valued complex attribute", r.path())
		}
		return s.canonical(e.ValueFilter, &r)
	case *filter.LogicalExpression:
		if err := s.canonical(e.Left, in); err != nil {
			return err
		}
		return s.canonical(e.Right, in)
	case *filter.NotExpression:
		return s.canonical(e.Expression, in)
	}
	return badFilter("unsupported expression")
}

func (s *resourceSchema) canonicalPath(p *filter.AttributePath, in *resolved) error {
	if in != nil {
		if p.URIPrefix != nil || p.SubAttribute != nil {
			return badFilter("%s inside %s[...] must name a sub-attribute", p, in.attr.Name())
		}
		sa, ok := in.attr.SubAttributes().ContainsAttribute(p.AttributeName)
		if !ok {
			return badFilter("%s has no sub-attribute %q", in.attr.Name(), p.AttributeName)
		}
		p.AttributeName = sa.Name()
		return nil
	}
	r, ok := s.resolve(p.URI(), p.AttributeName, p.SubAttributeName())
	if !ok {
		return badFilter("unknown attribute %q", p.String())
	}
	p.AttributeName = r.attr.Name()
	p.URIPrefix = nil
	if r.urn != "" {
		urn := r.urn
		p.URIPrefix = &urn
	}
	if r.sub != nil {
		n := r.sub.Name()
		p.SubAttribute = &n
	}
	return nil
}
