package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// User is a user the bench provisioned.
type User struct {
	Index    int
	ID       string
	UserName string
	External string
	WorkID   string
	Password string
}

// Style is the identity provider whose request shapes are replayed.
type Style string

// Styles.
const (
	Entra Style = "entra"
	Okta  Style = "okta"
)

// SyncOptions configures an initial provisioning cycle.
type SyncOptions struct {
	Style       Style
	Users       int
	Concurrency int
	// Prefix makes the userNames of one run unique.
	Prefix string
	// Progress is called after each user.
	Progress func()
}

// SyncResult is what a sync produced.
type SyncResult struct {
	Users    []*User
	Duration time.Duration
	Notes    []string
}

// UserName is the userName of user i of a run.
func UserName(prefix string, i int) string {
	return fmt.Sprintf("%s.user%06d@contoso.example", prefix, i)
}

// entraUser is Entra ID's create request (E01, with the enterprise extension as Entra sends it
// when attribute mappings include it).
func entraUser(userName, ext string, i int) map[string]any {
	return map[string]any{
		"schemas":    []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"},
		"externalId": ext,
		"userName":   userName,
		"active":     true,
		"emails":     []map[string]any{{"primary": true, "type": "work", "value": userName}},
		"meta":       map[string]any{"resourceType": "User"},
		"name":       map[string]any{"formatted": fmt.Sprintf("Given%d Family", i), "familyName": "Family", "givenName": fmt.Sprintf("Given%d", i)},
		"roles":      []any{},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": map[string]any{
			"employeeNumber": fmt.Sprintf("%06d", i),
			"department":     fmt.Sprintf("Dept %d", i%20),
			"manager":        map[string]any{"value": ""},
		},
	}
}

// oktaUser is Okta's create request (O02): always a placeholder password and "groups": [].
func oktaUser(userName, ext string, i int) map[string]any {
	return map[string]any{
		"schemas":     []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName":    userName,
		"name":        map[string]any{"givenName": fmt.Sprintf("Given%d", i), "familyName": "Family"},
		"emails":      []map[string]any{{"primary": true, "value": userName, "type": "work"}},
		"displayName": fmt.Sprintf("Given%d Family", i),
		"locale":      "en-US",
		"externalId":  ext,
		"groups":      []any{},
		"password":    "1mz050nq",
		"active":      true,
	}
}

// oktaReplace is Okta's profile update (O06): a full PUT carrying id, meta and groups.
func oktaReplace(u *User, i int) map[string]any {
	return map[string]any{
		"schemas":  []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"id":       u.ID,
		"userName": u.UserName,
		"name":     map[string]any{"givenName": fmt.Sprintf("Another%d", i), "middleName": "Excited", "familyName": "Family"},
		"emails":   []map[string]any{{"primary": true, "value": u.UserName, "type": "work", "display": u.UserName}},
		"active":   true,
		"groups":   []any{},
		"meta":     map[string]any{"resourceType": "User"},
	}
}

// lookupPath is the IdP's "does this user exist" query.
func lookupPath(style Style, userName string) string {
	q := url.Values{"filter": {fmt.Sprintf("userName eq %q", userName)}}
	if style == Okta {
		q.Set("startIndex", "1")
		q.Set("count", "100")
	}
	return "/Users?" + q.Encode()
}

// Sync runs an initial provisioning cycle: per user a lookup that finds nothing, then a create
// (and for Okta the full PUT that follows a profile push); then, for Entra with GroupSize > 0,
// groups with their members.
func Sync(ctx context.Context, c *Client, t *Tenant, o SyncOptions) (*SyncResult, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	res := &SyncResult{Users: make([]*User, o.Users)}
	start := time.Now()
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	err := parallel(ctx, o.Users, o.Concurrency, func(ctx context.Context, i int) {
		u, err := provision(ctx, c, t, o.Style, o.Prefix, i)
		if err != nil {
			failed.Add(1)
			errOnce.Do(func() { firstErr = err })
		}
		res.Users[i] = u
		if o.Progress != nil {
			o.Progress()
		}
	})
	res.Duration = time.Since(start)
	if err != nil {
		return res, err
	}
	if n := failed.Load(); n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d of %d users failed; first error: %v", n, o.Users, firstErr))
	}
	return res, nil
}

