// Package embedded runs the MongoDB-compatible store that Offboard uses when no MongoDB URI is
// configured: FerretDB 1.24 with its SQLite backend, in-process, behind a small wire front that
// gives it the single-document atomicity and `_id` lookups at constant cost that the rest of
// Offboard relies on (see front.go and index.go for what FerretDB 1.24 lacks and how it is
// supplied). The same mongo-driver code talks to it and to a real MongoDB.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Options configures a Server.
type Options struct {
	// Dir is the data directory; created with mode 0700. SQLite files live in Dir/db.
	Dir string
	// ListenTCP, if set, makes the store reachable over TCP (offboard devdb); otherwise it listens
	// only on a Unix socket inside Dir, reachable by no other local user.
	ListenTCP string
	// Logger receives the store's own warnings; FerretDB's logs are quieted to errors.
	Logger *slog.Logger
	// SyncEveryCommit makes SQLite fsync its write-ahead log at every commit
	// (synchronous=FULL). By default (synchronous=NORMAL) a commit is durable against a crash
	// or kill of the process, and the log is synced at checkpoints: the machine crashing or
	// losing power can lose the last commits, as a standalone MongoDB with its default write
	// concern can lose its last 100 ms. FULL costs about a third of the sync throughput (see
	// BENCHMARKS.md).
	SyncEveryCommit bool
}

// Server is a running embedded store.
type Server struct {
	uri    string
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
	ln     net.Listener
	front  *front
	tmpDir string
}

// maxUnixPath keeps socket paths under the 108-byte sun_path limit.
const maxUnixPath = 100

// Start starts FerretDB and the front, and returns once the store accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	dbDir := filepath.Join(dir, "db")
	if err := os.MkdirAll(dbDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// MkdirAll leaves existing directories alone: tighten them, the sockets live here.
	for _, d := range []string{dir, dbDir} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("restrict data directory: %w", err)
		}
	}

	s := &Server{done: make(chan struct{})}
	sockDir := dir
	if len(filepath.Join(dir, "ferretdb.sock")) > maxUnixPath {
		if sockDir, err = os.MkdirTemp("", "offboard-"); err != nil {
			return nil, err
		}
		s.tmpDir = sockDir
	}
	backendSock := filepath.Join(sockDir, "ferretdb.sock")
	frontSock := filepath.Join(sockDir, "mongo.sock")
	for _, p := range []string{backendSock, frontSock} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}

	fdb, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: backendSock},
		Handler:   "sqlite",
		SQLiteURL: (&url.URL{Scheme: "file", Opaque: dbDir + "/", RawQuery: syncPragma(opts.SyncEveryCommit)}).String(),
		Logger:    slog.New(levelFilter{h: log.Handler(), min: slog.LevelError}),
	})
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("start embedded store: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ferretDone := make(chan struct{})
	go func() {
		defer close(ferretDone)
		_ = fdb.Run(runCtx)
	}()

	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", backendSock)
	}
	if err := waitDial(ctx, dial); err != nil {
		cancel()
		<-ferretDone
		s.cleanup()
		return nil, fmt.Errorf("embedded store did not come up: %w", err)
	}

	idx := &indexer{dir: dbDir, log: log}
	if err := idx.repairAll(ctx); err != nil {
		log.Warn("embedded store index repair failed", "error", err)
	}
	s.front = newFront(dial, func(ctx context.Context, db string) {
		if err := idx.repair(ctx, db); err != nil {
			log.Warn("embedded store index repair failed", "db", db, "error", err)
		}
	}, log)

	if opts.ListenTCP != "" {
		s.ln, err = net.Listen("tcp", opts.ListenTCP)
		if err == nil {
			s.addr = s.ln.Addr().String()
			s.uri = "mongodb://" + s.addr + "/"
		}
	} else {
		s.ln, err = net.Listen("unix", frontSock)
		if err == nil {
			err = os.Chmod(frontSock, 0o600)
			s.addr = frontSock
			s.uri = "mongodb://" + url.PathEscape(frontSock) + "/"
		}
	}
	if err != nil {
		cancel()
		<-ferretDone
		s.cleanup()
		return nil, fmt.Errorf("listen: %w", err)
	}
	go s.front.serve(s.ln)
	go func() {
		<-ferretDone
		close(s.done)
	}()
	return s, nil
}

// syncPragma is the SQLite URI query selecting the commit durability (FerretDB adds its own
// pragmas: busy timeout, WAL).
func syncPragma(full bool) string {
	mode := "NORMAL"
	if full {
		mode = "FULL"
	}
	return url.Values{"_pragma": {"synchronous(" + mode + ")"}}.Encode()
}

// URI is the MongoDB connection string of the store.
func (s *Server) URI() string { return s.uri }

// Addr is the TCP address or Unix socket path the store listens on.
func (s *Server) Addr() string { return s.addr }

// FastPathWrites counts conditional writes served through the `_id` fast path.
func (s *Server) FastPathWrites() int64 { return s.front.fastPath.Load() }

// Close stops accepting connections, closes open ones and stops FerretDB.
func (s *Server) Close() error {
	_ = s.ln.Close()
	s.front.closeConns()
	s.cancel()
	<-s.done
	s.cleanup()
	return nil
}

func (s *Server) cleanup() {
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
}

func waitDial(ctx context.Context, dial func(context.Context) (net.Conn, error)) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := dial(ctx)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// levelFilter drops records below min: FerretDB logs every connection at info level.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (l levelFilter) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}
func (l levelFilter) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }
func (l levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: l.h.WithAttrs(a), min: l.min}
}
func (l levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: l.h.WithGroup(n), min: l.min}
}
