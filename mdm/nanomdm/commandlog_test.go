package nanomdm

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/offboard/offboard/mdm"
)

// memLog is an in-memory mdm.CommandLog for tests only; the app provides the MongoDB one.
// Waiters are woken on every Record, so tests wait for webhook results without sleeping.
type memLog struct {
	mu      sync.Mutex
	cmds    map[string]mdm.Command
	records int
	changed chan struct{}
}

func newMemLog() *memLog {
	return &memLog{cmds: map[string]mdm.Command{}, changed: make(chan struct{})}
}

func (l *memLog) Record(_ context.Context, connectorID string, cmd mdm.Command) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds[connectorID+"/"+cmd.ID] = cmd
	l.records++
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

func (l *memLog) Lookup(_ context.Context, connectorID, commandID string) (mdm.Command, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.cmds[connectorID+"/"+commandID]
	return c, ok, nil
}

// waitUntil calls cond after every Record until it returns true, failing the test after 5s.
func (l *memLog) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ch := l.changed
		l.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}
