package nanomdm

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/mdmtest"
	"github.com/offboard/offboard/mdm/nanomdm/nanomdmtest"
)

// conformanceFake adapts a real NanoMDM with simulated devices to mdmtest.Fake.
type conformanceFake struct {
	t       *testing.T
	srv     *nanomdmtest.Server
	log     *memLog
	devices map[string]*nanomdmtest.Device
}

var conformanceDevices = []mdm.Device{
	{ID: "UDID-CONF-COMPANY", Platform: mdm.PlatformIOS, Ownership: mdm.OwnershipCompany},
	{ID: "UDID-CONF-BYOD", Platform: mdm.PlatformIOS, Ownership: mdm.OwnershipPersonal},
}

func newConformanceFake(t *testing.T) *conformanceFake {
	f := &conformanceFake{t: t, log: newMemLog(), devices: map[string]*nanomdmtest.Device{}}
	h := NewWebhookHandler(connectorID, f.log)
	app := httptest.NewServer(h)
	t.Cleanup(app.Close)
	f.srv = nanomdmtest.New(t, nanomdmtest.Options{WebhookClient: app.Client()})
	f.srv.Start(app.URL)
	for _, d := range conformanceDevices {
		dev := f.srv.NewDevice(d.ID)
		dev.Enroll()
		f.devices[d.ID] = dev
	}
	return f
}

func (f *conformanceFake) FailNext(status int, h http.Header) { f.srv.FailNext(status, h) }
func (f *conformanceFake) RevokeTokens()                      {}
func (f *conformanceFake) TokenRequests() int                 { return 0 }

// RemoveDevice removes the MDM profile: the device checks out.
func (f *conformanceFake) RemoveDevice(id string) {
	f.devices[id].CheckOut()
	f.log.waitUntil(f.t, "the check-out is recorded", func() bool {
		c, ok, _ := f.log.Lookup(f.t.Context(), connectorID, checkOutID(id))
		return ok && c.State == mdm.CommandDone
	})
}

// CompleteCommands has the device acknowledge its queue and waits until the webhook recorded
// every answer.
func (f *conformanceFake) CompleteCommands(id string) {
	f.log.mu.Lock()
	recorded := f.log.records
	f.log.mu.Unlock()
	n := len(f.devices[id].Complete())
	f.log.waitUntil(f.t, "the answers are recorded", func() bool {
		f.log.mu.Lock()
		defer f.log.mu.Unlock()
		return f.log.records >= recorded+n
	})
}

// Actions counts the RemoveApplication and EraseDevice commands NanoMDM stored for a device.
func (f *conformanceFake) Actions(target string) int {
	return len(slices.DeleteFunc(f.srv.Enqueued(target), func(rt string) bool {
		return rt != "RemoveApplication" && rt != "EraseDevice"
	}))
}

func TestConformance(t *testing.T) {
	cfg := func(url, key string) json.RawMessage {
		b, _ := json.Marshal(map[string]string{"url": url, "apiKey": key, "appBundleId": bundleID})
		return b
	}
	mdmtest.Run(t, mdmtest.Harness{
		New: func(t *testing.T, bad bool) (mdm.Connector, mdmtest.Fake) {
			f := newConformanceFake(t)
			key := f.srv.APIKey
			if bad {
				key = "not-the-api-key"
			}
			c, err := Open(cfg(f.srv.URL, key), mdm.Deps{
				HTTPClient: &http.Client{Timeout: 5 * time.Second}, Now: func() time.Time { return mdmtest.Occurred },
				Commands: f.log, ConnectorID: connectorID, Tenant: "acme",
			})
			if err != nil {
				t.Fatal(err)
			}
			return c, f
		},
		Person:               mdm.Person{ID: "emp-42", UserName: "jane.doe@example.com"},
		Devices:              conformanceDevices,
		OwnershipFromRequest: true,
		Config:               cfg("https://nanomdm.example", nanomdmtest.APIKey),
		Redact:               Redact,
		Secrets:              []string{nanomdmtest.APIKey, "not-the-api-key"},
	})
}
