package mongostore_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// keyReviewed lists the places allowed to build a BSON field name from a non-constant
// expression, each reviewed: "<path>:<func>" for one function, "<path>" for a whole file.
// Everything else must build field names from constants, or from the helpers in keyHelpers.
var keyReviewed = map[string]string{
	// The SCIM filter translator (the SCIM helper's internal/mongostore/filter.go): every path
	// comes from the static field tables (userFields, groupFields) through fields.lookup, and
	// every operator from a fixed switch on the parsed filter's operator; attribute names from
	// the request only select a table entry.
	"internal/mongostore/filter.go:element":       "SCIM filter translator: schema-mapped path",
	"internal/mongostore/filter.go:compare":       "SCIM filter translator: schema-mapped path",
	"internal/mongostore/filter.go:exists":        "SCIM filter translator: schema-mapped path",
	"internal/mongostore/filter.go:stringCompare": "SCIM filter translator: schema-mapped path",
	"internal/mongostore/filter.go:ordered":       "SCIM filter translator: schema-mapped path, operator from a fixed switch",
	"internal/mongostore/filter.go:timeCompare":   "SCIM filter translator: schema-mapped path",
	"internal/mongostore/filter.go:numberCompare": "SCIM filter translator: schema-mapped path",
	// The SCIM helper's list: the sort key is sortPath(fields, attr), a table lookup.
	"internal/mongostore/list.go:list": "sort path from the field table",
	// main's ListEmployees sorts by q.SortBy as given. No caller sets SortBy on main (scim/
	// passes only filter, startIndex and count); the SCIM helper's rewrite of list.go maps it
	// through sortPath. Drop this entry when that lands.
	"internal/mongostore/list.go:ListEmployees": "SortBy unset by every caller (pending the SCIM helper's sortPath)",
	// The brake's time buckets: "brake.b<window number>" and the bucket keys Offboard wrote.
	"internal/mongostore/registry.go:CountOffboarding": "brake.b<bucket number>, keys Offboard wrote itself",
}

// keyHelpers are functions whose result is a safe field name: they validate or escape
// whatever they are given.
var keyHelpers = map[string]string{
	"seatOpField": "seatOps.<op>; op ids are Offboard's own and are checked for '.', '$' and NUL",
	"FieldName":   "escapes '%', '$', '.' and NUL reversibly",
}

// TestBSONFieldNamesAreBuiltOnlyFromConstants scans every non-test Go file of the module that
// imports the MongoDB driver (and all of internal/mongostore) for places that build a BSON
// field name — bson.E{Key: …}, elements of bson.D, keys of bson.M or map[string]any
// literals, assignments to bson.M entries or to a .Key field — and fails when the name is
// not a constant (a literal, a named constant, a concatenation of those, a local variable
// only ever assigned such values, or a keyHelpers call) outside keyReviewed. A request
// value that became a field name could be an operator ($where, $ne) or a path (a.b).
func TestBSONFieldNamesAreBuiltOnlyFromConstants(t *testing.T) {
	root := moduleRoot(t)
	var findings []string
	used := map[string]bool{}
	dirs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	scanned := 0
	for dir, files := range dirs {
		var parsed []*ast.File
		for _, f := range files {
			af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			parsed = append(parsed, af)
		}
		consts := packageConsts(parsed)
		rel, _ := filepath.Rel(root, dir)
		for i, af := range parsed {
			relFile := filepath.ToSlash(filepath.Join(rel, filepath.Base(files[i])))
			if !importsDriver(af) && filepath.ToSlash(rel) != "internal/mongostore" {
				continue
			}
			scanned++
			for _, f := range scanFile(fset, af, consts) {
				if reason, ok := keyReviewed[relFile]; ok && reason != "" {
					used[relFile] = true
					continue
				}
				if _, ok := keyReviewed[relFile+":"+f.fn]; ok {
					used[relFile+":"+f.fn] = true
					continue
				}
				findings = append(findings, relFile+":"+strconv.Itoa(f.line)+" in "+f.fn+": field name "+f.expr)
			}
		}
	}
	if scanned < 8 {
		t.Fatalf("scanned only %d files: is the module root %s right?", scanned, root)
	}
	sort.Strings(findings)
	if len(findings) > 0 {
		t.Errorf("BSON field names built from non-constant expressions (make them constants, use a keyHelpers function, or review and add to keyReviewed):\n  %s",
			strings.Join(findings, "\n  "))
	}
	for k := range keyReviewed {
		if !used[k] {
			t.Logf("keyReviewed entry %q matched nothing (stale, or code not merged yet)", k)
		}
	}
}

