package admin

import (
	"context"
	"time"
)

// StatusSource gives the status page its data. The agent adapts its parts (AMI client, Odoo
// client, forwarder, spool, security) to it; Status must not block for long (the page gives it
// two seconds) and must return plain copies the page may read after it returns.
type StatusSource interface {
	Status(ctx context.Context) Status
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func(ctx context.Context) Status

// Status implements StatusSource.
func (f StatusFunc) Status(ctx context.Context) Status { return f(ctx) }

// Status is everything the status page shows, as plain fields.
type Status struct {
	Version    string        `json:"version"`
	SystemName string        `json:"system_name"`
	Uptime     time.Duration `json:"uptime_ns"`
	AMI        AMIStatus     `json:"ami"`
	Odoo       OdooStatus    `json:"odoo"`
	Calls      []Call        `json:"calls"`
	Events     []Event       `json:"events"` // newest first
	Queue      QueueStatus   `json:"queue"`
	Bans       []Ban         `json:"bans"`
	// Security is false when the security part is off (bans are then not enforced).
	SecurityEnabled bool `json:"security_enabled"`
}

// AMIStatus is the AMI link (L1/L2).
type AMIStatus struct {
	State           string    `json:"state"` // connected, connecting, disconnected, auth_failed
	Address         string    `json:"address"`
	AMIVersion      string    `json:"ami_version"`      // from the banner: 11.0.0
	AsteriskVersion string    `json:"asterisk_version"` // from CoreSettings: 22.10.1
	Since           time.Time `json:"since,omitzero"`   // when the state last changed
	Detail          string    `json:"detail,omitempty"` // the last error, say
}

// OdooStatus is the Odoo link (L3).
type OdooStatus struct {
	State  string    `json:"state"` // ok, unreachable, auth_failed, ...
	URL    string    `json:"url"`
	DB     string    `json:"db"`
	Since  time.Time `json:"since,omitzero"`
	Detail string    `json:"detail,omitempty"`
}

// Call is one active call.
type Call struct {
	Linkedid  string    `json:"linkedid"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Direction string    `json:"direction"` // inbound, outbound, internal
	State     string    `json:"state"`     // ringing, up, ...
	Started   time.Time `json:"started"`
	Channels  int       `json:"channels"`
}

// Event is one recent AMI event, as the page lists it.
type Event struct {
	Time     time.Time `json:"time"`
	Name     string    `json:"name"`
	Summary  string    `json:"summary"` // "PJSIP/101-00000002 Ringing", for instance
	Uniqueid string    `json:"uniqueid,omitempty"`
}

// QueueStatus is the delivery queue to Odoo.
type QueueStatus struct {
	Depth     int    `json:"depth"`
	InFlight  int    `json:"in_flight"`
	Dead      int    `json:"dead"`
	Bytes     int64  `json:"bytes"`
	Delivered uint64 `json:"delivered"`
}

// Ban is one banned address.
type Ban struct {
	Address string    `json:"address"`
	Reason  string    `json:"reason"`
	Source  string    `json:"source,omitempty"` // security event, odoo, manual
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires,omitzero"` // zero: permanent
}
