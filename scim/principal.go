package scim

import "context"

// Principal is who sends a SCIM request: the tenant the credential belongs to and an actor
// name for the audit log ("token:<id>", "oidc:<subject>").
type Principal struct {
	Tenant string
	Actor  string
}

type principalKey struct{}

// WithPrincipal returns a context carrying the authenticated principal.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the authenticated principal; ok is false for unauthenticated requests,
// which the handlers refuse.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.Tenant != ""
}
