// Package nft enforces the agent's bans with nftables over netlink (contract §6.2). It owns the
// table "inet odoopbx" and never reads or changes any other table.
package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/odoopbx/odoopbx/internal/security"
)

// TableName is the agent's table, in family inet.
const TableName = "odoopbx"

// Set and chain names of §6.2.
const (
	setAllow4   = "allow4"
	setAllow6   = "allow6"
	setDeny4    = "deny4"
	setDeny6    = "deny6"
	setBan4     = "ban4"
	setBan6     = "ban6"
	setTCPPorts = "tcp_ports"
	setUDPPorts = "udp_ports"
	chainInput  = "input"
	chainGuard  = "guard"
)

// Batches stay well under the default netlink send buffer (212 KiB): a large restore is split
// into several transactions after the first.
const (
	chunk4 = 2048
	chunk6 = 1024
)

// Config configures the backend.
type Config struct {
	// IPv6Prefix 64 makes ban6 an interval set so /64 networks can be banned (security_ipv6_prefix).
	IPv6Prefix int
	// NetNS, when not zero, is a network namespace fd to work in (tests); zero is the agent's own.
	NetNS  int
	Logger *slog.Logger
}

// Backend is the nftables implementation of security.Backend.
type Backend struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex // serialises netlink transactions and guards conn
	conn  *nftables.Conn
	table *nftables.Table
	// setsByName is built once: the library only reads these descriptions.
	setsByName map[string]*nftables.Set
}

var _ security.Backend = (*Backend)(nil)

// New opens a netlink connection and checks that nftables answers and the process may use it. An
// error means bans cannot be enforced here (no nf_tables, no CAP_NET_ADMIN); the caller then uses
// security.NewDryRunBackend.
func New(cfg Config) (*Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 128
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}}
	b.setsByName = b.newSets()
	if err := b.open(); err != nil {
		return nil, err
	}
	if _, err := b.conn.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		b.Close()
		return nil, explain(err)
	}
	return b, nil
}

func (b *Backend) open() error {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if b.cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(b.cfg.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return explain(err)
	}
	b.conn = c
	return nil
}

// Close releases the netlink socket; the table stays.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return nil
	}
	err := b.conn.CloseLasting()
	b.conn = nil
	return err
}

func explain(err error) error {
	switch {
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("nft: no permission to use nftables (needs CAP_NET_ADMIN): %w", err)
	case errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, syscall.EAFNOSUPPORT):
		return fmt.Errorf("nft: the kernel has no nf_tables support: %w", err)
	}
	return fmt.Errorf("nft: %w", err)
}

// Name implements security.Backend.
func (b *Backend) Name() string { return "nftables" }

// Available implements security.Backend.
func (b *Backend) Available() bool { return true }

// sets returns the eight sets of the layout.
func (b *Backend) sets() map[string]*nftables.Set { return b.setsByName }

// newSets describes the sets with fixed IDs (the library's own ID counter is a package global;
// fixed IDs keep concurrent backends from sharing it).
func (b *Backend) newSets() map[string]*nftables.Set {
	t := b.table
	return map[string]*nftables.Set{
		setAllow4:   {ID: 1, Table: t, Name: setAllow4, KeyType: nftables.TypeIPAddr, Interval: true},
		setAllow6:   {ID: 2, Table: t, Name: setAllow6, KeyType: nftables.TypeIP6Addr, Interval: true},
		setDeny4:    {ID: 3, Table: t, Name: setDeny4, KeyType: nftables.TypeIPAddr, Interval: true},
		setDeny6:    {ID: 4, Table: t, Name: setDeny6, KeyType: nftables.TypeIP6Addr, Interval: true},
		setBan4:     {ID: 5, Table: t, Name: setBan4, KeyType: nftables.TypeIPAddr, HasTimeout: true},
		setBan6:     {ID: 6, Table: t, Name: setBan6, KeyType: nftables.TypeIP6Addr, HasTimeout: true, Interval: b.cfg.IPv6Prefix == 64},
		setTCPPorts: {ID: 7, Table: t, Name: setTCPPorts, KeyType: nftables.TypeInetService},
		setUDPPorts: {ID: 8, Table: t, Name: setUDPPorts, KeyType: nftables.TypeInetService},
	}
}

