package scim_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/scim"
)

// End-to-end benchmarks: HTTP → handler → lifecycle → mongostore → the embedded store, on a
// tenant of benchUsers users and a group of benchMembers members. Results: BENCH.md.

const (
	benchUsers   = 1000
	benchMembers = 10000
)

// seedUsers stores n users through the store (faster than the API; same documents).
func seedUsers(b *testing.B, r *rig, n int) []string {
	ctx := context.Background()
	ids := make([]string, n)
	now := time.Now().UTC()
	for i := range ids {
		name := fmt.Sprintf("seed%05d@example.com", i)
		e := &identity.Employee{ID: fmt.Sprintf("seed%05d", i), Tenant: r.tenant, UserName: name, UserNameKey: identity.FoldKey(name),
			ExternalID: fmt.Sprintf("ext%05d", i), Active: true, Version: 1, Created: now, Modified: now, State: identity.StateInactive,
			Resource: map[string]any{"userName": name, "title": "Engineer", "emails": []any{map[string]any{"type": "work", "value": name}}}}
		if err := r.store.ClaimUserName(ctx, r.tenant, e.UserNameKey, e.ID); err != nil {
			b.Fatal(err)
		}
		if err := r.store.InsertEmployee(ctx, e); err != nil {
			b.Fatal(err)
		}
		ids[i] = e.ID
	}
	return ids
}

// seedGroup stores a group of n members (placeholder ids: only the membership documents
// matter for the cost of changing one member).
func seedGroup(b *testing.B, r *rig, n int) string {
	ctx := context.Background()
	g := &identity.Group{ID: fmt.Sprintf("big%d", n), Tenant: r.tenant, DisplayName: fmt.Sprintf("Big %d", n), Version: 1, Created: time.Now(), Modified: time.Now()}
	ms := make([]identity.Member, n)
	for i := range ms {
		ms[i] = identity.Member{Value: fmt.Sprintf("m%05d", i), Type: "Group"}
	}
	if err := r.store.CreateGroup(ctx, g, ms); err != nil {
		b.Fatal(err)
	}
	return g.ID
}

func BenchmarkEndToEnd(b *testing.B) {
	r := newRig(b)
	ids := seedUsers(b, r, benchUsers)
	big := seedGroup(b, r, benchMembers)
	small := seedGroup(b, r, 0)
	member := ids[benchUsers/2]

	b.Run("userName eq lookup", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r.must(http.StatusOK, "GET", "/Users?filter="+url.QueryEscape(fmt.Sprintf(`userName eq "SEED%05d@example.com"`, i%benchUsers))+"&startIndex=1&count=100", nil)
		}
	})
	b.Run("externalId eq lookup", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r.must(http.StatusOK, "GET", "/Users?filter="+url.QueryEscape(fmt.Sprintf(`externalId eq "ext%05d"`, i%benchUsers)), nil)
		}
	})
	b.Run("GET user by id", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r.must(http.StatusOK, "GET", "/Users/"+ids[i%benchUsers], nil)
		}
	})
	b.Run("create user", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r.must(http.StatusCreated, "POST", "/Users", map[string]any{"schemas": []string{scim.UserSchema},
				"userName": fmt.Sprintf("new%d-%d@example.com", b.N, i), "active": false,
				"emails": []any{map[string]any{"type": "work", "value": "x@example.com"}}})
		}
	})
	b.Run("PATCH user by id", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r.must(http.StatusNoContent, "PATCH", "/Users/"+ids[i%benchUsers], patch(
				op("Replace", `emails[type eq "work"].value`, fmt.Sprintf("v%d@example.com", i)),
				op("Replace", "title", fmt.Sprintf("T%d", i))))
		}
	})
	for _, g := range []struct{ name, id string }{{"empty group", small}, {fmt.Sprintf("%d-member group", benchMembers), big}} {
		b.Run("member add+remove on a "+g.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r.must(http.StatusNoContent, "PATCH", "/Groups/"+g.id, patch(op("Add", "members", []any{map[string]any{"value": member}})))
				r.must(http.StatusNoContent, "PATCH", "/Groups/"+g.id, patch(op("Remove", "members", []any{map[string]any{"value": member}})))
			}
		})
	}
	b.Run("new group, one PATCH adding 50 members", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			g := r.createGroup(fmt.Sprintf("Team %d-%d", b.N, i))
			members := make([]any, 50)
			for j := range members {
				members[j] = map[string]any{"value": ids[(i*50+j)%benchUsers]}
			}
			r.must(http.StatusNoContent, "PATCH", "/Groups/"+g, patch(op("Add", "members", members)))
		}
	})
	b.Run(fmt.Sprintf("general filter over %d users", benchUsers), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r.must(http.StatusOK, "GET", "/Users?filter="+url.QueryEscape(`title eq "engineer" and userName sw "seed0000"`), nil)
		}
	})
	b.Run(fmt.Sprintf("GET a %d-member group with members", benchMembers), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r.must(http.StatusOK, "GET", "/Groups/"+big, nil)
		}
	})
}
