package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/offboard/offboard/scim"
)

// Request-shape limits on the SCIM API, checked before the SCIM handler parses anything. The
// SCIM package may enforce its own (equal or stricter) limits; these are the server's floor,
// so that a change inside scim/ can never open the parser to unbounded input. IdPs send
// filters of one or two terms (`userName eq "…"`, `externalId eq "…"`, `displayName eq "…"`)
// and PATCH requests of a few operations (Entra batches group members into a few dozen).
const (
	maxFilterLength    = 4096
	maxFilterDepth     = 16
	maxFilterTerms     = 128
	maxPatchOperations = 1000
)

// scimGuard refuses filters that are too long, too deep or have too many terms (400
// invalidFilter) and PATCH requests with too many operations (400 invalidValue). It reads
// the body only for PATCH and POST …/.search, after the body limit has buffered it.
func scimGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, f := range r.URL.Query()["filter"] {
			if err := checkFilter(f); err != nil {
				scim.WriteError(w, http.StatusBadRequest, "invalidFilter", err.Error())
				return
			}
		}
		search := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/.search")
		if (r.Method != http.MethodPatch && !search) || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			scim.WriteError(w, http.StatusBadRequest, "invalidSyntax", "The request body could not be read.")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		// Malformed JSON is left to the SCIM handler, which reports it properly.
		var top map[string]json.RawMessage
		if json.Unmarshal(body, &top) == nil {
			for k, v := range top {
				switch {
				case search && strings.EqualFold(k, "filter"):
					var f string
					if json.Unmarshal(v, &f) == nil {
						if err := checkFilter(f); err != nil {
							scim.WriteError(w, http.StatusBadRequest, "invalidFilter", err.Error())
							return
						}
					}
				case !search && strings.EqualFold(k, "Operations"):
					var ops []json.RawMessage
					if json.Unmarshal(v, &ops) == nil && len(ops) > maxPatchOperations {
						scim.WriteError(w, http.StatusBadRequest, "invalidValue",
							fmt.Sprintf("A PATCH request may carry at most %d operations.", maxPatchOperations))
						return
					}
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkFilter bounds a SCIM filter's length, its nesting of parentheses and value-path
// brackets, and its number of terms (and/or joined comparisons), looking at it only outside
// quoted strings. It does not validate the syntax: the SCIM parser does.
func checkFilter(f string) error {
	if len(f) > maxFilterLength {
		return fmt.Errorf("The filter is longer than %d bytes.", maxFilterLength)
	}
	depth, terms := 0, 1
	inString := false
	word := 0 // start of the current bare word
	endWord := func(i int) {
		w := f[word:i]
		if strings.EqualFold(w, "and") || strings.EqualFold(w, "or") {
			terms++
		}
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
				word = i + 1
			}
			continue
		}
		switch c {
		case '"':
			endWord(i)
			inString = true
		case '(', '[':
			endWord(i)
			if depth++; depth > maxFilterDepth {
				return fmt.Errorf("The filter nests deeper than %d levels.", maxFilterDepth)
			}
			word = i + 1
		case ')', ']', ' ', '\t', '\n', '\r':
			endWord(i)
			if c == ')' || c == ']' {
				depth--
			}
			word = i + 1
		}
		if terms > maxFilterTerms {
			return fmt.Errorf("The filter has more than %d terms.", maxFilterTerms)
		}
	}
	if !inString {
		endWord(len(f))
	}
	if terms > maxFilterTerms {
		return fmt.Errorf("The filter has more than %d terms.", maxFilterTerms)
	}
	return nil
}