func provision(ctx context.Context, c *Client, t *Tenant, style Style, prefix string, i int) (*User, error) {
	u := &User{Index: i, UserName: UserName(prefix, i), External: fmt.Sprintf("%s-ext-%06d", prefix, i)}
	r, err := c.Do(ctx, Call{Kind: "lookup", Method: "GET", Path: t.SCIMBase + lookupPath(style, u.UserName), Bearer: t.SCIMToken, Index: i})
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("lookup %s: status %d: %s", u.UserName, r.Status, truncate(r.Body))
	}
	if n, _ := r.JSON()["totalResults"].(float64); n > 0 {
		res, _ := r.JSON()["Resources"].([]any)
		if len(res) > 0 {
			m, _ := res[0].(map[string]any)
			u.ID, _ = m["id"].(string)
			return u, nil
		}
	}
	body := entraUser(u.UserName, u.External, i)
	if style == Okta {
		body = oktaUser(u.UserName, u.External, i)
	}
	r, err = c.Do(ctx, Call{Kind: "create", Method: "POST", Path: t.SCIMBase + "/Users", Bearer: t.SCIMToken, Body: body, Want: []int{201}, Index: i})
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusCreated {
		return nil, fmt.Errorf("create %s: status %d: %s", u.UserName, r.Status, truncate(r.Body))
	}
	u.ID = r.Str("id")
	if style == Okta {
		r, err = c.Do(ctx, Call{Kind: "replace", Method: "PUT", Path: t.SCIMBase + "/Users/" + u.ID, Bearer: t.SCIMToken, Body: oktaReplace(u, i), Index: i})
		if err != nil {
			return nil, err
		}
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("replace %s: status %d: %s", u.UserName, r.Status, truncate(r.Body))
		}
	}
	return u, nil
}

// errNoGroups: the server has no /Groups endpoint yet.
var errNoGroups = errors.New("groups not supported by this server")

// PushGroups replays Entra's group push for users in groups of size: a displayName lookup, the
// create (no members), then one PATCH adding the members. It returns how many groups were
// pushed and, if the server has no /Groups yet, a note saying the steps were skipped.
func PushGroups(ctx context.Context, c *Client, t *Tenant, prefix string, size, conc int, users []*User) (int, string, error) {
	var groups [][]*User
	for i := 0; i < len(users); i += size {
		groups = append(groups, users[i:min(i+size, len(users))])
	}
	var made atomic.Int64
	var unsupported atomic.Bool
	err := parallel(ctx, len(groups), conc, func(ctx context.Context, gi int) {
		if unsupported.Load() {
			return
		}
		name := fmt.Sprintf("%s-group-%04d", prefix, gi)
		q := url.Values{"filter": {fmt.Sprintf("displayName eq %q", name)}, "excludedAttributes": {"members"}}
		r, err := c.Do(ctx, Call{Kind: "group_lookup", Method: "GET", Path: t.SCIMBase + "/Groups?" + q.Encode(), Bearer: t.SCIMToken, Want: []int{200, 404}})
		if err != nil {
			return
		}
		if r.Status == http.StatusNotFound {
			unsupported.Store(true)
			return
		}
		r, err = c.Do(ctx, Call{Kind: "group_create", Method: "POST", Path: t.SCIMBase + "/Groups", Bearer: t.SCIMToken, Want: []int{201},
			Body: map[string]any{
				"schemas":     []string{"urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"},
				"externalId":  fmt.Sprintf("%s-gext-%04d", prefix, gi),
				"displayName": name,
				"meta":        map[string]any{"resourceType": "Group"},
			}})
		if err != nil || r.Status != http.StatusCreated {
			return
		}
		id := r.Str("id")
		members := make([]map[string]any, 0, len(groups[gi]))
		for _, u := range groups[gi] {
			if u != nil && u.ID != "" {
				members = append(members, map[string]any{"$ref": nil, "value": u.ID})
			}
		}
		r, err = c.Do(ctx, Call{Kind: "group_add_members", Method: "PATCH", Path: t.SCIMBase + "/Groups/" + id, Bearer: t.SCIMToken,
			Body: map[string]any{
				"schemas":    []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"},
				"Operations": []map[string]any{{"op": "Add", "path": "members", "value": members}},
			}})
		if err == nil && r.Status < 300 {
			made.Add(1)
		}
	})
	if unsupported.Load() {
		return 0, errNoGroups.Error() + " (GET /Groups answered 404): group steps skipped", nil
	}
	return int(made.Load()), "", err
}

// parallel runs fn for 0..n-1 on conc workers, stopping early when ctx ends.
func parallel(ctx context.Context, n, conc int, fn func(ctx context.Context, i int)) error {
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(conc, max(n, 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(ctx, i)
			}
		}()
	}
	var err error
loop:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	close(next)
	wg.Wait()
	return err
}
