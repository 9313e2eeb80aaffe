package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/connectors"
	"github.com/offboard/offboard/internal/connectors/builtin"
	"github.com/offboard/offboard/internal/egress"
	"github.com/offboard/offboard/internal/embedded"
	"github.com/offboard/offboard/internal/mongostore"
	"github.com/offboard/offboard/internal/oidcauth"
	"github.com/offboard/offboard/internal/ratelimit"
	"github.com/offboard/offboard/internal/secretbox"
	"github.com/offboard/offboard/internal/server"
	"github.com/offboard/offboard/internal/token"
)

// env returns the environment value of key, or def.
func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

type serveConfig struct {
	listen, mongoURI, database, data, publicURL, secretKeyFile, logLevel string
	adminToken                                                           string
	allowInsecureIssuer                                                  bool
	maxBody                                                              int64
	trustedProxies, egressAllow, egressDeny                              string
	workers                                                              int
	pprof, embeddedSync                                                  string
	tokenRate, ipRate                                                    float64
	leaseFor, sweep                                                      time.Duration
	dbCommands                                                           *mongostore.CommandCounter
}

func serveFlags(args []string) (*serveConfig, error) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", env("OFFBOARD_LISTEN", "127.0.0.1:8080"), "HTTP listen address (OFFBOARD_LISTEN)")
	fs.StringVar(&c.mongoURI, "mongo-uri", env("OFFBOARD_MONGO_URI", ""), "MongoDB URI; empty runs the embedded store (OFFBOARD_MONGO_URI)")
	fs.StringVar(&c.database, "database", env("OFFBOARD_DATABASE", "offboard"), "MongoDB database name (OFFBOARD_DATABASE)")
	fs.StringVar(&c.data, "data", env("OFFBOARD_DATA", "./offboard-data"), "data directory of the embedded store and the key file (OFFBOARD_DATA)")
	fs.StringVar(&c.publicURL, "public-url", env("OFFBOARD_PUBLIC_URL", ""), "externally visible base URL (OFFBOARD_PUBLIC_URL; default http://<listen>)")
	fs.StringVar(&c.secretKeyFile, "secret-key-file", env("OFFBOARD_SECRET_KEY_FILE", ""), "key file for connector secrets (OFFBOARD_SECRET_KEY_FILE; default <data>/secret.key; OFFBOARD_SECRET_KEY wins)")
	fs.StringVar(&c.logLevel, "log-level", env("OFFBOARD_LOG_LEVEL", "info"), "debug, info, warn or error (OFFBOARD_LOG_LEVEL)")
	fs.BoolVar(&c.allowInsecureIssuer, "allow-insecure-issuer", env("OFFBOARD_ALLOW_INSECURE_ISSUER", "") == "1", "accept http://127.0.0.1 OIDC issuers and allow loopback egress, for development (OFFBOARD_ALLOW_INSECURE_ISSUER=1)")
	fs.Int64Var(&c.maxBody, "max-body", envInt("OFFBOARD_MAX_BODY", 1<<20), "request body limit in bytes (OFFBOARD_MAX_BODY)")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", env("OFFBOARD_TRUSTED_PROXIES", ""), "CIDRs of proxies whose X-Forwarded-For is trusted (OFFBOARD_TRUSTED_PROXIES)")
	fs.StringVar(&c.egressAllow, "egress-allow", env("OFFBOARD_EGRESS_ALLOW", ""), "comma-separated CIDRs outbound requests may reach although denied by default, e.g. 127.0.0.1/32 for a local webhook receiver (OFFBOARD_EGRESS_ALLOW)")
	fs.StringVar(&c.egressDeny, "egress-deny", env("OFFBOARD_EGRESS_DENY", ""), "comma-separated CIDRs outbound requests must not reach, e.g. 10.0.0.0/8 (OFFBOARD_EGRESS_DENY)")
	fs.IntVar(&c.workers, "workers", int(envInt("OFFBOARD_WORKERS", lifecycle.DefaultWorkers)), "employees processed concurrently by the job runner (OFFBOARD_WORKERS)")
	fs.Float64Var(&c.tokenRate, "token-rate", envFloat("OFFBOARD_TOKEN_RATE", 0), "requests per second per credential, burst twice that (OFFBOARD_TOKEN_RATE; default 50)")
	fs.Float64Var(&c.ipRate, "ip-rate", envFloat("OFFBOARD_IP_RATE", 0), "requests per second per client address, burst twice that (OFFBOARD_IP_RATE; default 200)")
	fs.DurationVar(&c.leaseFor, "lease", envDuration("OFFBOARD_LEASE", lifecycle.DefaultLeaseFor), "how long a worker owns a job; a killed worker's jobs wait this long (OFFBOARD_LEASE)")
	fs.StringVar(&c.embeddedSync, "embedded-sync", env("OFFBOARD_EMBEDDED_SYNC", "normal"), "embedded store commit durability: normal (survives a process crash) or full (fsync every commit, survives power loss; slower) (OFFBOARD_EMBEDDED_SYNC)")
	fs.DurationVar(&c.sweep, "sweep", envDuration("OFFBOARD_SWEEP", lifecycle.DefaultSweep), "how often the runner sweeps every employee with open work, repairing missed wake-ups (OFFBOARD_SWEEP)")
	fs.StringVar(&c.pprof, "pprof", env("OFFBOARD_PPROF", ""), "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (OFFBOARD_PPROF; off by default)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.adminToken = os.Getenv("OFFBOARD_ADMIN_TOKEN")
	if c.publicURL == "" {
		c.publicURL = "http://" + c.listen
	}
	return c, nil
}

