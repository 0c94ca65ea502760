package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/delivery"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeBackend is an in-process firewall that records what it is asked to do.
type fakeBackend struct {
	mu         sync.Mutex
	installs   []Ruleset
	bans       map[netip.Prefix]time.Duration
	allow      []netip.Prefix
	deny       []netip.Prefix
	removed    int
	installErr error
	banErr     error
}

func newFakeBackend() *fakeBackend { return &fakeBackend{bans: map[netip.Prefix]time.Duration{}} }

func (f *fakeBackend) Name() string    { return "fake" }
func (f *fakeBackend) Available() bool { return true }
func (f *fakeBackend) Install(_ context.Context, rs Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.installErr != nil {
		return f.installErr
	}
	f.installs = append(f.installs, rs)
	f.bans = map[netip.Prefix]time.Duration{}
	for _, b := range rs.Bans {
		f.bans[b.Prefix] = b.TTL
	}
	f.allow, f.deny = rs.Allow, rs.Deny
	return nil
}
func (f *fakeBackend) Ban(_ context.Context, p netip.Prefix, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.banErr != nil {
		return f.banErr
	}
	f.bans[p] = ttl
	return nil
}
func (f *fakeBackend) Unban(_ context.Context, p netip.Prefix) error {
	f.mu.Lock()
	delete(f.bans, p)
	f.mu.Unlock()
	return nil
}
func (f *fakeBackend) SetAccessLists(_ context.Context, allow, deny []netip.Prefix) error {
	f.mu.Lock()
	f.allow, f.deny = allow, deny
	f.mu.Unlock()
	return nil
}
func (f *fakeBackend) List(context.Context) ([]BanEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []BanEntry
	for p, ttl := range f.bans {
		out = append(out, BanEntry{Prefix: p, TTL: ttl})
	}
	return out, nil
}
func (f *fakeBackend) Remove(context.Context) error {
	f.mu.Lock()
	f.removed++
	f.mu.Unlock()
	return nil
}
func (f *fakeBackend) banned(p string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ttl, ok := f.bans[netip.MustParsePrefix(p)]
	return ttl, ok
}

type fakeEnqueuer struct {
	mu    sync.Mutex
	items []delivery.Item
}

func (q *fakeEnqueuer) Enqueue(_ context.Context, items ...delivery.Item) error {
	q.mu.Lock()
	q.items = append(q.items, items...)
	q.mu.Unlock()
	return nil
}

