package lifecycle

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/bcrypt"

	"github.com/offboard/offboard/identity"
)

// Hasher hashes license passwords with a slow hash.
type Hasher interface {
	Hash(password string) (string, error)
	Compare(hash, password string) bool
}

// BcryptHasher is the production Hasher (bcrypt, cost 10).
type BcryptHasher struct{ Cost int }

// Hash hashes a password.
func (b BcryptHasher) Hash(p string) (string, error) {
	cost := b.Cost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(p), cost)
	return string(h), err
}

// Compare checks a password against a hash.
func (BcryptHasher) Compare(hash, p string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(p)) == nil
}

// CheckResult is the messenger's license check answer.
type CheckResult struct {
	Status       string   `json:"status"` // "active" | "restricted"
	WorkID       string   `json:"workId"`
	Restrictions []string `json:"restrictions"`
}

// Check verifies license credentials as the messenger app does at start-up. Unknown, deleted
// or wrong credentials are identity.ErrUnauthorized: the lock-out is real.
func (s *Service) Check(ctx context.Context, username, password string) (res *CheckResult, err error) {
	compared := false
	defer func() {
		// Every refusal costs one password comparison, so the answer's timing does not tell an
		// unknown, revoked or restricted-away ID from a live one with a wrong password.
		if !compared && errors.Is(err, identity.ErrUnauthorized) {
			s.hasher.Compare(s.decoyHash(), password)
		}
	}()
	if !ValidWorkID(username) || password == "" || len(password) > 128 {
		return nil, identity.ErrUnauthorized
	}
	rec, err := s.store.GetWorkID(ctx, username)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, identity.ErrUnauthorized
	}
	if err != nil {
		return nil, err
	}
	e, err := s.store.LoadEmployee(ctx, rec.Employee)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, identity.ErrUnauthorized
	}
	if err != nil {
		return nil, err
	}
	c := e.Credentials
	if c == nil || c.Hash == "" || c.Username != username || e.WorkID != username || !holdsLicense(e.State) {
		return nil, identity.ErrUnauthorized
	}
	compared = true
	if !s.hasher.Compare(c.Hash, password) {
		return nil, identity.ErrUnauthorized
	}
	res = &CheckResult{Status: "active", WorkID: e.WorkID, Restrictions: []string{}}
	if e.State == identity.StateRestricted {
		t, err := s.settings(ctx, e.Tenant)
		if err != nil {
			return nil, err
		}
		res.Status, res.Restrictions = "restricted", append([]string{}, t.Policy.Restrictions...)
	}
	return res, nil
}

// IDStatus answers whether a messenger ID issued in tenant is active or revoked. An ID never
// issued, or issued in another tenant, is ErrNotFound. An ID whose holder left is revoked from
// the moment of the offboarding write, even before the registry's tombstone is written.
func (s *Service) IDStatus(ctx context.Context, tenant, workID string) (identity.WorkIDStatus, error) {
	if !ValidWorkID(workID) {
		return "", fmt.Errorf("messenger ID: %w", identity.ErrNotFound)
	}
	rec, err := s.store.GetWorkID(ctx, workID)
	if err != nil {
		return "", err
	}
	if rec.Tenant != tenant {
		return "", fmt.Errorf("messenger ID: %w", identity.ErrNotFound)
	}
	if rec.Status == identity.WorkIDRevoked {
		return identity.WorkIDRevoked, nil
	}
	e, err := s.store.LoadEmployee(ctx, rec.Employee)
	if errors.Is(err, identity.ErrNotFound) {
		return identity.WorkIDRevoked, nil
	}
	if err != nil {
		return "", err
	}
	if e.WorkID != workID || !holdsLicense(e.State) {
		return identity.WorkIDRevoked, nil
	}
	return identity.WorkIDActive, nil
}

// passwordAlphabet: 62 characters; 24 of them carry about 143 bits.
const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// decoyHash is a hash of a random password, compared against when there is no real hash.
func (s *Service) decoyHash() string {
	s.decoy.once.Do(func() {
		s.decoy.hash, _ = s.hasher.Hash(newPassword())
	})
	return s.decoy.hash
}

func newPassword() string {
	b := make([]byte, 24)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(fmt.Sprintf("crypto/rand failed: %v", err))
		}
		b[i] = passwordAlphabet[n.Int64()]
	}
	return string(b)
}

// RotateCredentials sets a new random license password and returns it: the only way to read a
// password, which is otherwise stored as a slow hash only.
func (s *Service) RotateCredentials(ctx context.Context, actor, tenant, id string) (username, password string, err error) {
	password = newPassword()
	hash, err := s.hasher.Hash(password)
	if err != nil {
		return "", "", err
	}
	e, err := s.store.UpdateEmployee(ctx, tenant, id, func(e *identity.Employee) error {
		if e.Deleted != nil {
			return fmt.Errorf("employee: %w", identity.ErrNotFound)
		}
		if e.Credentials == nil || !holdsLicense(e.State) {
			return fmt.Errorf("employee holds no license (state %s): %w", e.State, identity.ErrConflict)
		}
		now := s.now().UTC()
		e.Credentials.Hash, e.Credentials.Rotated = hash, &now
		e.Record(now, "credentials_rotated", "", actor)
		return nil
	})
	if err != nil {
		return "", "", err
	}
	s.auditAdmin(ctx, tenant, actor, "employee.credentials_rotated", id, nil, nil)
	return e.Credentials.Username, password, nil
}

func (s *Service) auditAdmin(ctx context.Context, tenant, actor, action, target string, before, after any) {
	entry := &identity.AuditEntry{ID: NewID(), Tenant: tenant, At: s.now().UTC(), Actor: actor, Action: action, Target: target, Before: before, After: after}
	if err := s.store.AppendAudit(ctx, entry); err != nil {
		s.log.Warn("audit entry not written", "tenant", tenant, "action", action, "error", err)
	}
}
