package security

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"
)

// Escalation constants of contract §6.1 and §6.3.
const (
	// RepeatWindow: a ban that starts within this long after the previous one ended is longer.
	RepeatWindow = 24 * time.Hour
	// HistoryKeep is how long past bans are remembered for escalation.
	HistoryKeep = 7 * 24 * time.Hour
	// maxTracked bounds the failure counters, so a scan from many addresses cannot exhaust memory.
	maxTracked = 200000
	// maxPendingPerSource bounds the open challenges remembered per source in challenge mode.
	maxPendingPerSource = 64
)

// Ban is one banned address or network.
type Ban struct {
	Prefix    netip.Prefix
	Created   time.Time
	Expires   time.Time
	Reason    string
	Service   string
	AccountID string
	// Offences counts this ban and the earlier ones within HistoryKeep.
	Offences int
	Manual   bool
}

// Address is the ban's address as Odoo and the CLI show it.
func (b Ban) Address() string { return FormatPrefix(b.Prefix) }

// Remaining is the time left at now, never negative.
func (b Ban) Remaining(now time.Time) time.Duration {
	if d := b.Expires.Sub(now); d > 0 {
		return d
	}
	return 0
}

// BanRecord is one past ban, kept for escalation.
type BanRecord struct {
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires_at"`
}

// AccessRule is one static allow or deny entry (from Odoo's access lists).
type AccessRule struct {
	Prefix  netip.Prefix
	Comment string
}

// Op is what happened to a ban.
type Op string

const (
	OpBan    Op = "ban"
	OpUnban  Op = "unban"
	OpExpire Op = "expire"
)

// Change is one ban coming or going, for the firewall, the state file and Odoo.
type Change struct {
	Op  Op
	Ban Ban
}

// Outcome says what the policy made of one event, for logs and metrics.
type Outcome struct {
	Key       netip.Prefix
	Count     int
	Threshold int
	// Skipped names why a failure was not counted ("loopback", "exempt", "allow-listed"...).
	Skipped string
	Changes []Change
}

// ErrNeverBanned refuses a ban of an address the policy must never ban.
var ErrNeverBanned = errors.New("security: address is never banned")

// ErrInvalidBan refuses a ban whose address or time does not fit the ban sets.
var ErrInvalidBan = errors.New("security: invalid ban")

type failures struct {
	times []time.Time // oldest first, within FindTime
}

// Policy is the pure decision engine: counters, trust, bans and escalation. It holds no locks and
// does no I/O; the caller passes the time and serialises calls.
type Policy struct {
	opts      Options
	never     []namedPrefix
	allow     []AccessRule
	deny      []AccessRule
	failures  map[netip.Prefix]*failures
	trusted   map[netip.Prefix]time.Time
	pending   map[netip.Prefix]map[string]pendingChallenge
	bans      map[netip.Prefix]*Ban
	history   map[netip.Prefix][]BanRecord
	lastSweep time.Time
}

type namedPrefix struct {
	prefix netip.Prefix
	why    string
}

type pendingChallenge struct {
	deadline time.Time
	ev       Event
}

// PrivatePrefixes are never banned while security_ignore_private is on (§6.1).
func PrivatePrefixes() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("fc00::/7"),
		netip.MustParsePrefix("fe80::/10"),
	}
}

// loopbackPrefixes are never banned, whatever the options.
func loopbackPrefixes() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("0.0.0.0/32"),
		netip.MustParsePrefix("::/128"),
	}
}

// NewPolicy returns a policy for opts; exempt are the caller's never-banned addresses (AMI host,
// own addresses, Odoo's addresses).
func NewPolicy(opts Options, exempt []netip.Prefix) *Policy {
	p := &Policy{
		opts:     opts,
		failures: make(map[netip.Prefix]*failures),
		trusted:  make(map[netip.Prefix]time.Time),
		pending:  make(map[netip.Prefix]map[string]pendingChallenge),
		bans:     make(map[netip.Prefix]*Ban),
		history:  make(map[netip.Prefix][]BanRecord),
	}
	for _, pr := range loopbackPrefixes() {
		p.never = append(p.never, namedPrefix{pr, "loopback"})
	}
	for _, pr := range exempt {
		p.never = append(p.never, namedPrefix{normalise(pr), "exempt"})
	}
	for _, pr := range opts.Ignore {
		p.never = append(p.never, namedPrefix{normalise(pr), "ignored"})
	}
	if opts.IgnorePrivate {
		for _, pr := range PrivatePrefixes() {
			p.never = append(p.never, namedPrefix{pr, "private"})
		}
	}
	return p
}

