package connectors_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/testenv"
	"github.com/offboard/offboard/mdm/intune/intunetest"
	"github.com/offboard/offboard/mdm/jamf/jamftest"
	"github.com/offboard/offboard/mdm/mdmtest"
	"github.com/offboard/offboard/mdm/mdmtest/vendorfake"
	"github.com/offboard/offboard/mdm/workspaceone/workspaceonetest"
)

// saasFake is what the end-to-end tests need of a vendor fake.
type saasFake interface {
	mdmtest.Fake
	Server() *httptest.Server
	Requests() []vendorfake.Request
}

// saasVendor describes one SaaS MDM for the end-to-end tests: how to start its fake, the
// connector configuration for it, and the leaver as the IdP provisions them, with the tenant's
// deviceMatch that finds the leaver's two devices there.
type saasVendor struct {
	typ    string
	start  func(t *testing.T, clock *testenv.Clock) (saasFake, map[string]any)
	secret string // a configuration value that must never leave Offboard
	// The leaver over SCIM and how the tenant matches devices.
	userName, email, externalID, deviceMatch string
	company, personal                        string // the leaver's devices at the vendor
}

var saasVendors = []saasVendor{
	{
		typ: "intune",
		start: func(t *testing.T, clock *testenv.Clock) (saasFake, map[string]any) {
			f := intunetest.New(t)
			f.SetClock(clock.Now)
			return f, map[string]any{"tenantId": intunetest.TenantID, "clientId": intunetest.ClientID,
				"clientSecret": intunetest.ClientSecret, "mode": "retire", "graphUrl": f.URL(), "loginUrl": f.URL()}
		},
		secret:   intunetest.ClientSecret,
		userName: "jane.doe@contoso.example", email: "jane@contoso.example", externalID: intunetest.JaneObjectID,
		deviceMatch: "externalId", // Entra's object id, mapped to externalId in the provisioning app
		company:     intunetest.JaneIPhone, personal: intunetest.JanePixel,
	},
	{
		typ: "jamf",
		start: func(t *testing.T, clock *testenv.Clock) (saasFake, map[string]any) {
			f := jamftest.New(t)
			f.SetClock(clock.Now)
			return f, map[string]any{"url": f.URL(), "clientId": jamftest.ClientID, "clientSecret": jamftest.ClientSecret,
				"appId": jamftest.AppID, "groupId": jamftest.GroupID}
		},
		secret:   jamftest.ClientSecret,
		userName: "jdoe@corp.example", email: jamftest.JaneEmail, externalID: "00u1abcd",
		deviceMatch: "email",
		company:     jamftest.JaneIPhone, personal: jamftest.JaneIPad,
	},
	{
		typ: "workspaceone",
		start: func(t *testing.T, _ *testenv.Clock) (saasFake, map[string]any) {
			f := workspaceonetest.New(t)
			return f, map[string]any{"url": f.URL(), "tenantCode": workspaceonetest.TenantCode,
				"clientId": workspaceonetest.ClientID, "clientSecret": workspaceonetest.ClientSecret,
				"tokenUrl": f.URL() + "/connect/token", "stripDomain": true}
		},
		secret:   workspaceonetest.ClientSecret,
		userName: "jane.doe@example.com", email: "j.doe@example.net", externalID: "00u1abcd",
		deviceMatch: "userName",
		company:     workspaceonetest.JaneIPhone, personal: workspaceonetest.JaneAndroid,
	},
}

// saasEnv is one Offboard on a driven clock, with the runner stepped by hand, and one vendor.
type saasEnv struct {
	t     *testing.T
	env   *testenv.Env
	clock *testenv.Clock
	acme  *testenv.Tenant
	fake  saasFake
	emp   string
}

func startSaaS(t *testing.T, v saasVendor, policy map[string]any) *saasEnv {
	t.Helper()
	clock := testenv.NewClock(time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC))
	fake, cfg := v.start(t, clock)
	env := testenv.Start(t, testenv.Options{Clock: clock, NoRunner: true, ConnectorClient: trusting(fake.Server())})
	s := &saasEnv{t: t, env: env, clock: clock, acme: env.CreateTenant("acme", 5), fake: fake}
	setPolicy(t, s.acme, policy)
	connect(t, s.acme, v.typ, "mdm", cfg)
	s.emp = hire(t, s.acme, v.userName, v.email, v.externalID)
	return s
}

// step runs the employee's due jobs once, as the runner does when woken or due, and returns
// the employee. Device jobs a dispatch adds run from the next step on.
func (s *saasEnv) step() employeeView {
	s.t.Helper()
	if err := s.env.Runner.Process(s.t.Context(), s.acme.ID, s.emp); err != nil {
		s.t.Fatal(err)
	}
	return employee(s.t, s.acme, s.emp)
}

// requests counts the calls the fake received so far (tokens included).
func (s *saasEnv) requests() int { return len(s.fake.Requests()) }

func (s *saasEnv) jobState(v employeeView, action, device string) identity.JobState {
	s.t.Helper()
	j := v.job(action, device)
	if j == nil {
		s.t.Fatalf("no %s job for %q; employee: %s", action, device, v)
	}
	return j.State
}

