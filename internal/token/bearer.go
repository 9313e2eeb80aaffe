package token

import "strings"

// MaxBearerLen bounds the credential Bearer accepts: room for any IdP's JWT.
const MaxBearerLen = 16 << 10

// Bearer extracts the credential from an Authorization header value of the form
// "Bearer <b64token>" (RFC 6750: scheme case-insensitive, then spaces, then
// letters, digits and -._~+/ with optional trailing "="). It serves both the
// static tokens of this package and JWTs; tell them apart by the ob?_ prefix.
func Bearer(authorization string) (string, bool) {
	const scheme = "bearer "
	if len(authorization) <= len(scheme) || !strings.EqualFold(authorization[:len(scheme)], scheme) {
		return "", false
	}
	cred := strings.TrimLeft(authorization[len(scheme):], " ")
	if cred == "" || len(cred) > MaxBearerLen {
		return "", false
	}
	body := strings.TrimRight(cred, "=")
	if body == "" {
		return "", false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return "", false
		}
	}
	return cred, true
}
