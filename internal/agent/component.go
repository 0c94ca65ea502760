// Package agent wires the agent's parts together: each part is a Component with one lifecycle,
// registered and started in one place (in the manner of CoreDNS plugins).
package agent

import "context"

// Component is one part of the agent (AMI client, forwarder, job API, security...).
type Component interface {
	// Name prefixes the part's logs and errors ("ami", "forwarder", "api").
	Name() string
	// Start starts the part's work in goroutines bound to ctx and returns once it is running, or
	// with an error that stops the agent from starting.
	Start(ctx context.Context) error
	// Stop stops the part and waits for its goroutines, at most until ctx is done.
	Stop(ctx context.Context) error
	// Health reports the part's state for /healthz, check and agent.status.
	Health() Health
}

// Health is one part's state.
type Health struct {
	// OK is false when the part cannot do its job right now (AMI down, Odoo unreachable).
	OK bool `json:"ok"`
	// State is a short word: connected, disconnected, running, disabled...
	State string `json:"state"`
	// Detail holds part-specific figures (queue depth, bans, reconnects).
	Detail map[string]any `json:"detail,omitempty"`
}
