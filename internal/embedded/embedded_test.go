package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func start(t *testing.T, dir string) (*Server, *mongo.Client) {
	t.Helper()
	ctx := context.Background()
	s, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(ctx)
		_ = s.Close()
	})
	return s, c
}

func TestConcurrentIncrementsOnOneDocumentAreNotLost(t *testing.T) {
	_, c := start(t, t.TempDir())
	ctx := context.Background()
	col := c.Database("atomic").Collection("counters")
	if _, err := col.InsertOne(ctx, bson.M{"_id": "c", "n": 0}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := col.UpdateOne(ctx, bson.M{"_id": "c"}, bson.M{"$inc": bson.M{"n": 1}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var doc struct{ N int }
	if err := col.FindOne(ctx, bson.M{"_id": "c"}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.N != workers*each {
		t.Fatalf("n = %d, want %d: increments were lost", doc.N, workers*each)
	}
}

func TestCompareAndSwapAdmitsOneWriterPerVersion(t *testing.T) {
	s, c := start(t, t.TempDir())
	ctx := context.Background()
	col := c.Database("cas").Collection("docs")
	if _, err := col.InsertOne(ctx, bson.M{"_id": "d", "rev": int64(0), "writers": bson.A{}}); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 6, 15
	var mu sync.Mutex
	wins := map[int64]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				var cur struct{ Rev int64 }
				if err := col.FindOne(ctx, bson.M{"_id": "d"}).Decode(&cur); err != nil {
					t.Error(err)
					return
				}
				res, err := col.UpdateOne(ctx, bson.M{"_id": "d", "rev": cur.Rev},
					bson.M{"$set": bson.M{"rev": cur.Rev + 1}, "$push": bson.M{"writers": w}})
				if err != nil {
					t.Error(err)
					return
				}
				if res.ModifiedCount == 1 {
					mu.Lock()
					wins[cur.Rev]++
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	var final struct {
		Rev     int64
		Writers []int
	}
	if err := col.FindOne(ctx, bson.M{"_id": "d"}).Decode(&final); err != nil {
		t.Fatal(err)
	}
	for rev, n := range wins {
		if n != 1 {
			t.Errorf("version %d was won by %d writers", rev, n)
		}
	}
	if int(final.Rev) != len(wins) || len(final.Writers) != len(wins) {
		t.Errorf("rev %d, %d writers recorded, %d wins", final.Rev, len(final.Writers), len(wins))
	}
	if s.FastPathWrites() == 0 {
		t.Error("conditional writes did not use the _id fast path")
	}
}

func TestConditionalWritesAnswerLikeMongoDB(t *testing.T) {
	_, c := start(t, t.TempDir())
	ctx := context.Background()
	col := c.Database("cond").Collection("docs")
	_, err := col.InsertMany(ctx, []any{
		bson.M{"_id": "a", "rev": int32(3), "state": "active", "sub": bson.M{"n": int64(7)}, "tags": bson.A{"x", "y"}},
		bson.M{"_id": "b", "rev": int64(1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		filter bson.M
		match  bool
	}{
		{"equal number across int types", bson.M{"_id": "a", "rev": int64(3)}, true},
		{"unequal number", bson.M{"_id": "a", "rev": 4}, false},
		{"dotted path comparison", bson.M{"_id": "a", "sub.n": bson.M{"$gte": 7, "$lt": 8.5}}, true},
		{"missing field equals null", bson.M{"_id": "a", "gone": nil}, true},
		{"exists false on a present field", bson.M{"_id": "a", "state": bson.M{"$exists": false}}, false},
		{"in list", bson.M{"_id": "a", "state": bson.M{"$in": bson.A{"restricted", "active"}}}, true},
		{"ne", bson.M{"_id": "a", "state": bson.M{"$ne": "active"}}, false},
		{"array field left to FerretDB", bson.M{"_id": "a", "tags": "y"}, true},
		{"unknown id", bson.M{"_id": "zzz", "rev": 1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := col.UpdateOne(ctx, tc.filter, bson.M{"$set": bson.M{"touched": tc.name}})
			if err != nil {
				t.Fatal(err)
			}
			if (res.MatchedCount == 1) != tc.match {
				t.Fatalf("update matched %d, want match=%v", res.MatchedCount, tc.match)
			}
			var got bson.M
			err = col.FindOneAndUpdate(ctx, tc.filter, bson.M{"$set": bson.M{"fam": tc.name}},
				options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&got)
			if tc.match && err != nil {
				t.Fatalf("findAndModify: %v", err)
			}
			if !tc.match && !errors.Is(err, mongo.ErrNoDocuments) {
				t.Fatalf("findAndModify error %v, want ErrNoDocuments", err)
			}
			if tc.match && got["fam"] != tc.name {
				t.Fatalf("findAndModify returned %v", got)
			}
		})
	}
}

func TestIDLookupsUseAnIndexOnEveryCollection(t *testing.T) {
	dir := t.TempDir()
	_, c := start(t, dir)
	ctx := context.Background()
	db := c.Database("idx")
	for _, name := range []string{"employees", "keys"} {
		if _, err := db.Collection(name).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "tenant", Value: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "db", "idx.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(`SELECT table_name FROM "_ferretdb_collections"`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var tn string
		_ = rows.Scan(&tn)
		tables = append(tables, tn)
	}
	rows.Close()
	if len(tables) != 2 {
		t.Fatalf("tables %v", tables)
	}
	for _, tn := range tables {
		var a, b, c2 int
		var plan string
		q := fmt.Sprintf(`EXPLAIN QUERY PLAN UPDATE %q SET _ferretdb_sjson = '{}' WHERE _ferretdb_sjson->'$._id' = ?`, tn)
		if err := conn.QueryRow(q, `"x"`).Scan(&a, &b, &c2, &plan); err != nil {
			t.Fatal(err)
		}
		if want := "USING INDEX " + tn + "_offboard_id"; !contains(plan, want) {
			t.Errorf("plan for %s: %q, want %q", tn, plan, want)
		}
	}
}

func TestDataSurvivesARestartAndSocketsArePrivate(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Database("p").Collection("c").InsertOne(ctx, bson.M{"_id": "kept"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
	_ = c.Disconnect(ctx)
	_ = s.Close()

	_, c = start(t, dir)
	n, err := c.Database("p").Collection("c").CountDocuments(ctx, bson.M{"_id": "kept"})
	if err != nil || n != 1 {
		t.Fatalf("after restart: n=%d err=%v", n, err)
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (s == sub || len(sub) == 0 || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestWritesOfOneDocumentAndOfAWholeCollectionInterleaveWithoutLoss(t *testing.T) {
	_, c := start(t, t.TempDir())
	ctx := context.Background()
	col := c.Database("atomic").Collection("counters")
	ids := []string{"a", "b", "c", "d"}
	for _, id := range ids {
		if _, err := col.InsertOne(ctx, bson.M{"_id": id, "n": 0, "all": 0}); err != nil {
			t.Fatal(err)
		}
	}
	const each = 30
	var wg sync.WaitGroup
	for _, id := range ids {
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					// Per-document lock: a conditional write and a plain one.
					if _, err := col.UpdateOne(ctx, bson.M{"_id": id, "n": bson.M{"$gte": 0}}, bson.M{"$inc": bson.M{"n": 1}}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < each; i++ {
			// No `_id`: locks the collection against the per-document writers.
			if _, err := col.UpdateMany(ctx, bson.M{}, bson.M{"$inc": bson.M{"all": 1}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	for _, id := range ids {
		var doc struct{ N, All int }
		if err := col.FindOne(ctx, bson.M{"_id": id}).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if doc.N != 2*each || doc.All != each {
			t.Fatalf("%s: n = %d, all = %d, want %d and %d: writes were lost", id, doc.N, doc.All, 2*each, each)
		}
	}
}

func TestABackupTakenWhileRunningRestoresTheData(t *testing.T) {
	dir := t.TempDir()
	_, c := start(t, dir)
	ctx := context.Background()
	col := c.Database("live").Collection("docs")
	for i := 0; i < 50; i++ {
		if _, err := col.InsertOne(ctx, bson.M{"_id": fmt.Sprint("d", i), "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "backup")
	files, err := Backup(ctx, dir, out)
	if err != nil || len(files) != 1 {
		t.Fatalf("backup: %v %v", files, err)
	}
	// Restore into a fresh data directory and read the data back.
	restored := t.TempDir()
	if err := os.MkdirAll(filepath.Join(restored, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "db", filepath.Base(files[0])), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, c2 := start(t, restored)
	n, err := c2.Database("live").Collection("docs").CountDocuments(ctx, bson.M{})
	if err != nil || n != 50 {
		t.Fatalf("restored %d documents, %v", n, err)
	}
	if _, err := Backup(ctx, dir, out); err == nil {
		t.Fatal("a second backup into the same directory must refuse to overwrite")
	}
}

func TestTheDocumentCacheNeverAnswersAConditionWithAStaleVersion(t *testing.T) {
	s, c := start(t, t.TempDir())
	ctx := context.Background()
	col := c.Database("cache").Collection("docs")
	cas := func(id string, rev int, next bson.M) bool {
		t.Helper()
		res, err := col.ReplaceOne(ctx, bson.M{"_id": id, "rev": rev}, next)
		if err != nil {
			t.Fatal(err)
		}
		return res.MatchedCount == 1
	}
	if _, err := col.InsertOne(ctx, bson.M{"_id": "a", "rev": 1}); err != nil {
		t.Fatal(err)
	}
	before := s.front.preReads.Load()
	if !cas("a", 1, bson.M{"rev": 2, "v": "x"}) || !cas("a", 2, bson.M{"rev": 3}) || cas("a", 2, bson.M{"rev": 9}) {
		t.Fatal("replacement chain answered wrongly")
	}
	if n := s.front.preReads.Load() - before; n != 0 {
		t.Errorf("%d pre-reads for an inserted then replaced document, want 0 (cache)", n)
	}

	t.Run("an operator update by id is forgotten", func(t *testing.T) {
		if _, err := col.UpdateOne(ctx, bson.M{"_id": "a"}, bson.M{"$set": bson.M{"rev": 7}}); err != nil {
			t.Fatal(err)
		}
		if cas("a", 3, bson.M{"rev": 4}) || !cas("a", 7, bson.M{"rev": 8}) {
			t.Fatal("a stale version answered the condition")
		}
	})
	t.Run("a write without an id clears the database", func(t *testing.T) {
		if _, err := col.UpdateMany(ctx, bson.M{}, bson.M{"$inc": bson.M{"rev": 10}}); err != nil {
			t.Fatal(err)
		}
		if cas("a", 8, bson.M{"rev": 1}) || !cas("a", 18, bson.M{"rev": 19}) {
			t.Fatal("a stale version answered after a multi-document update")
		}
	})
	t.Run("a failed insert does not replace the known version", func(t *testing.T) {
		if _, err := col.InsertOne(ctx, bson.M{"_id": "a", "rev": 100}); err == nil {
			t.Fatal("duplicate insert accepted")
		}
		if !cas("a", 19, bson.M{"rev": 20}) {
			t.Fatal("the failed insert poisoned the cache")
		}
	})
	t.Run("a conditional delete is forgotten", func(t *testing.T) {
		res, err := col.DeleteOne(ctx, bson.M{"_id": "a", "rev": 20})
		if err != nil || res.DeletedCount != 1 {
			t.Fatalf("delete: %v %v", res, err)
		}
		if cas("a", 20, bson.M{"rev": 21}) {
			t.Fatal("a deleted document matched")
		}
	})
	t.Run("dropping the database forgets it", func(t *testing.T) {
		if _, err := col.InsertOne(ctx, bson.M{"_id": "b", "rev": 1}); err != nil {
			t.Fatal(err)
		}
		if err := c.Database("cache").Drop(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := col.InsertOne(ctx, bson.M{"_id": "b", "rev": 5}); err != nil {
			t.Fatal(err)
		}
		if cas("b", 1, bson.M{"rev": 2}) || !cas("b", 5, bson.M{"rev": 6}) {
			t.Fatal("a version from before the drop answered")
		}
	})
}
