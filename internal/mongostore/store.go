// Package mongostore is the MongoDB storage adapter: it persists tenants, tokens, employees,
// groups, the messenger ID registry, jobs due, connectors and the audit log with the official
// driver, on a real MongoDB or on the embedded store. Every hot lookup is an equality on `_id`
// (the only filter the embedded store answers without a scan); secondary keys (userName,
// externalId, group displayName) are `_id`-addressed key documents, verified against the
// document they point to; every mutation is one conditional write.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/offboard/offboard/identity"
)

// Collection names.
const (
	colTenants    = "tenants"
	colTokens     = "tokens"
	colEmployees  = "employees"
	colKeys       = "keys"
	colGroups     = "groups"
	colMembers    = "members"
	colWorkIDs    = "workids"
	colDue        = "due"
	colAudit      = "audit"
	colConnectors = "connectors"
	colCommands   = "mdmcommands"
	colMeta       = "meta"
	colPending    = "pendingseats"
)

// Store is the MongoDB-backed implementation of Offboard's storage interfaces.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	now    func() time.Time
	owns   bool
	// written remembers employee documents this process wrote, to start the next
	// compare-and-swap from them without a read.
	written *writtenCache
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for timestamps.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// ClientOptions returns the driver options Offboard uses for uri; monitor, if not nil, observes
// every command (the benchmark counts database round trips with it).
func ClientOptions(uri string, monitor *event.CommandMonitor) *options.ClientOptions {
	o := options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(3 * time.Second).
		SetConnectTimeout(3 * time.Second).
		SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true, NilSliceAsEmpty: false}).
		SetAppName("offboard")
	if monitor != nil {
		o.SetMonitor(monitor)
	}
	return o
}

// Connect opens a client for uri and returns a Store on database dbName.
func Connect(ctx context.Context, uri, dbName string, opts ...Option) (*Store, error) {
	return ConnectMonitored(ctx, uri, dbName, nil, opts...)
}

// ConnectMonitored is Connect with a command monitor (see CommandCounter).
func ConnectMonitored(ctx context.Context, uri, dbName string, monitor *event.CommandMonitor, opts ...Option) (*Store, error) {
	client, err := mongo.Connect(ClientOptions(uri, monitor))
	if err != nil {
		return nil, fmt.Errorf("connect to MongoDB: %w", err)
	}
	s := New(client.Database(dbName), opts...)
	s.owns = true
	return s, nil
}

// New returns a Store on an existing database handle.
func New(db *mongo.Database, opts ...Option) *Store {
	s := &Store{client: db.Client(), db: db, now: time.Now, written: newWrittenCache(writtenCacheSize)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Close disconnects the client if the Store opened it.
func (s *Store) Close(ctx context.Context) error {
	if !s.owns {
		return nil
	}
	return s.client.Disconnect(ctx)
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// EnsureSchema creates every collection and index. It is idempotent and runs at start-up.
func (s *Store) EnsureSchema(ctx context.Context) error {
	// A fresh builder per index: the driver writes the generated name into the builder it is
	// given, so a shared one named the second unique index after the first, differently on
	// every start (map order), and the next start failed with IndexOptionsConflict.
	unique := func(name string) *options.IndexOptionsBuilder { return options.Index().SetUnique(true).SetName(name) }
	indexes := map[string][]mongo.IndexModel{
		colTenants:   {{Keys: bson.D{{Key: "nameKey", Value: 1}}, Options: unique("nameKey_1")}},
		colTokens:    {{Keys: bson.D{{Key: "tenant", Value: 1}}}},
		colEmployees: {{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "userNameKey", Value: 1}}, Options: options.Index().SetUnique(true).SetName("tenant_userNameKey")}},
		colKeys:      {{Keys: bson.D{{Key: "at", Value: 1}}}},
		colGroups:    {{Keys: bson.D{{Key: "tenant", Value: 1}}}},
		colMembers:   {{Keys: bson.D{{Key: "group", Value: 1}}}, {Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "value", Value: 1}}}},
		colWorkIDs:   {{Keys: bson.D{{Key: "employee", Value: 1}}}},
		colDue:       {{Keys: bson.D{{Key: "at", Value: 1}}}},
		colAudit:     {{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "at", Value: 1}}}},
		colConnectors: {
			{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "name", Value: 1}}, Options: unique("tenant_1_name_1")},
		},
		colCommands: {{Keys: bson.D{{Key: "connector", Value: 1}}}},
		colMeta:     {{Keys: bson.D{{Key: "kind", Value: 1}}}},
		colPending:  {{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "at", Value: 1}}}},
	}
	for col, models := range indexes {
		for _, m := range models {
			_, err := s.db.Collection(col).Indexes().CreateOne(ctx, m)
			if err != nil && !sameKeysOtherName(err) {
				return wrap("create indexes on "+col, err)
			}
		}
	}
	return nil
}

// sameKeysOtherName reports IndexOptionsConflict: an index with these keys exists under
// another name (databases created by a version that named indexes inconsistently).
func sameKeysOtherName(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(85)
}

// Drop deletes the whole database (tests).
func (s *Store) Drop(ctx context.Context) error { return s.db.Drop(ctx) }

// Database exposes the database handle (tests and tools).
func (s *Store) Database() *mongo.Database { return s.db }

func (s *Store) c(name string) *mongo.Collection { return s.db.Collection(name) }

// wrap maps driver errors to the domain's sentinel errors, keeping the cause for the log.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return fmt.Errorf("%s: %w", op, identity.ErrNotFound)
	case mongo.IsDuplicateKeyError(err):
		return fmt.Errorf("%s: %w", op, identity.ErrConflict)
	case unavailable(err):
		return fmt.Errorf("%s: %w: %w", op, identity.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// unavailable reports whether err means the database cannot be reached right now.
func unavailable(err error) bool {
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mongo.ErrClientDisconnected) {
		return true
	}
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) {
		return true
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) && (ce.HasErrorLabel("RetryableWriteError") || ce.HasErrorLabel("NetworkError")) {
		return true
	}
	return false
}

// errNotFound is mongo.ErrNoDocuments for checks the adapter makes itself.
var errNotFound = mongo.ErrNoDocuments

func isDup(err error) bool { return mongo.IsDuplicateKeyError(err) }
