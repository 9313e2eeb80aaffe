package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/scim2/filter-parser/v2"

	"github.com/offboard/offboard/internal/bodylimit"
)

// DefaultMaxBody is the default limit on a request body (advertised as bulk.maxPayloadSize
// would be; the server's body-limit middleware should use the same value).
const DefaultMaxBody = 1 << 20

// DefaultMaxResults is the default and largest page size (filter.maxResults).
const DefaultMaxResults = 200

// Config configures the SCIM handler.
type Config struct {
	Users  UserService
	Lookup UserLookup
	// Groups stores groups. If nil and Lookup implements GroupStore (the MongoDB store does),
	// Lookup is used; if neither, /Groups answers 404 and ResourceTypes lists only User.
	Groups GroupStore
	// BaseURL returns the absolute SCIM base URL of a tenant (for meta.location and Location).
	BaseURL func(tenant string) string
	Log     *slog.Logger
	// MaxResults caps the page size (advertised as filter.maxResults). Default 200.
	MaxResults int
	// MaxBody is the largest request body read; larger ones get 413. Default 1 MiB.
	MaxBody int64
	// Now is the clock (group creation times). Default time.Now.
	Now func() time.Time
}

// Handler serves SCIM for the tenant of the authenticated Principal. Mount it with the tenant's
// base path stripped, behind the authentication middleware.
//
// Requests are normalised (see normalize.go) before the library (github.com/elimity-com/scim)
// validates bodies and PATCH operations against the schemas; its resource handlers (users,
// groups) then do the work. Responses are rendered here rather than by the library, so that
// every answer is RFC 7644-shaped: lists with itemsPerPage = the page size, projections
// (attributes/excludedAttributes), ETag / If-None-Match, Location on 201, and SCIM error
// bodies for every 4xx/5xx including 404, 405, 413 and 415.
type Handler struct {
	cfg    Config
	lib    scim.Server
	users  *users
	groups *groups
}

// NewHandler returns the SCIM handler.
func NewHandler(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxResults <= 0 {
		cfg.MaxResults = DefaultMaxResults
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Groups == nil {
		if g, ok := cfg.Lookup.(GroupStore); ok {
			cfg.Groups = g
		}
	}
	h := &Handler{cfg: cfg}
	h.users = &users{h: h}
	types := []scim.ResourceType{{
		ID:               optionalString("User"),
		Name:             "User",
		Description:      optionalString("User Account"),
		Endpoint:         "/Users",
		Schema:           userSchema.core,
		SchemaExtensions: []scim.SchemaExtension{{Schema: userSchema.extensions[0]}, {Schema: userSchema.extensions[1]}},
		Handler:          h.users,
	}}
	if cfg.Groups != nil {
		h.groups = &groups{h: h}
		types = append(types, scim.ResourceType{
			ID:          optionalString("Group"),
			Name:        "Group",
			Description: optionalString("Group"),
			Endpoint:    "/Groups",
			Schema:      groupSchema.core,
			Handler:     h.groups,
		})
	}
	lib, err := scim.NewServer(&scim.ServerArgs{
		ServiceProviderConfig: &scim.ServiceProviderConfig{MaxResults: cfg.MaxResults, SupportFiltering: true, SupportPatch: true},
		ResourceTypes:         types,
	})
	if err != nil {
		panic("scim: library server: " + err.Error()) // only on a programming error above
	}
	h.lib = lib
	return h
}

// request is the state of one SCIM request, shared with the library's callbacks through the
// context.
type request struct {
	h      *Handler
	p      Principal
	base   string
	query  url.Values // parameter names canonicalised
	id     string     // the resource id of the path, if any
	rs     *resourceSchema
	proj   projection
	names  map[string]groupName // group id → displayName, read once per request
	result map[string]any       // the rendered resource of a successful write
	status int
	err    error
	// version is the resource's version after a write answered without a body (204), for
	// its ETag header.
	version int64
	// valueFilters holds, by operation index, the value filters the library was handed a
	// placeholder for (valuefilter.go); nil when there are none.
	valueFilters []filter.Expression
}

type requestKey struct{}

func requestFrom(ctx context.Context) *request {
	rq, _ := ctx.Value(requestKey{}).(*request)
	return rq
}

// queryParams are the list and projection parameters, matched case-insensitively (the MS
// "SCIM Inbound" collection sends startindex).
var queryParams = []string{"filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes"}

func canonicalQuery(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		name := k
		for _, p := range queryParams {
			if strings.EqualFold(k, p) {
				name = p
				break
			}
		}
		out[name] = append(out[name], v...)
	}
	return out
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		WriteError(w, http.StatusUnauthorized, "", "Authentication required.")
		return
	}
	rq := &request{h: h, p: p, base: strings.TrimRight(h.cfg.BaseURL(p.Tenant), "/"), query: canonicalQuery(r.URL.Query())}
	defer func() {
		if v := recover(); v != nil {
			h.cfg.Log.Error("scim request panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
			WriteError(w, http.StatusInternalServerError, "", "Internal error.")
		}
	}()
	r = r.WithContext(context.WithValue(r.Context(), requestKey{}, rq))
	h.route(w, r, rq)
}

