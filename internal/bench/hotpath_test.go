package bench_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/testdb"
	"github.com/offboard/offboard/internal/testenv"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// hot is an in-process Offboard on the embedded store whose database client counts every
// command it sends, with a tenant whose leavers notify a webhook.
type hot struct {
	*testenv.Env
	counter *mongostore.CommandCounter
	tenant  *testenv.Tenant
	seq     atomic.Int64
}

func startHot(tb testing.TB) *hot {
	tb.Helper()
	counter := mongostore.NewCommandCounter()
	client, err := mongo.Connect(mongostore.ClientOptions(testdb.URI(tb), counter.Monitor()))
	if err != nil {
		tb.Fatal(err)
	}
	db := client.Database(testdb.Name(tb))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = client.Disconnect(ctx)
	})
	store := mongostore.New(db)
	if err := store.EnsureSchema(context.Background()); err != nil {
		tb.Fatal(err)
	}
	// No runner: the counts are those of the request itself; runner work is counted apart.
	env := testenv.Start(tb, testenv.Options{Store: store, NoRunner: true})
	h := &hot{Env: env, counter: counter, tenant: env.CreateTenant("hot", 1_000_000)}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	tb.Cleanup(recv.Close)
	if r := h.tenant.Admin("PUT", "/policy", map[string]any{"noticePeriod": "0s", "wipe": "app", "brakeThreshold": 0}); r.Status != 200 {
		tb.Fatalf("policy: %d %s", r.Status, r.Raw)
	}
	if r := h.tenant.Admin("POST", "/connectors", map[string]any{"type": "webhook", "name": "hr", "config": map[string]any{"url": recv.URL, "secret": "0123456789abcdef-secret"}}); r.Status != 201 {
		tb.Fatalf("connector: %d %s", r.Status, r.Raw)
	}
	return h
}

func (h *hot) userName(i int64) string { return fmt.Sprintf("hot%07d@contoso.example", i) }

// create provisions one user as Entra does and returns its id.
func (h *hot) create(tb testing.TB) (string, string) {
	i := h.seq.Add(1)
	name := h.userName(i)
	r := h.tenant.SCIM("POST", "/Users", map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"},
		"externalId": fmt.Sprintf("ext-%07d", i), "userName": name, "active": true,
		"emails": []map[string]any{{"primary": true, "type": "work", "value": name}},
		"name":   map[string]any{"givenName": "Given", "familyName": "Family", "formatted": "Given Family"},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{"employeeNumber": fmt.Sprint(i), "department": "Sales"},
	})
	if r.Status != 201 {
		tb.Fatalf("create: %d %s", r.Status, r.Raw)
	}
	return r.JSON["id"].(string), name
}

func (h *hot) lookup(tb testing.TB, name string, want int) {
	r := h.tenant.SCIM("GET", "/Users?"+url.Values{"filter": {fmt.Sprintf("userName eq %q", name)}}.Encode(), nil)
	if r.Status != 200 || r.JSON["totalResults"] != float64(want) {
		tb.Fatalf("lookup: %d %s", r.Status, r.Raw)
	}
}

func (h *hot) get(tb testing.TB, id string) {
	if r := h.tenant.SCIM("GET", "/Users/"+id, nil); r.Status != 200 {
		tb.Fatalf("get: %d %s", r.Status, r.Raw)
	}
}

func (h *hot) deactivate(tb testing.TB, id string) {
	r := h.tenant.SCIM("PATCH", "/Users/"+id, map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
		"Operations": []map[string]any{{"op": "Replace", "path": "active", "value": false}},
	})
	if r.Status != 200 && r.Status != 204 {
		tb.Fatalf("deactivate: %d %s", r.Status, r.Raw)
	}
}

// settle lets background writes of earlier requests (token touch, seat-op batches) finish
// before counting.
func settle() { time.Sleep(150 * time.Millisecond) }

func BenchmarkLookupMiss(b *testing.B) {
	h := startHot(b)
	h.lookup(b, "warm@x", 0)
	settle()
	before := h.counter.Total()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.lookup(b, fmt.Sprintf("missing%d@contoso.example", i), 0)
	}
	b.StopTimer()
	b.ReportMetric(float64(h.counter.Total()-before)/float64(b.N), "roundtrips/op")
}

func BenchmarkLookupHit(b *testing.B) {
	h := startHot(b)
	var names []string
	for i := 0; i < 100; i++ {
		_, n := h.create(b)
		names = append(names, n)
	}
	settle()
	before := h.counter.Total()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.lookup(b, names[i%len(names)], 1)
	}
	b.StopTimer()
	b.ReportMetric(float64(h.counter.Total()-before)/float64(b.N), "roundtrips/op")
}

