package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scim2/filter-parser/v2"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/internal/mongostore"
)

func newGroup(t *testing.T, s *mongostore.Store, tenant, id, name string, members ...string) *identity.Group {
	t.Helper()
	g := &identity.Group{ID: id, Tenant: tenant, DisplayName: name, Version: 1, Created: time.Now(), Modified: time.Now()}
	var ms []identity.Member
	for _, m := range members {
		ms = append(ms, identity.Member{Value: m, Type: "User", Display: m})
	}
	if err := s.CreateGroup(context.Background(), g, ms); err != nil {
		t.Fatal(err)
	}
	return g
}

func memberValues(t *testing.T, s *mongostore.Store, tenant, id string) string {
	t.Helper()
	g, err := s.GetGroup(context.Background(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.GroupMembers(context.Background(), tenant, g)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Value)
	}
	if len(out) != g.MemberCount {
		t.Fatalf("member count %d for %d members", g.MemberCount, len(out))
	}
	return strings.Join(out, " ")
}

func groupsOf(t *testing.T, s *mongostore.Store, tenant, user string) string {
	t.Helper()
	e, err := s.GetEmployee(context.Background(), tenant, user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range e.Groups {
		out = append(out, g.ID)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestGroupMembershipsFollowEveryChange(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 10)
		for _, u := range []string{"u1", "u2", "u3"} {
			if err := create(ctx, s, tn.ID, u, u+"@x", ""); err != nil {
				t.Fatal(err)
			}
		}
		newGroup(t, s, tn.ID, "g1", "Sales", "u1", "u2")
		newGroup(t, s, tn.ID, "g2", "Ops", "u2")
		if got := memberValues(t, s, tn.ID, "g1"); got != "u1 u2" {
			t.Fatalf("g1 members %q", got)
		}
		if got := groupsOf(t, s, tn.ID, "u2"); got != "g1 g2" {
			t.Fatalf("u2 groups %q", got)
		}
		g, err := s.UpdateGroup(ctx, tn.ID, "g1", func(g *identity.Group) (identity.MemberChange, bool, error) {
			g.DisplayName = "Sales EMEA"
			return identity.MemberChange{Add: []identity.Member{{Value: "u3", Type: "User"}}, Remove: []string{"u1"}}, true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if g.Version != 2 || g.MemberCount != 2 {
			t.Fatalf("version %d count %d", g.Version, g.MemberCount)
		}
		if got := memberValues(t, s, tn.ID, "g1"); got != "u2 u3" {
			t.Fatalf("g1 members %q", got)
		}
		if groupsOf(t, s, tn.ID, "u1") != "" || groupsOf(t, s, tn.ID, "u3") != "g1" {
			t.Fatalf("u1 %q u3 %q", groupsOf(t, s, tn.ID, "u1"), groupsOf(t, s, tn.ID, "u3"))
		}
		if ok, _ := s.IsMember(ctx, "g1", "u3"); !ok {
			t.Fatal("IsMember u3")
		}
		// Adding a present member or removing an absent one corrects the count.
		g, err = s.UpdateGroup(ctx, tn.ID, "g1", func(g *identity.Group) (identity.MemberChange, bool, error) {
			return identity.MemberChange{Add: []identity.Member{{Value: "u3"}}, Remove: []string{"nobody"}}, false, nil
		})
		if err != nil || g.MemberCount != 2 {
			t.Fatalf("count %d after no-op changes: %v", g.MemberCount, err)
		}
		// Lookups by name in any case; the old name no longer finds it.
		for name, want := range map[string]int{"sales emea": 1, "SALES EMEA": 1, "Sales": 0} {
			found, err := s.FindGroupsByDisplayName(ctx, tn.ID, name)
			if err != nil || len(found) != want {
				t.Fatalf("%q: %d %v", name, len(found), err)
			}
		}
		// A user's deletion leaves its groups.
		if err := s.RemoveFromGroups(ctx, tn.ID, "u2", []string{"g1", "g2"}); err != nil {
			t.Fatal(err)
		}
		if got := memberValues(t, s, tn.ID, "g1"); got != "u3" {
			t.Fatalf("g1 %q", got)
		}
		if got, _ := s.GetGroup(ctx, tn.ID, "g2"); got.Version != 2 || got.MemberCount != 0 {
			t.Fatalf("g2 version %d count %d", got.Version, got.MemberCount)
		}
		// Deleting a group frees its names and its members' lists.
		if err := s.DeleteGroup(ctx, tn.ID, "g1", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetGroup(ctx, tn.ID, "g1"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("deleted group: %v", err)
		}
		if groupsOf(t, s, tn.ID, "u3") != "" {
			t.Fatal("u3 still lists the deleted group")
		}
		if found, _ := s.FindGroupsByDisplayName(ctx, tn.ID, "Sales EMEA"); len(found) != 0 {
			t.Fatal("deleted group found by name")
		}
	})
}

func TestGroupsAreTenantScopedAndNestable(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		a, b := newTenant(t, s, "a", 1), newTenant(t, s, "b", 1)
		newGroup(t, s, a.ID, "ga", "Same")
		newGroup(t, s, b.ID, "gb", "Same")
		if found, _ := s.FindGroupsByDisplayName(ctx, b.ID, "same"); len(found) != 1 || found[0].ID != "gb" {
			t.Fatalf("tenant b found %v", found)
		}
		if _, err := s.GetGroup(ctx, b.ID, "ga"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("cross-tenant read: %v", err)
		}
		if _, err := s.UpdateGroup(ctx, b.ID, "ga", func(*identity.Group) (identity.MemberChange, bool, error) {
			return identity.MemberChange{}, true, nil
		}); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("cross-tenant update: %v", err)
		}
		if err := s.DeleteGroup(ctx, b.ID, "ga", nil); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("cross-tenant delete: %v", err)
		}
		// A nested group: deleting it removes it from its parent.
		newGroup(t, s, a.ID, "child", "Child")
		if _, err := s.UpdateGroup(ctx, a.ID, "ga", func(*identity.Group) (identity.MemberChange, bool, error) {
			return identity.MemberChange{Add: []identity.Member{{Value: "child", Type: "Group"}}}, false, nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := memberValues(t, s, a.ID, "ga"); got != "child" {
			t.Fatalf("ga %q", got)
		}
		if err := s.DeleteGroup(ctx, a.ID, "child", nil); err != nil {
			t.Fatal(err)
		}
		if got := memberValues(t, s, a.ID, "ga"); got != "" {
			t.Fatalf("ga still has %q", got)
		}
		// If-Match on delete.
		stale := func(v int64) error {
			if v != 1 {
				return identity.ErrPrecondition
			}
			return nil
		}
		if err := s.DeleteGroup(ctx, a.ID, "ga", stale); !errors.Is(err, identity.ErrPrecondition) {
			t.Fatalf("stale delete: %v", err)
		}
	})
}

func TestConcurrentMemberChangesLoseNothing(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 1)
		newGroup(t, s, tn.ID, "g", "G")
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 5; i++ {
					m := fmt.Sprintf("m%d-%d", w, i)
					if _, err := s.UpdateGroup(ctx, tn.ID, "g", func(*identity.Group) (identity.MemberChange, bool, error) {
						return identity.MemberChange{Add: []identity.Member{{Value: m, Type: "Group"}}}, false, nil
					}); err != nil {
						t.Error(err)
					}
				}
			}(w)
		}
		wg.Wait()
		g, _ := s.GetGroup(ctx, tn.ID, "g")
		if g.MemberCount != 20 || g.Version != 21 {
			t.Fatalf("count %d version %d, want 20 and 21", g.MemberCount, g.Version)
		}
		if n := len(strings.Fields(memberValues(t, s, tn.ID, "g"))); n != 20 {
			t.Fatalf("%d members", n)
		}
	})
}

