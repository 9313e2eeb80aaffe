package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials rotates and reads the license credentials of every user (the admin API's only
// way to learn a password), recording the calls as kind "credentials".
func Credentials(ctx context.Context, c *Client, t *Tenant, users []*User, conc int) error {
	var firstErr error
	var once sync.Once
	err := parallel(ctx, len(users), conc, func(ctx context.Context, i int) {
		u := users[i]
		if u == nil || u.ID == "" {
			return
		}
		r, err := c.Do(ctx, Call{Kind: "credentials", Method: "POST", Path: "/admin/v1/tenants/" + t.ID + "/employees/" + u.ID + "/credentials",
			Bearer: c.AdminToken, Want: []int{201}})
		if err == nil && r.Status != http.StatusCreated {
			err = fmt.Errorf("credentials of %s: status %d: %s", u.UserName, r.Status, truncate(r.Body))
		}
		if err != nil {
			once.Do(func() { firstErr = err })
			return
		}
		u.WorkID, u.Password = r.Str("username"), r.Str("password")
	})
	if err != nil {
		return err
	}
	return firstErr
}

// ActiveValue is how a deactivation carries active=false.
type ActiveValue string

// Active values: Entra's default string "False", a JSON boolean, or the string first and the
// boolean if the server rejects it.
const (
	ActiveString ActiveValue = "string"
	ActiveBool   ActiveValue = "bool"
	ActiveAuto   ActiveValue = "auto"
)

// StormOptions configures a leaver storm.
type StormOptions struct {
	Concurrency int
	Active      ActiveValue
	Receiver    *Receiver
	// Wait bounds how long after the last deactivation the storm waits for webhooks.
	Wait time.Duration
	// PollEvery is the pause between license checks or ID lookups that did not show the
	// effect yet.
	PollEvery time.Duration
	Progress  func()
}

// StormResult is what a storm observed.
type StormResult struct {
	Deactivated int `json:"deactivated"`
	// LockedOutInRequest counts users whose first license check after the deactivation's
	// answer already failed: the lock-out was in the deactivating request.
	LockedOutInRequest int `json:"lockedOutInRequest"`
	LockedOut          int `json:"lockedOut"`
	RevokedInRequest   int `json:"revokedInRequest"`
	Revoked            int `json:"revoked"`
	Delivered          int `json:"webhooksDelivered"`
	// Offboarded counts users the admin API shows offboarded with every job done.
	Offboarded int            `json:"offboardedAllJobsDone"`
	Missing    []string       `json:"missingWebhooks,omitempty"`
	NotDone    []string       `json:"notOffboarded,omitempty"`
	Receiver   ReceiverStats  `json:"receiver"`
	Active     ActiveValue    `json:"activeValueSent"`
	Notes      []string       `json:"notes,omitempty"`
	Duration   time.Duration  `json:"-"`
	Seconds    float64        `json:"seconds"`
	Effects    map[string]int `json:"-"`
}

// Storm deactivates users at o.Concurrency as Entra does (PATCH Replace active) and times,
// per user from the start of its request, the license lock-out (t_lockout), the ID revocation
// (t_revoked) and the signed webhook (t_webhook). It then checks every user's final state.
func Storm(ctx context.Context, c *Client, t *Tenant, users []*User, o StormOptions) (*StormResult, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.PollEvery <= 0 {
		o.PollEvery = 10 * time.Millisecond
	}
	if o.Wait <= 0 {
		o.Wait = time.Minute
	}
	res := &StormResult{}
	var mode atomic.Value
	switch o.Active {
	case ActiveBool, ActiveString:
		mode.Store(o.Active)
	default:
		mode.Store(ActiveString)
	}
	var noteOnce sync.Once
	var (
		lockedIn, locked, revokedIn, revoked, delivered, deactivated atomic.Int64
		hooks                                                        sync.WaitGroup
		missingMu                                                    sync.Mutex
	)
	hookCtx, cancelHooks := context.WithCancel(context.Background())
	defer cancelHooks()
	start := time.Now()

	err := parallel(ctx, len(users), o.Concurrency, func(ctx context.Context, i int) {
		defer func() {
			if o.Progress != nil {
				o.Progress()
			}
		}()
		u := users[i]
		if u == nil || u.ID == "" {
			return
		}
		var hook <-chan time.Time
		if o.Receiver != nil && u.WorkID != "" {
			hook = o.Receiver.WaitWorkID(u.WorkID)
		}
		t0 := time.Now()
		sent := mode.Load().(ActiveValue)
		r, err := deactivate(ctx, c, t, u, sent)
		if err == nil && r.Status == http.StatusBadRequest && o.Active == ActiveAuto && sent == ActiveString {
			noteOnce.Do(func() {
				res.Notes = append(res.Notes, `the server rejects Entra's "False" string (400): sending JSON booleans`)
			})
			mode.Store(ActiveBool)
			r, err = deactivate(ctx, c, t, u, ActiveBool)
		}
		if err != nil || r.Status >= 300 {
			return
		}
		deactivated.Add(1)

		if u.Password != "" {
			first := true
			for {
				r, err := c.Do(ctx, Call{Kind: "check", Method: "POST", Path: "/messenger/v1/check", Basic: [2]string{u.WorkID, u.Password},
					Want: []int{401}, Index: i})
				if err != nil {
					break
				}
				if r.Status == http.StatusUnauthorized {
					c.Rec.Latency("t_lockout", t0, time.Since(t0))
					locked.Add(1)
					if first {
						lockedIn.Add(1)
					}
					break
				}
				if time.Since(t0) > o.Wait || ctx.Err() != nil {
					break
				}
				first = false
				time.Sleep(o.PollEvery)
			}
		}
		if u.WorkID != "" {
			first := true
			for {
				r, err := c.Do(ctx, Call{Kind: "id_status", Method: "GET", Path: "/messenger/v1/ids/" + u.WorkID, Bearer: t.MessengerToken, Index: i})
				if err != nil {
					break
				}
				if r.Status == http.StatusOK && r.Str("status") == "revoked" {
					c.Rec.Latency("t_revoked", t0, time.Since(t0))
					revoked.Add(1)
					if first {
						revokedIn.Add(1)
					}
					break
				}
				if time.Since(t0) > o.Wait || ctx.Err() != nil {
					break
				}
				first = false
				time.Sleep(o.PollEvery)
			}
		}
		if hook != nil {
			hooks.Add(1)
			go func() {
				defer hooks.Done()
				select {
				case at := <-hook:
					c.Rec.Latency("t_webhook", t0, at.Sub(t0))
					delivered.Add(1)
				case <-hookCtx.Done():
					missingMu.Lock()
					res.Missing = append(res.Missing, u.ID)
					missingMu.Unlock()
				}
			}()
		}
	})
	// Wait for the webhooks still due, at most o.Wait after the last deactivation.
	waited := make(chan struct{})
	go func() { hooks.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(o.Wait):
		cancelHooks()
		<-waited
	}
	res.Duration = time.Since(start)
	res.Seconds = round(res.Duration.Seconds(), 2)
	if err != nil {
		return res, err
	}
	// Redeliveries of an effect already accepted would arrive within the runner's next look.
	if o.Receiver != nil {
		time.Sleep(2 * time.Second)
		res.Receiver = o.Receiver.Stats()
	}
	res.Deactivated, res.LockedOutInRequest, res.LockedOut = int(deactivated.Load()), int(lockedIn.Load()), int(locked.Load())
	res.RevokedInRequest, res.Revoked, res.Delivered = int(revokedIn.Load()), int(revoked.Load()), int(delivered.Load())
	res.Active = mode.Load().(ActiveValue)

	var done atomic.Int64
	var notDoneMu sync.Mutex
	_ = parallel(ctx, len(users), o.Concurrency, func(ctx context.Context, i int) {
		u := users[i]
		if u == nil || u.ID == "" {
			return
		}
		if ok, _ := Offboarded(ctx, c, t, u.ID); ok {
			done.Add(1)
			return
		}
		notDoneMu.Lock()
		res.NotDone = append(res.NotDone, u.ID)
		notDoneMu.Unlock()
	})
	res.Offboarded = int(done.Load())
	return res, nil
}

func deactivate(ctx context.Context, c *Client, t *Tenant, u *User, v ActiveValue) (*Response, error) {
	var value any = false
	if v == ActiveString {
		value = "False"
	}
	return c.Do(ctx, Call{Kind: "deactivate", Method: "PATCH", Path: t.SCIMBase + "/Users/" + u.ID, Bearer: t.SCIMToken, Index: u.Index,
		Body: map[string]any{
			"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
			"Operations": []map[string]any{{"op": "Replace", "path": "active", "value": value}},
		}})
}

// Offboarded reports whether the admin API shows the employee offboarded with every job done.
func Offboarded(ctx context.Context, c *Client, t *Tenant, id string) (bool, map[string]any) {
	r, err := c.Do(ctx, Call{Method: "GET", Path: "/admin/v1/tenants/" + t.ID + "/employees/" + id, Bearer: c.AdminToken})
	if err != nil || r.Status != http.StatusOK {
		return false, nil
	}
	e := r.JSON()
	if e["state"] != "offboarded" {
		return false, e
	}
	jobs, _ := e["jobs"].([]any)
	for _, j := range jobs {
		if m, _ := j.(map[string]any); m["state"] != "done" {
			return false, e
		}
	}
	return true, e
}
