package embedded

import (
	"bytes"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// splitIDFilter splits a filter into a string `_id` equality and the remaining conditions.
// ok is false when the filter has no plain string `_id` (those go to FerretDB unchanged).
func splitIDFilter(filter bson.Raw) (id bson.RawValue, rest []bson.RawElement, ok bool) {
	elems, err := filter.Elements()
	if err != nil {
		return bson.RawValue{}, nil, false
	}
	for _, e := range elems {
		if e.Key() == "_id" {
			v := e.Value()
			if v.Type != bson.TypeString {
				return bson.RawValue{}, nil, false
			}
			id, ok = v, true
			continue
		}
		rest = append(rest, e)
	}
	return id, rest, ok
}

// matches evaluates the conditions of a filter (other than `_id`) against doc. decided is false
// when a condition uses something this small evaluator does not implement (arrays on the path,
// document or array comparands, operators other than the comparison ones); the caller then lets
// FerretDB evaluate the original filter.
func matches(doc bson.Raw, conds []bson.RawElement) (match, decided bool) {
	match = true
	for _, c := range conds {
		key := c.Key()
		if key == "" || key[0] == '$' {
			return false, false
		}
		val, present, ok := lookupPath(doc, key)
		if !ok {
			return false, false
		}
		cv := c.Value()
		var m, d bool
		if cv.Type == bson.TypeEmbeddedDocument && isOperatorDoc(cv.Document()) {
			m, d = matchOperators(val, present, cv.Document())
		} else {
			m, d = matchOp("$eq", val, present, cv)
		}
		if !d {
			return false, false
		}
		match = match && m
	}
	return match, true
}

func isOperatorDoc(d bson.Raw) bool {
	elems, err := d.Elements()
	if err != nil || len(elems) == 0 {
		return false
	}
	for _, e := range elems {
		if !strings.HasPrefix(e.Key(), "$") {
			return false
		}
	}
	return true
}

// lookupPath follows a dotted path through embedded documents. ok is false if an array is met
// on the way or at the end (array semantics are left to FerretDB).
func lookupPath(doc bson.Raw, path string) (v bson.RawValue, present, ok bool) {
	cur := doc
	parts := strings.Split(path, ".")
	for i, p := range parts {
		val, err := cur.LookupErr(p)
		if err != nil {
			return bson.RawValue{}, false, true
		}
		if val.Type == bson.TypeArray {
			return bson.RawValue{}, false, false
		}
		if i == len(parts)-1 {
			return val, true, true
		}
		if val.Type != bson.TypeEmbeddedDocument {
			return bson.RawValue{}, false, true
		}
		cur = val.Document()
	}
	return bson.RawValue{}, false, true
}

func matchOperators(val bson.RawValue, present bool, ops bson.Raw) (match, decided bool) {
	elems, _ := ops.Elements()
	match = true
	for _, e := range elems {
		m, d := matchOp(e.Key(), val, present, e.Value())
		if !d {
			return false, false
		}
		match = match && m
	}
	return match, true
}

func matchOp(op string, val bson.RawValue, present bool, arg bson.RawValue) (match, decided bool) {
	switch op {
	case "$exists":
		want := true
		switch arg.Type {
		case bson.TypeBoolean:
			want = arg.Boolean()
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
			f, _ := number(arg)
			want = f != 0
		default:
			return false, false
		}
		return present == want, true
	case "$eq", "$ne":
		if !scalar(arg) {
			return false, false
		}
		eq := equal(val, present, arg)
		if op == "$ne" {
			return !eq, true
		}
		return eq, true
	case "$in", "$nin":
		if arg.Type != bson.TypeArray {
			return false, false
		}
		items, err := arg.Array().Values()
		if err != nil {
			return false, false
		}
		found := false
		for _, it := range items {
			if !scalar(it) {
				return false, false
			}
			if equal(val, present, it) {
				found = true
			}
		}
		if op == "$nin" {
			return !found, true
		}
		return found, true
	case "$lt", "$lte", "$gt", "$gte":
		if !scalar(arg) || arg.Type == bson.TypeNull {
			return false, false
		}
		if !present {
			return false, true
		}
		c, comparable := compare(val, arg)
		if !comparable {
			return false, true
		}
		switch op {
		case "$lt":
			return c < 0, true
		case "$lte":
			return c <= 0, true
		case "$gt":
			return c > 0, true
		default:
			return c >= 0, true
		}
	}
	return false, false
}

func scalar(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeString, bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeBoolean,
		bson.TypeNull, bson.TypeDateTime, bson.TypeObjectID:
		return true
	}
	return false
}

func number(v bson.RawValue) (float64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		return float64(v.Int32()), true
	case bson.TypeInt64:
		return float64(v.Int64()), true
	case bson.TypeDouble:
		return v.Double(), true
	}
	return 0, false
}

// equal implements MongoDB equality for scalars: numbers compare across types, null matches a
// missing field.
func equal(val bson.RawValue, present bool, arg bson.RawValue) bool {
	if arg.Type == bson.TypeNull {
		return !present || val.Type == bson.TypeNull
	}
	if !present {
		return false
	}
	c, ok := compare(val, arg)
	return ok && c == 0
}

// compare orders two scalars of the same type bracket; ok is false across brackets.
func compare(a, b bson.RawValue) (int, bool) {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		if !ok {
			return 0, false
		}
		switch {
		case fa < fb:
			return -1, true
		case fa > fb:
			return 1, true
		}
		// Large int64 values lose precision as float64: compare exactly when both are integers.
		if a.Type == bson.TypeInt64 && b.Type == bson.TypeInt64 {
			switch ia, ib := a.Int64(), b.Int64(); {
			case ia < ib:
				return -1, true
			case ia > ib:
				return 1, true
			}
		}
		return 0, true
	}
	if a.Type != b.Type {
		return 0, false
	}
	switch a.Type {
	case bson.TypeString:
		return strings.Compare(a.StringValue(), b.StringValue()), true
	case bson.TypeBoolean:
		ab, bb := a.Boolean(), b.Boolean()
		switch {
		case ab == bb:
			return 0, true
		case !ab:
			return -1, true
		}
		return 1, true
	case bson.TypeDateTime:
		at, bt := a.DateTime(), b.DateTime()
		switch {
		case at < bt:
			return -1, true
		case at > bt:
			return 1, true
		}
		return 0, true
	case bson.TypeObjectID:
		ao, bo := a.ObjectID(), b.ObjectID()
		return bytes.Compare(ao[:], bo[:]), true
	case bson.TypeNull:
		return 0, true
	}
	return 0, false
}
