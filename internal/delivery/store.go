package delivery

import (
	"context"
	"errors"
	"time"
)

// Store is the durable spool as the engine and the queue commands see it (implemented by
// *spool.Spool; the types live here so the spool can import this package and not the reverse).
type Store interface {
	// Append stores items durably at their lanes' tails and returns them with ID and Created set.
	Append(ctx context.Context, items ...Item) ([]Item, error)
	// Lanes lists the lanes with pending items.
	Lanes() []string
	// Head returns a lane's first pending item.
	Head(lane string) (Item, bool, error)
	// Done acknowledges a delivered item.
	Done(id string) error
	// Update stores an item's Attempts and LastError.
	Update(it Item) error
	// Dead moves a pending item to the dead letters.
	Dead(it Item, reason string) error
	// Expired tells whether an item is past spool.max_age; ExpiredReason says so in words.
	Expired(it Item) bool
	ExpiredReason() string
	// Expire dead-letters the expired items of the lanes skip does not name.
	Expire(skip func(lane string) bool) (int, error)

	// DeadItems lists the dead letters; Retry and RetryAll move them back to their lanes; Drop
	// deletes a dead letter or a pending item.
	DeadItems() ([]DeadItem, error)
	Retry(id string) (Item, error)
	RetryAll() ([]Item, error)
	Drop(id string) error
	// Stats and LaneStats describe what is stored.
	Stats() StoreStats
	LaneStats() []LaneStats
}

// DeadItem is an item taken off its lane after it could not be delivered.
type DeadItem struct {
	Item
	Reason string    `json:"reason"`
	DeadAt time.Time `json:"dead_at"`
}

// LaneStats describes one lane with pending items.
type LaneStats struct {
	Lane    string    `json:"lane"`
	Pending int       `json:"pending"`
	Oldest  time.Time `json:"oldest"`
	HeadID  string    `json:"head_id"`
}

// StoreStats are the spool's counters.
type StoreStats struct {
	Pending   int    `json:"pending"`
	Lanes     int    `json:"lanes"`
	Dead      int    `json:"dead"`
	Bytes     int64  `json:"bytes"` // pending and dead together, what spool.max_bytes bounds
	DeadBytes int64  `json:"dead_bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	Refused   uint64 `json:"refused"`
	// Commits counts disk transactions since Open (appends share them: group commit).
	Commits uint64 `json:"commits"`
}

// ErrNotFound is returned by a Store for an unknown item id.
var ErrNotFound = errors.New("spool: no such item")
