package identity

import "errors"

// Sentinel errors. Adapters wrap them with %w and the operation; the HTTP layers map them to
// statuses in exactly one table each.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")          // uniqueness violated
	ErrPrecondition = errors.New("precondition failed") // version (ETag) mismatch
	ErrInvalid      = errors.New("invalid")           // bad input the client can fix
	ErrUnavailable  = errors.New("store unavailable")  // database down or timing out
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	// ErrRetry means a compare-and-swap lost a race; the caller re-reads and re-applies.
	ErrRetry = errors.New("concurrent modification")
)

// ErrSkip, returned by an updater function, means "nothing to change": the store writes nothing
// and returns the current document.
var ErrSkip = errors.New("no change")
