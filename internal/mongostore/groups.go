package mongostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
)

// Groups are stored as one document per group (collection groups) and one document per
// membership (collection members, `_id` "<group>|<member>"), so adding or removing a member of
// a group of any size is a few `_id`-addressed writes: the membership document, the member's
// `groups` list (users) and the group's version and member count. Listing a group's members
// reads its membership documents (a scan on the embedded store). Secondary keys (displayName,
// externalId; neither is unique for groups) are `_id`-addressed key documents holding a set of
// group ids, verified against the groups they point to.
//
// Without transactions the writes of one change are ordered so that a crash leaves at worst a
// member count that is too high (repaired when the members are next listed), never a member
// that cannot be found: the group document (version, count incremented for additions) first,
// then the membership documents, then the count decremented for removals and no-op additions.

// memberDoc is one membership.
type memberDoc struct {
	ID      string    `bson:"_id"`
	Tenant  string    `bson:"tenant"`
	Group   string    `bson:"group"`
	Value   string    `bson:"value"`
	Type    string    `bson:"type,omitempty"`
	Display string    `bson:"display,omitempty"`
	At      time.Time `bson:"at"`
}

// setKeyDoc is a non-unique secondary key: the ids of the groups that have it.
type setKeyDoc struct {
	ID  string    `bson:"_id"`
	IDs []string  `bson:"ids,omitempty"`
	At  time.Time `bson:"at"`
}

func groupNameKeyID(tenant, key string) string { return "g|" + tenant + "|" + key }
func groupExtKeyID(tenant, ext string) string  { return "gx|" + tenant + "|" + ext }
func memberID(group, member string) string     { return group + "|" + member }

func (s *Store) addSetKey(ctx context.Context, kid, id string) error {
	_, err := s.c(colKeys).UpdateOne(ctx, bson.D{{Key: "_id", Value: kid}},
		bson.D{{Key: "$addToSet", Value: bson.D{{Key: "ids", Value: id}}}, {Key: "$set", Value: bson.D{{Key: "at", Value: s.now().UTC()}}}},
		options.UpdateOne().SetUpsert(true))
	return wrap("index group", err)
}

func (s *Store) removeSetKey(ctx context.Context, kid, id string) error {
	_, err := s.c(colKeys).UpdateOne(ctx, bson.D{{Key: "_id", Value: kid}}, bson.D{{Key: "$pull", Value: bson.D{{Key: "ids", Value: id}}}})
	return wrap("unindex group", err)
}

func (s *Store) readSetKey(ctx context.Context, kid string) ([]string, error) {
	var k setKeyDoc
	err := s.c(colKeys).FindOne(ctx, bson.D{{Key: "_id", Value: kid}}).Decode(&k)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	return k.IDs, wrap("read group key", err)
}

// indexGroup adds the secondary keys of g (before g is written: a key pointing at a group that
// does not exist is skipped by the lookups, a group without its key would be unfindable).
func (s *Store) indexGroup(ctx context.Context, g *identity.Group) error {
	if err := s.addSetKey(ctx, groupNameKeyID(g.Tenant, g.DisplayNameKey), g.ID); err != nil {
		return err
	}
	if g.ExternalID != "" {
		return s.addSetKey(ctx, groupExtKeyID(g.Tenant, g.ExternalID), g.ID)
	}
	return nil
}

// CreateGroup stores a new group and its initial members (members the caller has resolved and
// deduplicated; users get the group in their `groups`).
func (s *Store) CreateGroup(ctx context.Context, g *identity.Group, members []identity.Member) error {
	g.DisplayNameKey = identity.FoldKey(g.DisplayName)
	g.MemberCount = len(members)
	if err := s.indexGroup(ctx, g); err != nil {
		return err
	}
	if _, err := s.c(colGroups).InsertOne(ctx, g); err != nil {
		return wrap("insert group", err)
	}
	added, err := s.applyMembers(ctx, g.Tenant, g.ID, identity.MemberChange{Add: members})
	if err != nil {
		return err
	}
	if d := added - len(members); d != 0 {
		g.MemberCount += d
		return s.adjustCount(ctx, g.ID, d, false)
	}
	return nil
}

// GetGroup reads a tenant's group; another tenant's is ErrNotFound.
func (s *Store) GetGroup(ctx context.Context, tenant, id string) (*identity.Group, error) {
	var g identity.Group
	if err := s.c(colGroups).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&g); err != nil {
		return nil, wrap("get group", err)
	}
	if g.Tenant != tenant {
		return nil, fmt.Errorf("get group: %w", identity.ErrNotFound)
	}
	g.Resource = Plain(g.Resource)
	return &g, nil
}

