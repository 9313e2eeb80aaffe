package jamf

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/offboard/offboard/mdm"
)

// Media types.
const (
	mediaJSON = "application/json"
	mediaXML  = "application/xml"
)

// call sends one request to path (with query) on the Jamf server and returns the 2xx body.
// body is sent with contentType; accept is the wanted response type. Non-2xx answers are
// *mdm.VendorErrors whose Detail is Jamf's error code and description when it sent JSON.
func (c *Connector) call(ctx context.Context, op, method, path, contentType string, body []byte, accept string) ([]byte, error) {
	resp, err := c.tokens.Do(ctx, c.client, op, func(ctx context.Context) (*http.Request, error) {
		return mdm.NewRequest(ctx, "Jamf", method, c.cfg.URL+path, body, contentType, accept)
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, jamfError(op, resp, c)
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, mdm.TransportError(Type, op, err)
	}
	return out, nil
}

func (c *Connector) getJSON(ctx context.Context, op, path string, out any) error {
	b, err := c.call(ctx, op, http.MethodGet, path, "", nil, mediaJSON)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &mdm.VendorError{Vendor: Type, Op: op, Retryable: true, Detail: "unreadable Jamf response", Err: err}
	}
	return nil
}

// jamfError keeps Jamf Pro API's {"errors":[{"code","description"}]} as Detail; Classic API
// error pages are HTML and are cut to their first line.
func jamfError(op string, resp *http.Response, c *Connector) *mdm.VendorError {
	ve := mdm.ResponseError(Type, op, resp, c.now())
	var je struct {
		Errors []struct {
			Code        string `json:"code"`
			Description string `json:"description"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(ve.Detail), &je) == nil && len(je.Errors) > 0 {
		ve.Detail = strings.TrimSpace(je.Errors[0].Code + ": " + je.Errors[0].Description)
	} else if strings.HasPrefix(ve.Detail, "<") {
		ve.Detail = http.StatusText(resp.StatusCode)
	}
	return ve
}

// rsqlString quotes s as an RSQL string value: double quotes and backslashes are escaped.
func rsqlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// encodeQuery encodes repeated parameters in order (Jamf takes several section parameters).
func encodeQuery(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[i+1]))
	}
	return b.String()
}
