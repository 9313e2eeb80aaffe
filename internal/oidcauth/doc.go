// Package oidcauth owns the verification of JWT bearer tokens that an identity
// provider signs for a tenant's SCIM endpoint, on top of go-oidc: per-tenant
// Config (issuer, audience, required claims), issuer URL policy, discovery and
// JWKS caching per issuer with throttled refetch on key rotation, and an
// allow-list of asymmetric signature algorithms.
//
// Every error from Verifier.Verify means "401 Unauthorized" to the HTTP layer;
// the sentinels (ErrInvalidToken, ErrUnavailable, ErrConfig) only say why, for
// logs and metrics. Error texts never contain the token.
//
// # Microsoft Entra ID
//
// When the "Secret Token" field of an Entra ID provisioning configuration
// (Enterprise application → Provisioning → Admin credentials) is left blank,
// Entra ID sends with each SCIM request a bearer JWT it issued itself, signed
// with RS256 by the keys of its v1 endpoint:
//
//	iss  https://sts.windows.net/<directory (tenant) id>/
//	aud  8adf8e6e-67b2-4cf2-a259-e3dc5476c621   (the application id Entra uses for all
//	                                             non-gallery SCIM apps)
//	tid  <directory (tenant) id>
//
// Configure the Offboard tenant with:
//
//	{
//	  "issuer":   "https://sts.windows.net/<directory-id>/",
//	  "audience": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
//	  "claims":   {"tid": "<directory-id>"}
//	}
//
// The trailing slash of the issuer is significant: it must equal the token's iss
// exactly. Because the audience is the same for every Entra customer, the issuer
// (which contains the directory id) is what ties tokens to one company; the tid
// claim repeats that check. Never configure the "common" or "organizations"
// issuers. Microsoft documents this token as meant for testing and recommends a
// long-lived secret token for production provisioning: use Offboard's own
// scim-scope token there (it is also what works with Okta).
//
// Discovery fetches <issuer>/.well-known/openid-configuration. If that path is
// not served for your issuer, set "discoveryUrl" to
// "https://login.microsoftonline.com/<directory-id>/.well-known/openid-configuration":
// that document still has to report exactly the configured issuer, so pointing
// discovery elsewhere never widens which tokens are accepted.
//
// # Development issuers
//
// Issuers and discovery/JWKS URLs must be https. Plain http is accepted only for
// loopback hosts (127.0.0.1, ::1, localhost) and only when the Verifier was built
// with AllowInsecureIssuer(), which the server sets from
// OFFBOARD_ALLOW_INSECURE_ISSUER=1.
package oidcauth