// updates decodes every queued agent_ban_update entry.
func (q *fakeEnqueuer) updates(t *testing.T) []BanUpdate {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []BanUpdate
	for _, it := range q.items {
		if it.Lane != "security" || it.Model != "asterisk_plus.access_ban" || it.Method != "agent_ban_update" {
			t.Fatalf("item %+v", it)
		}
		var args [][]BanUpdate
		if err := json.Unmarshal(it.Args, &args); err != nil || len(args) != 1 {
			t.Fatalf("args %s: %v", it.Args, err)
		}
		out = append(out, args[0]...)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type harness struct {
	e     *Engine
	fw    *fakeBackend
	q     *fakeEnqueuer
	clk   *clock
	state string
}

func newHarness(t *testing.T, opts map[string]string, state string) *harness {
	t.Helper()
	o, errs := ParseOptions(opts)
	h := &harness{fw: newFakeBackend(), q: &fakeEnqueuer{}, clk: &clock{t: t0}, state: state}
	if h.state == "" {
		h.state = filepath.Join(t.TempDir(), StateFile)
	}
	e, err := New(Config{Options: o, OptionErrors: errs, Backend: h.fw, StatePath: h.state,
		Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.250/32")}, Enqueuer: h.q, Now: h.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	return h
}

var on = map[string]string{"security_enabled": "yes"}

func sipFailure(addr string) *ami.Message {
	fam := "IPV4"
	if netip.MustParseAddr(addr).Is6() {
		fam = "IPV6"
	}
	return ami.NewMessage("Event", "ChallengeResponseFailed", "Privilege", "security,all", "Severity", "Error",
		"Service", "PJSIP", "EventVersion", "1", "AccountID", "101", "SessionID", "1-1@x",
		"LocalAddress", fam+"/UDP/192.0.2.250/5060", "RemoteAddress", fam+"/UDP/"+addr+"/5071")
}

func TestEngineBansAndTellsOdoo(t *testing.T) {
	h := newHarness(t, on, "")
	for _, addr := range []string{"203.0.113.20", "2001:db8::20"} {
		for i := 0; i < 5; i++ {
			h.e.HandleEvent(sipFailure(addr))
		}
		pr := netip.PrefixFrom(netip.MustParseAddr(addr), netip.MustParseAddr(addr).BitLen()).String()
		eventually(t, "ban of "+addr, func() bool { _, ok := h.fw.banned(pr); return ok })
		if ttl, _ := h.fw.banned(pr); ttl != time.Hour {
			t.Errorf("%s banned for %s", addr, ttl)
		}
	}
	bans, err := h.e.ListBans()
	if err != nil || len(bans) != 2 {
		t.Fatalf("list: %+v %v", bans, err)
	}
	if bans[0].ExpiresIn != 3600 || bans[0].Reason != "PJSIP ChallengeResponseFailed 101" || bans[0].Offences != 1 {
		t.Errorf("list entry %+v", bans[0])
	}
	eventually(t, "odoo updates", func() bool { h.q.mu.Lock(); defer h.q.mu.Unlock(); return len(h.q.items) == 2 })
	u := h.q.updates(t)
	if u[0].Address != "203.0.113.20" || u[0].Action != "ban" || u[0].Service != "PJSIP" || u[0].AccountID != "101" ||
		u[0].ExpiresAt != "2026-11-25 13:00:00" {
		t.Errorf("update %+v", u[0])
	}
	// Expiry: the ticker notices, Odoo hears of it, the list empties.
	h.clk.Add(time.Hour)
	eventually(t, "expiry updates", func() bool { h.q.mu.Lock(); defer h.q.mu.Unlock(); return len(h.q.items) >= 3 })
	u = h.q.updates(t)
	if last := u[len(u)-1]; last.Action != "expire" {
		t.Errorf("expiry update %+v", last)
	}
	if bans, _ := h.e.ListBans(); len(bans) != 0 {
		t.Errorf("expired bans listed: %+v", bans)
	}
}

func TestEngineIgnoresNonSecurityAndBadAddresses(t *testing.T) {
	h := newHarness(t, on, "")
	for i := 0; i < 10; i++ {
		h.e.HandleEvent(ami.NewMessage("Event", "Newchannel", "Channel", "PJSIP/101-1"))
		h.e.HandleEvent(ami.NewMessage("Event", "InvalidPassword", "RemoteAddress", "IPV4/UDP/garbage/5060"))
		h.e.HandleEvent(nil)
	}
	eventually(t, "events counted", func() bool { return h.e.Status().Counters.Unparseable == 10 })
	if s := h.e.Status(); s.Counters.Events != 10 || s.Bans != 0 {
		t.Errorf("status %+v", s)
	}
}

func TestEngineAgentAuthFailed(t *testing.T) {
	h := newHarness(t, on, "")
	for i := 0; i < 5; i++ {
		h.e.HandleEvent(AgentAuthFailedMessage(netip.MustParseAddrPort("[2001:db8::99]:50000"), "API"))
	}
	eventually(t, "API ban", func() bool { _, ok := h.fw.banned("2001:db8::99/128"); return ok })
	bans, _ := h.e.ListBans()
	if len(bans) != 1 || bans[0].Reason != "API AgentAuthFailed" {
		t.Fatalf("%+v", bans)
	}
	m := AgentAuthFailedMessage(netip.MustParseAddrPort("[::ffff:192.0.2.9]:1234"), "API")
	if got := m.Get("RemoteAddress"); got != "IPV4/TCP/192.0.2.9/1234" {
		t.Errorf("RemoteAddress %q", got)
	}
}

func TestEngineRestartRestoresBans(t *testing.T) {
	state := filepath.Join(t.TempDir(), StateFile)
	h := newHarness(t, on, state)
	if _, err := h.e.Ban(context.Background(), netip.MustParsePrefix("198.51.100.44/32"), 2*time.Hour, "manual: x"); err != nil {
		t.Fatal(err)
	}
	if err := h.e.SetAccessLists(context.Background(),
		[]AccessRule{{Prefix: netip.MustParsePrefix("198.51.100.0/28"), Comment: "office"}},
		[]AccessRule{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(state)
	if err != nil || len(st.Bans) != 1 || st.Bans[0].Address != "198.51.100.44" || len(st.Allow) != 1 || st.Allow[0].Comment != "office" {
		t.Fatalf("saved state %+v %v", st, err)
	}
	// Half an hour later a new agent starts: the ban comes back with 90 minutes left.
	h2 := &harness{fw: newFakeBackend(), q: &fakeEnqueuer{}, clk: &clock{t: t0.Add(30 * time.Minute)}}
	o, _ := ParseOptions(on)
	e2, err := New(Config{Options: o, Backend: h2.fw, StatePath: state, Enqueuer: h2.q, Now: h2.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e2.Stop(context.Background())
	if len(h2.fw.installs) != 1 {
		t.Fatalf("installs %d", len(h2.fw.installs))
	}
	rs := h2.fw.installs[0]
	if len(rs.Bans) != 1 || rs.Bans[0].TTL != 90*time.Minute || len(rs.Allow) != 1 || len(rs.Deny) != 1 {
		t.Fatalf("restored ruleset %+v", rs)
	}
}

func TestEngineExpiredWhileDownIsReported(t *testing.T) {
	state := filepath.Join(t.TempDir(), StateFile)
	s := &State{Version: 1, Bans: []StateBan{{Address: "203.0.113.77", Created: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Hour), Reason: "x"}}}
	if err := SaveState(state, s); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, on, state)
	u := h.q.updates(t)
	if len(u) != 1 || u[0].Action != "expire" || u[0].Address != "203.0.113.77" {
		t.Fatalf("%+v", u)
	}
	if len(h.fw.installs[0].Bans) != 0 {
		t.Error("expired ban installed")
	}
}

func TestEngineCorruptStateIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, StateFile)
	if err := writeFile(state, "{not json"); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, on, state)
	if !h.e.Status().Enabled {
		t.Fatal("not enabled")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, StateFile+".bad-*"))
	if len(matches) != 1 {
		t.Fatalf("corrupt file not kept aside: %v", matches)
	}
}

func TestEngineInstallFailureFallsBackToDryRun(t *testing.T) {
	fw := newFakeBackend()
	fw.installErr = errors.New("netlink: operation not permitted")
	o, _ := ParseOptions(on)
	e, err := New(Config{Options: o, Backend: fw, StatePath: filepath.Join(t.TempDir(), StateFile)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	for i := 0; i < 5; i++ {
		e.HandleEvent(sipFailure("203.0.113.5"))
	}
	eventually(t, "dry-run ban", func() bool { return e.Status().Bans == 1 })
	s := e.Status()
	if s.Available || s.Backend != "dry-run" || s.LastError == "" {
		t.Errorf("status %+v", s)
	}
	if hl := e.Health(); hl.OK || hl.State != "dry-run" {
		t.Errorf("health %+v", hl)
	}
}

func TestEngineOffAndMisconfigured(t *testing.T) {
	// Off on purpose: the table is removed.
	h := newHarness(t, map[string]string{"security_enabled": "no"}, "")
	if h.fw.removed != 1 || len(h.fw.installs) != 0 {
		t.Errorf("disabled: removed %d installs %d", h.fw.removed, len(h.fw.installs))
	}
	if hl := h.e.Health(); !hl.OK || hl.State != "disabled" {
		t.Errorf("health %+v", hl)
	}
	h.e.HandleEvent(sipFailure("203.0.113.5"))
	// Bad option: security stays off, the table is left alone, the error shows.
	h = newHarness(t, map[string]string{"security_enabled": "yes", "security_maxretry": "lots"}, "")
	if h.fw.removed != 0 || len(h.fw.installs) != 0 {
		t.Errorf("misconfigured: removed %d installs %d", h.fw.removed, len(h.fw.installs))
	}
	hl := h.e.Health()
	if hl.OK || hl.State != "misconfigured" {
		t.Errorf("health %+v", hl)
	}
	if errs := h.e.Status().Errors; len(errs) != 1 {
		t.Errorf("errors %v", errs)
	}
}

func TestEngineRemoveOnExit(t *testing.T) {
	h := newHarness(t, map[string]string{"security_enabled": "yes", "security_remove_on_exit": "yes"}, "")
	if err := h.e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.fw.removed != 1 {
		t.Errorf("removed %d", h.fw.removed)
	}
}

func TestEngineReconfigure(t *testing.T) {
	h := newHarness(t, nil, "") // starts off
	if h.e.Enabled() || len(h.fw.installs) != 0 {
		t.Fatal("started on")
	}
	parse := func(m map[string]string) (Options, []error) { return ParseOptions(m) }
	// Off → on: the table is installed and events count.
	o, errs := parse(map[string]string{"security_enabled": "yes", "security_maxretry": "2"})
	if err := h.e.Reconfigure(context.Background(), o, errs); err != nil {
		t.Fatal(err)
	}
	h.e.HandleEvent(sipFailure("203.0.113.80"))
	h.e.HandleEvent(sipFailure("203.0.113.80"))
	eventually(t, "ban at maxretry 2", func() bool { _, ok := h.fw.banned("203.0.113.80/32"); return ok })
	// On → on with other ports: reinstalled, the ban carried over.
	o, errs = parse(map[string]string{"security_enabled": "yes", "security_ports_udp": "5080"})
	if err := h.e.Reconfigure(context.Background(), o, errs); err != nil {
		t.Fatal(err)
	}
	h.fw.mu.Lock()
	last := h.fw.installs[len(h.fw.installs)-1]
	h.fw.mu.Unlock()
	if len(last.PortsUDP) != 1 || last.PortsUDP[0] != 5080 || len(last.Bans) != 1 {
		t.Fatalf("reinstalled %+v", last)
	}
	// A bad value: off, table left alone, jobs say why.
	o, errs = parse(map[string]string{"security_enabled": "yes", "security_findtime": "forever"})
	if err := h.e.Reconfigure(context.Background(), o, errs); err != nil {
		t.Fatal(err)
	}
	if h.e.Enabled() || h.fw.removed != 1 { // the one removal is from the harness's first, disabled start
		t.Fatalf("bad option: enabled %v removed %d", h.e.Enabled(), h.fw.removed)
	}
	if _, err := call(t, h.e, "security.list_bans", nil, nil); codeOf(err) != "disabled" || !strings.Contains(err.Error(), "security_findtime") {
		t.Errorf("job while misconfigured: %v", err)
	}
	// Off on purpose: the table goes; the saved state keeps the ban for a later start.
	o, errs = parse(map[string]string{"security_enabled": "no"})
	if err := h.e.Reconfigure(context.Background(), o, errs); err != nil {
		t.Fatal(err)
	}
	if h.fw.removed != 2 {
		t.Errorf("switched off: removed %d", h.fw.removed)
	}
	st, err := LoadState(h.state)
	if err != nil || len(st.Bans) != 1 {
		t.Errorf("state after switching off: %+v %v", st, err)
	}
}

func TestEngineReinstallsAFlushedTable(t *testing.T) {
	h := newHarness(t, on, "")
	if _, err := h.e.Ban(context.Background(), netip.MustParsePrefix("198.51.100.1/32"), time.Hour, "x"); err != nil {
		t.Fatal(err)
	}
	h.fw.mu.Lock()
	h.fw.banErr = fmt.Errorf("nft: ban: %w", ErrNoTable)
	h.fw.mu.Unlock()
	for i := 0; i < 5; i++ {
		h.e.HandleEvent(sipFailure("203.0.113.21"))
	}
	eventually(t, "reinstall", func() bool {
		h.fw.mu.Lock()
		defer h.fw.mu.Unlock()
		return len(h.fw.installs) == 2
	})
	h.fw.mu.Lock()
	rs := h.fw.installs[1]
	h.fw.mu.Unlock()
	if len(rs.Bans) != 2 {
		t.Fatalf("reinstalled with %+v", rs.Bans)
	}
}