func normalise(p netip.Prefix) netip.Prefix {
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a.WithZone(""), bits).Masked()
}

// Options returns the options the policy runs with.
func (p *Policy) Options() Options { return p.opts }

// Key is the firewall entry an address is counted and banned under: the address itself, or its
// /64 when security_ipv6_prefix is 64.
func (p *Policy) Key(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is6() && p.opts.IPv6Prefix == 64 {
		pr, _ := a.Prefix(64)
		return pr
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// NeverBanned says why an address may not be banned, or "" when it may.
func (p *Policy) NeverBanned(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	for _, n := range p.never {
		if n.prefix.Contains(a) {
			return n.why
		}
	}
	for _, r := range p.allow {
		if r.Prefix.Contains(a) {
			return "allow-listed"
		}
	}
	return ""
}

func (p *Policy) denied(a netip.Addr) bool {
	for _, r := range p.deny {
		if r.Prefix.Contains(a) {
			return true
		}
	}
	return false
}

// Observe applies one event at now.
func (p *Policy) Observe(ev Event, now time.Time) Outcome {
	key := p.Key(ev.Addr)
	out := Outcome{Key: key}
	switch ev.Class {
	case ClassSuccess:
		delete(p.failures, key)
		p.clearPending(key, "")
		if p.opts.AuthenticatedTimeout > 0 {
			p.trusted[key] = now.Add(p.opts.AuthenticatedTimeout)
		}
		return out
	case ClassChallenge:
		if p.opts.ChallengeTimeout > 0 && p.NeverBanned(ev.Addr) == "" {
			p.addPending(key, ev, now)
		}
		return out
	case ClassFailure:
		p.clearPending(key, ev.SessionID)
		return p.fail(key, ev, now)
	}
	return out
}

func (p *Policy) fail(key netip.Prefix, ev Event, now time.Time) Outcome {
	out := Outcome{Key: key}
	if why := p.NeverBanned(ev.Addr); why != "" {
		out.Skipped = why
		return out
	}
	if p.denied(ev.Addr) {
		out.Skipped = "deny-listed"
		return out
	}
	if b, ok := p.bans[key]; ok && now.Before(b.Expires) {
		out.Skipped = "already banned"
		return out
	}
	threshold := p.opts.MaxRetry
	if until, ok := p.trusted[key]; ok {
		if now.Before(until) {
			threshold = p.opts.TrustedMaxRetry
		} else {
			delete(p.trusted, key)
		}
	}
	f := p.failures[key]
	if f == nil {
		if len(p.failures) >= maxTracked {
			p.sweep(now, true)
		}
		f = &failures{}
		p.failures[key] = f
	}
	cut := now.Add(-p.opts.FindTime)
	i := 0
	for i < len(f.times) && !f.times[i].After(cut) {
		i++
	}
	f.times = append(f.times[i:], now)
	if len(f.times) > threshold {
		f.times = f.times[len(f.times)-threshold:]
	}
	out.Count, out.Threshold = len(f.times), threshold
	if out.Count < threshold {
		return out
	}
	delete(p.failures, key)
	b := p.newBan(key, ev, now, 0)
	out.Changes = []Change{{Op: OpBan, Ban: b}}
	return out
}

// newBan records a ban of key; ttl zero means the escalated automatic length.
func (p *Policy) newBan(key netip.Prefix, ev Event, now time.Time, ttl time.Duration) Ban {
	hist := p.prunedHistory(key, now)
	manual := ttl > 0
	if !manual {
		ttl = p.opts.BannedTimeout
		if n := len(hist); n > 0 && now.Sub(hist[n-1].Expires) < RepeatWindow {
			prev := hist[n-1].Expires.Sub(hist[n-1].Created)
			ttl = time.Duration(float64(prev) * p.opts.RecidiveFactor)
			if prev < p.opts.BannedTimeout {
				ttl = time.Duration(float64(p.opts.BannedTimeout) * p.opts.RecidiveFactor)
			}
		}
		if ttl > p.opts.MaxBannedTimeout {
			ttl = p.opts.MaxBannedTimeout
		}
	}
	b := Ban{
		Prefix:    key,
		Created:   now,
		Expires:   now.Add(ttl),
		Reason:    ev.Reason(),
		Service:   ev.Service,
		AccountID: ev.AccountID,
		Offences:  len(hist) + 1,
		Manual:    manual,
	}
	p.history[key] = append(hist, BanRecord{Created: b.Created, Expires: b.Expires})
	p.bans[key] = &b
	return b
}

func (p *Policy) prunedHistory(key netip.Prefix, now time.Time) []BanRecord {
	hist := p.history[key]
	i := 0
	for i < len(hist) && now.Sub(hist[i].Expires) > HistoryKeep {
		i++
	}
	if i == len(hist) {
		delete(p.history, key)
		return nil
	}
	return hist[i:]
}

func (p *Policy) addPending(key netip.Prefix, ev Event, now time.Time) {
	m := p.pending[key]
	if m == nil {
		if len(p.pending) >= maxTracked {
			return
		}
		m = make(map[string]pendingChallenge)
		p.pending[key] = m
	}
	if _, ok := m[ev.SessionID]; ok || len(m) >= maxPendingPerSource {
		return
	}
	m[ev.SessionID] = pendingChallenge{deadline: now.Add(p.opts.ChallengeTimeout), ev: ev}
}

// clearPending forgets one open challenge of key, or all of them when session is "".
func (p *Policy) clearPending(key netip.Prefix, session string) {
	m := p.pending[key]
	if m == nil {
		return
	}
	if session == "" {
		delete(p.pending, key)
		return
	}
	delete(m, session)
	if len(m) == 0 {
		delete(p.pending, key)
	}
}

// Tick expires bans and, in challenge mode, counts unanswered challenges; call it every second or so.
func (p *Policy) Tick(now time.Time) []Change {
	var changes []Change
	for key, b := range p.bans {
		if !now.Before(b.Expires) {
			changes = append(changes, Change{Op: OpExpire, Ban: *b})
			delete(p.bans, key)
		}
	}
	for key, m := range p.pending {
		for session, pc := range m {
			if now.Before(pc.deadline) {
				continue
			}
			delete(m, session)
			ev := pc.ev
			ev.Class = ClassFailure
			ev.Name = "ChallengeSent (unanswered)"
			changes = append(changes, p.fail(key, ev, now).Changes...)
		}
		if len(m) == 0 {
			delete(p.pending, key)
		}
	}
	if now.Sub(p.lastSweep) > time.Minute {
		p.sweep(now, false)
	}
	sortChanges(changes)
	return changes
}

// sweep drops stale counters and trust; hard also drops live counters while over maxTracked.
func (p *Policy) sweep(now time.Time, hard bool) {
	p.lastSweep = now
	cut := now.Add(-p.opts.FindTime)
	for k, f := range p.failures {
		if len(f.times) == 0 || !f.times[len(f.times)-1].After(cut) {
			delete(p.failures, k)
		}
	}
	for k, until := range p.trusted {
		if !now.Before(until) {
			delete(p.trusted, k)
		}
	}
	for k := range p.history {
		p.prunedHistory(k, now)
	}
	if hard {
		for k := range p.failures {
			if len(p.failures) < maxTracked*9/10 {
				break
			}
			delete(p.failures, k)
		}
	}
}

// Ban bans addr (an address or network) by hand for ttl (zero: the automatic length).
func (p *Policy) Ban(pr netip.Prefix, ttl time.Duration, reason string, now time.Time) (Ban, error) {
	pr = normalise(pr)
	if pr.IsSingleIP() {
		pr = p.Key(pr.Addr())
	}
	if pr.Addr().Is4() && !pr.IsSingleIP() {
		return Ban{}, fmt.Errorf("%w: %s: IPv4 bans are single addresses (use the deny list for networks)", ErrInvalidBan, pr)
	}
	if pr.Addr().Is6() && pr.Bits() != 128 && pr.Bits() != p.opts.IPv6Prefix {
		return Ban{}, fmt.Errorf("%w: %s: IPv6 bans are single addresses or /%d networks", ErrInvalidBan, pr, p.opts.IPv6Prefix)
	}
	if why := p.NeverBanned(pr.Addr()); why != "" {
		return Ban{}, fmt.Errorf("%w (%s): %s", ErrNeverBanned, why, FormatPrefix(pr))
	}
	if ttl < 0 {
		return Ban{}, fmt.Errorf("%w: negative ban time %s", ErrInvalidBan, ttl)
	}
	if ttl > 10*365*24*time.Hour {
		return Ban{}, fmt.Errorf("%w: ban time %s is longer than ten years", ErrInvalidBan, ttl)
	}
	delete(p.bans, pr) // a new manual ban replaces the old one
	b := p.newBan(pr, Event{Name: "ManualBan", Service: "agent", AccountID: ""}, now, ttl)
	if reason != "" {
		b.Reason = reason
		p.bans[pr].Reason = reason
	}
	delete(p.failures, pr)
	return b, nil
}

// Unban lifts a ban; ok is false when the address was not banned.
func (p *Policy) Unban(pr netip.Prefix) (Ban, bool) {
	pr = normalise(pr)
	if pr.IsSingleIP() {
		pr = p.Key(pr.Addr())
	}
	b, ok := p.bans[pr]
	if !ok {
		return Ban{}, false
	}
	delete(p.bans, pr)
	delete(p.failures, pr)
	return *b, true
}

// Bans lists the bans still running at now, soonest expiry first.
func (p *Policy) Bans(now time.Time) []Ban {
	out := make([]Ban, 0, len(p.bans))
	for _, b := range p.bans {
		if now.Before(b.Expires) {
			out = append(out, *b)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Expires.Equal(out[j].Expires) {
			return out[i].Expires.Before(out[j].Expires)
		}
		return comparePrefix(out[i].Prefix, out[j].Prefix) < 0
	})
	return out
}

// ActiveBans counts the bans still running at now, without sorting them.
func (p *Policy) ActiveBans(now time.Time) int {
	n := 0
	for _, b := range p.bans {
		if now.Before(b.Expires) {
			n++
		}
	}
	return n
}

// Tracked is the number of sources with failures being counted.
func (p *Policy) Tracked() int { return len(p.failures) }

// SetAccessLists replaces the static allow and deny lists.
func (p *Policy) SetAccessLists(allow, deny []AccessRule) {
	p.allow = append([]AccessRule(nil), allow...)
	p.deny = append([]AccessRule(nil), deny...)
}

// AccessLists returns the static lists.
func (p *Policy) AccessLists() (allow, deny []AccessRule) {
	return append([]AccessRule(nil), p.allow...), append([]AccessRule(nil), p.deny...)
}

// History returns the past bans per key (for the state file).
func (p *Policy) History() map[netip.Prefix][]BanRecord {
	out := make(map[netip.Prefix][]BanRecord, len(p.history))
	for k, v := range p.history {
		out[k] = append([]BanRecord(nil), v...)
	}
	return out
}

// Restore loads saved bans and history (at start); bans already expired at now are dropped and
// returned as expiries, so Odoo hears of them.
func (p *Policy) Restore(bans []Ban, history map[netip.Prefix][]BanRecord, now time.Time) []Change {
	for k, v := range history {
		p.history[normalise(k)] = append([]BanRecord(nil), v...)
	}
	var expired []Change
	for _, b := range bans {
		b.Prefix = normalise(b.Prefix)
		if !now.Before(b.Expires) {
			expired = append(expired, Change{Op: OpExpire, Ban: b})
			continue
		}
		bb := b
		p.bans[b.Prefix] = &bb
	}
	sortChanges(expired)
	return expired
}

func sortChanges(c []Change) {
	sort.SliceStable(c, func(i, j int) bool { return comparePrefix(c[i].Ban.Prefix, c[j].Ban.Prefix) < 0 })
}

// comparePrefix orders IPv4 before IPv6, then by address, then by length, without allocating.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
