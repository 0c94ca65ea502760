// Package jobs runs the functions Odoo asks the agent to run (contract §4.5): each is a Func
// registered by name; the API server validates the envelope and hands the job here.
package jobs

import (
	"context"
	"encoding/json"
	"fmt"
)

// Func runs one job function. args is the envelope's args, already normalised to a list (a
// non-list wrapped, null and [null] meaning none); kwargs is the envelope's kwargs. The result is
// marshalled to JSON and delivered to the callback.
type Func func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error)

// Error codes of contract §4.4.
const (
	CodeInvalidArgs      = "invalid_args"
	CodeAMINotConnected  = "ami_not_connected"
	CodeAMITimeout       = "ami_timeout"
	CodePermissionDenied = "permission_denied"
	CodeAMIError         = "ami_error"
	CodePathNotAllowed   = "path_not_allowed"
	CodeNotFound         = "not_found"
	CodeTooLarge         = "too_large"
	CodeIOError          = "io_error"
	CodeDisabled         = "disabled"
	CodeUnsupported      = "unsupported"
	CodeTimeout          = "timeout"
	CodeInternal         = "internal"
	CodeConflict         = "conflict"
)

// Error is a job failure with its contract code; any other error counts as CodeInternal.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code.
func Errorf(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}
