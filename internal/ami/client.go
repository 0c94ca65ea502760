package ami

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// State is the connection state of the client, as callers can watch it.
type State int32

const (
	StateDisconnected State = iota
	StateConnecting
	StateConnected
	// StateAuthFailed: Asterisk refused the login; the client backs off (2 s doubling to 300 s).
	StateAuthFailed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateAuthFailed:
		return "auth_failed"
	default:
		return "disconnected"
	}
}

// Errors returned by Client.Do.
var (
	ErrNotConnected = errors.New("ami: not connected")
	ErrTimeout      = errors.New("ami: action timeout")
)

// InvalidActionError is an action refused before it was sent: a bad header name, CR or LF in a
// value, a line over 1024 bytes, more than 128 headers, or Originate with Async false.
type InvalidActionError struct{ Reason string }

func (e *InvalidActionError) Error() string { return "ami: invalid action: " + e.Reason }

// ClientConfig configures a Client.
type ClientConfig struct {
	Address  string // host:port
	Username string
	Secret   string
	Auth     string // "md5" (default, falls back to plain) or "plain"
	TLS      bool
	// Events is the Events: mask of the events session ("on", "off", "call,system,...").
	Events string
	// SingleSession carries actions on the events session (degraded but correct, contract §2.10).
	SingleSession bool
	PingInterval  time.Duration // default 10 s
	PingTimeout   time.Duration // default 5 s
	// QueueSize bounds the events queue (default 65536); when full the newest event is dropped and counted.
	QueueSize int
	// OnEventsConnected is called (in its own goroutine) after every login of the events session,
	// with how long the session was down (0 on the first connect).
	OnEventsConnected func(ctx context.Context, gap time.Duration)
	Logger            *slog.Logger
}

// Client keeps the AMI sessions alive and correlates actions with their replies.
type Client struct {
	cfg ClientConfig
}

// NewClient returns a client; Run connects it.
func NewClient(cfg ClientConfig) *Client { return &Client{cfg: cfg} }

// Run connects and reconnects the sessions until ctx is done.
func (c *Client) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Events is the bounded queue of events from the events session.
func (c *Client) Events() <-chan *Message { return nil }

// State is the events session's state (the actions session follows it).
func (c *Client) State() State { return StateDisconnected }

// Do sends one action and returns every message of its reply: the response; for a list action the
// response, the items and the Complete event; for an async Originate the response and the
// correlated OriginateResponse event (contract §2.4-2.5, §4.6). A "Response: Error" is a reply, not
// an error: err is only ErrNotConnected, ErrTimeout, a validation error or ctx's error. Command
// output is normalised: the response's Output headers hold the lines (§2.5).
func (c *Client) Do(ctx context.Context, action *Message) ([]*Message, error) {
	return nil, ErrNotConnected
}
