// Package connectors manages tenants' MDM connectors: it validates and stores their
// configuration sealed under the secret key (secrets are write-only), opens and caches them for
// the job runner, checks their health, serves their inbound webhooks (NanoMDM results) and
// rewraps their secrets after a key rotation. It implements lifecycle.Connectors.
package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/identity/lifecycle"
	"github.com/offboard/offboard/internal/secretbox"
	"github.com/offboard/offboard/mdm"
)

// Kind describes one connector type; the wiring registers every kind it knows.
type Kind struct {
	Open   mdm.Opener
	Redact func(json.RawMessage) json.RawMessage
	// Notifier kinds get one person-level job per offboarding instead of device jobs.
	Notifier bool
	// Messenger kinds bridge to an external messenger's license management (see
	// lifecycle.ConnectorInfo.Messenger); they are Notifiers too.
	Messenger bool
	// Hook, if set, makes the kind receive results on an inbound webhook URL with a secret.
	Hook *Hook
}

// Hook is an inbound webhook of a connector kind.
type Hook struct {
	NewSecret   func() (string, error)
	CheckSecret func(stored, presented string) bool
	Handler     func(connectorID string, log mdm.CommandLog, wake func(connectorID, commandID string)) http.Handler
}

// Store is the storage the manager needs.
type Store interface {
	CreateConnector(ctx context.Context, c *identity.Connector) error
	GetConnector(ctx context.Context, tenant, idOrName string) (*identity.Connector, error)
	LoadConnector(ctx context.Context, id string) (*identity.Connector, error)
	ListConnectors(ctx context.Context, tenant string) ([]*identity.Connector, error)
	AllConnectors(ctx context.Context) ([]*identity.Connector, error)
	ReplaceSealed(ctx context.Context, c *identity.Connector, sealed, hook string) error
	DeleteConnector(ctx context.Context, tenant, id string) error
	SetConnectorHealth(ctx context.Context, id string, h identity.ConnectorHealth) error
	CommandLog() mdm.CommandLog
	PutCommandRef(ctx context.Context, connector, command, tenant, employee string) error
	GetCommandRef(ctx context.Context, connector, command string) (tenant, employee string, err error)
}

// Manager is the connector registry of one process.
type Manager struct {
	store    Store
	keys     *secretbox.Keyring
	kinds    map[string]Kind
	client   *http.Client
	limiters *mdm.Limiters
	now      func() time.Time
	log      *slog.Logger
	wake     func(tenant, employee, connector, command string)

	mu    sync.Mutex
	cache map[string]cached
	list  map[string]listed
}

type cached struct {
	rev  int64
	conn mdm.Connector
}

type listed struct {
	at    time.Time
	infos []lifecycle.ConnectorInfo
}

// listTTL bounds how long a tenant's connector list is cached for planning.
const listTTL = 2 * time.Second

// Option configures a Manager.
type Option func(*Manager)

