package mdm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxErrorBody bounds how much of a vendor's error body is kept for the administrator.
const maxErrorBody = 512

// ResponseError turns a non-2xx vendor response into a *VendorError: 408, 425, 429 and 5xx are
// retryable, Retry-After (seconds or HTTP date) is honoured. It reads (a bounded part of) and
// closes nothing: the caller still owns resp.Body.
func ResponseError(vendor, op string, resp *http.Response, now time.Time) *VendorError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return &VendorError{
		Vendor:     vendor,
		Op:         op,
		StatusCode: resp.StatusCode,
		Retryable:  RetryableStatus(resp.StatusCode),
		RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), now),
		Detail:     strings.TrimSpace(string(body)),
	}
}

// TransportError wraps an error from the HTTP client (no answer): always retryable. If err already
// carries a *VendorError (a Limiter's, returned from inside the transport) that one is returned,
// so its RetryAfter survives.
func TransportError(vendor, op string, err error) *VendorError {
	var ve *VendorError
	if errors.As(err, &ve) {
		return ve
	}
	return &VendorError{Vendor: vendor, Op: op, Retryable: true, Err: err}
}

// RetryableStatus reports whether an HTTP status is worth retrying later.
func RetryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooEarly ||
		code == http.StatusTooManyRequests || code >= 500
}

// ParseRetryAfter parses a Retry-After header value: delay-seconds or an HTTP date.
// It returns 0 when the header is absent or invalid.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// IsRetryable reports whether err is worth retrying: a retryable *VendorError, or any error that
// is not a *VendorError (unknown failures are assumed transient).
func IsRetryable(err error) bool {
	var ve *VendorError
	if errors.As(err, &ve) {
		return ve.Retryable
	}
	return !errors.Is(err, ErrUnsupported)
}

// NewRequest builds one vendor API request. The body is given as bytes, not a reader, so that a
// request sent again after a token refresh is built again with its whole body; Content-Type is
// set only when there is one, and accept is the media type wanted back. A URL that does not parse
// is reported as "invalid <api> URL", never quoted: query strings can carry user names.
func NewRequest(ctx context.Context, api, method, url string, body []byte, contentType, accept string) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, errors.New("invalid " + api + " URL")
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// DeviceGone marks a 404 answer as ErrDeviceGone and not retryable: a device the vendor no
// longer knows will not come back, and a wipe of it counts as done. Connectors call it on calls
// about one device, where a 404 can only mean that device; other errors pass through unchanged.
func DeviceGone(err error) error {
	var ve *VendorError
	if errors.As(err, &ve) && ve.StatusCode == http.StatusNotFound {
		ve.Retryable = false
		ve.Err = ErrDeviceGone
		return ve
	}
	return err
}