func envInt(key string, def int64) int64 {
	if v := os.Getenv(key); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

func envFloat(key string, def float64) float64 {
	if v := os.Getenv(key); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v := os.Getenv(key); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// openStore connects to the configured MongoDB or starts the embedded store.
func openStore(ctx context.Context, c *serveConfig, log *slog.Logger) (*mongostore.Store, func(), error) {
	uri := c.mongoURI
	closeDB := func() {}
	if uri == "" {
		db, err := embedded.Start(ctx, embedded.Options{Dir: filepath.Join(c.data, "store"), Logger: log, SyncEveryCommit: c.embeddedSync == "full"})
		if err != nil {
			return nil, nil, err
		}
		log.Info("embedded store started", "data", c.data)
		uri, closeDB = db.URI(), func() { _ = db.Close() }
	}
	var monitor *event.CommandMonitor
	if c.dbCommands != nil {
		monitor = c.dbCommands.Monitor()
	}
	store, err := mongostore.ConnectMonitored(ctx, uri, c.database, monitor)
	if err != nil {
		closeDB()
		return nil, nil, err
	}
	return store, func() {
		_ = store.Close(context.Background())
		closeDB()
	}, nil
}

// defaultMemoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT is set.
const defaultMemoryLimit = 200 << 20

func serve(args []string) error {
	c, err := serveFlags(args)
	if err != nil {
		return err
	}
	log := newLogger(c.logLevel)
	policy, err := egressPolicy(c)
	if err != nil {
		return err
	}
	log.Info("egress policy", "policy", policy)
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft heap limit keeps the resident size bounded through scans of large collections
		// on the embedded store (which decode every document); GOMEMLIMIT overrides it.
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if err := os.MkdirAll(c.data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	keys, err := secretKeys(c, log, true)
	if err != nil {
		return err
	}
	proxies, err := ratelimit.ParseTrustedProxies(c.trustedProxies)
	if err != nil {
		return fmt.Errorf("trusted proxies: %w", err)
	}

	c.dbCommands = mongostore.NewCommandCounter()
	store, closeStore, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer closeStore()
	schemaCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = store.EnsureSchema(schemaCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("database schema: %w", err)
	}
	if err := bootstrapAdmin(ctx, store, c.adminToken, log); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "offboard"}))
	jobs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "offboard", Subsystem: "jobs", Name: "attempts_total",
		Help: "External job attempts by action and resulting state."}, []string{"action", "state"})
	reg.MustRegister(jobs, c.dbCommands)

	// Every request made on a tenant's behalf (connectors, OIDC discovery and keys) goes through
	// the egress policy and never follows a redirect.
	httpClient := policy.Client(25 * time.Second)
	conns := connectors.New(store, keys, builtin.Kinds(), httpClient, log)
	host, _ := os.Hostname()
	svc := lifecycle.NewService(store, conns, lifecycle.WithLogger(log), lifecycle.WithOwner(host+"-"+lifecycle.NewID()[:8]),
		lifecycle.WithLeaseFor(c.leaseFor))
	defer svc.Close()
	runner := lifecycle.NewRunner(svc, lifecycle.WithWorkers(c.workers), lifecycle.WithIntervals(lifecycle.DefaultPoll, c.sweep),
		lifecycle.WithObserver(func(j *identity.Job, state string) { jobs.WithLabelValues(j.Action, state).Inc() }),
		lifecycle.WithOnWaiting(conns.Waiting))
	conns.SetWaker(runner.CommandReported)

	verifier := oidcauth.New(oidcauth.WithHTTPClient(httpClient), oidcauth.WithLogger(log), insecureIssuer(c.allowInsecureIssuer))
	srv := server.New(server.Config{
		Store: store, Service: svc, Connectors: conns, OIDC: verifier,
		PublicURL: c.publicURL, OperatorToken: c.adminToken, Log: log, Registry: reg,
		MaxBody: c.maxBody, TrustedProxies: proxies, AllowInsecureIssuer: c.allowInsecureIssuer,
		Ready:     store.Ping,
		TokenRate: c.tokenRate, TokenBurst: int(2 * c.tokenRate), IPRate: c.ipRate, IPBurst: int(2 * c.ipRate),
	})
	httpSrv := newHTTPServer(c.listen, srv, log)
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	if c.pprof != "" {
		go servePprof(c.pprof, log)
	}
	runCtx, stopRunner := context.WithCancel(context.Background())
	runnerDone := make(chan struct{})
	go func() { runner.Run(runCtx); close(runnerDone) }()

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	log.Info("offboard serving", "listen", ln.Addr().String(), "public_url", c.publicURL, "embedded_store", c.mongoURI == "")

	select {
	case err := <-errc:
		stopRunner()
		<-runnerDone
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	shCtx, cancelSh := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSh()
	if err := httpSrv.Shutdown(shCtx); err != nil {
		log.Warn("shutdown incomplete", "error", err)
	}
	stopRunner()
	<-runnerDone
	return nil
}