// Install implements security.Backend: one transaction adds the table (so the delete cannot fail
// on a first start), deletes it with everything in it, and recreates the layout with the ports,
// the lists and the bans that fit in one batch; further bans follow in batches of their own.
func (b *Backend) Install(ctx context.Context, rs security.Ruleset) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	sets := b.sets()
	bans4, bans6, err := b.banElements(rs.Bans, sets[setBan6].Interval)
	if err != nil {
		return err
	}
	allow4, allow6, err := intervalElements(rs.Allow)
	if err != nil {
		return fmt.Errorf("nft: allow list: %w", err)
	}
	deny4, deny6, err := intervalElements(rs.Deny)
	if err != nil {
		return fmt.Errorf("nft: deny list: %w", err)
	}
	first4, rest4 := split(bans4, chunk4)
	first6, rest6 := split(bans6, chunk6)
	if sets[setBan6].Interval {
		first6, rest6 = splitPairs(bans6, chunk6)
	}

	c := b.conn
	c.AddTable(b.table)
	c.DelTable(b.table)
	c.AddTable(b.table)
	initial := map[string][]nftables.SetElement{
		setAllow4: allow4, setAllow6: allow6, setDeny4: deny4, setDeny6: deny6,
		setBan4: first4, setBan6: first6,
		setTCPPorts: portElements(rs.PortsTCP), setUDPPorts: portElements(rs.PortsUDP),
	}
	for _, name := range []string{setAllow4, setAllow6, setDeny4, setDeny6, setBan4, setBan6, setTCPPorts, setUDPPorts} {
		if err := c.AddSet(sets[name], initial[name]); err != nil {
			return b.fail(fmt.Errorf("nft: set %s: %w", name, err))
		}
	}
	b.addChains(sets)
	if err := c.Flush(); err != nil {
		return b.fail(fmt.Errorf("nft: install table inet %s: %w", TableName, explain(err)))
	}
	for len(rest4) > 0 || len(rest6) > 0 {
		var part4, part6 []nftables.SetElement
		part4, rest4 = split(rest4, chunk4)
		if sets[setBan6].Interval {
			part6, rest6 = splitPairs(rest6, chunk6)
		} else {
			part6, rest6 = split(rest6, chunk6)
		}
		if len(part4) > 0 {
			if err := c.SetAddElements(sets[setBan4], part4); err != nil {
				return b.fail(err)
			}
		}
		if len(part6) > 0 {
			if err := c.SetAddElements(sets[setBan6], part6); err != nil {
				return b.fail(err)
			}
		}
		if err := c.Flush(); err != nil {
			return b.fail(fmt.Errorf("nft: restore bans: %w", explain(err)))
		}
	}
	return nil
}

// fail drops a half-built batch, so that the next transaction cannot send its leftovers: the
// queued messages live in the connection, which is replaced.
func (b *Backend) fail(err error) error {
	_ = b.conn.CloseLasting()
	if oerr := b.open(); oerr != nil {
		return errors.Join(err, oerr)
	}
	return err
}

func (b *Backend) addChains(sets map[string]*nftables.Set) {
	c := b.conn
	accept := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{
		Name: chainInput, Table: b.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(-5), Policy: &accept,
	})
	guard := c.AddChain(&nftables.Chain{Name: chainGuard, Table: b.table})
	for _, p := range []struct {
		proto byte
		set   *nftables.Set
	}{{unix.IPPROTO_TCP, sets[setTCPPorts]}, {unix.IPPROTO_UDP, sets[setUDPPorts]}} {
		// meta l4proto P th dport @ports jump guard
		c.AddRule(&nftables.Rule{Table: b.table, Chain: input, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p.proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: p.set.Name, SetID: p.set.ID},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: chainGuard},
		}})
	}
	saddr := func(v6 bool, set *nftables.Set, final ...expr.Any) []expr.Any {
		proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
		if v6 {
			proto, off, n = unix.NFPROTO_IPV6, 8, 16
		}
		return append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		}, final...)
	}
	rules := [][]expr.Any{
		saddr(false, sets[setAllow4], &expr.Verdict{Kind: expr.VerdictReturn}),
		saddr(true, sets[setAllow6], &expr.Verdict{Kind: expr.VerdictReturn}),
		saddr(false, sets[setDeny4], &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}),
		saddr(true, sets[setDeny6], &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}),
		saddr(false, sets[setBan4], &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}),
		saddr(true, sets[setBan6], &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}),
	}
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: b.table, Chain: guard, Exprs: r})
	}
}

