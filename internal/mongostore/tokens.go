package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
)

// CreateToken stores a token record (its secret only as a hash).
func (s *Store) CreateToken(ctx context.Context, t *identity.Token) error {
	_, err := s.c(colTokens).InsertOne(ctx, t)
	return wrap("create token", err)
}

// GetToken reads a token record by id.
func (s *Store) GetToken(ctx context.Context, id string) (*identity.Token, error) {
	var t identity.Token
	if err := s.c(colTokens).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&t); err != nil {
		return nil, wrap("get token", err)
	}
	return &t, nil
}

// ListTokens returns a tenant's tokens (without secrets).
func (s *Store) ListTokens(ctx context.Context, tenant string) ([]*identity.Token, error) {
	cur, err := s.c(colTokens).Find(ctx, bson.D{{Key: "tenant", Value: tenant}}, options.Find().SetSort(bson.D{{Key: "created", Value: 1}}))
	if err != nil {
		return nil, wrap("list tokens", err)
	}
	var out []*identity.Token
	if err := cur.All(ctx, &out); err != nil {
		return nil, wrap("list tokens", err)
	}
	return out, nil
}

// RevokeToken marks a tenant's token revoked; it stops working at once. A token of another
// tenant is ErrNotFound.
func (s *Store) RevokeToken(ctx context.Context, tenant, id string) error {
	t, err := s.GetToken(ctx, id)
	if err != nil {
		return err
	}
	if t.Tenant != tenant {
		return wrap("revoke token", errNotFound)
	}
	if t.Revoked != nil {
		return nil
	}
	now := s.now().UTC()
	_, err = s.c(colTokens).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "revoked", Value: now}}}})
	return wrap("revoke token", err)
}

// TouchToken records when a token was last used.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	_, err := s.c(colTokens).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "lastUsed", Value: at.UTC()}}}})
	return wrap("touch token", err)
}

// GetMeta reads an operator-level record (e.g. the bootstrap admin token hash) into v.
func (s *Store) GetMeta(ctx context.Context, id string, v any) error {
	return wrap("get meta", s.c(colMeta).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(v))
}

// PutMeta inserts an operator-level record; ErrConflict if it exists.
func (s *Store) PutMeta(ctx context.Context, doc any) error {
	_, err := s.c(colMeta).InsertOne(ctx, doc)
	return wrap("put meta", err)
}

// ReplaceMeta replaces or creates an operator-level record.
func (s *Store) ReplaceMeta(ctx context.Context, id string, doc any) error {
	_, err := s.c(colMeta).ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true))
	return wrap("replace meta", err)
}

// SwapMeta replaces an operator-level record only if it still matches cond (a compare-and-swap
// between instances); it reports whether it did.
func (s *Store) SwapMeta(ctx context.Context, id string, cond bson.D, doc any) (bool, error) {
	filter := append(bson.D{{Key: "_id", Value: id}}, cond...)
	res, err := s.c(colMeta).ReplaceOne(ctx, filter, doc)
	if err != nil {
		return false, wrap("swap meta", err)
	}
	return res.MatchedCount == 1, nil
}