func BenchmarkGetByID(b *testing.B) {
	h := startHot(b)
	var ids []string
	for i := 0; i < 100; i++ {
		id, _ := h.create(b)
		ids = append(ids, id)
	}
	settle()
	before := h.counter.Total()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.get(b, ids[i%len(ids)])
	}
	b.StopTimer()
	b.ReportMetric(float64(h.counter.Total()-before)/float64(b.N), "roundtrips/op")
}

func BenchmarkCreate(b *testing.B) {
	h := startHot(b)
	h.create(b)
	settle()
	before := h.counter.Total()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.create(b)
	}
	b.StopTimer()
	settle()
	b.ReportMetric(float64(h.counter.Total()-before)/float64(b.N), "roundtrips/op")
}

func BenchmarkDeactivate(b *testing.B) {
	h := startHot(b)
	ids := make([]string, b.N+1)
	for i := range ids {
		ids[i], _ = h.create(b)
	}
	h.deactivate(b, ids[b.N])
	settle()
	before := h.counter.Total()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.deactivate(b, ids[i])
	}
	b.StopTimer()
	b.ReportMetric(float64(h.counter.Total()-before)/float64(b.N), "roundtrips/op")
}

// roundTrips counts the database commands of n requests made by do, by command and
// collection, per request.
func roundTrips(h *hot, n int, do func(i int)) (float64, map[string]float64) {
	settle()
	before := h.counter.Snapshot()
	for i := 0; i < n; i++ {
		do(i)
	}
	settle()
	after := h.counter.Snapshot()
	per := map[string]float64{}
	var total float64
	for k, v := range after {
		if d := float64(v - before[k]); d > 0 {
			per[k] = d / float64(n)
			total += d
		}
	}
	return total / float64(n), per
}

func breakdown(per map[string]float64) string {
	keys := make([]string, 0, len(per))
	for k := range per {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%.2g", k, per[k])
	}
	return b.String()
}

// TestRoundTripsPerRequestKind counts the database round trips of each hot request kind and
// holds them to a budget, so an added read or write on a hot path shows up here. The floor is
// the token read every request makes (revocation works at once) plus one `_id` read for a
// lookup, and one read and one conditional write for a mutation. Set OFFBOARD_BENCH_VERBOSE=1
// to print the breakdown.
func TestRoundTripsPerRequestKind(t *testing.T) {
	h := startHot(t)
	const n = 20
	ids := make([]string, n)
	names := make([]string, n)
	kinds := []struct {
		name   string
		budget float64
		do     func(i int)
	}{
		{"create (Entra POST /Users)", 13, func(i int) { ids[i], names[i] = h.create(t) }},
		{"lookup miss (userName eq, not found)", 2, func(i int) { h.lookup(t, fmt.Sprintf("nobody%d@x", i), 0) }},
		{"lookup hit (userName eq)", 3, func(i int) { h.lookup(t, names[i], 1) }},
		{"get by id (GET /Users/{id})", 2, func(i int) { h.get(t, ids[i]) }},
		{"deactivate (PATCH active false)", 16, func(i int) { h.deactivate(t, ids[i]) }},
		{"runner: deliver the leaver's webhook", 12, func(i int) {
			if err := h.Runner.Process(t.Context(), h.tenant.ID, ids[i]); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, k := range kinds {
		total, per := roundTrips(h, n, k.do)
		t.Logf("%-40s %5.2f round trips:%s", k.name, total, breakdown(per))
		if os.Getenv("OFFBOARD_BENCH_VERBOSE") != "" {
			fmt.Printf("%-40s %5.2f round trips:%s\n", k.name, total, breakdown(per))
		}
		if total > k.budget {
			t.Errorf("%s: %.2f round trips per request, budget %.0f:%s", k.name, total, k.budget, breakdown(per))
		}
	}
}

// BenchmarkCreateConcurrently creates users from 8 goroutines, as an IdP's initial cycle at
// concurrency 8 does; users/s is the throughput.
func BenchmarkCreateConcurrently(b *testing.B) {
	h := startHot(b)
	h.create(b)
	settle()
	before := h.counter.Total()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				h.create(b)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "users/s")
	settle()
	b.ReportMetric(float64(h.counter.Total()-before)/float64(b.N), "roundtrips/op")
}
