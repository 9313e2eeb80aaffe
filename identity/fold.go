package identity

import (
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

var folder = cases.Fold()

// FoldKey returns the key under which a case-insensitive value (userName, group displayName,
// tenant name) is unique: Unicode full case folding of the NFC form, so "JOHN@X", "john@x" and
// "ǰohn@x" composed or decomposed compare as RFC 7643 caseExact=false requires.
func FoldKey(s string) string {
	return norm.NFC.String(folder.String(norm.NFC.String(s)))
}