// FindGroupsByDisplayName finds a tenant's groups by displayName in any letter case, with
// `_id` reads only.
func (s *Store) FindGroupsByDisplayName(ctx context.Context, tenant, name string) ([]*identity.Group, error) {
	key := identity.FoldKey(name)
	return s.groupsByKey(ctx, tenant, groupNameKeyID(tenant, key), func(g *identity.Group) bool { return g.DisplayNameKey == key })
}

// FindGroupsByExternalID finds a tenant's groups by externalId (case-exact).
func (s *Store) FindGroupsByExternalID(ctx context.Context, tenant, ext string) ([]*identity.Group, error) {
	return s.groupsByKey(ctx, tenant, groupExtKeyID(tenant, ext), func(g *identity.Group) bool { return g.ExternalID == ext })
}

func (s *Store) groupsByKey(ctx context.Context, tenant, kid string, ok func(*identity.Group) bool) ([]*identity.Group, error) {
	ids, err := s.readSetKey(ctx, kid)
	if err != nil {
		return nil, err
	}
	var out []*identity.Group
	for _, id := range ids {
		g, err := s.GetGroup(ctx, tenant, id)
		if errors.Is(err, identity.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ok(g) {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// IsMember reports whether member belongs to group, with one `_id` read.
func (s *Store) IsMember(ctx context.Context, group, member string) (bool, error) {
	err := s.c(colMembers).FindOne(ctx, bson.D{{Key: "_id", Value: memberID(group, member)}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return err == nil, wrap("read membership", err)
}

// GroupMembers lists a group's members ordered by value, and repairs the member count if a
// crash left it too high.
func (s *Store) GroupMembers(ctx context.Context, tenant string, g *identity.Group) ([]identity.Member, error) {
	if g.MemberCount <= 0 {
		return []identity.Member{}, nil
	}
	cur, err := s.c(colMembers).Find(ctx, bson.D{{Key: "group", Value: g.ID}}, options.Find().SetSort(bson.D{{Key: "value", Value: 1}}))
	if err != nil {
		return nil, wrap("list members", err)
	}
	var docs []memberDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, wrap("list members", err)
	}
	out := make([]identity.Member, 0, len(docs))
	for _, d := range docs {
		if d.Tenant == tenant {
			out = append(out, identity.Member{Value: d.Value, Type: d.Type, Display: d.Display})
		}
	}
	if len(out) != g.MemberCount {
		// Only ever lowered to the truth, and only if nobody changed the count meanwhile.
		_, _ = s.c(colGroups).UpdateOne(ctx, bson.D{{Key: "_id", Value: g.ID}, {Key: "memberCount", Value: g.MemberCount}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "memberCount", Value: len(out)}}}})
		g.MemberCount = len(out)
	}
	return out, nil
}

// UpdateGroup changes a group: fn edits a copy of the group's attributes and returns the
// membership change and whether the attributes changed (fn may return identity.ErrSkip).
// UpdateGroup applies fn with a compare-and-swap on the group document (re-running fn when
// another writer won), bumping the version when anything changed, then applies the membership
// change one `_id`-addressed write per member. Added members must not be members yet and
// removed ones must be (the caller checks with IsMember); the count is corrected if not.
func (s *Store) UpdateGroup(ctx context.Context, tenant, id string, fn func(g *identity.Group) (identity.MemberChange, bool, error)) (*identity.Group, error) {
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		cur, err := s.GetGroup(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		next := *cur
		next.Resource = cloneMap(cur.Resource)
		change, changed, err := fn(&next)
		if errors.Is(err, identity.ErrSkip) || err == nil && !changed && change.Empty() {
			return cur, nil
		}
		if err != nil {
			return nil, err
		}
		now := s.now().UTC()
		next.ID, next.Tenant, next.Rev = cur.ID, cur.Tenant, cur.Rev+1
		next.DisplayNameKey = identity.FoldKey(next.DisplayName)
		next.Version = cur.Version + 1
		next.Modified = now
		next.MemberCount = cur.MemberCount + len(change.Add)
		if next.DisplayNameKey != cur.DisplayNameKey {
			if err := s.addSetKey(ctx, groupNameKeyID(tenant, next.DisplayNameKey), id); err != nil {
				return nil, err
			}
		}
		if next.ExternalID != "" && next.ExternalID != cur.ExternalID {
			if err := s.addSetKey(ctx, groupExtKeyID(tenant, next.ExternalID), id); err != nil {
				return nil, err
			}
		}
		res, err := s.c(colGroups).ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "rev", Value: cur.Rev}}, &next)
		if err != nil {
			return nil, wrap("update group", err)
		}
		if res.MatchedCount == 0 {
			continue
		}
		if cur.DisplayNameKey != next.DisplayNameKey {
			_ = s.removeSetKey(ctx, groupNameKeyID(tenant, cur.DisplayNameKey), id)
		}
		if cur.ExternalID != "" && cur.ExternalID != next.ExternalID {
			_ = s.removeSetKey(ctx, groupExtKeyID(tenant, cur.ExternalID), id)
		}
		added, err := s.applyMembers(ctx, tenant, id, identity.MemberChange{Add: change.Add})
		if err != nil {
			return nil, err
		}
		removed, err := s.removeMembers(ctx, tenant, id, change.Remove)
		if err != nil {
			return nil, err
		}
		if d := added - len(change.Add) - removed; d != 0 {
			next.MemberCount += d
			if err := s.adjustCount(ctx, id, d, false); err != nil {
				return nil, err
			}
		}
		return &next, nil
	}
	return nil, fmt.Errorf("update group: %w", identity.ErrRetry)
}

