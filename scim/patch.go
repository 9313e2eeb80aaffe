package scim

import (
	"reflect"
	"strings"
	"time"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"

	"github.com/offboard/offboard/identity"
)

// patchUser applies PATCH operations to the wire form of an employee's resource and stores
// the result as a full replacement. It reports whether anything changed.
func patchUser(e *identity.Employee, ops []scim.PatchOperation) (bool, error) {
	wire := map[string]any{}
	for k, v := range toResource(e).Attributes {
		wire[k] = v
	}
	if e.ExternalID != "" {
		wire["externalId"] = e.ExternalID
	}
	for _, op := range ops {
		if err := applyOp(wire, op); err != nil {
			return false, err
		}
	}
	in, err := toInput(scim.ResourceAttributes(wire))
	if err != nil {
		return false, err
	}
	return replaceUser(e, in), nil
}

// applyOp applies one operation with a simple path (attribute, sub-attribute, optionally
// URN-qualified) or no path.
func applyOp(wire map[string]any, op scim.PatchOperation) error {
	if op.Path == nil {
		if op.Op == scim.PatchOperationRemove {
			return scimerrors.ScimErrorNoTarget
		}
		m, ok := op.Value.(map[string]any)
		if !ok {
			return scimerrors.ScimErrorInvalidValue
		}
		for k, v := range m {
			wire[k] = v
		}
		return nil
	}
	p := op.Path.AttributePath
	target := wire
	if uri := p.URI(); uri != "" && !strings.EqualFold(uri, UserSchema) {
		ext, _ := wire[uri].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
			wire[uri] = ext
		}
		target = ext
	}
	name := p.AttributeName
	if p.SubAttribute != nil {
		sub, _ := target[name].(map[string]any)
		if sub == nil {
			sub = map[string]any{}
			target[name] = sub
		}
		target, name = sub, *p.SubAttribute
	}
	switch op.Op {
	case scim.PatchOperationRemove:
		delete(target, name)
	default:
		target[name] = op.Value
	}
	return nil
}

func equalTimes(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func deepEqual(a, b map[string]any) bool { return reflect.DeepEqual(a, b) }
