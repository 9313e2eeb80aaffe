package workspaceone

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/offboard/offboard/mdm"
)

// acceptV1 selects version 1 of the Workspace ONE REST API.
const acceptV1 = "application/json;version=1"

// call sends one API request and decodes a 2xx JSON answer into out; it returns the status so
// callers can tell 204 No Content. Non-2xx answers are *mdm.VendorErrors whose Detail is
// Workspace ONE's message.
func (c *Connector) call(ctx context.Context, op, method, path string, body, out any) (int, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, &mdm.VendorError{Vendor: Type, Op: op, Err: err}
		}
	}
	build := func(ctx context.Context) (*http.Request, error) {
		req, err := mdm.NewRequest(ctx, "Workspace ONE", method, c.cfg.URL+path, payload, "application/json", acceptV1)
		if err != nil {
			return nil, err
		}
		req.Header.Set("aw-tenant-code", c.cfg.TenantCode)
		return req, nil
	}
	var resp *http.Response
	var err error
	if c.tokens != nil {
		resp, err = c.tokens.Do(ctx, c.client, op, build)
	} else {
		var req *http.Request
		if req, err = build(ctx); err == nil {
			req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
			resp, err = c.client.Do(req)
			if err != nil {
				err = mdm.TransportError(Type, op, stripURL(err))
			}
		}
	}
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, ws1Error(op, resp, c)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return resp.StatusCode, &mdm.VendorError{Vendor: Type, Op: op, StatusCode: resp.StatusCode, Retryable: true,
			Detail: "unreadable Workspace ONE response", Err: err}
	}
	return resp.StatusCode, nil
}

// stripURL drops the request URL (which carries the user name in searches) from a client error.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// ws1Error keeps Workspace ONE's {"errorCode","message"} message as Detail.
func ws1Error(op string, resp *http.Response, c *Connector) *mdm.VendorError {
	ve := mdm.ResponseError(Type, op, resp, c.now())
	var we struct {
		ErrorCode int    `json:"errorCode"`
		Message   string `json:"message"`
	}
	if json.Unmarshal([]byte(ve.Detail), &we) == nil && we.Message != "" {
		ve.Detail = strings.TrimSpace(we.Message)
	} else if strings.HasPrefix(ve.Detail, "<") {
		ve.Detail = http.StatusText(resp.StatusCode)
	}
	return ve
}
