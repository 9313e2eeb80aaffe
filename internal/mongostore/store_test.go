package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// each runs fn against every configured backend.
func each(t *testing.T, fn func(t *testing.T, s *mongostore.Store)) {
	for _, b := range testdb.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, testdb.NewOn(t, b.URI)) })
	}
}

func newTenant(t *testing.T, s *mongostore.Store, name string, seats int) *identity.Tenant {
	t.Helper()
	tn := &identity.Tenant{ID: "ten-" + name, Name: name, Seats: seats, Policy: identity.DefaultPolicy(), Created: time.Now()}
	if err := s.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	return tn
}

func create(ctx context.Context, s *mongostore.Store, tenant, id, userName, ext string) error {
	key := identity.FoldKey(userName)
	if err := s.ClaimUserName(ctx, tenant, key, id); err != nil {
		return err
	}
	e := &identity.Employee{ID: id, Tenant: tenant, UserName: userName, UserNameKey: key, ExternalID: ext,
		Active: true, Resource: map[string]any{"userName": userName}, Created: time.Now(), Modified: time.Now(), State: identity.StateActive}
	if err := s.InsertEmployee(ctx, e); err != nil {
		_ = s.ReleaseUserName(ctx, tenant, key, id)
		return err
	}
	return nil
}

func TestUserNamesAreUniquePerTenantInAnyLetterCase(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		a, b := newTenant(t, s, "acme", 5), newTenant(t, s, "beta", 5)
		if err := create(ctx, s, a.ID, "e1", "Zoë.Ångström@Example.com", "x1"); err != nil {
			t.Fatal(err)
		}
		if err := create(ctx, s, a.ID, "e2", "zoë.ångström@example.COM", ""); !errors.Is(err, identity.ErrConflict) {
			t.Fatalf("same name in other case: %v, want ErrConflict", err)
		}
		if err := create(ctx, s, b.ID, "e3", "zoë.ångström@example.com", ""); err != nil {
			t.Fatalf("same name in another tenant: %v", err)
		}
		got, err := s.FindEmployeeByUserName(ctx, a.ID, "ZOË.ÅNGSTRÖM@EXAMPLE.COM")
		if err != nil || got.ID != "e1" {
			t.Fatalf("lookup in other case: %v %v", got, err)
		}
		if _, err := s.GetEmployee(ctx, b.ID, "e1"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("tenant B reads tenant A's employee: %v", err)
		}
		if _, err := s.UpdateEmployee(ctx, b.ID, "e1", func(e *identity.Employee) error { e.Active = false; return nil }); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("tenant B updates tenant A's employee: %v", err)
		}
	})
}

func TestConcurrentCreatesOfOneNameAdmitOne(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 5)
		var ok atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				err := create(ctx, s, tn.ID, fmt.Sprintf("e%d", i), fmt.Sprintf("Same.Name@x%s", []string{"", ""}[i%2]), "")
				if err == nil {
					ok.Add(1)
				} else if !errors.Is(err, identity.ErrConflict) {
					t.Error(err)
				}
			}(i)
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Fatalf("%d creates succeeded, want 1", ok.Load())
		}
		if _, err := s.FindEmployeeByUserName(ctx, tn.ID, "same.name@x"); err != nil {
			t.Fatalf("winner not found by userName: %v", err)
		}
	})
}

func TestRenameMovesTheUserNameKey(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 5)
		if err := create(ctx, s, tn.ID, "e1", "old@x", "ext-1"); err != nil {
			t.Fatal(err)
		}
		if err := create(ctx, s, tn.ID, "e2", "taken@x", ""); err != nil {
			t.Fatal(err)
		}
		_, err := s.UpdateEmployee(ctx, tn.ID, "e1", func(e *identity.Employee) error {
			e.UserName, e.UserNameKey = "Taken@X", identity.FoldKey("Taken@X")
			return nil
		})
		if !errors.Is(err, identity.ErrConflict) {
			t.Fatalf("rename onto a taken name: %v", err)
		}
		_, err = s.UpdateEmployee(ctx, tn.ID, "e1", func(e *identity.Employee) error {
			e.UserName, e.UserNameKey, e.ExternalID = "New@X", identity.FoldKey("New@X"), "ext-2"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.FindEmployeeByUserName(ctx, tn.ID, "old@x"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("old name still found: %v", err)
		}
		if e, err := s.FindEmployeeByUserName(ctx, tn.ID, "new@x"); err != nil || e.ID != "e1" {
			t.Fatalf("new name: %v %v", e, err)
		}
		if err := create(ctx, s, tn.ID, "e3", "OLD@x", ""); err != nil {
			t.Fatalf("freed name not reusable: %v", err)
		}
		if es, _ := s.FindEmployeesByExternalID(ctx, tn.ID, "ext-1"); len(es) != 0 {
			t.Fatalf("old externalId still finds %d", len(es))
		}
		if es, _ := s.FindEmployeesByExternalID(ctx, tn.ID, "ext-2"); len(es) != 1 {
			t.Fatalf("new externalId finds %d", len(es))
		}
	})
}