// route dispatches on the path (endpoint names case-insensitive, a trailing slash ignored).
func (h *Handler) route(w http.ResponseWriter, r *http.Request, rq *request) {
	path := strings.Trim(r.URL.Path, "/")
	var segs []string
	if path != "" {
		segs = strings.Split(path, "/")
	}
	if len(segs) > 0 && strings.EqualFold(segs[0], "v2") {
		segs = segs[1:]
	}
	allow := func(methods ...string) bool {
		for _, m := range methods {
			if r.Method == m {
				return true
			}
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		rq.fail(w, scimerrors.ScimError{Status: http.StatusMethodNotAllowed, Detail: "Method " + r.Method + " is not allowed here."})
		return false
	}
	switch {
	case len(segs) == 0, len(segs) == 1 && segs[0] == ".search":
		rq.fail(w, scimerrors.ScimError{Status: http.StatusNotImplemented, Detail: "Queries across resource types are not supported; query /Users or /Groups."})
		return
	case strings.EqualFold(segs[0], "ServiceProviderConfig") && len(segs) == 1:
		if allow(http.MethodGet) {
			h.serviceProviderConfig(w, rq)
		}
		return
	case strings.EqualFold(segs[0], "Schemas") && len(segs) <= 2:
		if allow(http.MethodGet) {
			h.schemas(w, rq, segs[1:])
		}
		return
	case strings.EqualFold(segs[0], "ResourceTypes") && len(segs) <= 2:
		if allow(http.MethodGet) {
			h.resourceTypes(w, rq, segs[1:])
		}
		return
	case strings.EqualFold(segs[0], "Bulk") && len(segs) == 1, strings.EqualFold(segs[0], "Me"):
		rq.fail(w, scimerrors.ScimError{Status: http.StatusNotImplemented, Detail: "/" + segs[0] + " is not supported."})
		return
	}
	var kind resourceKind
	switch {
	case strings.EqualFold(segs[0], "Users"):
		kind, rq.rs = h.users, userSchema
	case strings.EqualFold(segs[0], "Groups") && h.groups != nil:
		kind, rq.rs = h.groups, groupSchema
	default:
		rq.fail(w, scimerrors.ScimError{Status: http.StatusNotFound, Detail: "Specified endpoint does not exist."})
		return
	}
	switch {
	case len(segs) == 1:
		if !allow(http.MethodGet, http.MethodPost) {
			return
		}
		if r.Method == http.MethodGet {
			h.list(w, r, rq, kind, nil)
			return
		}
		h.write(w, r, rq, kind, "/"+kind.endpoint())
	case len(segs) == 2 && segs[1] == ".search":
		if allow(http.MethodPost) {
			h.search(w, r, rq, kind)
		}
	case len(segs) == 2:
		if !allow(http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete) {
			return
		}
		rq.id = segs[1]
		switch r.Method {
		case http.MethodGet:
			h.get(w, r, rq, kind)
		case http.MethodDelete:
			if err := kind.remove(r.Context(), rq, ifMatchHeader(r)); err != nil {
				rq.fail(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			h.write(w, r, rq, kind, "/"+kind.endpoint()+"/"+url.PathEscape(rq.id))
		}
	default:
		rq.fail(w, scimerrors.ScimError{Status: http.StatusNotFound, Detail: "Specified endpoint does not exist."})
	}
}

// resourceKind is what the front needs of a resource type besides the library's handler.
type resourceKind interface {
	endpoint() string
	// find reads one resource in wire form (projected by the caller); version for ETags.
	find(ctx context.Context, rq *request) (wire map[string]any, version int64, err error)
	// query answers a list request.
	query(ctx context.Context, rq *request, q listQuery) (page []map[string]any, total int, err error)
	remove(ctx context.Context, rq *request, ifMatch ifMatchFunc) error
}

// fail writes err as a SCIM error: ScimErrors as they are, domain errors through the table.
func (rq *request) fail(w http.ResponseWriter, err error) {
	var se scimerrors.ScimError
	if !errors.As(err, &se) {
		se, _ = scimError(rq.h.cfg.Log, err).(scimerrors.ScimError)
	}
	if se.Status == 0 {
		se.Status = http.StatusInternalServerError
	}
	if se.Status >= 500 && se.Detail == "" {
		se.Detail = "Internal error."
	}
	WriteError(w, se.Status, string(se.ScimType), se.Detail)
}

// get serves GET /<Resources>/<id>, with If-None-Match.
func (h *Handler) get(w http.ResponseWriter, r *http.Request, rq *request, kind resourceKind) {
	rq.proj = parseProjection(rq.rs, rq.query.Get("attributes"), rq.query.Get("excludedAttributes"))
	wire, version, err := kind.find(r.Context(), rq)
	if err != nil {
		rq.fail(w, err)
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && matchesTag(inm, version) {
		w.Header().Set("ETag", versionTag(version))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rq.writeResource(w, http.StatusOK, wire)
}

// matchesTag reports whether an If-None-Match / If-Match list names version ("*" names any).
func matchesTag(list string, version int64) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return true
		}
		if v, ok := parseVersionTag(t); ok && v == version {
			return true
		}
	}
	return false
}

// ifMatchFunc checks If-Match against a resource's current version.
type ifMatchFunc func(version int64) error

// ifMatchHeader reads If-Match; nil when absent or "*" (any current version).
func ifMatchHeader(r *http.Request) ifMatchFunc {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil
	}
	return func(version int64) error {
		if matchesTag(h, version) {
			return nil
		}
		return scimerrors.ScimError{Status: http.StatusPreconditionFailed, Detail: "The resource has changed: its version does not match If-Match."}
	}
}

// writeResource writes one resource, projected, with ETag (and Location on 201).
func (rq *request) writeResource(w http.ResponseWriter, status int, wire map[string]any) {
	m, _ := wire["meta"].(map[string]any)
	if v, ok := m["version"].(string); ok {
		w.Header().Set("ETag", v)
	}
	if loc, ok := m["location"].(string); ok && status == http.StatusCreated {
		w.Header().Set("Location", loc)
	}
	writeJSON(w, status, rq.proj.apply(rq.rs, wire))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		WriteError(w, http.StatusInternalServerError, "", "Internal error.")
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// readJSON reads a request body: SCIM or JSON media type, at most MaxBody bytes, one JSON
// object of valid UTF-8 without a BOM and without keys repeated in another letter case.
func (rq *request) readJSON(r *http.Request) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		cs := strings.ToLower(params["charset"])
		if err != nil || mt != ContentType && mt != "application/json" || cs != "" && cs != "utf-8" && cs != "utf8" {
			return nil, scimerrors.ScimError{Status: http.StatusUnsupportedMediaType,
				Detail: "Send the body as application/scim+json or application/json in UTF-8."}
		}
	}
	var body map[string]any
	err := bodylimit.DecodeJSON(r.Body, rq.h.cfg.MaxBody, &body,
		bodylimit.UseNumber(), bodylimit.RequireObject(), bodylimit.RejectDuplicateKeys())
	var be *bodylimit.Error
	switch {
	case err == nil:
		return body, nil
	case errors.Is(err, bodylimit.ErrTooLarge):
		return nil, scimerrors.ScimError{Status: http.StatusRequestEntityTooLarge, Detail: "The request body is too large."}
	case errors.As(err, &be):
		return nil, scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidSyntax,
			Detail: "The request body is not a valid SCIM message: " + be.Error() + "."}
	}
	return nil, scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidSyntax, Detail: "The request body could not be read."}
}

