// Package delivery moves calls to Odoo (events, job callbacks, notifications) through the durable
// spool, one lane at a time in order, lanes in parallel, with retries and a dead-letter list
// (contract §3.4).
package delivery

import (
	"context"
	"encoding/json"
	"time"
)

// Item is one Odoo call to make: execute_kw(Model, Method, Args, Kwargs).
type Item struct {
	// ID is assigned by the spool when the item is appended.
	ID string `json:"id,omitempty"`
	// Lane orders items: items of one lane are delivered one after another in append order.
	// Events use their call's Linkedid; job results use "job:<job_id>"; security uses "security".
	Lane   string          `json:"lane"`
	Model  string          `json:"model"`
	Method string          `json:"method"`
	Args   json.RawMessage `json:"args"`             // a JSON array
	Kwargs json.RawMessage `json:"kwargs,omitempty"` // a JSON object, or empty
	// NotBefore is the earliest delivery time (receive time + the map row's delay).
	NotBefore time.Time `json:"not_before,omitempty"`
	// Created is when the item was appended; items older than spool.max_age are dead-lettered.
	Created time.Time `json:"created"`
	// Origin says what produced the item ("event:Newchannel", "job:<id>", "security"), for logs and queue listings.
	Origin string `json:"origin,omitempty"`
	// Attempts counts handler failures so far.
	Attempts int `json:"attempts,omitempty"`
	// LastError is the last failure's text.
	LastError string `json:"last_error,omitempty"`
}

// Enqueuer accepts items for durable delivery. Enqueue returns once the items are on disk (or
// refused: the spool full or closed); it never waits for Odoo.
type Enqueuer interface {
	Enqueue(ctx context.Context, items ...Item) error
}