func TestAnAbandonedClaimIsTakenOverAfterTheGracePeriod(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s := testdb.New(t, mongostore.WithClock(func() time.Time { return clock() }))
	ctx := context.Background()
	tn := newTenant(t, s, "acme", 5)
	// A create that crashed after claiming the name.
	if err := s.ClaimUserName(ctx, tn.ID, identity.FoldKey("a@x"), "ghost"); err != nil {
		t.Fatal(err)
	}
	if err := create(ctx, s, tn.ID, "e1", "a@x", ""); !errors.Is(err, identity.ErrConflict) {
		t.Fatalf("young claim: %v, want ErrConflict", err)
	}
	clock = func() time.Time { return now.Add(time.Minute) }
	if err := create(ctx, s, tn.ID, "e1", "a@x", ""); err != nil {
		t.Fatalf("old abandoned claim: %v", err)
	}
}

func TestConcurrentUpdatesOfOneEmployeeLoseNothing(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 5)
		if err := create(ctx, s, tn.ID, "e1", "a@x", ""); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					_, err := s.UpdateEmployee(ctx, tn.ID, "e1", func(e *identity.Employee) error {
						e.Record(time.Now(), "tick", fmt.Sprint(w, i), "")
						return nil
					})
					if err != nil {
						t.Error(err)
					}
				}
			}(w)
		}
		wg.Wait()
		e, _ := s.GetEmployee(ctx, tn.ID, "e1")
		if len(e.Timeline) != 30 || e.Rev != 30 {
			t.Fatalf("timeline %d rev %d, want 30 and 30", len(e.Timeline), e.Rev)
		}
	})
}

func TestSeatsAreNeverOverbookedAndOperationsAreIdempotent(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 3)
		var got atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ok, err := s.AcquireSeat(ctx, tn.ID, fmt.Sprintf("op%d", i), fmt.Sprintf("e%d", i))
				if err != nil {
					t.Error(err)
				}
				if ok {
					got.Add(1)
				}
			}(i)
		}
		wg.Wait()
		if got.Load() != 3 {
			t.Fatalf("%d seats taken from a pool of 3", got.Load())
		}
		cur, _ := s.GetTenant(ctx, tn.ID)
		var holder string
		for op, o := range cur.SeatOps {
			holder = op
			_ = o
		}
		// Repeating a successful acquisition takes nothing more.
		if ok, _ := s.AcquireSeat(ctx, tn.ID, holder, "x"); !ok {
			t.Fatal("repeated acquisition reported no seat")
		}
		if err := s.ReleaseSeat(ctx, tn.ID, "rel-1", "x"); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseSeat(ctx, tn.ID, "rel-1", "x"); err != nil {
			t.Fatal(err)
		}
		cur, _ = s.GetTenant(ctx, tn.ID)
		if cur.Free != 1 || cur.Used() != 2 {
			t.Fatalf("free %d used %d, want 1 and 2", cur.Free, cur.Used())
		}
		ops := make([]string, 0, len(cur.SeatOps))
		for op := range cur.SeatOps {
			ops = append(ops, op)
		}
		if err := s.ForgetSeatOps(ctx, tn.ID, ops); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcquireSeat(ctx, tn.ID, "bad.op", "x"); !errors.Is(err, identity.ErrInvalid) {
			t.Fatalf("op id with a dot: %v", err)
		}
	})
}

func TestOffboardingsAreCountedPerWindow(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 3)
		now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
		for i := 1; i <= 3; i++ {
			n, err := s.CountOffboarding(ctx, tn.ID, now, time.Hour)
			if err != nil || n != i {
				t.Fatalf("count %d: %d %v", i, n, err)
			}
		}
		// The next window still sees the previous one; two windows later the count starts over.
		if n, _ := s.CountOffboarding(ctx, tn.ID, now.Add(time.Hour), time.Hour); n != 4 {
			t.Fatalf("next window: %d, want 4", n)
		}
		if n, _ := s.CountOffboarding(ctx, tn.ID, now.Add(3*time.Hour), time.Hour); n != 1 {
			t.Fatalf("two windows later: %d, want 1", n)
		}
		if err := s.ResetOffboardingCount(ctx, tn.ID); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.CountOffboarding(ctx, tn.ID, now.Add(3*time.Hour), time.Hour); n != 1 {
			t.Fatalf("after reset: %d, want 1", n)
		}
	})
}