func TestTheBSONKeyScanCatchesDynamicKeys(t *testing.T) {
	src := `package p
import "go.mongodb.org/mongo-driver/v2/bson"
const col = "x"
func ok(add bool, op string) {
	key := "$pull"
	if add { key = "$addToSet" }
	f, _ := seatOpField(op)
	_ = bson.D{{Key: key, Value: 1}, {Key: "a." + col, Value: 2}, {Key: f, Value: 3}}
	_ = bson.M{col: 1}
}
func bad(name string, m map[string]string) {
	_ = bson.D{{Key: name, Value: 1}}
	_ = bson.E{Key: "res." + name, Value: 1}
	q := bson.M{}
	q[name] = 1
	for k := range m { _ = bson.D{{Key: k, Value: 1}} }
	_ = map[string]any{name: 1}
	e := bson.E{}
	e.Key = name
	_ = []bson.E{{name, 1}}
}`
	fset := token.NewFileSet()
	af, err := parser.ParseFile(fset, "p.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range scanFile(fset, af, packageConsts([]*ast.File{af})) {
		got = append(got, f.fn+":"+f.expr)
	}
	want := []string{"bad:name", `bad:"res." + name`, "bad:name", "bad:k", "bad:name", "bad:name", "bad:name"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("findings\n  %v\nwant\n  %v", got, want)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func importsDriver(f *ast.File) bool {
	for _, imp := range f.Imports {
		if strings.HasPrefix(strings.Trim(imp.Path.Value, `"`), "go.mongodb.org/mongo-driver") {
			return true
		}
	}
	return false
}

// packageConsts collects the names of a package's constants.
func packageConsts(files []*ast.File) map[string]bool {
	out := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, s := range g.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						out[n.Name] = true
					}
				}
			}
		}
	}
	return out
}

type finding struct {
	fn   string
	line int
	expr string
}

// scanFile reports every field-name expression of f that is not constant.
func scanFile(fset *token.FileSet, f *ast.File, consts map[string]bool) []finding {
	bsonNames := map[string]bool{"bson": true, "primitive": true}
	for _, imp := range f.Imports {
		p := strings.Trim(imp.Path.Value, `"`)
		if imp.Name != nil && (strings.HasSuffix(p, "/bson") || strings.HasSuffix(p, "/primitive")) {
			bsonNames[imp.Name.Name] = true
		}
	}
	isBSON := func(e ast.Expr, names ...string) bool {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok || !bsonNames[x.Name] {
			return false
		}
		for _, n := range names {
			if sel.Sel.Name == n {
				return true
			}
		}
		return false
	}
	isAnyMap := func(e ast.Expr) bool {
		m, ok := e.(*ast.MapType)
		if !ok {
			return false
		}
		k, ok := m.Key.(*ast.Ident)
		if !ok || k.Name != "string" {
			return false
		}
		switch v := m.Value.(type) {
		case *ast.Ident:
			return v.Name == "any"
		case *ast.InterfaceType:
			return v.Methods == nil || len(v.Methods.List) == 0
		}
		return false
	}

	var out []finding
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		c := &constness{consts: consts, body: fd.Body}
		report := func(e ast.Expr) {
			if !c.constant(e, map[string]bool{}) {
				out = append(out, finding{fn: fd.Name.Name, line: fset.Position(e.Pos()).Line, expr: exprString(e)})
			}
		}
		// element checks one bson.E-shaped composite literal.
		element := func(cl *ast.CompositeLit) {
			for i, el := range cl.Elts {
				if kv, ok := el.(*ast.KeyValueExpr); ok {
					if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "Key" {
						report(kv.Value)
					}
				} else if i == 0 {
					report(el)
				}
			}
		}
		bsonMaps := map[string]bool{}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CompositeLit:
				switch {
				case isBSON(x.Type, "E"):
					element(x)
				case isBSON(x.Type, "D") || isSliceOfE(x.Type, isBSON):
					for _, el := range x.Elts {
						if cl, ok := el.(*ast.CompositeLit); ok && cl.Type == nil {
							element(cl)
						}
					}
				case isBSON(x.Type, "M") || isAnyMap(x.Type):
					for _, el := range x.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							report(kv.Key)
						}
					}
				}
			case *ast.AssignStmt:
				for i, lhs := range x.Lhs {
					if len(x.Rhs) == len(x.Lhs) {
						if id, ok := lhs.(*ast.Ident); ok && isBSONMapValue(x.Rhs[i], isBSON) {
							bsonMaps[id.Name] = true
						}
					}
					switch l := lhs.(type) {
					case *ast.IndexExpr:
						if id, ok := l.X.(*ast.Ident); ok && bsonMaps[id.Name] {
							report(l.Index)
						}
					case *ast.SelectorExpr:
						if l.Sel.Name == "Key" && len(x.Rhs) == len(x.Lhs) {
							report(x.Rhs[i])
						}
					}
				}
			case *ast.ValueSpec:
				if x.Type != nil && isBSON(x.Type, "M") {
					for _, n := range x.Names {
						bsonMaps[n.Name] = true
					}
				}
			}
			return true
		})
	}
	return out
}