// Ban implements security.Backend. One transaction adds the element (a no-op when present), deletes
// it and adds it again with the new timeout: re-adding alone does not restart the timeout before
// Linux 6.12, and a bare delete of an absent element would fail the whole batch.
func (b *Backend) Ban(ctx context.Context, p netip.Prefix, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("nft: ban %s: time %s is too short", p, ttl)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	set, elems, err := b.elementFor(p, ttl)
	if err != nil {
		return err
	}
	_, bare, _ := b.elementFor(p, 0)
	c := b.conn
	for _, step := range []struct {
		del   bool
		elems []nftables.SetElement
	}{{false, bare}, {true, bare}, {false, elems}} {
		var err error
		if step.del {
			err = c.SetDeleteElements(set, step.elems)
		} else {
			err = c.SetAddElements(set, step.elems)
		}
		if err != nil {
			return b.fail(fmt.Errorf("nft: ban %s: %w", p, err))
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: ban %s: %w", security.FormatPrefix(p), explainMissing(err))
	}
	return nil
}

// Unban implements security.Backend: add-then-delete in one transaction, so an absent element is
// not an error.
func (b *Backend) Unban(ctx context.Context, p netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	set, elems, err := b.elementFor(p, 0)
	if err != nil {
		return err
	}
	if err := b.conn.SetAddElements(set, elems); err != nil {
		return b.fail(err)
	}
	if err := b.conn.SetDeleteElements(set, elems); err != nil {
		return b.fail(err)
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nft: unban %s: %w", security.FormatPrefix(p), explainMissing(err))
	}
	return nil
}

// explainMissing turns the kernel's ENOENT (one per message of the batch) into ErrNoTable.
func explainMissing(err error) error {
	if errors.Is(err, syscall.ENOENT) {
		return security.ErrNoTable
	}
	return explain(err)
}

// SetAccessLists implements security.Backend: both sets are flushed and refilled in one transaction.
func (b *Backend) SetAccessLists(ctx context.Context, allow, deny []netip.Prefix) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	allow4, allow6, err := intervalElements(allow)
	if err != nil {
		return fmt.Errorf("nft: allow list: %w", err)
	}
	deny4, deny6, err := intervalElements(deny)
	if err != nil {
		return fmt.Errorf("nft: deny list: %w", err)
	}
	sets := b.sets()
	c := b.conn
	for name, elems := range map[string][]nftables.SetElement{setAllow4: allow4, setAllow6: allow6, setDeny4: deny4, setDeny6: deny6} {
		c.FlushSet(sets[name])
		if len(elems) > 0 {
			if err := c.SetAddElements(sets[name], elems); err != nil {
				return b.fail(err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: set access lists: %w", explainMissing(err))
	}
	return nil
}

// List implements security.Backend, reading ban4 and ban6 from the kernel.
func (b *Backend) List(ctx context.Context) ([]security.BanEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []security.BanEntry
	for _, name := range []string{setBan4, setBan6} {
		set, err := b.conn.GetSetByName(b.table, name)
		if err != nil {
			return nil, fmt.Errorf("nft: read set %s: %w", name, explainMissing(err))
		}
		elems, err := b.conn.GetSetElements(set)
		if err != nil {
			return nil, fmt.Errorf("nft: read set %s: %w", name, explain(err))
		}
		out = append(out, entriesFrom(elems, set.Interval)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	return out, nil
}

// Contains reports whether the kernel's ban sets hold p now (tests and the latency benchmark).
func (b *Backend) Contains(ctx context.Context, p netip.Prefix) (bool, error) {
	list, err := b.List(ctx)
	if err != nil {
		return false, err
	}
	for _, e := range list {
		if e.Prefix == p {
			return true, nil
		}
	}
	return false, nil
}

// Remove implements security.Backend: add-then-delete of the table, so an absent one is fine.
func (b *Backend) Remove(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	b.conn.AddTable(b.table)
	b.conn.DelTable(b.table)
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nft: remove table inet %s: %w", TableName, explain(err))
	}
	return nil
}

// elementFor returns the set and elements of one ban entry (two for an interval).
func (b *Backend) elementFor(p netip.Prefix, ttl time.Duration) (*nftables.Set, []nftables.SetElement, error) {
	sets := b.sets()
	a := p.Addr()
	switch {
	case a.Is4():
		if !p.IsSingleIP() {
			return nil, nil, fmt.Errorf("nft: %s: IPv4 bans are single addresses", p)
		}
		k := a.As4()
		return sets[setBan4], []nftables.SetElement{{Key: k[:], Timeout: ttl}}, nil
	case sets[setBan6].Interval:
		r := rangeOf(p)
		return sets[setBan6], r.elements(ttl), nil
	default:
		if !p.IsSingleIP() {
			return nil, nil, fmt.Errorf("nft: %s: IPv6 network bans need security_ipv6_prefix 64", p)
		}
		k := a.As16()
		return sets[setBan6], []nftables.SetElement{{Key: k[:], Timeout: ttl}}, nil
	}
}

func (b *Backend) banElements(bans []security.BanEntry, interval6 bool) (v4, v6 []nftables.SetElement, err error) {
	seen := make(map[netip.Prefix]bool, len(bans))
	for _, ban := range bans {
		if seen[ban.Prefix] || ban.TTL < time.Millisecond {
			continue
		}
		seen[ban.Prefix] = true
		_, elems, err := b.elementFor(ban.Prefix, ban.TTL)
		if err != nil {
			return nil, nil, err
		}
		if ban.Prefix.Addr().Is4() {
			v4 = append(v4, elems...)
		} else {
			v6 = append(v6, elems...)
		}
	}
	if interval6 {
		// Overlapping intervals are refused by the kernel: keep the widest, longest-lived entry.
		v6 = dedupeIntervals(v6)
	}
	return v4, v6, nil
}

func portElements(ports []uint16) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ports))
	for _, p := range ports {
		out = append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	return out
}

func split(e []nftables.SetElement, n int) (head, tail []nftables.SetElement) {
	if len(e) <= n {
		return e, nil
	}
	return e[:n], e[n:]
}

// splitPairs splits interval elements without separating a start from its end.
func splitPairs(e []nftables.SetElement, n int) (head, tail []nftables.SetElement) {
	if len(e) <= n {
		return e, nil
	}
	i := n
	for i < len(e) && e[i].IntervalEnd {
		i++
	}
	return e[:i], e[i:]
}
