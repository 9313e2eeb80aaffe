package bench

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/offboard/offboard/mdm/webhook"
)

// Fault decides how the receiver answers attempt n (0-based) of the delivery with idempotency
// key id: status 0 accepts it; anything else is answered with that status and, if
// retryAfter > 0, a Retry-After header in whole seconds.
type Fault func(id string, n int) (status int, retryAfter time.Duration)

// FailFirst answers the first len(statuses) attempts of every delivery with those statuses,
// each with Retry-After retryAfter, then accepts.
func FailFirst(retryAfter time.Duration, statuses ...int) Fault {
	return func(_ string, n int) (int, time.Duration) {
		if n < len(statuses) {
			return statuses[n], retryAfter
		}
		return 0, 0
	}
}

// Delivery is what the receiver saw of one idempotency key.
type Delivery struct {
	ID       string
	Action   string
	WorkID   string
	Employee string
	// Attempts are the arrival times of every signed request with this key.
	Attempts []time.Time
	// RetryAfter is the Retry-After the receiver answered to each attempt (0: none).
	RetryAfter []time.Duration
	// Accepted is when the first attempt was answered 2xx; Accepts counts 2xx answers (more
	// than one is a redelivery of an effect already done, deduplicated by the key).
	Accepted time.Time
	Accepts  int
}

// Receiver is a webhook endpoint like the one an MDM or ITSM flow runs: it verifies each
// request's X-Offboard-Signature with webhook.Verify, deduplicates by the body's id, and can
// answer with faults. It is safe for concurrent use.
type Receiver struct {
	secret string
	fault  Fault
	srv    *http.Server
	ln     net.Listener
	url    string

	mu         sync.Mutex
	byID       map[string]*Delivery
	byWorkID   map[string]string
	waiters    map[string][]chan time.Time
	badSig     int
	pings      int
	onAccepted func(d *Delivery)
}

// ReceiverOption configures a Receiver.
type ReceiverOption func(*Receiver)

// WithFault makes the receiver answer with faults.
func WithFault(f Fault) ReceiverOption { return func(r *Receiver) { r.fault = f } }

// StartReceiver listens on addr ("127.0.0.1:0" for any port) and serves until Close.
func StartReceiver(addr, secret string, opts ...ReceiverOption) (*Receiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Receiver{secret: secret, ln: ln, url: "http://" + ln.Addr().String() + "/offboard",
		byID: map[string]*Delivery{}, byWorkID: map[string]string{}, waiters: map[string][]chan time.Time{}}
	for _, o := range opts {
		o(r)
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the receiver's webhook URL.
func (r *Receiver) URL() string { return r.url }

// Close stops the receiver.
func (r *Receiver) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}

// ServeHTTP implements http.Handler.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if !webhook.Verify(r.secret, body, req.Header.Get(webhook.HeaderSignature)) {
		r.mu.Lock()
		r.badSig++
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID       string `json:"id"`
		Action   string `json:"action"`
		WorkID   string `json:"workId"`
		Employee struct {
			ID string `json:"id"`
		} `json:"employee"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if ev.Action == string(webhook.ActionPing) {
		r.mu.Lock()
		r.pings++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}

	r.mu.Lock()
	d, ok := r.byID[ev.ID]
	if !ok {
		d = &Delivery{ID: ev.ID, Action: ev.Action, WorkID: ev.WorkID, Employee: ev.Employee.ID}
		r.byID[ev.ID] = d
		if ev.WorkID != "" {
			r.byWorkID[ev.WorkID] = ev.ID
		}
	}
	n := len(d.Attempts)
	d.Attempts = append(d.Attempts, now)
	status, ra := 0, time.Duration(0)
	if r.fault != nil && d.Accepts == 0 {
		status, ra = r.fault(ev.ID, n)
	}
	d.RetryAfter = append(d.RetryAfter, ra)
	var (
		notify []chan time.Time
		cb     func(*Delivery)
		snap   Delivery
	)
	if status == 0 {
		d.Accepts++
		if d.Accepts == 1 {
			d.Accepted = now
			notify = r.waiters[ev.WorkID]
			delete(r.waiters, ev.WorkID)
			cb = r.onAccepted
			snap = *d
		}
	}
	r.mu.Unlock()

	for _, ch := range notify {
		ch <- now
		close(ch)
	}
	if cb != nil {
		cb(&snap)
	}
	if status != 0 {
		if ra > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((ra+time.Second-1)/time.Second)))
		}
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// WaitWorkID returns a channel that yields the time the first delivery for workID was
// accepted (at once if it already was).
func (r *Receiver) WaitWorkID(workID string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.byWorkID[workID]; ok && r.byID[id].Accepts > 0 {
		ch <- r.byID[id].Accepted
		close(ch)
		return ch
	}
	r.waiters[workID] = append(r.waiters[workID], ch)
	return ch
}

// Deliveries returns a copy of every delivery seen, by idempotency key.
func (r *Receiver) Deliveries() map[string]Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Delivery, len(r.byID))
	for id, d := range r.byID {
		c := *d
		c.Attempts = append([]time.Time(nil), d.Attempts...)
		c.RetryAfter = append([]time.Duration(nil), d.RetryAfter...)
		out[id] = c
	}
	return out
}

// ReceiverStats summarises what the receiver saw.
type ReceiverStats struct {
	Keys          int `json:"keys"`
	Accepted      int `json:"accepted"`
	Attempts      int `json:"attempts"`
	Redeliveries  int `json:"redeliveries"`
	BadSignatures int `json:"badSignatures"`
	// EarlyRetries counts attempts that came sooner than the Retry-After answered before them.
	EarlyRetries int `json:"earlyRetries"`
	// MaxAttempts is the most attempts any one key needed.
	MaxAttempts int `json:"maxAttempts"`
	// Employees with more than one idempotency key for the same action (an effect doubled).
	DoubledEffects int `json:"doubledEffects"`
}

// Stats summarises the deliveries.
func (r *Receiver) Stats() ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ReceiverStats{Keys: len(r.byID), BadSignatures: r.badSig}
	perEffect := map[string]int{}
	for _, d := range r.byID {
		s.Attempts += len(d.Attempts)
		s.MaxAttempts = max(s.MaxAttempts, len(d.Attempts))
		if d.Accepts > 0 {
			s.Accepted++
			s.Redeliveries += d.Accepts - 1
		}
		for i := 1; i < len(d.Attempts); i++ {
			if ra := d.RetryAfter[i-1]; ra > 0 && d.Attempts[i].Sub(d.Attempts[i-1]) < ra {
				s.EarlyRetries++
			}
		}
		perEffect[d.Employee+"|"+d.Action]++
	}
	for _, n := range perEffect {
		if n > 1 {
			s.DoubledEffects += n - 1
		}
	}
	return s
}
