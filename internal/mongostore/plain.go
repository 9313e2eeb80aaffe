package mongostore

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Plain converts decoded BSON values into the plain JSON-shaped Go values the SCIM layer works
// with: map[string]any, []any, string, bool, int64, float64, time.Time and nil.
func Plain(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	for k, v := range m {
		m[k] = plainValue(v)
	}
	return m
}

func plainValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return Plain(x)
	case bson.M:
		return Plain(map[string]any(x))
	case bson.D:
		m := make(map[string]any, len(x))
		for _, e := range x {
			m[e.Key] = plainValue(e.Value)
		}
		return m
	case bson.A:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainValue(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = plainValue(e)
		}
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case bson.DateTime:
		return x.Time().UTC()
	case time.Time:
		return x.UTC()
	}
	return v
}
