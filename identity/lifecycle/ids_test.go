package lifecycle_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
)

// scripted is an ID generator that returns the scripted IDs first, then draws from its pool.
type scripted struct {
	mu     sync.Mutex
	script []string
	pool   []string
	rng    *rand.Rand
	draws  int
}

func (g *scripted) next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.draws++
	if len(g.script) > 0 {
		id := g.script[0]
		g.script = g.script[1:]
		return id
	}
	return g.pool[g.rng.IntN(len(g.pool))]
}

func (g *scripted) push(ids ...string) {
	g.mu.Lock()
	g.script = append(g.script, ids...)
	g.mu.Unlock()
}

// registry reads every record of the messenger ID registry.
func registry(t *testing.T, w *world) map[string]identity.WorkIDRecord {
	t.Helper()
	cur, err := w.store.Database().Collection("workids").Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []identity.WorkIDRecord
	if err := cur.All(context.Background(), &recs); err != nil {
		t.Fatal(err)
	}
	out := map[string]identity.WorkIDRecord{}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out
}

func TestACollidingDrawIsDrawnAgainNeverReused(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	acme := w.tenant("acme", 5, identity.DefaultPolicy())
	beta := w.tenant("beta", 5, identity.DefaultPolicy())
	gen := &scripted{pool: []string{"FRESH001", "FRESH002", "FRESH003"}, rng: rand.New(rand.NewPCG(1, 2))}
	svc, r := w.service(w.store, "proc", lifecycle.WithWorkIDGenerator(gen.next))

	gen.push("TAKEN001")
	first, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("first@acme.test", true))
	if err != nil || first.WorkID != "TAKEN001" {
		t.Fatalf("first: %v %+v", err, first)
	}
	// Offboard the first holder: its ID becomes a tombstone.
	if _, err := svc.UpdateUser(ctx, "token:idp", acme.ID, first.ID, nil, setActive(false)); err != nil {
		t.Fatal(err)
	}
	w.settle(r, time.Minute)
	gen.push("TAKEN002")
	second, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("second@acme.test", true))
	if err != nil || second.WorkID != "TAKEN002" {
		t.Fatalf("second: %v %+v", err, second)
	}

	t.Run("an active ID of another tenant is drawn again", func(t *testing.T) {
		gen.push("TAKEN002", "NEWID001")
		e, err := svc.CreateUser(ctx, "token:idp", beta.ID, userInput("x@beta.test", true))
		if err != nil || e.WorkID != "NEWID001" {
			t.Fatalf("%v %+v", err, e)
		}
	})
	t.Run("a revoked ID is a tombstone and is drawn again", func(t *testing.T) {
		gen.push("TAKEN001", "NEWID002")
		e, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("y@acme.test", true))
		if err != nil || e.WorkID != "NEWID002" {
			t.Fatalf("%v %+v", err, e)
		}
	})
	t.Run("a returning employee's own old ID is drawn again", func(t *testing.T) {
		gen.push("TAKEN001", "NEWID003")
		e, err := svc.UpdateUser(ctx, "token:idp", acme.ID, first.ID, nil, setActive(true))
		if err != nil || e.WorkID != "NEWID003" || e.Generation != 2 {
			t.Fatalf("%v %+v", err, e)
		}
	})

	reg := registry(t, w)
	if rec := reg["TAKEN001"]; rec.Tenant != acme.ID || rec.Employee != first.ID || rec.Status != identity.WorkIDRevoked {
		t.Fatalf("the tombstone changed: %+v", rec)
	}
	if rec := reg["TAKEN002"]; rec.Tenant != acme.ID || rec.Employee != second.ID || rec.Status != identity.WorkIDActive {
		t.Fatalf("the active record changed: %+v", rec)
	}
}

func TestAJoinerWhoseIDCannotBeIssuedKeepsNoSeatWhenDeactivated(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	acme := w.tenant("acme", 2, identity.DefaultPolicy())
	gen := &scripted{pool: []string{"ALWAYS01"}, rng: rand.New(rand.NewPCG(1, 2))}
	svc, r := w.service(w.store, "proc", lifecycle.WithWorkIDGenerator(gen.next))
	holder, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("holder@acme.test", true))
	if err != nil || holder.WorkID != "ALWAYS01" {
		t.Fatalf("holder: %v %+v", err, holder)
	}
	// Every draw now collides: the joiner gets a seat but no ID and stays pending.
	e, err := svc.CreateUser(ctx, "token:idp", acme.ID, userInput("unlucky@acme.test", true))
	if err != nil || e.State != identity.StatePendingSeat {
		t.Fatalf("unlucky joiner: %v %+v", err, e)
	}
	if _, err := svc.UpdateUser(ctx, "token:idp", acme.ID, e.ID, nil, setActive(false)); err != nil {
		t.Fatal(err)
	}
	w.settle(r, time.Minute)
	if tn := w.tenantDoc(acme.ID); tn.Free != 1 {
		t.Fatalf("free seats %d, want 1: the dropped joiner's seat leaked", tn.Free)
	}
}

