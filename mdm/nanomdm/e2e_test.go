package nanomdm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/diskv"
	"github.com/micromdm/nanomdm/storage/inmem"

	"github.com/offboard/offboard/mdm"
	"github.com/offboard/offboard/mdm/nanomdm/nanomdmtest"
)

// backends are the NanoMDM storage backends the end-to-end tests run against: filekv (diskv),
// NanoMDM's default, in a temporary directory, and the in-memory one.
var backends = []struct {
	name string
	open func(t *testing.T) storage.AllStorage
}{
	{"filekv", func(t *testing.T) storage.AllStorage { return diskv.New(t.TempDir()) }},
	{"inmem", func(t *testing.T) storage.AllStorage { return inmem.New() }},
}

const (
	bundleID    = "ch.threema.work.iapp"
	connectorID = "conn-nanomdm-1"
)

// env is one real NanoMDM plus Offboard's side: the webhook handler mounted by a stand-in for
// the app's router at /mdm/nanomdm/{connector}/{secret}, and the command log.
type env struct {
	srv   *nanomdmtest.Server
	log   *memLog
	mu    sync.Mutex
	woken []string
}

func newEnv(t *testing.T, store storage.AllStorage) *env {
	t.Helper()
	e := &env{log: newMemLog()}
	secret, err := NewWebhookSecret()
	if err != nil {
		t.Fatal(err)
	}
	hmacKey := []byte("webhook-hmac-key-for-tests")
	h := NewWebhookHandler(connectorID, e.log, WithHMACKey(hmacKey), WithWake(func(conn, id string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.woken = append(e.woken, conn+"/"+id)
	}))
	appMux := http.NewServeMux()
	appMux.HandleFunc("POST /mdm/nanomdm/{connector}/{secret}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("connector") != connectorID || !CheckWebhookSecret(secret, r.PathValue("secret")) {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	app := httptest.NewServer(appMux)
	t.Cleanup(app.Close)
	e.srv = nanomdmtest.New(t, nanomdmtest.Options{Storage: store, HMACKey: hmacKey, WebhookClient: app.Client()})
	e.srv.Start(app.URL + "/mdm/nanomdm/" + connectorID + "/" + secret)
	return e
}

// open opens a fresh connector instance, as a restarted process would.
func (e *env) open(t *testing.T, apiKey string) *Connector {
	t.Helper()
	cfg, _ := json.Marshal(map[string]string{"url": e.srv.URL, "apiKey": apiKey, "appBundleId": bundleID})
	c, err := Open(cfg, mdm.Deps{
		HTTPClient:  &http.Client{Timeout: 5 * time.Second},
		Now:         time.Now,
		Commands:    e.log,
		ConnectorID: connectorID,
		Tenant:      "acme",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Connector)
}

// wakes counts the wake callbacks for command id.
func (e *env) wakes(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, w := range e.woken {
		if w == connectorID+"/"+id {
			n++
		}
	}
	return n
}

func request(udid, key string, own mdm.Ownership) mdm.Request {
	return mdm.Request{
		Key:    key,
		Action: mdm.ActionWipeApp,
		Tenant: "acme",
		Person: mdm.Person{ID: "emp-1", UserName: "leaver@acme.example"},
		Device: &mdm.Device{ID: udid, Connector: connectorID, Platform: mdm.PlatformIOS, Ownership: own},
	}
}

// waitStatus polls CommandStatus after every recorded webhook result until want holds.
func waitStatus(t *testing.T, e *env, c *Connector, udid string, cmd mdm.Command, what string, want func(mdm.Command) bool) mdm.Command {
	t.Helper()
	var last mdm.Command
	e.log.waitUntil(t, what, func() bool {
		st, err := c.CommandStatus(context.Background(), mdm.Device{ID: udid}, cmd)
		if err != nil {
			t.Fatalf("CommandStatus: %v", err)
		}
		last = st
		return want(st)
	})
	return last
}

func isState(s mdm.CommandState) func(mdm.Command) bool {
	return func(c mdm.Command) bool { return c.State == s }
}

// recorded reports whether the log holds state s under log id id (see resultID, checkOutID).
func recorded(e *env, id string, s mdm.CommandState) func() bool {
	return func() bool {
		c, ok, _ := e.log.Lookup(context.Background(), connectorID, id)
		return ok && c.State == s
	}
}

// expectCommand fails unless got is a command of requestType.
func expectCommand(t *testing.T, got *nanomdmtest.Command, requestType string) {
	t.Helper()
	if got == nil {
		t.Fatalf("device got no command, want %s", requestType)
	}
	if got.Command.RequestType != requestType {
		t.Fatalf("device got %s, want %s", got.Command.RequestType, requestType)
	}
}

func expectNoCommand(t *testing.T, got *nanomdmtest.Command) {
	t.Helper()
	if got != nil {
		t.Fatalf("device got %s %s, want an empty queue", got.Command.RequestType, got.CommandUUID)
	}
}

// removeAndAcknowledge runs RemoveApp, lets the device fetch and acknowledge RemoveApplication,
// and returns once the connector asks for ManagedApplicationList, which it returns.
func removeAndAcknowledge(t *testing.T, e *env, c *Connector, d *nanomdmtest.Device, key string) (mdm.Command, *nanomdmtest.Command) {
	t.Helper()
	cmd, err := c.RemoveApp(context.Background(), request(d.UDID, key, mdm.OwnershipPersonal))
	if err != nil {
		t.Fatalf("RemoveApp: %v", err)
	}
	got := d.Idle()
	expectCommand(t, got, "RemoveApplication")
	expectNoCommand(t, d.Answer(got, "Acknowledged", nil))
	e.log.waitUntil(t, "the removal is recorded as acknowledged", recorded(e, resultID(cmd.ID, d.UDID), mdm.CommandDone))
	st, err := c.CommandStatus(context.Background(), mdm.Device{ID: d.UDID}, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != mdm.CommandPending || !strings.Contains(st.Detail, "ManagedApplicationList") {
		t.Fatalf("status after acknowledgement = %+v, want pending while verifying", st)
	}
	verify := d.Idle()
	expectCommand(t, verify, "ManagedApplicationList")
	if len(verify.Command.Identifiers) != 1 || verify.Command.Identifiers[0] != bundleID {
		t.Fatalf("ManagedApplicationList Identifiers = %v, want [%s]", verify.Command.Identifiers, bundleID)
	}
	return cmd, verify
}

func TestAgainstNanoMDM(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open(t))
			ctx := context.Background()

			t.Run("an acknowledged removal is confirmed by ManagedApplicationList and becomes done", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-ACK")
				d.Enroll()
				c := e.open(t, e.srv.APIKey)

				cmd, err := c.RemoveApp(ctx, request(d.UDID, "job-ack", mdm.OwnershipPersonal))
				if err != nil {
					t.Fatalf("RemoveApp: %v", err)
				}
				if cmd.State != mdm.CommandPending {
					t.Fatalf("RemoveApp state = %s, want pending", cmd.State)
				}
				if !strings.Contains(cmd.Detail, "APNs push") {
					t.Errorf("RemoveApp detail = %q, want a note that the push failed (no push certificate here)", cmd.Detail)
				}
				got := d.Idle()
				expectCommand(t, got, "RemoveApplication")
				if got.CommandUUID != cmd.ID || got.Command.Identifier != bundleID {
					t.Fatalf("device got %s for %q, want %s for %q", got.CommandUUID, got.Command.Identifier, cmd.ID, bundleID)
				}
				if st, _ := c.CommandStatus(ctx, mdm.Device{ID: d.UDID}, cmd); st.State != mdm.CommandPending {
					t.Fatalf("status before the device answered = %s, want pending", st.State)
				}
				expectNoCommand(t, d.Answer(got, "Acknowledged", nil))

				waitStatus(t, e, c, d.UDID, cmd, "the connector asks for ManagedApplicationList", func(st mdm.Command) bool {
					return st.State == mdm.CommandPending && strings.Contains(st.Detail, "ManagedApplicationList")
				})
				verify := d.Idle()
				expectCommand(t, verify, "ManagedApplicationList")
				expectNoCommand(t, d.Answer(verify, "Acknowledged", map[string]any{"ManagedApplicationList": map[string]any{}}))

				st := waitStatus(t, e, c, d.UDID, cmd, "the removal is done", isState(mdm.CommandDone))
				if st.ID != cmd.ID {
					t.Errorf("status ID = %s, want %s", st.ID, cmd.ID)
				}
				// Both answers wake the job waiting on the removal: the acknowledgement and the
				// ManagedApplicationList, whose own CommandUUID no job knows.
				if n := e.wakes(cmd.ID); n != 2 {
					t.Errorf("wake callback called %d times for %s, want 2 (acknowledgement and verification)", n, cmd.ID)
				}
			})

			t.Run("a device Error fails the command with the ErrorChain as detail", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-ERROR")
				d.Enroll()
				c := e.open(t, e.srv.APIKey)
				cmd, err := c.RemoveApp(ctx, request(d.UDID, "job-error", mdm.OwnershipPersonal))
				if err != nil {
					t.Fatal(err)
				}
				got := d.Idle()
				expectCommand(t, got, "RemoveApplication")
				expectNoCommand(t, d.Answer(got, "Error", map[string]any{"ErrorChain": []any{
					map[string]any{
						"ErrorCode":            12029,
						"ErrorDomain":          "MCMDMErrorDomain",
						"LocalizedDescription": "Die App „ch.threema.work.iapp“ wird nicht verwaltet.",
						"USEnglishDescription": "The app “ch.threema.work.iapp” is not managed.",
					},
				}}))
				st := waitStatus(t, e, c, d.UDID, cmd, "the removal failed", isState(mdm.CommandFailed))
				for _, want := range []string{"MCMDMErrorDomain 12029", "is not managed"} {
					if !strings.Contains(st.Detail, want) {
						t.Errorf("detail %q lacks %q", st.Detail, want)
					}
				}
				expectNoCommand(t, d.Idle()) // no verification after a failure
			})

			t.Run("NotNow keeps the command pending until the device acknowledges it later", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-NOTNOW")
				d.Enroll()
				c := e.open(t, e.srv.APIKey)
				cmd, err := c.RemoveApp(ctx, request(d.UDID, "job-notnow", mdm.OwnershipPersonal))
				if err != nil {
					t.Fatal(err)
				}
				got := d.Idle()
				expectCommand(t, got, "RemoveApplication")
				expectNoCommand(t, d.Answer(got, "NotNow", nil))
				e.log.waitUntil(t, "NotNow is recorded", recorded(e, resultID(cmd.ID, d.UDID), mdm.CommandPending))
				st, err := c.CommandStatus(ctx, mdm.Device{ID: d.UDID}, cmd)
				if err != nil {
					t.Fatal(err)
				}
				if st.State != mdm.CommandPending || !strings.Contains(st.Detail, "NotNow") {
					t.Fatalf("status after NotNow = %+v, want pending with a NotNow note", st)
				}

				again := d.Idle()
				expectCommand(t, again, "RemoveApplication")
				if again.CommandUUID != cmd.ID {
					t.Fatalf("NanoMDM handed out %s, want the NotNow command %s again", again.CommandUUID, cmd.ID)
				}
				d.Answer(again, "Acknowledged", nil)
				waitStatus(t, e, c, d.UDID, cmd, "the removal is being verified", func(st mdm.Command) bool {
					return strings.Contains(st.Detail, "ManagedApplicationList")
				})
			})

			t.Run("an app still listed as installed after RemoveApplication fails the job", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-STILL")
				d.Enroll()
				c := e.open(t, e.srv.APIKey)
				cmd, verify := removeAndAcknowledge(t, e, c, d, "job-still")
				d.Answer(verify, "Acknowledged", map[string]any{"ManagedApplicationList": map[string]any{
					bundleID: map[string]any{"Status": "Managed", "ManagementFlags": 1},
				}})
				st := waitStatus(t, e, c, d.UDID, cmd, "the removal failed verification", isState(mdm.CommandFailed))
				if !strings.Contains(st.Detail, bundleID+" (Managed)") {
					t.Errorf("detail %q does not name the installed app", st.Detail)
				}
			})

			t.Run("a retry with the same key after a crash enqueues no second command", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-RETRY")
				d.Enroll()
				req := request(d.UDID, "job-retry", mdm.OwnershipPersonal)

				first, err := e.open(t, e.srv.APIKey).RemoveApp(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				// The process dies before it stores the command; a new instance retries.
				second, err := e.open(t, e.srv.APIKey).RemoveApp(ctx, req)
				if err != nil {
					t.Fatalf("retried RemoveApp: %v", err)
				}
				if second.ID != first.ID || second.State != mdm.CommandPending {
					t.Fatalf("retry = %+v, want pending %s", second, first.ID)
				}
				if !strings.Contains(second.Detail, "already enqueued") {
					t.Errorf("retry detail = %q, want it to say the command was already enqueued", second.Detail)
				}
				if got := e.srv.Enqueued(d.UDID); len(got) != 1 || got[0] != "RemoveApplication" {
					t.Fatalf("NanoMDM stored %v, want one RemoveApplication", got)
				}

				got := d.Idle()
				expectCommand(t, got, "RemoveApplication")
				expectNoCommand(t, d.Answer(got, "Acknowledged", nil)) // exactly one RemoveApplication
				expectNoCommand(t, d.Idle())

				// Retried again after the acknowledgement: only the verification is asked for.
				e.log.waitUntil(t, "the removal is recorded", recorded(e, resultID(first.ID, d.UDID), mdm.CommandDone))
				third, err := e.open(t, e.srv.APIKey).RemoveApp(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if third.State != mdm.CommandPending {
					t.Fatalf("retry after acknowledgement = %+v, want pending verification", third)
				}
				verify := d.Idle()
				expectCommand(t, verify, "ManagedApplicationList")
				d.Answer(verify, "Acknowledged", map[string]any{"ManagedApplicationList": map[string]any{}})
				c := e.open(t, e.srv.APIKey)
				waitStatus(t, e, c, d.UDID, first, "the removal is done", isState(mdm.CommandDone))

				// And once done, a retry is answered from the log without touching NanoMDM.
				fourth, err := e.open(t, e.srv.APIKey).RemoveApp(ctx, req)
				if err != nil || fourth.State != mdm.CommandDone {
					t.Fatalf("retry after completion = %+v, %v; want done", fourth, err)
				}
				expectNoCommand(t, d.Idle())
			})

			t.Run("an approved company-owned device gets one EraseDevice and is done when it acknowledges", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-ERASE")
				d.Enroll()
				req := request(d.UDID, "job-erase", mdm.OwnershipCompany)
				req.Action = mdm.ActionWipeDevice
				cmd, err := e.open(t, e.srv.APIKey).WipeDevice(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.open(t, e.srv.APIKey).WipeDevice(ctx, req); err != nil {
					t.Fatalf("retried WipeDevice: %v", err)
				}
				got := d.Idle()
				expectCommand(t, got, "EraseDevice")
				if got.CommandUUID != cmd.ID || !got.Command.PreserveDataPlan {
					t.Errorf("EraseDevice = %+v, want %s preserving the data plan", got, cmd.ID)
				}
				expectNoCommand(t, d.Answer(got, "Acknowledged", nil))
				c := e.open(t, e.srv.APIKey)
				waitStatus(t, e, c, d.UDID, cmd, "the erase is done", isState(mdm.CommandDone))
				expectNoCommand(t, d.Idle())
			})

			t.Run("a device not marked company-owned is never erased", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-BYOD")
				d.Enroll()
				for _, own := range []mdm.Ownership{mdm.OwnershipPersonal, mdm.OwnershipUnknown} {
					req := request(d.UDID, "job-byod-"+string(own), own)
					_, err := e.open(t, e.srv.APIKey).WipeDevice(ctx, req)
					var ve *mdm.VendorError
					if !errors.As(err, &ve) || ve.Retryable || !errors.Is(err, mdm.ErrUnsupported) {
						t.Fatalf("WipeDevice(%q) error = %v, want a non-retryable ErrUnsupported VendorError", own, err)
					}
				}
				expectNoCommand(t, d.Idle())
			})

			t.Run("an unknown enrollment id is ErrDeviceGone and not retryable, also on retry", func(t *testing.T) {
				c := e.open(t, e.srv.APIKey)
				req := request("NO-SUCH-DEVICE", "job-unknown", mdm.OwnershipCompany)
				for attempt := 1; attempt <= 2; attempt++ {
					_, err := c.RemoveApp(ctx, req)
					var ve *mdm.VendorError
					if !errors.As(err, &ve) || ve.Retryable || !errors.Is(err, mdm.ErrDeviceGone) {
						t.Fatalf("attempt %d: RemoveApp error = %v, want a non-retryable VendorError wrapping ErrDeviceGone", attempt, err)
					}
				}
				_, err := c.WipeDevice(ctx, req)
				if !errors.Is(err, mdm.ErrDeviceGone) {
					t.Fatalf("WipeDevice error = %v, want ErrDeviceGone", err)
				}
			})

			t.Run("a device that checks out before answering is gone until it enrolls again", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-CHECKOUT")
				d.Enroll()
				c := e.open(t, e.srv.APIKey)
				cmd, err := c.RemoveApp(ctx, request(d.UDID, "job-checkout", mdm.OwnershipPersonal))
				if err != nil {
					t.Fatal(err)
				}
				d.CheckIn(map[string]any{"MessageType": "CheckOut", "Topic": nanomdmtest.Topic, "UDID": d.UDID})
				e.log.waitUntil(t, "the check-out is recorded", recorded(e, checkOutID(d.UDID), mdm.CommandDone))

				_, err = c.CommandStatus(ctx, mdm.Device{ID: d.UDID}, cmd)
				var ve *mdm.VendorError
				if !errors.As(err, &ve) || ve.Retryable || !errors.Is(err, mdm.ErrDeviceGone) {
					t.Fatalf("CommandStatus error = %v, want a non-retryable ErrDeviceGone", err)
				}
				if _, err := c.RemoveApp(ctx, request(d.UDID, "job-checkout-2", mdm.OwnershipPersonal)); !errors.Is(err, mdm.ErrDeviceGone) {
					t.Fatalf("RemoveApp after check-out error = %v, want ErrDeviceGone", err)
				}

				d.Enroll()
				e.log.waitUntil(t, "the new enrollment is recorded", recorded(e, checkOutID(d.UDID), mdm.CommandPending))
				st, err := c.CommandStatus(ctx, mdm.Device{ID: d.UDID}, cmd)
				if err != nil || st.State != mdm.CommandPending {
					t.Fatalf("status after enrolling again = %+v, %v; want pending", st, err)
				}
			})

			t.Run("a wrong API key is not retryable and fails the health check", func(t *testing.T) {
				d := e.srv.NewDevice("UDID-AUTH")
				d.Enroll()
				bad := e.open(t, "not-the-key")
				_, err := bad.RemoveApp(ctx, request(d.UDID, "job-auth", mdm.OwnershipPersonal))
				var ve *mdm.VendorError
				if !errors.As(err, &ve) || ve.Retryable || ve.StatusCode != http.StatusUnauthorized {
					t.Fatalf("RemoveApp error = %v, want a non-retryable 401 VendorError", err)
				}
				if strings.Contains(err.Error(), "not-the-key") {
					t.Errorf("error %q reveals the API key", err)
				}
				err = bad.CheckHealth(ctx)
				if !errors.As(err, &ve) || ve.Retryable || ve.StatusCode != http.StatusUnauthorized {
					t.Fatalf("CheckHealth error = %v, want a non-retryable 401 VendorError", err)
				}
				if err := e.open(t, e.srv.APIKey).CheckHealth(ctx); err != nil {
					t.Fatalf("CheckHealth with the right key: %v", err)
				}
				expectNoCommand(t, d.Idle())
			})
		})
	}
}

func TestUnreachableNanoMDMIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	cfg, _ := json.Marshal(map[string]string{"url": url, "apiKey": "k", "appBundleId": bundleID})
	c, err := Open(cfg, mdm.Deps{HTTPClient: &http.Client{Timeout: 2 * time.Second}, Commands: newMemLog(), ConnectorID: connectorID})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.(mdm.AppRemover).RemoveApp(ctx, request("UDID-1", "job-1", mdm.OwnershipCompany))
	var ve *mdm.VendorError
	if !errors.As(err, &ve) || !ve.Retryable || ve.StatusCode != 0 {
		t.Fatalf("RemoveApp error = %v, want a retryable transport VendorError", err)
	}
	err = c.(mdm.HealthChecker).CheckHealth(ctx)
	if !errors.As(err, &ve) || !ve.Retryable {
		t.Fatalf("CheckHealth error = %v, want a retryable transport VendorError", err)
	}
}