func isSliceOfE(e ast.Expr, isBSON func(ast.Expr, ...string) bool) bool {
	a, ok := e.(*ast.ArrayType)
	return ok && isBSON(a.Elt, "E")
}

func isBSONMapValue(e ast.Expr, isBSON func(ast.Expr, ...string) bool) bool {
	switch v := e.(type) {
	case *ast.CompositeLit:
		return isBSON(v.Type, "M")
	case *ast.CallExpr:
		if id, ok := v.Fun.(*ast.Ident); ok && id.Name == "make" && len(v.Args) > 0 {
			return isBSON(v.Args[0], "M")
		}
	}
	return false
}

// constness decides whether an expression is a constant string within one function body.
type constness struct {
	consts map[string]bool
	body   *ast.BlockStmt
}

func (c *constness) constant(e ast.Expr, seen map[string]bool) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return x.Kind == token.STRING
	case *ast.ParenExpr:
		return c.constant(x.X, seen)
	case *ast.BinaryExpr:
		return x.Op == token.ADD && c.constant(x.X, seen) && c.constant(x.Y, seen)
	case *ast.CallExpr:
		return helperCall(x)
	case *ast.Ident:
		if c.consts[x.Name] {
			return true
		}
		if seen[x.Name] {
			return true // a cycle adds nothing new
		}
		seen[x.Name] = true
		return c.localConstant(x.Name, seen)
	}
	return false
}

// localConstant reports whether every assignment to the local variable name in the function
// is constant; a variable never assigned (a parameter, a range variable) is not.
func (c *constness) localConstant(name string, seen map[string]bool) bool {
	assigned, ok := false, true
	ast.Inspect(c.body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.AssignStmt:
			for i, lhs := range x.Lhs {
				id, isID := lhs.(*ast.Ident)
				if !isID || id.Name != name {
					continue
				}
				assigned = true
				switch {
				case len(x.Rhs) == len(x.Lhs):
					if x.Tok != token.ASSIGN && x.Tok != token.DEFINE || !c.constant(x.Rhs[i], seen) {
						ok = false
					}
				case len(x.Rhs) == 1 && i == 0:
					call, isCall := x.Rhs[0].(*ast.CallExpr)
					ok = ok && isCall && helperCall(call)
				default:
					ok = false
				}
			}
		case *ast.ValueSpec:
			for i, id := range x.Names {
				if id.Name != name {
					continue
				}
				assigned = true
				if i < len(x.Values) && !c.constant(x.Values[i], seen) {
					ok = false
				}
			}
		case *ast.RangeStmt:
			for _, e := range []ast.Expr{x.Key, x.Value} {
				if id, isID := e.(*ast.Ident); isID && id.Name == name {
					assigned, ok = true, false
				}
			}
		}
		return true
	})
	return assigned && ok
}

func helperCall(call *ast.CallExpr) bool {
	switch f := call.Fun.(type) {
	case *ast.Ident:
		_, ok := keyHelpers[f.Name]
		return ok
	case *ast.SelectorExpr:
		_, ok := keyHelpers[f.Sel.Name]
		return ok
	}
	return false
}

func exprString(e ast.Expr) string { return types.ExprString(e) }
