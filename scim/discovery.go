package scim

import (
	"net/http"
	"net/url"
	"strings"

	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/schema"
)

// Discovery (RFC 7644 §4): /ServiceProviderConfig, /Schemas and /ResourceTypes, served here
// because the library hard-codes sort, etag and bulk as unsupported and reports the default
// page size as itemsPerPage.

// extensionURNs maps storage keys back to extension URNs.
var extensionURNs = func() map[string]string {
	m := map[string]string{}
	for urn, key := range extensionKeys {
		m[key] = urn
	}
	return m
}()

// ServiceProviderConfigSchema is the URN of the service provider configuration.
const ServiceProviderConfigSchema = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"

func (h *Handler) serviceProviderConfig(w http.ResponseWriter, rq *request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{ServiceProviderConfigSchema},
		"documentationUri": "https://github.com/offboard/offboard#scim",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": h.cfg.MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": true},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []any{map[string]any{
			"type":        "oauthbearertoken",
			"name":        "OAuth Bearer Token",
			"description": "Authentication with the tenant's SCIM bearer token (or a JWT from the tenant's identity provider), RFC 6750.",
			"specUri":     "https://www.rfc-editor.org/info/rfc6750",
			"primary":     true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": rq.base + "/ServiceProviderConfig"},
	})
}

// servedSchemas are the resource schemas of the resource types served.
func (h *Handler) servedSchemas() []schema.Schema {
	out := []schema.Schema{schema.CoreUserSchema(), schema.ExtensionEnterpriseUser(), OffboardExtension()}
	if h.groups != nil {
		out = append(out, schema.CoreGroupSchema())
	}
	return out
}

func (h *Handler) schemas(w http.ResponseWriter, rq *request, rest []string) {
	render := func(s schema.Schema) map[string]any {
		m := s.ToMap()
		m["meta"] = map[string]any{"resourceType": "Schema", "location": rq.base + "/Schemas/" + s.ID}
		return m
	}
	if len(rest) == 1 {
		id, _ := url.PathUnescape(rest[0])
		for _, s := range h.servedSchemas() {
			if strings.EqualFold(s.ID, id) {
				writeJSON(w, http.StatusOK, render(s))
				return
			}
		}
		rq.fail(w, scimerrors.ScimError{Status: http.StatusNotFound, Detail: "No schema " + id + "."})
		return
	}
	var list []any
	for _, s := range h.servedSchemas() {
		list = append(list, render(s))
	}
	writeJSON(w, http.StatusOK, listResponse{Schemas: []string{ListSchema}, TotalResults: len(list), StartIndex: 1, ItemsPerPage: len(list), Resources: list})
}

func (h *Handler) resourceTypes(w http.ResponseWriter, rq *request, rest []string) {
	types := []map[string]any{{
		"schemas":     []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"},
		"id":          "User",
		"name":        "User",
		"endpoint":    "/Users",
		"description": "User Account",
		"schema":      UserSchema,
		"schemaExtensions": []any{
			map[string]any{"schema": EnterpriseSchema, "required": false},
			map[string]any{"schema": OffboardSchema, "required": false},
		},
		"meta": map[string]any{"resourceType": "ResourceType", "location": rq.base + "/ResourceTypes/User"},
	}}
	if h.groups != nil {
		types = append(types, map[string]any{
			"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"},
			"id":               "Group",
			"name":             "Group",
			"endpoint":         "/Groups",
			"description":      "Group",
			"schema":           GroupSchema,
			"schemaExtensions": []any{},
			"meta":             map[string]any{"resourceType": "ResourceType", "location": rq.base + "/ResourceTypes/Group"},
		})
	}
	if len(rest) == 1 {
		for _, t := range types {
			if strings.EqualFold(t["id"].(string), rest[0]) {
				writeJSON(w, http.StatusOK, t)
				return
			}
		}
		rq.fail(w, scimerrors.ScimError{Status: http.StatusNotFound, Detail: "No resource type " + rest[0] + "."})
		return
	}
	list := make([]any, len(types))
	for i, t := range types {
		list[i] = t
	}
	writeJSON(w, http.StatusOK, listResponse{Schemas: []string{ListSchema}, TotalResults: len(list), StartIndex: 1, ItemsPerPage: len(list), Resources: list})
}
