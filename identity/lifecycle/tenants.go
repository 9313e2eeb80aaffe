package lifecycle

import (
	"context"
	"sync"
	"time"

	"github.com/offboard/offboard/identity"
)

// settingsTTL is how long a tenant's settings (policy) read by this process are reused. A
// policy change made through this process applies at once (ForgetTenant); one made through
// another process within settingsTTL. Seat counts are never taken from this cache: seats move
// only through the atomic seat operations.
const settingsTTL = 2 * time.Second

type cachedTenant struct {
	t  *identity.Tenant
	at time.Time
}

// tenantSettings caches tenant documents for their policy.
type tenantSettings struct {
	mu sync.Mutex
	m  map[string]cachedTenant
}

// settings returns the tenant for its policy, read at most every settingsTTL.
func (s *Service) settings(ctx context.Context, id string) (*identity.Tenant, error) {
	now := time.Now()
	s.tenants.mu.Lock()
	c, ok := s.tenants.m[id]
	s.tenants.mu.Unlock()
	if ok && now.Sub(c.at) < settingsTTL {
		return c.t, nil
	}
	t, err := s.store.GetTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	s.tenants.mu.Lock()
	if s.tenants.m == nil || len(s.tenants.m) > 10000 {
		s.tenants.m = map[string]cachedTenant{}
	}
	s.tenants.m[id] = cachedTenant{t: t, at: now}
	s.tenants.mu.Unlock()
	return t, nil
}

// ForgetTenant drops a tenant's cached settings (after an admin changed them here).
func (s *Service) ForgetTenant(id string) {
	s.tenants.mu.Lock()
	delete(s.tenants.m, id)
	s.tenants.mu.Unlock()
}