// applyMembers writes membership documents for ch.Add and adds the group to each user's
// `groups`; it returns how many were new. The documents go in unordered batches (one commit
// per batch on the embedded store instead of one per member); a member that is already stored
// answers a duplicate key and is skipped.
func (s *Store) applyMembers(ctx context.Context, tenant, group string, ch identity.MemberChange) (int, error) {
	now := s.now().UTC()
	added := 0
	for batch := range slices.Chunk(ch.Add, memberBatch) {
		docs := make([]any, len(batch))
		for i, m := range batch {
			docs[i] = memberDoc{ID: memberID(group, m.Value), Tenant: tenant, Group: group, Value: m.Value, Type: m.Type, Display: m.Display, At: now}
		}
		dup := make([]bool, len(batch))
		_, err := s.c(colMembers).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		var bwe mongo.BulkWriteException
		if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
			err = nil
			for _, we := range bwe.WriteErrors {
				if !mongo.IsDuplicateKeyError(we) || we.Index < 0 || we.Index >= len(batch) {
					err = bwe
					break
				}
				dup[we.Index] = true
			}
		}
		if err != nil {
			// Which documents landed is unknown: count none. UpdateGroup's caller sees the
			// error; a count left too high is repaired when the members are next listed.
			return added, wrap("add members", err)
		}
		for i, m := range batch {
			if dup[i] {
				continue
			}
			added++
			if m.Type != "Group" {
				if err := s.linkGroup(ctx, tenant, m.Value, group, true); err != nil {
					return added, err
				}
			}
		}
	}
	return added, nil
}

// memberBatch bounds the membership documents sent in one insert (well under the 16 MiB
// message limit and FerretDB's batch size).
const memberBatch = 500

