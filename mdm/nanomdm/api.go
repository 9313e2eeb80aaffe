package nanomdm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/offboard/offboard/mdm"
)

// apiUser is the fixed HTTP Basic user name of NanoMDM's API.
const apiUser = "nanomdm"

// maxAPIResponse bounds how much of a NanoMDM API answer is read.
const maxAPIResponse = 1 << 20

// httpClient calls NanoMDM's HTTP API.
type httpClient struct {
	base   string // without trailing slash
	apiKey string
	http   *http.Client
	now    func() time.Time
}

// apiResult is NanoMDM's answer to /v1/enqueue and /v1/push (api.APIResult in NanoMDM).
// Errors are plain strings on the wire.
type apiResult struct {
	Status       map[string]enrollmentResult `json:"status"`
	NoPush       bool                        `json:"no_push"`
	PushError    string                      `json:"push_error"`
	CommandError string                      `json:"command_error"`
	CommandUUID  string                      `json:"command_uuid"`
	RequestType  string                      `json:"request_type"`
}

type enrollmentResult struct {
	PushError    string `json:"push_error"`
	PushResult   string `json:"push_result"`
	CommandError string `json:"command_error"`
}

// NanoMDM reports enqueue and push failures as error strings only, so these markers are how the
// few outcomes that change our decision are told apart. Each names the backend that says it.
var (
	// duplicateMarkers: the CommandUUID is already stored. kv backends (filekv, the default, and
	// inmem): "command already exists: <uuid>"; MySQL: error 1062; PostgreSQL: SQLSTATE 23505.
	duplicateMarkers = []string{"command already exists", "Duplicate entry", "duplicate key value violates unique constraint"}
	// unknownEnrollmentMarkers: the SQL backends refuse to queue for an enrollment they do not
	// know (foreign key); the kv backends queue it and only the push reveals it.
	unknownEnrollmentMarkers = []string{"foreign key constraint"}
)

// pushDataMissing is NanoMDM's per-enrollment push error for an id without a TokenUpdate
// (push/service.ErrIdNotFound): the device never completed enrollment, or the id is wrong.
const pushDataMissing = "push data missing for id"

func containsAny(s string, markers []string) bool {
	for _, m := range markers {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// enqueue sends the raw command plist to PUT /v1/enqueue/{udid} and lets NanoMDM push to the
// device. A duplicate CommandUUID means an earlier attempt already enqueued it; with
// pushOnDuplicate a push-only call then wakes the device again and tells whether the enrollment
// exists (NanoMDM skips the push when the enqueue fails). It returns a note for the
// administrator: a failed push is not a failed command, the device fetches it at its next
// check-in.
func (c *httpClient) enqueue(ctx context.Context, op, udid, uuid string, payload []byte, pushOnDuplicate bool) (string, error) {
	res, code, err := c.call(ctx, op, http.MethodPut, "/v1/enqueue/"+url.PathEscape(udid), payload)
	if err != nil {
		return "", err
	}
	enqErr := res.CommandError
	if er, ok := res.Status[udid]; ok && er.CommandError != "" {
		enqErr = joinErr(enqErr, er.CommandError)
	}
	switch {
	case enqErr == "":
		if res.CommandUUID != "" && res.CommandUUID != uuid {
			return "", &mdm.VendorError{Vendor: vendor, Op: op, StatusCode: code, Retryable: true,
				Detail: fmt.Sprintf("NanoMDM answered for command %s instead of %s", res.CommandUUID, uuid)}
		}
		return pushOutcome(op, udid, code, res)
	case containsAny(enqErr, duplicateMarkers):
		if !pushOnDuplicate {
			return "command was already enqueued", nil
		}
		return c.push(ctx, op, udid)
	case containsAny(enqErr, unknownEnrollmentMarkers):
		return "", deviceGone(op, udid, code, enqErr)
	default:
		return "", &mdm.VendorError{Vendor: vendor, Op: op, StatusCode: code,
			Retryable: code == 0 || mdm.RetryableStatus(code), Detail: "NanoMDM could not enqueue the command: " + enqErr}
	}
}

// push asks NanoMDM to send an APNs push to udid (GET /v1/push/{udid}).
func (c *httpClient) push(ctx context.Context, op, udid string) (string, error) {
	res, code, err := c.call(ctx, op, http.MethodGet, "/v1/push/"+url.PathEscape(udid), nil)
	if err != nil {
		return "", err
	}
	note, err := pushOutcome(op, udid, code, res)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace("command was already enqueued by an earlier attempt. " + note), nil
}

// pushOutcome reads the push part of an API result: an enrollment without push data does not
// exist for NanoMDM; any other push failure is only a note.
func pushOutcome(op, udid string, code int, res *apiResult) (string, error) {
	er := res.Status[udid]
	if strings.Contains(er.PushError, pushDataMissing) {
		return "", deviceGone(op, udid, code, er.PushError)
	}
	if res.NoPush {
		return "", nil
	}
	if pe := joinErr(res.PushError, er.PushError); pe != "" {
		return "NanoMDM could not send an APNs push (" + pe + "); the device fetches the command at its next check-in", nil
	}
	return "", nil
}

func deviceGone(op, udid string, code int, detail string) *mdm.VendorError {
	return &mdm.VendorError{Vendor: vendor, Op: op, StatusCode: code,
		Detail: fmt.Sprintf("NanoMDM has no enrollment %s (%s)", udid, detail), Err: mdm.ErrDeviceGone}
}

func joinErr(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "" || a == b:
		return a
	default:
		return a + "; " + b
	}
}

// call performs one authenticated API request and decodes NanoMDM's JSON result. NanoMDM answers
// 500 both for real failures and for a failed push next to a successful enqueue, so the status
// code alone decides nothing: every answer that carries an API result is returned as such.
func (c *httpClient) call(ctx context.Context, op, method, path string, body []byte) (*apiResult, int, error) {
	resp, err := c.do(ctx, op, method, path, body, true)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, resp.StatusCode, authError(op, resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIResponse))
	if err != nil {
		return nil, resp.StatusCode, mdm.TransportError(vendor, op, err)
	}
	var res apiResult
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || json.Unmarshal(raw, &res) != nil {
		ve := mdm.ResponseError(vendor, op, &http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(raw))}, c.now())
		if resp.StatusCode == http.StatusNotFound {
			ve.Detail = "NanoMDM has no API at " + path + " (is it started with -api?)"
		} else if resp.StatusCode < 300 {
			ve.Retryable = true
			ve.Detail = "unexpected answer from NanoMDM: " + ve.Detail
		}
		return nil, resp.StatusCode, ve
	}
	return &res, resp.StatusCode, nil
}