func TestOffboardingOverSCIMThroughEachSaaSMDM(t *testing.T) {
	for _, v := range saasVendors {
		t.Run(v.typ+": a full wipe waits for approval, personal devices only lose the app, and throttling, outages and expired tokens are ridden out", func(t *testing.T) {
			s := startSaaS(t, v, map[string]any{"noticePeriod": "0s", "wipe": "device", "deviceMatch": v.deviceMatch})

			// The MDM throttles the device lookup: no call before its Retry-After.
			s.fake.FailNext(http.StatusTooManyRequests, http.Header{"Retry-After": {"120"}})
			deactivate(t, s.acme, s.emp)
			e := s.step()
			dispatch := e.job(identity.ActionDiscover, "")
			if dispatch == nil || dispatch.State != identity.JobPending || dispatch.LastError == "" {
				t.Fatalf("after a 429 the dispatch is %+v; employee: %s", dispatch, e)
			}
			calls := s.requests()
			s.clock.Advance(119 * time.Second)
			s.step()
			if n := s.requests() - calls; n != 0 {
				t.Fatalf("%d calls to the MDM before its Retry-After passed", n)
			}
			s.clock.Advance(time.Second)
			e = s.step()
			if st := s.jobState(e, identity.ActionDiscover, ""); st != identity.JobDone {
				t.Fatalf("dispatch %s after Retry-After; employee: %s", st, e)
			}
			if len(e.Devices) != 2 {
				t.Fatalf("devices found by %s: %+v", v.deviceMatch, e.Devices)
			}

			// A company-owned device waits for an administrator; the personal one loses the app,
			// through an expired token and a 503.
			if st := s.jobState(e, identity.ActionWipeDevice, v.company); st != identity.JobApproval {
				t.Fatalf("company device: %s, want approval", st)
			}
			if e.job(identity.ActionWipeApp, v.company) != nil || e.job(identity.ActionWipeDevice, v.personal) != nil {
				t.Fatalf("wrong jobs: %s", e)
			}
			if s.fake.Actions(v.company) != 0 {
				t.Fatal("the company device was acted on before approval")
			}
			tokens := s.fake.TokenRequests()
			s.fake.RevokeTokens()
			s.fake.FailNext(http.StatusServiceUnavailable, nil)
			e = s.step()
			personal := e.job(identity.ActionWipeApp, v.personal)
			if personal == nil || personal.State != identity.JobPending || personal.LastError == "" {
				t.Fatalf("after a 503 the app removal is %+v", personal)
			}
			s.clock.Advance(time.Second)
			e = s.step()
			if st := s.jobState(e, identity.ActionWipeApp, v.personal); st != identity.JobWaiting && st != identity.JobDone {
				t.Fatalf("app removal after the 503: %s; employee: %s", st, e)
			}
			if n := s.fake.TokenRequests() - tokens; n != 1 {
				t.Fatalf("%d token requests after the token expired, want 1", n)
			}
			s.fake.CompleteCommands(v.personal)
			s.clock.Advance(3 * time.Second)
			e = s.step()
			if st := s.jobState(e, identity.ActionWipeApp, v.personal); st != identity.JobDone {
				t.Fatalf("app removal: %s after the device completed it; employee: %s", st, e)
			}
			if n := s.fake.Actions(v.personal); n != 1 {
				t.Fatalf("%d actions on the personal device, want 1", n)
			}

			// Approval sends the vendor's wipe, once; the job is done when the device carried it out.
			job := e.job(identity.ActionWipeDevice, v.company)
			if r := s.acme.Admin("POST", "/employees/"+s.emp+"/jobs/"+job.ID+"/approve", nil); r.Status != http.StatusOK {
				t.Fatalf("approve: %d %s", r.Status, r.Raw)
			}
			e = s.step()
			if n := s.fake.Actions(v.company); n != 1 {
				t.Fatalf("%d wipes after approval, want 1; employee: %s", n, e)
			}
			s.fake.CompleteCommands(v.company)
			s.clock.Advance(3 * time.Second)
			e = s.step()
			if st := s.jobState(e, identity.ActionWipeDevice, v.company); st != identity.JobDone {
				t.Fatalf("wipe: %s; employee: %s", st, e)
			}
			s.clock.Advance(time.Hour)
			s.step()
			if n := s.fake.Actions(v.company) + s.fake.Actions(v.personal); n != 2 {
				t.Fatalf("%d vendor actions in all, want 2", n)
			}
		})

		t.Run(v.typ+": a device the MDM no longer knows counts as done", func(t *testing.T) {
			s := startSaaS(t, v, map[string]any{"noticePeriod": "0s", "wipe": "app", "deviceMatch": v.deviceMatch})
			deactivate(t, s.acme, s.emp)
			s.step() // the dispatch finds both devices
			s.fake.RemoveDevice(v.company)
			e := s.step()
			j := e.job(identity.ActionWipeApp, v.company)
			if j == nil || j.State != identity.JobDone || j.LastError == "" {
				t.Fatalf("removal from a vanished device: %+v; employee: %s", j, e)
			}
		})
	}
}
