package intune

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/offboard/offboard/mdm"
)

// v1 is the Graph API version the connector speaks.
const v1 = "/v1.0"

// call sends one Graph request to pathAndQuery (below /v1.0, or an absolute URL on the Graph
// host) with an optional JSON body and decodes a 2xx JSON answer into out. Non-2xx answers are
// *mdm.VendorErrors with Graph's error code and message as Detail.
func (c *Connector) call(ctx context.Context, op, method, pathAndQuery string, body, out any) error {
	target := pathAndQuery
	if !strings.HasPrefix(target, "https://") && !strings.HasPrefix(target, "http://") {
		target = c.cfg.GraphURL + v1 + pathAndQuery
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return &mdm.VendorError{Vendor: Type, Op: op, Err: err}
		}
	}
	resp, err := c.tokens.Do(ctx, c.graph, op, func(ctx context.Context) (*http.Request, error) {
		return mdm.NewRequest(ctx, "Graph", method, target, payload, "application/json", "application/json")
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return graphError(op, resp, c)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return &mdm.VendorError{Vendor: Type, Op: op, StatusCode: resp.StatusCode, Retryable: true,
			Detail: "unreadable Graph response", Err: err}
	}
	return nil
}

// graphError turns a non-2xx Graph answer into a *mdm.VendorError whose Detail is Graph's error
// code and message (not the whole body, which carries request ids and dates).
func graphError(op string, resp *http.Response, c *Connector) *mdm.VendorError {
	ve := mdm.ResponseError(Type, op, resp, c.now())
	var ge struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(ve.Detail), &ge) == nil && ge.Error.Code != "" {
		ve.Detail = strings.TrimSpace(ge.Error.Code + ": " + ge.Error.Message)
	}
	return ve
}

// odataString quotes s as an OData string literal: single quotes are doubled.
func odataString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// query encodes OData system query options, keeping the "$" of their names literal and spaces as
// %20 (Graph does not read "+" as a space in every position).
func query(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv[i])
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(url.QueryEscape(kv[i+1]), "+", "%20"))
	}
	return b.String()
}