// servePprof serves the runtime profiles on their own address, never on the public listener.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	log.Info("pprof serving", "listen", addr)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Warn("pprof stopped", "error", err)
	}
}

// Server timeouts against slow clients: a client gets ReadHeaderTimeout to send its request
// line and headers (slowloris), ReadTimeout for the whole request including the body (at most
// --max-body); an idle keep-alive connection is closed after IdleTimeout. WriteTimeout bounds a
// handler plus its answer, above the longest synchronous work (a connector check: 15 s; an
// OIDC probe: 15 s).
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// newHTTPServer builds the HTTP server of `offboard serve` with its limits against slow and
// oversized requests.
func newHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h,
		ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// secretKeys returns the keyring for connector secrets: OFFBOARD_SECRET_KEY if set (current key
// first, older keys after it), else the key file (--secret-key-file, default <data>/secret.key).
// With create, a missing key file is generated (mode 0600) and a warning says so; without it
// (key rotation) a missing key is an error, since a fresh key could open nothing.
func secretKeys(c *serveConfig, log *slog.Logger, create bool) (*secretbox.Keyring, error) {
	keyFile := c.secretKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(c.data, "secret.key")
	}
	env := os.Getenv(secretbox.EnvKey)
	if env == "" && !create {
		if _, err := os.Stat(keyFile); err != nil {
			return nil, fmt.Errorf("secret key: set %s or --secret-key-file: %w", secretbox.EnvKey, err)
		}
	}
	keys, created, err := secretbox.Load(env, keyFile)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	if created {
		log.Warn("generated a new secret key for connector secrets; back it up with the database", "path", keyFile)
	}
	return keys, nil
}

// egressPolicy builds the policy for outbound requests from --egress-allow and --egress-deny.
// --allow-insecure-issuer (development) also allows loopback: a loopback issuer is its point.
func egressPolicy(c *serveConfig) (*egress.Policy, error) {
	allow, err := egress.ParseCIDRs(c.egressAllow)
	if err != nil {
		return nil, fmt.Errorf("--egress-allow (OFFBOARD_EGRESS_ALLOW): %w", err)
	}
	deny, err := egress.ParseCIDRs(c.egressDeny)
	if err != nil {
		return nil, fmt.Errorf("--egress-deny (OFFBOARD_EGRESS_DENY): %w", err)
	}
	if c.allowInsecureIssuer {
		allow = append(allow, egress.Loopback()...)
	}
	return egress.New(allow, deny), nil
}

func insecureIssuer(allow bool) oidcauth.Option {
	if allow {
		return oidcauth.AllowInsecureIssuer()
	}
	return func(*oidcauth.Verifier) {}
}