// write serves POST, PUT and PATCH: read and normalise the body, let the library validate it
// and call the resource handler, then render what the handler produced.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, rq *request, kind resourceKind, libPath string) {
	rq.proj = parseProjection(rq.rs, rq.query.Get("attributes"), rq.query.Get("excludedAttributes"))
	body, err := rq.readJSON(r)
	if err != nil {
		rq.fail(w, err)
		return
	}
	var canonical []byte
	if r.Method == http.MethodPatch {
		ops, err := normalizePatch(body, rq.rs)
		if err != nil {
			rq.fail(w, err)
			return
		}
		if len(ops) == 0 {
			// Every operation only touched ignored attributes: nothing to validate or apply.
			rq.patchDirect(w, r, kind)
			return
		}
		for i, op := range ops {
			if op.filter != nil {
				if rq.valueFilters == nil {
					rq.valueFilters = make([]filter.Expression, len(ops))
				}
				rq.valueFilters[i] = op.filter
			}
		}
		canonical = canonicalJSON(map[string]any{"schemas": []string{PatchOpSchema}, "Operations": ops})
	} else {
		norm, err := normalizeResource(body, rq.rs)
		if err != nil {
			rq.fail(w, err)
			return
		}
		canonical = canonicalJSON(norm)
	}
	lr := r.Clone(r.Context())
	lr.URL = &url.URL{Path: libPath}
	lr.Body = readCloser{bytes.NewReader(canonical)}
	lr.ContentLength = int64(len(canonical))
	cw := &captureWriter{header: http.Header{}}
	h.lib.ServeHTTP(cw, lr)
	switch {
	case rq.err != nil:
		rq.fail(w, rq.err)
	case rq.status != 0:
		if rq.result == nil {
			rq.writeEmpty(w)
			return
		}
		rq.writeResource(w, rq.status, rq.result)
	case cw.status >= 400:
		// The library refused the request (schema validation): relay its SCIM error.
		var se scimerrors.ScimError
		if json.Unmarshal(cw.body.Bytes(), &se) == nil && se.Status == cw.status {
			rq.fail(w, se)
			return
		}
		rq.fail(w, scimerrors.ScimError{Status: cw.status, ScimType: scimerrors.ScimTypeInvalidValue, Detail: "The request was refused."})
	default:
		h.cfg.Log.Error("scim library answered without calling a handler", "status", cw.status)
		rq.fail(w, scimerrors.ScimError{Status: http.StatusInternalServerError})
	}
}

