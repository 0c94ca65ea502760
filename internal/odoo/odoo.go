// Package odoo is the agent's client of Odoo's external API (link L3): JSON-RPC over /jsonrpc today,
// behind the Client interface so the JSON-2 API of Odoo 19 can be added as a second transport.
package odoo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Client calls Odoo model methods as the agent's Odoo user.
type Client interface {
	// ExecuteKw calls model.method(*args, **kwargs) and returns the raw JSON result. kwargs may be nil.
	ExecuteKw(ctx context.Context, model, method string, args []any, kwargs map[string]any) (json.RawMessage, error)
}

// Kind sorts Odoo failures by what the caller should do about them (contract §3.4).
type Kind int

const (
	// KindHandler is an Odoo exception raised by the called method: retry a few times, then dead-letter.
	KindHandler Kind = iota
	// KindTransient is a network error, timeout, HTTP 429/5xx or a database conflict: retry with backoff.
	KindTransient
	// KindAuth is AccessDenied or a failed login: pause, re-login with backoff, drop nothing.
	KindAuth
	// KindMissingMethod is an AttributeError for the called method (used for the agent_get_config fallback).
	KindMissingMethod
	// KindConfig is a configuration mistake the agent cannot retry its way out of (bad URL, 301/302 on POST).
	KindConfig
)

func (k Kind) String() string {
	switch k {
	case KindTransient:
		return "transient"
	case KindAuth:
		return "auth"
	case KindMissingMethod:
		return "missing_method"
	case KindConfig:
		return "config"
	default:
		return "handler"
	}
}

// Error is every failure the client returns.
type Error struct {
	Kind Kind
	// Name is the Python exception name Odoo reported (odoo.exceptions.AccessDenied), if any.
	Name string
	// Message is Odoo's message, or the transport error's text.
	Message string
	// HTTPStatus is set when the failure came with a non-200 HTTP status.
	HTTPStatus int
	// Err is the underlying transport error, if any.
	Err error
}

func (e *Error) Error() string {
	switch {
	case e.Name != "":
		return fmt.Sprintf("odoo: %s: %s: %s", e.Kind, e.Name, e.Message)
	case e.HTTPStatus != 0:
		return fmt.Sprintf("odoo: %s: HTTP %d: %s", e.Kind, e.HTTPStatus, e.Message)
	default:
		return fmt.Sprintf("odoo: %s: %s", e.Kind, e.Message)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of any error: an *Error's own kind, KindTransient for context deadlines
// and other non-Odoo errors (the safe choice: retrying loses nothing).
func KindOf(err error) Kind {
	var oe *Error
	if errors.As(err, &oe) {
		return oe.Kind
	}
	return KindTransient
}
