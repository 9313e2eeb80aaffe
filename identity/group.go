package identity

import "time"

// Group is one SCIM group of a tenant. Its members are kept in one document each (see
// Member), so a group of any size changes one membership at a time; MemberCount follows them
// (it may over-count after a crash between the two writes, never under-count).
type Group struct {
	ID     string `bson:"_id"`
	Tenant string `bson:"tenant"`
	// DisplayName is the group's name as sent; DisplayNameKey its case-folded form (FoldKey).
	DisplayName    string `bson:"displayName"`
	DisplayNameKey string `bson:"displayNameKey"`
	ExternalID     string `bson:"externalId,omitempty"`
	// Resource holds further attributes of the SCIM resource (canonical names), if any.
	Resource    map[string]any `bson:"res,omitempty"`
	Version     int64          `bson:"version"`
	Created     time.Time      `bson:"created"`
	Modified    time.Time      `bson:"modified"`
	MemberCount int            `bson:"memberCount"`
	Rev         int64          `bson:"rev"` // compare-and-swap counter
}

// Member is one member of a group: a user or a nested group of the same tenant.
type Member struct {
	Value   string `bson:"value"`
	Type    string `bson:"type,omitempty"` // "User" or "Group"
	Display string `bson:"display,omitempty"`
}

// MemberChange is what a group update does to the membership, besides the group document:
// members to add (present ones are kept as they are) and member ids to remove.
type MemberChange struct {
	Add    []Member
	Remove []string
}

// Empty reports whether the change does nothing.
func (c MemberChange) Empty() bool { return len(c.Add) == 0 && len(c.Remove) == 0 }