// bootstrapMeta records the operator admin token Offboard generated, and whether it was revoked
// because OFFBOARD_ADMIN_TOKEN took over.
type bootstrapMeta struct {
	ID      string     `bson:"_id"`
	TokenID string     `bson:"tokenId"`
	Created time.Time  `bson:"created"`
	Revoked *time.Time `bson:"revoked,omitempty"`
}

// bootstrapAdmin manages the operator's generated admin token. With OFFBOARD_ADMIN_TOKEN set,
// only that token is the operator's: a generated one is revoked (setting the variable is how
// an operator replaces a token that was printed to a console). Without it, the first start
// (and the first start after such a revocation) issues a token, prints it once and stores
// only its hash.
func bootstrapAdmin(ctx context.Context, store *mongostore.Store, envToken string, log *slog.Logger) error {
	var m bootstrapMeta
	err := store.GetMeta(ctx, "bootstrap-admin", &m)
	found := err == nil
	if err != nil && !errors.Is(err, identity.ErrNotFound) {
		return err
	}
	if envToken != "" {
		if len(envToken) < 16 {
			return errors.New("OFFBOARD_ADMIN_TOKEN must be at least 16 characters")
		}
		if !found || m.Revoked != nil {
			return nil
		}
		if err := store.RevokeToken(ctx, "", m.TokenID); err != nil && !errors.Is(err, identity.ErrNotFound) {
			return fmt.Errorf("revoke the generated operator token: %w", err)
		}
		now := time.Now().UTC()
		m.Revoked = &now
		if err := store.ReplaceMeta(ctx, m.ID, m); err != nil {
			return err
		}
		log.Info("generated operator admin token revoked: OFFBOARD_ADMIN_TOKEN is set", "token_id", m.TokenID)
		return nil
	}
	if found && m.Revoked == nil {
		return nil
	}
	plain, rec, err := token.New(token.ScopeAdmin, time.Now())
	if err != nil {
		return err
	}
	if err := store.CreateToken(ctx, &identity.Token{ID: rec.ID, Scope: identity.ScopeAdmin, Hash: rec.Hash, Created: rec.CreatedAt}); err != nil {
		return err
	}
	next := bootstrapMeta{ID: "bootstrap-admin", TokenID: rec.ID, Created: rec.CreatedAt}
	if found {
		// Issued again after a revocation: only if no other instance did so first.
		swapped, err := store.SwapMeta(ctx, next.ID, bson.D{{Key: "tokenId", Value: m.TokenID}}, next)
		if err != nil {
			return err
		}
		if !swapped {
			_ = store.RevokeToken(ctx, "", rec.ID)
			return nil
		}
	} else if err := store.PutMeta(ctx, next); err != nil {
		_ = store.RevokeToken(ctx, "", rec.ID)
		if errors.Is(err, identity.ErrConflict) {
			return nil // another instance issued it first
		}
		return err
	}
	fmt.Fprintf(os.Stderr, "\nOperator admin token (shown once, stored hashed):\n\n  export OFFBOARD_ADMIN_TOKEN=%s\n\n", plain)
	log.Info("operator admin token issued", "token_id", rec.ID)
	return nil
}

func devdb(args []string) error {
	fs := flag.NewFlagSet("devdb", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	data := fs.String("data", "./offboard-devdb", "data directory")
	sync := fs.String("embedded-sync", env("OFFBOARD_EMBEDDED_SYNC", "normal"), "commit durability: normal or full (see serve)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(env("OFFBOARD_LOG_LEVEL", "info"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	db, err := embedded.Start(ctx, embedded.Options{Dir: *data, ListenTCP: *listen, Logger: log, SyncEveryCommit: *sync == "full"})
	if err != nil {
		return err
	}
	log.Info("embedded store listening", "uri", db.URI(), "data", *data)
	fmt.Println(db.URI())
	<-ctx.Done()
	return db.Close()
}

func keys(args []string) error {
	if len(args) == 0 || args[0] != "rewrap" {
		return errors.New("usage: offboard keys rewrap [serve flags]")
	}
	c, err := serveFlags(args[1:])
	if err != nil {
		return err
	}
	log := newLogger(c.logLevel)
	ctx := context.Background()
	kr, err := secretKeys(c, log, false)
	if err != nil {
		return err
	}
	store, closeStore, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer closeStore()
	n, err := connectors.New(store, kr, builtin.Kinds(), http.DefaultClient, log).Rewrap(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("rewrapped %d connector(s) under key %s\n", n, kr.CurrentKeyID())
	return nil
}
