// Package testclock is the settable clock tests inject wherever the code takes a
// func() time.Time (lifecycle, rate limits, OIDC key caching, vendor limiters): time moves only
// when the test moves it.
package testclock

import (
	"context"
	"sync"
	"time"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock at t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleep advances the clock by d instead of waiting; it matches injected sleep functions.
func (c *Clock) Sleep(_ context.Context, d time.Duration) error {
	c.Advance(d)
	return nil
}
