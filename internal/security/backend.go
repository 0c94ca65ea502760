package security

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Ruleset is everything the firewall table holds; Install writes it in one transaction.
type Ruleset struct {
	PortsTCP []uint16
	PortsUDP []uint16
	Allow    []netip.Prefix
	Deny     []netip.Prefix
	Bans     []BanEntry
}

// BanEntry is a ban as the firewall holds it: the entry and the time it has left.
type BanEntry struct {
	Prefix netip.Prefix
	TTL    time.Duration
}

// ErrNoTable is wrapped by a backend whose table is not installed (the agent is not running with
// security on); there is then nothing to unban.
var ErrNoTable = errors.New("security: the firewall table is not installed (is the agent running with security on?)")

// Backend enforces bans. The nftables backend (package nft) talks netlink; the dry-run backend only
// logs, for hosts without nftables or CAP_NET_ADMIN.
type Backend interface {
	// Name is "nftables" or "dry-run".
	Name() string
	// Available reports whether bans are really enforced.
	Available() bool
	// Install deletes and recreates the agent's table with rs, atomically.
	Install(ctx context.Context, rs Ruleset) error
	// Ban adds (or replaces, restarting its timeout) a ban entry.
	Ban(ctx context.Context, p netip.Prefix, ttl time.Duration) error
	// Unban removes a ban entry; an absent entry is not an error.
	Unban(ctx context.Context, p netip.Prefix) error
	// SetAccessLists replaces the allow and deny sets, atomically.
	SetAccessLists(ctx context.Context, allow, deny []netip.Prefix) error
	// List reads the ban entries the firewall holds now.
	List(ctx context.Context) ([]BanEntry, error)
	// Remove deletes the agent's table; an absent table is not an error.
	Remove(ctx context.Context) error
}

// DryRunBackend logs what it would do and keeps the bans in memory, so counting, listing and Odoo
// updates work on a host where the firewall cannot be changed.
type DryRunBackend struct {
	log    *slog.Logger
	why    string
	now    func() time.Time
	mu     sync.Mutex
	bans   map[netip.Prefix]time.Time
	allow  int
	deny   int
	inited bool
}

// NewDryRunBackend returns a backend that only logs; why says why the real one is not used.
func NewDryRunBackend(log *slog.Logger, why string) *DryRunBackend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DryRunBackend{log: log, why: why, now: time.Now, bans: make(map[netip.Prefix]time.Time)}
}

// Why says why bans are not enforced.
func (d *DryRunBackend) Why() string { return d.why }

func (d *DryRunBackend) Name() string    { return "dry-run" }
func (d *DryRunBackend) Available() bool { return false }

func (d *DryRunBackend) Install(_ context.Context, rs Ruleset) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bans = make(map[netip.Prefix]time.Time, len(rs.Bans))
	now := d.now()
	for _, b := range rs.Bans {
		d.bans[b.Prefix] = now.Add(b.TTL)
	}
	d.allow, d.deny, d.inited = len(rs.Allow), len(rs.Deny), true
	d.log.Warn("security: dry run, the firewall is not changed", "why", d.why,
		"bans", len(rs.Bans), "allow", len(rs.Allow), "deny", len(rs.Deny),
		"tcp_ports", rs.PortsTCP, "udp_ports", rs.PortsUDP)
	return nil
}

func (d *DryRunBackend) Ban(_ context.Context, p netip.Prefix, ttl time.Duration) error {
	d.mu.Lock()
	d.bans[p] = d.now().Add(ttl)
	d.mu.Unlock()
	d.log.Warn("security: dry run: would ban", "address", FormatPrefix(p), "for", ttl.Round(time.Second).String())
	return nil
}

func (d *DryRunBackend) Unban(_ context.Context, p netip.Prefix) error {
	d.mu.Lock()
	delete(d.bans, p)
	d.mu.Unlock()
	d.log.Info("security: dry run: would unban", "address", FormatPrefix(p))
	return nil
}

func (d *DryRunBackend) SetAccessLists(_ context.Context, allow, deny []netip.Prefix) error {
	d.mu.Lock()
	d.allow, d.deny = len(allow), len(deny)
	d.mu.Unlock()
	d.log.Info("security: dry run: would set access lists", "allow", len(allow), "deny", len(deny))
	return nil
}

func (d *DryRunBackend) List(context.Context) ([]BanEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	out := make([]BanEntry, 0, len(d.bans))
	for p, exp := range d.bans {
		if exp.After(now) {
			out = append(out, BanEntry{Prefix: p, TTL: exp.Sub(now)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	return out, nil
}

func (d *DryRunBackend) Remove(context.Context) error {
	d.mu.Lock()
	d.bans = make(map[netip.Prefix]time.Time)
	d.inited = false
	d.mu.Unlock()
	d.log.Info("security: dry run: would remove the firewall table")
	return nil
}