func (c *httpClient) do(ctx context.Context, op, method, path string, body []byte, auth bool) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, &mdm.VendorError{Vendor: vendor, Op: op, Detail: "building the request failed", Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/xml")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "offboard-nanomdm")
	if auth {
		req.SetBasicAuth(apiUser, c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &mdm.VendorError{Vendor: vendor, Op: op, Retryable: true, Err: ctx.Err()}
		}
		return nil, mdm.TransportError(vendor, op, err)
	}
	return resp, nil
}

func authError(op string, resp *http.Response) *mdm.VendorError {
	return &mdm.VendorError{Vendor: vendor, Op: op, StatusCode: resp.StatusCode,
		Detail: "NanoMDM rejected the API key (check the connector's apiKey against nanomdm -api)"}
}

// checkHealth calls /version, which NanoMDM serves without authentication, and then proves the
// API key on GET /v1/pushcert with an empty body: behind NanoMDM's Basic auth that handler
// answers 400 ("failed to find any PEM data") without storing anything, so 401/403 means a wrong
// key and 400 (or 200 on versions that list the certificate) means the key works.
func (c *httpClient) checkHealth(ctx context.Context) error {
	const op = "health check"
	resp, err := c.do(ctx, op, http.MethodGet, "/version", nil, false)
	if err != nil {
		return err
	}
	var v struct {
		Version string `json:"version"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, maxAPIResponse)).Decode(&v)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return mdm.ResponseError(vendor, op, resp, c.now())
	}
	if err != nil {
		return &mdm.VendorError{Vendor: vendor, Op: op, StatusCode: resp.StatusCode,
			Detail: "/version did not answer NanoMDM's JSON; is the url a NanoMDM server?", Err: err}
	}

	resp, err = c.do(ctx, op, http.MethodGet, "/v1/pushcert", nil, true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return authError(op, resp)
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusBadRequest:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAPIResponse))
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return &mdm.VendorError{Vendor: vendor, Op: op, StatusCode: resp.StatusCode,
			Detail: "NanoMDM serves no API (start it with -api)"}
	default:
		return mdm.ResponseError(vendor, op, resp, c.now())
	}
}
