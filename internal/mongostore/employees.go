package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
)

// claimGrace is how long a userName claim whose employee does not exist yet is presumed to
// belong to a create still in flight (so a concurrent create gets 409, not the name).
const claimGrace = 30 * time.Second

// maxUpdateAttempts bounds compare-and-swap retries under contention.
const maxUpdateAttempts = 50

// keyDoc is a secondary-key document, addressed by `_id`.
type keyDoc struct {
	ID   string    `bson:"_id"`
	Emp  string    `bson:"emp,omitempty"`
	Emps []string  `bson:"emps,omitempty"`
	At   time.Time `bson:"at"`
}

func userNameKeyID(tenant, key string) string   { return "u|" + tenant + "|" + key }
func externalIDKeyID(tenant, ext string) string { return "x|" + tenant + "|" + ext }

// ClaimUserName reserves a case-folded userName of a tenant for employee id before the
// employee is written. The claim is the first write of a create, so a crash never leaves an
// employee that a userName lookup cannot find; a claim whose employee never appeared is taken
// over after claimGrace.
func (s *Store) ClaimUserName(ctx context.Context, tenant, userNameKey, id string) error {
	kid := userNameKeyID(tenant, userNameKey)
	now := s.now().UTC()
	_, err := s.c(colKeys).InsertOne(ctx, keyDoc{ID: kid, Emp: id, At: now})
	if err == nil {
		return nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return wrap("claim userName", err)
	}
	var k keyDoc
	if err := s.c(colKeys).FindOne(ctx, bson.D{{Key: "_id", Value: kid}}).Decode(&k); err != nil {
		return wrap("claim userName", err)
	}
	if k.Emp == id {
		return nil
	}
	holder, err := s.LoadEmployee(ctx, k.Emp)
	switch {
	case err == nil && holder.Tenant == tenant && holder.UserNameKey == userNameKey:
		return fmt.Errorf("userName taken: %w", identity.ErrConflict)
	case err != nil && !errors.Is(err, identity.ErrNotFound):
		return err
	case errors.Is(err, identity.ErrNotFound) && now.Sub(k.At) < claimGrace:
		return fmt.Errorf("userName being created: %w", identity.ErrConflict)
	}
	res, err := s.c(colKeys).UpdateOne(ctx, bson.D{{Key: "_id", Value: kid}, {Key: "emp", Value: k.Emp}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "emp", Value: id}, {Key: "at", Value: now}}}})
	if err != nil {
		return wrap("claim userName", err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("userName claimed concurrently: %w", identity.ErrConflict)
	}
	return nil
}

// ReleaseUserName drops id's claim on a userName (after a rename, a delete or a failed create).
func (s *Store) ReleaseUserName(ctx context.Context, tenant, userNameKey, id string) error {
	_, err := s.c(colKeys).DeleteOne(ctx, bson.D{{Key: "_id", Value: userNameKeyID(tenant, userNameKey)}, {Key: "emp", Value: id}})
	return wrap("release userName", err)
}

func (s *Store) addExternalID(ctx context.Context, tenant, ext, id string) error {
	if ext == "" {
		return nil
	}
	_, err := s.c(colKeys).UpdateOne(ctx, bson.D{{Key: "_id", Value: externalIDKeyID(tenant, ext)}},
		bson.D{{Key: "$addToSet", Value: bson.D{{Key: "emps", Value: id}}}, {Key: "$set", Value: bson.D{{Key: "at", Value: s.now().UTC()}}}},
		options.UpdateOne().SetUpsert(true))
	return wrap("index externalId", err)
}

func (s *Store) removeExternalID(ctx context.Context, tenant, ext, id string) error {
	if ext == "" {
		return nil
	}
	_, err := s.c(colKeys).UpdateOne(ctx, bson.D{{Key: "_id", Value: externalIDKeyID(tenant, ext)}},
		bson.D{{Key: "$pull", Value: bson.D{{Key: "emps", Value: id}}}})
	return wrap("unindex externalId", err)
}

// InsertEmployee writes a new employee whose userName the caller has claimed.
func (s *Store) InsertEmployee(ctx context.Context, e *identity.Employee) error {
	if err := s.addExternalID(ctx, e.Tenant, e.ExternalID, e.ID); err != nil {
		return err
	}
	raw, err := bson.Marshal(stored(e))
	if err != nil {
		return fmt.Errorf("insert employee: %w", err)
	}
	_, err = s.c(colEmployees).InsertOne(ctx, raw)
	if err == nil {
		s.written.put(e.ID, raw)
	}
	if mongo.IsDuplicateKeyError(err) {
		// Another employee holds the name although our claim succeeded (a claim taken over from
		// a create that did finish): point the key back at the real holder.
		s.repairUserNameKey(ctx, e.Tenant, e.UserNameKey)
	}
	return wrap("insert employee", err)
}

func (s *Store) repairUserNameKey(ctx context.Context, tenant, key string) {
	var holder identity.Employee
	err := s.c(colEmployees).FindOne(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "userNameKey", Value: key}}).Decode(&holder)
	if err != nil {
		return
	}
	_, _ = s.c(colKeys).UpdateOne(ctx, bson.D{{Key: "_id", Value: userNameKeyID(tenant, key)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "emp", Value: holder.ID}, {Key: "at", Value: s.now().UTC()}}}},
		options.UpdateOne().SetUpsert(true))
}

// LoadEmployee reads an employee by id whatever its tenant or deletion state (runner, checks).
func (s *Store) LoadEmployee(ctx context.Context, id string) (*identity.Employee, error) {
	raw, err := s.c(colEmployees).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		return nil, wrap("load employee", err)
	}
	return decodeEmployee(raw)
}

