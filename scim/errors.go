package scim

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	scimerrors "github.com/elimity-com/scim/errors"

	"github.com/offboard/offboard/identity"
)

// ErrorSchema is the URN of a SCIM error response.
const ErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"

// ContentType is the SCIM media type.
const ContentType = "application/scim+json"

// errorBody is an RFC 7644 §3.12 error: status is a string.
type errorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

// WriteError writes a SCIM error response. Use it for every 4xx/5xx, including the ones
// produced outside the SCIM handlers (authentication, rate limits, body limits).
func WriteError(w http.ResponseWriter, status int, scimType, detail string) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{
		Schemas: []string{ErrorSchema}, Status: strconv.Itoa(status), ScimType: scimType, Detail: detail,
	})
}

// WriteRateLimited writes 429 with Retry-After in whole seconds (rounded up, at least 1):
// Okta honours only integer seconds and falls back to 5 minutes for an HTTP-date.
func WriteRateLimited(w http.ResponseWriter, retryAfter time.Duration) {
	secs := int64((retryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	WriteError(w, http.StatusTooManyRequests, "", "Too many requests; retry after "+strconv.FormatInt(secs, 10)+" seconds.")
}

// scimError maps a domain error to the SCIM error the library renders. This is the one table
// from domain errors to SCIM statuses; unknown errors are logged in full and the client gets a
// generic message.
func scimError(log *slog.Logger, err error) error {
	var se scimerrors.ScimError
	if errors.As(err, &se) {
		return se
	}
	var fe *filterError
	if errors.As(err, &fe) {
		return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidFilter, Detail: fe.msg}
	}
	switch {
	case errors.Is(err, identity.ErrNotFound):
		return scimerrors.ScimError{Status: http.StatusNotFound, Detail: "Resource not found."}
	case errors.Is(err, identity.ErrConflict):
		return scimerrors.ScimError{Status: http.StatusConflict, ScimType: scimerrors.ScimTypeUniqueness,
			Detail: "One or more of the attribute values are already in use or are reserved."}
	case errors.Is(err, identity.ErrPrecondition):
		return scimerrors.ScimError{Status: http.StatusPreconditionFailed, Detail: "The resource has changed: its version does not match If-Match."}
	case errors.Is(err, identity.ErrInvalid):
		return scimerrors.ScimError{Status: http.StatusBadRequest, ScimType: scimerrors.ScimTypeInvalidValue, Detail: publicDetail(err)}
	case errors.Is(err, identity.ErrUnavailable), errors.Is(err, identity.ErrRetry):
		log.Warn("scim request failed: store unavailable", "error", err)
		return scimerrors.ScimError{Status: http.StatusServiceUnavailable, Detail: "The service is temporarily unavailable; retry later."}
	}
	log.Error("scim request failed", "error", err)
	return scimerrors.ScimError{Status: http.StatusInternalServerError, Detail: "Internal error."}
}

// publicError is an error whose message is written for the client.
type publicError struct {
	msg string
	err error
}

func (e *publicError) Error() string { return e.msg }
func (e *publicError) Unwrap() error { return e.err }

// invalid returns an ErrInvalid whose message is shown to the client as the SCIM detail.
func invalid(msg string) error { return &publicError{msg: msg, err: identity.ErrInvalid} }

func publicDetail(err error) string {
	var pe *publicError
	if errors.As(err, &pe) {
		return pe.msg
	}
	var pd interface{ PublicDetail() string }
	if errors.As(err, &pd) {
		return pd.PublicDetail()
	}
	return "A value was missing or not compatible with the attribute's type."
}
