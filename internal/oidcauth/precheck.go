package oidcauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// maxTokenLen bounds a presented JWT before any decoding. Entra ID and Okta
// tokens are 1–3 KiB; group overage claims stay well below this.
const maxTokenLen = 16 << 10

const maxHeaderLen = 2048

// allowedAlgs are the only signature algorithms ever accepted: asymmetric ones.
// HS* (which would let anyone holding the public key forge tokens, if the key
// were used as an HMAC secret) and "none" are absent by construction.
var allowedAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func algAllowed(alg string) bool {
	for _, a := range allowedAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

var errMalformedJWT = errors.New("not a compact JWS")

// jwtHeader is the part of the protected header looked at before any key is.
type jwtHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Crit []string `json:"crit"`
}

// precheck rejects, without network or key access, anything that is not a
// bounded-size compact JWS with three non-empty base64url parts and a protected
// header naming an allowed algorithm. go-oidc and go-jose check all of this
// again; doing it first keeps garbage away from discovery and JWKS fetches.
func precheck(raw string) (jwtHeader, error) {
	if len(raw) == 0 || len(raw) > maxTokenLen {
		return jwtHeader{}, errMalformedJWT
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return jwtHeader{}, errMalformedJWT
	}
	for _, p := range parts {
		if p == "" || !isBase64URL(p) {
			return jwtHeader{}, errMalformedJWT
		}
	}
	if len(parts[0]) > maxHeaderLen {
		return jwtHeader{}, errMalformedJWT
	}
	hb, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return jwtHeader{}, errMalformedJWT
	}
	var h jwtHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return jwtHeader{}, errMalformedJWT
	}
	if !algAllowed(h.Alg) {
		return jwtHeader{}, errors.New("signature algorithm not allowed")
	}
	if len(h.Crit) > 0 {
		return jwtHeader{}, errors.New("critical header parameters not supported")
	}
	return h, nil
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