func decodeEmployee(raw bson.Raw) (*identity.Employee, error) {
	var e identity.Employee
	if err := bson.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("decode employee: %w", err)
	}
	e.Resource = unescapeDocument(Plain(e.Resource))
	return &e, nil
}

// stored is the form of an employee written to the database: its SCIM resource, whose field
// names the client chose, with those names escaped (see FieldName).
func stored(e *identity.Employee) *identity.Employee {
	doc := *e
	doc.Resource = escapeDocument(e.Resource)
	return &doc
}

// GetEmployee reads a tenant's employee; another tenant's or a deleted one is ErrNotFound.
func (s *Store) GetEmployee(ctx context.Context, tenant, id string) (*identity.Employee, error) {
	e, err := s.LoadEmployee(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Tenant != tenant || e.Deleted != nil {
		return nil, fmt.Errorf("get employee: %w", identity.ErrNotFound)
	}
	return e, nil
}

// FindEmployeeByUserName finds a tenant's employee by userName in any letter case, with two
// `_id` reads (key, then employee).
func (s *Store) FindEmployeeByUserName(ctx context.Context, tenant, userName string) (*identity.Employee, error) {
	key := identity.FoldKey(userName)
	var k keyDoc
	if err := s.c(colKeys).FindOne(ctx, bson.D{{Key: "_id", Value: userNameKeyID(tenant, key)}}).Decode(&k); err != nil {
		return nil, wrap("find by userName", err)
	}
	e, err := s.GetEmployee(ctx, tenant, k.Emp)
	if err != nil {
		return nil, err
	}
	if e.UserNameKey != key {
		return nil, fmt.Errorf("find by userName: stale key: %w", identity.ErrNotFound)
	}
	return e, nil
}

// FindEmployeesByExternalID finds a tenant's employees with an externalId (case-exact).
func (s *Store) FindEmployeesByExternalID(ctx context.Context, tenant, ext string) ([]*identity.Employee, error) {
	var k keyDoc
	err := s.c(colKeys).FindOne(ctx, bson.D{{Key: "_id", Value: externalIDKeyID(tenant, ext)}}).Decode(&k)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("find by externalId", err)
	}
	var out []*identity.Employee
	for _, id := range k.Emps {
		e, err := s.GetEmployee(ctx, tenant, id)
		if errors.Is(err, identity.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if e.ExternalID == ext {
			out = append(out, e)
		}
	}
	return out, nil
}

// UpdateEmployee applies fn to a copy of the employee and stores it with a compare-and-swap on
// Rev, re-reading and re-applying fn when another writer won. fn may return identity.ErrSkip to
// write nothing. Secondary keys follow userName and externalId changes: a new userName is
// claimed before the write, the old claim released after it. The tenant must match; deleted
// employees can still be updated (their jobs run on).
//
// The first attempt starts from the document this process wrote last, if it remembers one,
// instead of reading it: the write is conditional on that rev all the same. Only a successful
// write confirms the guess; an error or ErrSkip from fn on a guessed document, like a lost
// race, re-reads and applies fn again, so fn must tolerate being called more than once (as
// it always had to).
func (s *Store) UpdateEmployee(ctx context.Context, tenant, id string, fn func(*identity.Employee) error) (*identity.Employee, error) {
	guess := s.written.get(id)
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		raw, guessed := guess, guess != nil
		guess = nil
		if !guessed {
			var err error
			raw, err = s.c(colEmployees).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
			if err != nil {
				return nil, wrap("update employee", err)
			}
		}
		cur, err := decodeEmployee(raw)
		if err != nil {
			return nil, err
		}
		if cur.Tenant != tenant {
			if guessed {
				continue
			}
			return nil, fmt.Errorf("update employee: %w", identity.ErrNotFound)
		}
		next, _ := decodeEmployee(raw)
		if err := fn(next); err != nil {
			if guessed {
				continue // decided on a remembered document: decide again on the stored one
			}
			if errors.Is(err, identity.ErrSkip) {
				return cur, nil
			}
			return nil, err
		}
		next.ID, next.Tenant, next.Rev = cur.ID, cur.Tenant, cur.Rev+1

		claimed := next.UserNameKey != "" && next.UserNameKey != cur.UserNameKey
		if claimed {
			if err := s.ClaimUserName(ctx, tenant, next.UserNameKey, id); err != nil {
				return nil, err
			}
		}
		if next.ExternalID != cur.ExternalID {
			if err := s.addExternalID(ctx, tenant, next.ExternalID, id); err != nil {
				return nil, err
			}
		}
		doc, err := bson.Marshal(stored(next))
		if err != nil {
			return nil, fmt.Errorf("update employee: %w", err)
		}
		res, err := s.c(colEmployees).ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "rev", Value: cur.Rev}}, doc)
		if err != nil || res.MatchedCount == 0 {
			s.written.drop(id)
			if claimed {
				_ = s.ReleaseUserName(ctx, tenant, next.UserNameKey, id)
			}
			if err != nil {
				return nil, wrap("update employee", err)
			}
			continue
		}
		s.written.put(id, doc)
		if cur.UserNameKey != "" && cur.UserNameKey != next.UserNameKey {
			_ = s.ReleaseUserName(ctx, tenant, cur.UserNameKey, id)
		}
		if cur.ExternalID != "" && cur.ExternalID != next.ExternalID {
			_ = s.removeExternalID(ctx, tenant, cur.ExternalID, id)
		}
		return next, nil
	}
	return nil, fmt.Errorf("update employee: %w", identity.ErrRetry)
}