// removeMembers deletes membership documents and the group from each user's `groups`; it
// returns how many existed.
func (s *Store) removeMembers(ctx context.Context, tenant, group string, ids []string) (int, error) {
	removed := 0
	for _, m := range ids {
		res, err := s.c(colMembers).DeleteOne(ctx, bson.D{{Key: "_id", Value: memberID(group, m)}})
		if err != nil {
			return removed, wrap("remove member", err)
		}
		if res.DeletedCount == 0 {
			continue
		}
		removed++
		// Nested groups have no `groups` list; for them this matches nothing.
		if err := s.linkGroup(ctx, tenant, m, group, false); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// linkGroup adds or removes a group in a user's `groups` list with one `_id`-addressed write.
// It bumps rev, so a concurrent compare-and-swap update of the employee re-reads it.
func (s *Store) linkGroup(ctx context.Context, tenant, user, group string, add bool) error {
	op := "$pull"
	if add {
		op = "$addToSet"
	}
	_, err := s.c(colEmployees).UpdateOne(ctx, bson.D{{Key: "_id", Value: user}, {Key: "tenant", Value: tenant}},
		bson.D{{Key: op, Value: bson.D{{Key: "groups", Value: bson.D{{Key: "id", Value: group}}}}}, {Key: "$inc", Value: bson.D{{Key: "rev", Value: 1}}}})
	return wrap("update member's groups", err)
}

// adjustCount changes a group's member count by d (and, with touch, its version).
func (s *Store) adjustCount(ctx context.Context, group string, d int, touch bool) error {
	inc := bson.D{{Key: "memberCount", Value: d}, {Key: "rev", Value: 1}}
	update := bson.D{}
	if touch {
		inc = append(inc, bson.E{Key: "version", Value: 1})
		update = append(update, bson.E{Key: "$set", Value: bson.D{{Key: "modified", Value: s.now().UTC()}}})
	}
	update = append(update, bson.E{Key: "$inc", Value: inc})
	_, err := s.c(colGroups).UpdateOne(ctx, bson.D{{Key: "_id", Value: group}}, update)
	return wrap("count members", err)
}

// RemoveFromGroups removes a member (a deleted user or group) from the given groups of its
// tenant; each group that had it gets a new version.
func (s *Store) RemoveFromGroups(ctx context.Context, tenant, member string, groups []string) error {
	for _, g := range groups {
		n, err := s.removeMembers(ctx, tenant, g, []string{member})
		if err != nil {
			return err
		}
		if n > 0 {
			if err := s.adjustCount(ctx, g, -n, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// RenameMember sets a member's display in the given groups of its tenant (a renamed user);
// each group where it changed gets a new version, as its representation changed. One
// `_id`-addressed write per group, plus one for the version where it changed.
func (s *Store) RenameMember(ctx context.Context, tenant, member, display string, groups []string) error {
	for _, g := range groups {
		res, err := s.c(colMembers).UpdateOne(ctx, bson.D{{Key: "_id", Value: memberID(g, member)}, {Key: "tenant", Value: tenant}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "display", Value: display}}}})
		if err != nil {
			return wrap("rename member", err)
		}
		if res.ModifiedCount > 0 {
			if err := s.adjustCount(ctx, g, 0, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteGroup deletes a tenant's group, its secondary keys and its memberships (its users lose
// it from their `groups`; groups it was nested in lose it as a member).
// ifMatch, if not nil, checks the group's current version.
func (s *Store) DeleteGroup(ctx context.Context, tenant, id string, ifMatch func(version int64) error) error {
	g, err := s.GetGroup(ctx, tenant, id)
	if err != nil {
		return err
	}
	if ifMatch != nil {
		if err := ifMatch(g.Version); err != nil {
			return err
		}
	}
	res, err := s.c(colGroups).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "rev", Value: g.Rev}})
	if err != nil {
		return wrap("delete group", err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("delete group: changed concurrently: %w", identity.ErrRetry)
	}
	_ = s.removeSetKey(ctx, groupNameKeyID(tenant, g.DisplayNameKey), id)
	if g.ExternalID != "" {
		_ = s.removeSetKey(ctx, groupExtKeyID(tenant, g.ExternalID), id)
	}
	if g.MemberCount > 0 {
		members, err := s.GroupMembers(ctx, tenant, g)
		if err != nil {
			return err
		}
		ids := make([]string, len(members))
		for i, m := range members {
			ids[i] = m.Value
		}
		if _, err := s.removeMembers(ctx, tenant, id, ids); err != nil {
			return err
		}
	}
	// Groups this group was a member of.
	cur, err := s.c(colMembers).Find(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "value", Value: id}})
	if err != nil {
		return wrap("find parent groups", err)
	}
	var parents []memberDoc
	if err := cur.All(ctx, &parents); err != nil {
		return wrap("find parent groups", err)
	}
	for _, p := range parents {
		if err := s.RemoveFromGroups(ctx, tenant, id, []string{p.Group}); err != nil {
			return err
		}
	}
	return nil
}

// ListGroups pages a tenant's groups matching a SCIM filter (members conditions are answered
// from the membership documents).
func (s *Store) ListGroups(ctx context.Context, tenant string, q identity.ListQuery) ([]*identity.Group, int, error) {
	join := func(cond bson.D) (bson.D, func(string) bool, error) {
		filter := bson.D{{Key: "tenant", Value: tenant}, {Key: "$and", Value: bson.A{cond}}}
		cur, err := s.c(colMembers).Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "group", Value: 1}}))
		if err != nil {
			return nil, nil, wrap("filter members", err)
		}
		var docs []memberDoc
		if err := cur.All(ctx, &docs); err != nil {
			return nil, nil, wrap("filter members", err)
		}
		set := map[string]bool{}
		ids := bson.A{}
		for _, d := range docs {
			if !set[d.Group] {
				set[d.Group] = true
				ids = append(ids, d.Group)
			}
		}
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, func(id string) bool { return set[id] }, nil
	}
	var out []*identity.Group
	total, err := s.list(ctx, colGroups, bson.D{{Key: "tenant", Value: tenant}}, groupFields, join, q, func(raw bson.Raw) error {
		var g identity.Group
		if err := bson.Unmarshal(raw, &g); err != nil {
			return fmt.Errorf("decode group: %w", err)
		}
		g.Resource = Plain(g.Resource)
		out = append(out, &g)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
