package lifecycle

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// forgetStore records ForgetSeatOps calls; the forgetter needs nothing else.
type forgetStore struct {
	Store
	mu  sync.Mutex
	ops []string
}

func (f *forgetStore) ForgetSeatOps(_ context.Context, _ string, ops []string) error {
	f.mu.Lock()
	f.ops = append(f.ops, ops...)
	f.mu.Unlock()
	return nil
}

func TestTheForgetterFlushesOnCloseAndIgnoresLateRecords(t *testing.T) {
	st := &forgetStore{}
	f := newForgetter(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.add("t1", "op-1", "op-2")
	f.close()
	if len(st.ops) != 2 {
		t.Fatalf("flushed %v on close, want both records", st.ops)
	}
	// A request still finishing its local effects after Close (a shutdown that timed out)
	// must not panic; housekeeping collects its records later.
	f.add("t1", "op-3")
	f.close()
	if len(st.ops) != 2 {
		t.Fatalf("a record added after Close was flushed: %v", st.ops)
	}
}
