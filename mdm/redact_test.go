package mdm_test

import (
	"encoding/json"
	"testing"

	"github.com/offboard/offboard/mdm"
)

func TestRedactFields(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"named secrets are dropped and the rest kept", `{"url":"https://x","secret":"s","clientSecret":"c"}`, `{"url":"https://x"}`},
		{"a secret spelled in another case is dropped too", `{"url":"https://x","SECRET":"s"}`, `{"url":"https://x"}`},
		{"a config that is not an object redacts to an empty object", `["secret"]`, `{}`},
		{"malformed JSON redacts to an empty object", `{"secret":`, `{}`},
		{"null redacts to an empty object", `null`, `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(mdm.RedactFields(json.RawMessage(tc.in), "secret", "clientSecret")); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