func TestGroupFilters(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		a, b := newTenant(t, s, "a", 1), newTenant(t, s, "b", 1)
		newGroup(t, s, a.ID, "g1", "Sales", "u1", "u2")
		newGroup(t, s, a.ID, "g2", "Sales Ops", "u2")
		newGroup(t, s, a.ID, "g3", "Empty")
		newGroup(t, s, b.ID, "g4", "Sales", "u1")
		for f, want := range map[string]string{
			`displayName eq "sales"`:                           "g1",
			`displayName sw "Sales"`:                           "g1 g2",
			`members.value eq "u2"`:                            "g1 g2",
			`members eq "u1"`:                                  "g1",
			`members pr`:                                       "g1 g2",
			`not (members pr)`:                                 "g3",
			`members[value eq "u1" and type eq "User"]`:        "g1",
			`members.display co "U2" and displayName ew "ops"`: "g2",
			`meta.resourceType eq "Group"`:                     "g1 g2 g3",
		} {
			expr, err := filter.ParseFilter([]byte(f))
			if err != nil {
				t.Fatal(err)
			}
			found, total, err := s.ListGroups(ctx, a.ID, identity.ListQuery{Filter: expr, StartIndex: 1, Count: 10})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var ids []string
			for _, g := range found {
				ids = append(ids, g.ID)
			}
			sort.Strings(ids)
			if strings.Join(ids, " ") != want || total != len(ids) {
				t.Errorf("%s: %v (total %d), want %q", f, ids, total, want)
			}
		}
		page, total, err := s.ListGroups(ctx, a.ID, identity.ListQuery{SortBy: "displayName", Descending: true, StartIndex: 2, Count: 1})
		if err != nil || total != 3 || len(page) != 1 || page[0].ID != "g1" {
			t.Fatalf("sorted page: %v total %d %v", page, total, err)
		}
	})
}

// TestABatchOfMembersSkipsThoseAlreadyStored: members go in one unordered insert; one that is
// already stored (a concurrent PATCH added it) answers a duplicate key and the rest still land,
// counted and linked once.
func TestABatchOfMembersSkipsThoseAlreadyStored(t *testing.T) {
	each(t, func(t *testing.T, s *mongostore.Store) {
		ctx := context.Background()
		tn := newTenant(t, s, "acme", 10)
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			if err := create(ctx, s, tn.ID, u, u+"@x", ""); err != nil {
				t.Fatal(err)
			}
		}
		newGroup(t, s, tn.ID, "g", "G", "u2")
		g, err := s.UpdateGroup(ctx, tn.ID, "g", func(*identity.Group) (identity.MemberChange, bool, error) {
			return identity.MemberChange{Add: []identity.Member{{Value: "u1", Type: "User"}, {Value: "u2", Type: "User"},
				{Value: "u3", Type: "User"}, {Value: "u2", Type: "User"}, {Value: "u4", Type: "User"}}}, false, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if g.MemberCount != 4 {
			t.Fatalf("count %d, want 4", g.MemberCount)
		}
		if got := memberValues(t, s, tn.ID, "g"); got != "u1 u2 u3 u4" {
			t.Fatalf("members %q", got)
		}
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			if got := groupsOf(t, s, tn.ID, u); got != "g" {
				t.Fatalf("%s groups %q", u, got)
			}
		}
	})
}
