// Package testdb gives tests a real database: one embedded store (FerretDB in-process, over the
// wire protocol) per test package, one fresh database per test, dropped when the test ends; and
// the same against a real MongoDB when OFFBOARD_TEST_MONGODB_URI is set.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/offboard/offboard/internal/embedded"
	"github.com/offboard/offboard/internal/mongostore"
)

// EnvMongoURI names the environment variable with a real MongoDB for the tests.
const EnvMongoURI = "OFFBOARD_TEST_MONGODB_URI"

var (
	once     sync.Once
	server   *embedded.Server
	dir      string
	startErr error
	clients  sync.Map // uri -> *mongo.Client
)

// Main runs the package's tests and then stops the shared embedded store. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
		_ = server.Close()
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// EmbeddedURI starts (once per package) and returns the shared embedded store's URI.
func EmbeddedURI(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, startErr = os.MkdirTemp("", "offboard-testdb-")
		if startErr != nil {
			return
		}
		server, startErr = embedded.Start(context.Background(), embedded.Options{Dir: dir})
	})
	if startErr != nil {
		t.Fatalf("start embedded store: %v", startErr)
	}
	return server.URI()
}

// Backend is a database server the tests can run against.
type Backend struct {
	Name string
	URI  string
}

// Backends lists the embedded store and, if configured, the real MongoDB.
func Backends(t testing.TB) []Backend {
	b := []Backend{{Name: "embedded", URI: EmbeddedURI(t)}}
	if uri := os.Getenv(EnvMongoURI); uri != "" {
		b = append(b, Backend{Name: "mongodb", URI: uri})
	}
	return b
}

// URI is the backend tests use by default: the real MongoDB if configured, else the embedded one.
func URI(t testing.TB) string {
	if uri := os.Getenv(EnvMongoURI); uri != "" {
		return uri
	}
	return EmbeddedURI(t)
}

// New returns a Store on a fresh database of the default backend, schema created, dropped
// after the test.
func New(t testing.TB, opts ...mongostore.Option) *mongostore.Store {
	t.Helper()
	return NewOn(t, URI(t), opts...)
}

// NewOn is New on a given server.
func NewOn(t testing.TB, uri string, opts ...mongostore.Option) *mongostore.Store {
	t.Helper()
	db := Database(t, uri)
	s := mongostore.New(db, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
	return s
}

// Database returns a fresh, uniquely named database on uri, dropped after the test.
func Database(t testing.TB, uri string) *mongo.Database {
	t.Helper()
	c, err := client(uri)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	db := c.Database(Name(t))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
	})
	return db
}

// Name returns a database name unique to this test run.
func Name(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("t_%s_%s", name, hex.EncodeToString(b[:]))
}

func client(uri string) (*mongo.Client, error) {
	if c, ok := clients.Load(uri); ok {
		return c.(*mongo.Client), nil
	}
	c, err := mongo.Connect(mongostore.ClientOptions(uri, nil))
	if err != nil {
		return nil, err
	}
	if prev, loaded := clients.LoadOrStore(uri, c); loaded {
		_ = c.Disconnect(context.Background())
		return prev.(*mongo.Client), nil
	}
	return c, nil
}
