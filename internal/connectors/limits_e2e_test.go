package connectors_test

import (
	"errors"
	"testing"
	"time"

	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/intune"
	"github.com/offboard/offboard/mdm/intune/intunetest"
)

func TestVendorLimitsAreSharedPerAccountAcrossConnectorsAndReopening(t *testing.T) {
	graph := intunetest.New(t)
	env := testenv.Start(t, testenv.Options{NoRunner: true, ConnectorClient: trusting(graph.Server())})
	acme := env.CreateTenant("acme", 5)
	// Shrink Graph's per-tenant budget of this process to one write an hour.
	env.Connectors.Limiters().Get("intune "+intunetest.TenantID, func() *mdm.Limiter {
		return mdm.NewLimiter(intune.Type, mdm.Limits{Writes: 1, Per: time.Hour}, time.Now)
	})
	cfg := map[string]any{"tenantId": intunetest.TenantID, "clientId": intunetest.ClientID,
		"clientSecret": intunetest.ClientSecret, "mode": "retire", "graphUrl": graph.URL(), "loginUrl": graph.URL()}
	a := connect(t, acme, "intune", "intune-a", cfg).JSON["id"].(string)
	b := connect(t, acme, "intune", "intune-b", cfg).JSON["id"].(string)

	retire := func(conn, device string) error {
		c, err := env.Connectors.Open(t.Context(), acme.ID, conn)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.(mdm.AppRemover).RemoveApp(t.Context(), mdm.Request{Key: conn + device, Action: mdm.ActionWipeApp,
			Tenant: acme.ID, Device: &mdm.Device{ID: device}, Occurred: time.Now()})
		return err
	}
	if err := retire(a, intunetest.JaneIPhone); err != nil {
		t.Fatal(err)
	}
	// Another connector of the same Entra tenant draws on the same budget ...
	err := retire(b, intunetest.JanePixel)
	var ve *mdm.VendorError
	if !errors.As(err, &ve) || !ve.Retryable || ve.RetryAfter <= 0 {
		t.Fatalf("second connector: got %v, want a retryable over-budget error", err)
	}
	// ... and so does the first one opened anew after its stored configuration changed (as
	// after a key rotation: a new revision, a new cache entry).
	c, err := env.Store.GetConnector(t.Context(), acme.ID, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Store.ReplaceSealed(t.Context(), c, c.Sealed, c.HookSecret); err != nil {
		t.Fatal(err)
	}
	if err := retire(a, intunetest.JanePixel); !errors.As(err, &ve) || !ve.Retryable {
		t.Fatalf("reopened connector: got %v, want a retryable over-budget error", err)
	}
	if n := graph.Count("POST", "/retire"); n != 1 {
		t.Fatalf("%d retires reached Graph, want 1", n)
	}
}
