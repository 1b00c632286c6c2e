package wire

// Error is an error that has its own reply line: "CODE Reason". Layers
// below the server return it for answers that are neither a lock status
// nor a bug: a limit hit (429), a retryable refusal (503) or an unknown
// outcome (504).
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return "elock: " + e.Reason }

// Retryable reports whether the request certainly did nothing and may be
// sent again, here or to another node.
func (e *Error) Retryable() bool { return e.Code == CodeRetry }

// Indeterminate reports whether the request may or may not have taken
// effect.
func (e *Error) Indeterminate() bool { return e.Code == CodeIndeterminate }

// Retry returns a 503 error: nothing happened; try again.
func Retry(reason string) *Error { return &Error{Code: CodeRetry, Reason: reason} }

// Indeterminate returns a 504 error: the outcome is unknown.
func Indeterminate(reason string) *Error { return &Error{Code: CodeIndeterminate, Reason: reason} }
