package mdm

import (
	"encoding/json"
	"strings"
)

// RedactFields returns cfg, a JSON object, without the named top-level fields (matched
// case-insensitively, as encoding/json matches them): secrets are
// write-only, so the admin API shows a configuration through this. Anything that is not a JSON
// object redacts to {} so that a malformed configuration can never leak.
func RedactFields(cfg json.RawMessage, secrets ...string) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cfg, &m); err != nil || m == nil {
		return json.RawMessage(`{}`)
	}
	// encoding/json matches field names case-insensitively, so redaction must too.
	for k := range m {
		for _, s := range secrets {
			if strings.EqualFold(k, s) {
				delete(m, k)
			}
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return out
}
