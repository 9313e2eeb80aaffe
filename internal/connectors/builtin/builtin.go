// Package builtin registers every connector type Offboard ships: the one place that names each
// vendor package.
package builtin

import (
	"net/http"

	"github.com/offboard/offboard/identity/threemawork"
	"github.com/offboard/offboard/internal/connectors"
	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/intune"
	"github.com/offboard/offboard/mdm/jamf"
	"github.com/offboard/offboard/mdm/nanomdm"
	"github.com/offboard/offboard/mdm/webhook"
	"github.com/offboard/offboard/mdm/workspaceone"
)

// Kinds returns the registry of connector types.
func Kinds() map[string]connectors.Kind {
	return map[string]connectors.Kind{
		"webhook":      {Open: webhook.Open, Redact: webhook.Redact, Notifier: true},
		"threemawork":  {Open: threemawork.Open, Redact: threemawork.Redact, Notifier: true, Messenger: true},
		"intune":       {Open: intune.Open, Redact: intune.Redact},
		"jamf":         {Open: jamf.Open, Redact: jamf.Redact},
		"workspaceone": {Open: workspaceone.Open, Redact: workspaceone.Redact},
		"nanomdm": {Open: nanomdm.Open, Redact: nanomdm.Redact, Hook: &connectors.Hook{
			NewSecret:   nanomdm.NewWebhookSecret,
			CheckSecret: nanomdm.CheckWebhookSecret,
			Handler: func(id string, log mdm.CommandLog, wake func(string, string)) http.Handler {
				return nanomdm.NewWebhookHandler(id, log, nanomdm.WithWake(wake))
			},
		}},
	}
}