// TestIDsAreNeverIssuedTwiceAcrossTenantsAndTime hires, offboards and re-hires employees of
// two tenants for several rounds with a generator whose small pool collides often, and checks
// the registry after every round: every ID ever seen is recorded once, records are never
// deleted, and an ID once revoked stays revoked.
func TestIDsAreNeverIssuedTwiceAcrossTenantsAndTime(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	var pool []string
	for i := range 80 {
		pool = append(pool, fmt.Sprintf("POOL%04d", i))
	}
	gen := &scripted{pool: pool, rng: rand.New(rand.NewPCG(7, 11))}
	svc, r := w.service(w.store, "proc", lifecycle.WithWorkIDGenerator(gen.next))
	tenants := []*identity.Tenant{w.tenant("acme", 8, identity.DefaultPolicy()), w.tenant("beta", 8, identity.DefaultPolicy())}

	holder := map[string]string{} // ID -> employee that got it
	revoked := map[string]bool{}
	var prev map[string]identity.WorkIDRecord
	ids := map[string][]string{} // tenant -> employees
	for round := range 4 {
		for _, tn := range tenants {
			// Two new joiners per round, plus every earlier employee toggled: leavers leave,
			// offboarded ones come back (a re-hire draws a new ID).
			for k := range 2 {
				e, err := svc.CreateUser(ctx, "token:idp", tn.ID, userInput(fmt.Sprintf("r%dk%d@%s.test", round, k, tn.Name), true))
				if err != nil {
					t.Fatal(err)
				}
				ids[tn.ID] = append(ids[tn.ID], e.ID)
			}
			for _, id := range ids[tn.ID] {
				e := w.load(id)
				switch e.State {
				case identity.StateActive:
					_, err := svc.UpdateUser(ctx, "token:idp", tn.ID, id, nil, setActive(false))
					if err != nil {
						t.Fatal(err)
					}
				case identity.StateOffboarded:
					if _, err := svc.UpdateUser(ctx, "token:idp", tn.ID, id, nil, setActive(true)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		w.settle(r, time.Minute)

		reg := registry(t, w)
		for id, rec := range prev {
			now, ok := reg[id]
			if !ok {
				t.Fatalf("round %d: registry record %s was deleted", round, id)
			}
			if now.Tenant != rec.Tenant || now.Employee != rec.Employee || now.Generation != rec.Generation {
				t.Fatalf("round %d: record %s was reassigned: %+v -> %+v", round, id, rec, now)
			}
			if rec.Status == identity.WorkIDRevoked && now.Status != identity.WorkIDRevoked {
				t.Fatalf("round %d: tombstone %s came back to life", round, id)
			}
		}
		for _, tn := range tenants {
			for _, id := range ids[tn.ID] {
				e := w.load(id)
				for _, wid := range append(append([]string(nil), e.PastWorkIDs...), e.WorkID) {
					if wid == "" {
						continue
					}
					if other, ok := holder[wid]; ok && other != id {
						t.Fatalf("round %d: ID %s issued to %s and %s", round, wid, other, id)
					}
					holder[wid] = id
					rec, ok := reg[wid]
					if !ok || rec.Employee != id || rec.Tenant != tn.ID {
						t.Fatalf("round %d: ID %s held by %s has registry record %+v", round, wid, id, rec)
					}
					if wid != e.WorkID || !(e.State == identity.StateActive || e.State == identity.StateRestricted) {
						if rec.Status != identity.WorkIDRevoked {
							t.Fatalf("round %d: ID %s of %s (%s) is not revoked", round, wid, id, e.State)
						}
						revoked[wid] = true
					}
				}
			}
		}
		prev = reg
	}
	if len(revoked) < 20 || gen.draws <= len(holder) {
		t.Fatalf("the test did not exercise enough: %d revoked, %d draws for %d IDs", len(revoked), gen.draws, len(holder))
	}
	t.Logf("%d IDs issued with %d draws (%d collisions drawn again), %d tombstones", len(holder), gen.draws, gen.draws-len(holder), len(revoked))
}