// patchDirect applies an empty PATCH (nothing left after normalisation): the resource as it is.
func (rq *request) patchDirect(w http.ResponseWriter, r *http.Request, kind resourceKind) {
	switch k := kind.(type) {
	case *users:
		_, _ = k.Patch(r, rq.id, nil)
	case *groups:
		_, _ = k.Patch(r, rq.id, nil)
	}
	if rq.err != nil {
		rq.fail(w, rq.err)
		return
	}
	if rq.result == nil {
		rq.writeEmpty(w)
		return
	}
	rq.writeResource(w, rq.status, rq.result)
}

// writeEmpty answers a write without a body (204), with the resource's new ETag.
func (rq *request) writeEmpty(w http.ResponseWriter) {
	if rq.version > 0 {
		w.Header().Set("ETag", versionTag(rq.version))
	}
	w.WriteHeader(rq.status)
}

// done records a handler's result for rendering; it returns what the library needs to go on.
func (rq *request) done(status int, wire map[string]any) (scim.Resource, error) {
	rq.status, rq.result = status, wire
	return scim.Resource{ID: rq.id, Attributes: scim.ResourceAttributes{"rendered": true}}, nil
}

// failed records a handler's error; the library's rendering of it is discarded.
func (rq *request) failed(err error) (scim.Resource, error) {
	rq.err = err
	return scim.Resource{}, scimerrors.ScimError{Status: http.StatusBadRequest}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// captureWriter collects what the library writes.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}