// WithClock sets the clock handed to connectors and used for health and list caching.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// New returns a Manager. Its mdm.Limiters are the process's: every connector it opens, and every
// reopening of one (a changed configuration), shares the limiter of its vendor account.
func New(store Store, keys *secretbox.Keyring, kinds map[string]Kind, client *http.Client, log *slog.Logger, opts ...Option) *Manager {
	m := &Manager{
		store: store, keys: keys, kinds: kinds, client: client, limiters: &mdm.Limiters{},
		now: time.Now, log: log, wake: func(string, string, string, string) {},
		cache: map[string]cached{}, list: map[string]listed{},
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Limiters returns the process's rate and concurrency limiters, shared by every connector the
// Manager opens (keyed by vendor account, see mdm.Limiters).
func (m *Manager) Limiters() *mdm.Limiters { return m.limiters }

// SetWaker connects the job runner for inbound results (lifecycle.Runner.CommandReported): it
// is told which employee's job waits on the command a vendor reported on.
func (m *Manager) SetWaker(w func(tenant, employee, connector, command string)) { m.wake = w }

// Types lists the registered connector types.
func (m *Manager) Types() []string {
	out := make([]string, 0, len(m.kinds))
	for t := range m.kinds {
		out = append(out, t)
	}
	return out
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func aad(tenant, id string) []byte { return []byte("connector:" + tenant + "/" + id) }

// Created is the answer to a connector creation: the stored connector and, for kinds with an
// inbound webhook, the secret for its URL (shown once).
type Created struct {
	Connector  *identity.Connector
	HookSecret string
}

// Create validates a configuration (by opening it, without network calls), seals it and
// stores the connector.
func (m *Manager) Create(ctx context.Context, tenant, name, typ string, cfg json.RawMessage) (*Created, error) {
	kind, ok := m.kinds[typ]
	if !ok {
		return nil, fmt.Errorf("%w: unknown connector type %q", identity.ErrInvalid, typ)
	}
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: name must be 1-63 letters, digits, '.', '_' or '-'", identity.ErrInvalid)
	}
	if len(cfg) == 0 || string(cfg) == "null" {
		cfg = json.RawMessage(`{}`)
	}
	id := lifecycle.NewID()
	if _, err := kind.Open(cfg, m.deps(tenant, id)); err != nil {
		return nil, fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	}
	sealed, err := m.keys.Seal(cfg, aad(tenant, id))
	if err != nil {
		return nil, err
	}
	c := &identity.Connector{
		ID: id, Tenant: tenant, Name: name, Type: typ, Sealed: sealed,
		Redacted: string(kind.Redact(cfg)), Created: m.now().UTC(),
	}
	out := &Created{Connector: c}
	if kind.Hook != nil {
		secret, err := kind.Hook.NewSecret()
		if err != nil {
			return nil, err
		}
		if c.HookSecret, err = m.keys.Seal([]byte(secret), aad(tenant, id+"/hook")); err != nil {
			return nil, err
		}
		out.HookSecret = secret
	}
	if err := m.store.CreateConnector(ctx, c); err != nil {
		return nil, err
	}
	m.forgetList(tenant)
	return out, nil
}

// Delete removes a connector; jobs already planned for it fail with a clear error.
func (m *Manager) Delete(ctx context.Context, tenant, idOrName string) error {
	c, err := m.store.GetConnector(ctx, tenant, idOrName)
	if err != nil {
		return err
	}
	if err := m.store.DeleteConnector(ctx, tenant, c.ID); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.cache, c.ID)
	m.mu.Unlock()
	m.forgetList(tenant)
	return nil
}

func (m *Manager) forgetList(tenant string) {
	m.mu.Lock()
	delete(m.list, tenant)
	m.mu.Unlock()
}

// List implements lifecycle.Connectors.
func (m *Manager) List(ctx context.Context, tenant string) ([]lifecycle.ConnectorInfo, error) {
	m.mu.Lock()
	l, ok := m.list[tenant]
	m.mu.Unlock()
	if ok && m.now().Sub(l.at) < listTTL {
		return l.infos, nil
	}
	cs, err := m.store.ListConnectors(ctx, tenant)
	if err != nil {
		return nil, err
	}
	infos := make([]lifecycle.ConnectorInfo, 0, len(cs))
	for _, c := range cs {
		infos = append(infos, lifecycle.ConnectorInfo{ID: c.ID, Name: c.Name, Type: c.Type, Notifier: m.kinds[c.Type].Notifier, Messenger: m.kinds[c.Type].Messenger})
	}
	m.mu.Lock()
	m.list[tenant] = listed{at: m.now(), infos: infos}
	m.mu.Unlock()
	return infos, nil
}

// Open implements lifecycle.Connectors: it unseals and opens a connector, cached per revision.
func (m *Manager) Open(ctx context.Context, tenant, id string) (mdm.Connector, error) {
	c, err := m.store.GetConnector(ctx, tenant, id)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, &mdm.VendorError{Vendor: "offboard", Op: "open connector", Detail: "connector " + id + " was deleted"}
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	hit, ok := m.cache[c.ID]
	m.mu.Unlock()
	if ok && hit.rev == c.Rev {
		return hit.conn, nil
	}
	kind, ok := m.kinds[c.Type]
	if !ok {
		return nil, &mdm.VendorError{Vendor: c.Type, Op: "open connector", Detail: "connector type not supported by this version"}
	}
	cfg, err := m.keys.Open(c.Sealed, aad(c.Tenant, c.ID))
	if err != nil {
		return nil, &mdm.VendorError{Vendor: c.Type, Op: "open connector", Detail: "configuration cannot be decrypted with the configured secret keys", Err: err}
	}
	conn, err := kind.Open(cfg, m.deps(c.Tenant, c.ID))
	if err != nil {
		return nil, &mdm.VendorError{Vendor: c.Type, Op: "open connector", Detail: err.Error()}
	}
	m.mu.Lock()
	m.cache[c.ID] = cached{rev: c.Rev, conn: conn}
	m.mu.Unlock()
	return conn, nil
}

func (m *Manager) deps(tenant, id string) mdm.Deps {
	return mdm.Deps{
		HTTPClient: m.client, Now: m.now, Commands: m.store.CommandLog(),
		ConnectorID: id, Tenant: tenant, Limiters: m.limiters,
	}
}

// Check runs a connector's health check and records the result. A broken connector is shown
// as unhealthy; it never blocks SCIM or the other connectors.
func (m *Manager) Check(ctx context.Context, tenant, idOrName string) (*identity.ConnectorHealth, error) {
	c, err := m.store.GetConnector(ctx, tenant, idOrName)
	if err != nil {
		return nil, err
	}
	h := identity.ConnectorHealth{OK: true, Checked: m.now().UTC()}
	conn, err := m.Open(ctx, tenant, c.ID)
	if err == nil {
		if hc, ok := conn.(mdm.HealthChecker); ok {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err = hc.CheckHealth(cctx)
			cancel()
		}
	}
	if err != nil {
		h.OK, h.Error = false, err.Error()
	}
	if err := m.store.SetConnectorHealth(ctx, c.ID, h); err != nil {
		return nil, err
	}
	return &h, nil
}

// Hook returns the inbound webhook handler of a connector if secret is its webhook secret.
func (m *Manager) Hook(ctx context.Context, id, secret string) (http.Handler, error) {
	c, err := m.store.LoadConnector(ctx, id)
	if err != nil {
		return nil, err
	}
	kind := m.kinds[c.Type]
	if kind.Hook == nil || c.HookSecret == "" {
		return nil, identity.ErrNotFound
	}
	stored, err := m.keys.Open(c.HookSecret, aad(c.Tenant, c.ID+"/hook"))
	if err != nil || !kind.Hook.CheckSecret(string(stored), secret) {
		return nil, identity.ErrNotFound
	}
	return kind.Hook.Handler(c.ID, m.store.CommandLog(), m.onResult), nil
}

// onResult wakes the runner for the employee whose job waits on a command.
func (m *Manager) onResult(connector, command string) {
	tenant, emp, err := m.store.GetCommandRef(context.Background(), connector, command)
	if err != nil {
		return
	}
	m.wake(tenant, emp, connector, command)
}

// Waiting records which employee waits on a vendor command (so an inbound result wakes it).
func (m *Manager) Waiting(ctx context.Context, tenant, employee, connector, command string) {
	if err := m.store.PutCommandRef(ctx, connector, command, tenant, employee); err != nil {
		m.log.Warn("command reference not stored; the result is picked up by polling", "error", err)
	}
}

// Rewrap re-seals every connector secret under the current key and returns how many changed.
func (m *Manager) Rewrap(ctx context.Context) (int, error) {
	cs, err := m.store.AllConnectors(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cs {
		sealed, ch1, err := m.keys.Rewrap(c.Sealed, aad(c.Tenant, c.ID))
		if err != nil {
			return n, fmt.Errorf("connector %s: %w", c.ID, err)
		}
		hook, ch2 := c.HookSecret, false
		if hook != "" {
			if hook, ch2, err = m.keys.Rewrap(c.HookSecret, aad(c.Tenant, c.ID+"/hook")); err != nil {
				return n, fmt.Errorf("connector %s hook: %w", c.ID, err)
			}
		}
		if !ch1 && !ch2 {
			continue
		}
		if err := m.store.ReplaceSealed(ctx, c, sealed, hook); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// View is the public form of a connector: redacted configuration, never secrets.
type View struct {
	ID      string                    `json:"id"`
	Name    string                    `json:"name"`
	Type    string                    `json:"type"`
	Config  json.RawMessage           `json:"config"`
	Created time.Time                 `json:"created"`
	Health  *identity.ConnectorHealth `json:"health,omitempty"`
}

// ViewOf renders a connector for the admin API.
func ViewOf(c *identity.Connector) View {
	cfg := json.RawMessage(c.Redacted)
	if len(cfg) == 0 {
		cfg = json.RawMessage(`{}`)
	}
	return View{ID: c.ID, Name: c.Name, Type: c.Type, Config: cfg, Created: c.Created, Health: c.Health}
}
