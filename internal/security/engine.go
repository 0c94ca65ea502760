package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/delivery"
)

// Odoo's receiver of ban updates (contract §6.4).
const (
	OdooModel  = "asterisk_plus.access_ban"
	OdooMethod = "agent_ban_update"
	Lane       = "security"
)

// eventQueue bounds the events waiting for the engine; when it is full (a flood far beyond what a
// PBX produces) further events are counted and dropped rather than stall the AMI reader.
const eventQueue = 4096

// Config wires an Engine.
type Config struct {
	Options Options
	// OptionErrors are ParseOptions' errors; with any, security stays off and status lists them.
	OptionErrors []error
	Backend      Backend
	// StatePath is <state_dir>/security.json.
	StatePath string
	// Exempt are never banned: the AMI host, the agent's own addresses, the addresses of odoo.url.
	Exempt   []netip.Prefix
	Enqueuer delivery.Enqueuer
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Engine is the security component: it reads security events, keeps the policy, drives the
// firewall backend, saves the state file and tells Odoo about bans.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	enabled atomic.Bool

	events chan *ami.Message
	dirty  chan struct{}

	mu      sync.Mutex // guards the fields below and the calls made on policy and backend
	opts    Options
	optErrs []error
	policy  *Policy
	backend Backend
	lastErr string

	life    sync.Mutex // serialises Start, Stop and Reconfigure
	running atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	stats struct {
		events, failures, successes, info, unparseable, dropped, bans, backendErrors atomic.Int64
	}
}

var _ agent.Component = (*Engine)(nil)

// New builds the engine; Start brings it up.
func New(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backend == nil {
		cfg.Backend = NewDryRunBackend(cfg.Logger, "no firewall backend configured")
	}
	if cfg.StatePath == "" {
		return nil, errors.New("security: StatePath is required")
	}
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		now:     cfg.Now,
		events:  make(chan *ami.Message, eventQueue),
		dirty:   make(chan struct{}, 1),
		opts:    cfg.Options,
		optErrs: cfg.OptionErrors,
		policy:  NewPolicy(cfg.Options, cfg.Exempt),
		backend: cfg.Backend,
	}
	e.enabled.Store(cfg.Options.Enabled && len(cfg.OptionErrors) == 0)
	return e, nil
}

// Name implements agent.Component.
func (e *Engine) Name() string { return "security" }

// Enabled reports whether security is on (enabled and the options valid).
func (e *Engine) Enabled() bool { return e.enabled.Load() }

// SecurityEvents lists the AMI events the engine needs (all of class security).
func (e *Engine) SecurityEvents() []string { return SecurityEventNames() }

func (e *Engine) options() (Options, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.opts, e.optErrs
}

// Start implements agent.Component. With security off it only removes the table when security was
// switched off on purpose (valid options, security_enabled no); with bad options it leaves the
// firewall as it is, so a typo does not lift every ban. With security on it restores the saved
// state and installs the table; a backend that cannot install is replaced by the dry run, and the
// agent keeps running.
func (e *Engine) Start(ctx context.Context) error {
	e.life.Lock()
	defer e.life.Unlock()
	if !e.enabled.Load() {
		e.switchedOff(ctx)
		return nil
	}
	e.bringUp(ctx)
	return nil
}

// switchedOff reports bad options, or removes the table when security is off on purpose.
func (e *Engine) switchedOff(ctx context.Context) {
	_, errs := e.options()
	for _, err := range errs {
		e.log.Error("security: off because of a bad option", "err", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(errs) == 0 && e.backend.Available() {
		if err := e.backend.Remove(ctx); err != nil {
			e.log.Warn("security: could not remove the firewall table", "err", err)
		}
	}
}

// bringUp loads the state file, installs the table and starts the goroutines.
func (e *Engine) bringUp(ctx context.Context) {
	now := e.now()
	st, err := LoadState(e.cfg.StatePath)
	if err != nil {
		aside := e.cfg.StatePath + ".bad-" + now.UTC().Format("20060102T150405")
		if rerr := os.Rename(e.cfg.StatePath, aside); rerr == nil {
			e.log.Error("security: unreadable state file moved aside; starting without saved bans", "err", err, "moved_to", aside)
		} else {
			e.log.Error("security: unreadable state file; starting without saved bans", "err", err)
		}
		st = &State{}
	}
	bans, history, allow, deny, errs := st.Decode()
	for _, err := range errs {
		e.log.Warn("security: skipped a bad entry of the state file", "err", err)
	}
	e.mu.Lock()
	e.policy.SetAccessLists(allow, deny)
	expired := e.policy.Restore(bans, history, now)
	rs := e.installLocked(ctx, now)
	opts := e.opts
	backend := e.backend
	e.mu.Unlock()
	e.log.Info("security: started", "backend", backend.Name(), "available", backend.Available(),
		"bans", len(rs.Bans), "allow", len(rs.Allow), "deny", len(rs.Deny),
		"maxretry", opts.MaxRetry, "findtime", opts.FindTime.String(), "bantime", opts.BannedTimeout.String())

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.running.Store(true)
	e.wg.Add(3)
	go e.consume(runCtx)
	go e.tick(runCtx)
	go e.save(runCtx)
	e.notify(runCtx, expired)
	e.markDirty()
}

// installLocked writes the whole table; a backend that fails is replaced by the dry run.
func (e *Engine) installLocked(ctx context.Context, now time.Time) Ruleset {
	rs := e.rulesetLocked(now)
	if err := e.backend.Install(ctx, rs); err != nil {
		e.lastErr = err.Error()
		e.log.Error("security: cannot install the firewall table; counting and logging only", "err", err)
		e.backend = NewDryRunBackend(e.log, err.Error())
		_ = e.backend.Install(ctx, rs)
	}
	return rs
}

// tearDown stops the goroutines and saves the state.
func (e *Engine) tearDown(ctx context.Context) error {
	if !e.running.Swap(false) {
		return nil
	}
	e.cancel()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("security: stop: %w", ctx.Err())
	}
	return e.saveNow()
}

// Stop implements agent.Component: it drains nothing (events in flight are dropped), saves the
// state and leaves the table in place unless security_remove_on_exit is on.
func (e *Engine) Stop(ctx context.Context) error {
	e.life.Lock()
	defer e.life.Unlock()
	wasRunning := e.running.Load()
	err := e.tearDown(ctx)
	opts, _ := e.options()
	if wasRunning && opts.RemoveOnExit {
		e.mu.Lock()
		if rerr := e.backend.Remove(ctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
		e.mu.Unlock()
	}
	return err
}

// Reconfigure applies options re-read by agent.reload_config. Bans, their history and the access
// lists carry over; failure counters and trust start afresh. Switching security on brings it up,
// switching it off on purpose removes the table, and bad options switch it off leaving the table
// as it is. security_ipv6_prefix is fixed by the firewall's set type and changes only at restart.
func (e *Engine) Reconfigure(ctx context.Context, opts Options, errs []error) error {
	e.life.Lock()
	defer e.life.Unlock()
	on := opts.Enabled && len(errs) == 0
	e.mu.Lock()
	if e.running.Load() && opts.IPv6Prefix != e.opts.IPv6Prefix {
		e.log.Warn("security: security_ipv6_prefix changes take effect at the next start", "now", e.opts.IPv6Prefix, "asked", opts.IPv6Prefix)
		opts.IPv6Prefix = e.opts.IPv6Prefix
	}
	now := e.now()
	x := e.policy.Export(now)
	e.opts, e.optErrs = opts, errs
	e.policy = NewPolicy(opts, e.cfg.Exempt)
	e.policy.SetAccessLists(x.Allow, x.Deny)
	e.policy.Restore(x.Bans, x.History, now)
	e.mu.Unlock()
	switch {
	case on && e.running.Load():
		e.mu.Lock()
		e.installLocked(ctx, now) // ports may have changed
		e.mu.Unlock()
		e.enabled.Store(true)
		e.log.Info("security: options reloaded")
	case on:
		e.enabled.Store(true)
		e.bringUp(ctx)
	default:
		e.enabled.Store(false)
		err := e.tearDown(ctx)
		e.switchedOff(ctx)
		return err
	}
	return nil
}

// HandleEvent takes one AMI message from the events session. It never blocks: non-security
// events return at once, and when the queue is full the event is counted and dropped.
func (e *Engine) HandleEvent(m *ami.Message) {
	if m == nil || !e.running.Load() || !e.enabled.Load() {
		return
	}
	if _, ok := securityEvents[strings.ToLower(m.Get("Event"))]; !ok {
		return
	}
	select {
	case e.events <- m:
	default:
		e.stats.dropped.Add(1)
	}
}

func (e *Engine) consume(ctx context.Context) {
	defer e.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-e.events:
			e.process(ctx, m)
		}
	}
}

func (e *Engine) process(ctx context.Context, m *ami.Message) {
	e.stats.events.Add(1)
	ev, ok, err := Classify(m)
	if !ok {
		return
	}
	if err != nil {
		e.stats.unparseable.Add(1)
		e.log.Warn("security: event ignored, its address cannot be read", "event", ev.Name, "err", err)
		return
	}
	switch ev.Class {
	case ClassInfo:
		e.stats.info.Add(1)
		e.log.Info("security: event", "event", ev.Name, "address", ev.Addr, "service", ev.Service, "account", ev.AccountID)
		return
	case ClassSuccess:
		e.stats.successes.Add(1)
	case ClassFailure:
		e.stats.failures.Add(1)
	}
	e.mu.Lock()
	out := e.policy.Observe(ev, e.now())
	e.applyLocked(ctx, out.Changes)
	e.mu.Unlock()
	if ev.Class == ClassFailure {
		if out.Skipped != "" {
			e.log.Debug("security: failure not counted", "event", ev.Name, "address", ev.Addr, "why", out.Skipped)
		} else {
			e.log.Info("security: failure", "event", ev.Name, "address", ev.Addr, "service", ev.Service,
				"account", ev.AccountID, "count", out.Count, "threshold", out.Threshold)
		}
	}
	if len(out.Changes) > 0 {
		e.notify(ctx, out.Changes)
		e.markDirty()
	}
}

// applyLocked puts changes into the firewall. Expiries need nothing: the kernel timed them out.
func (e *Engine) applyLocked(ctx context.Context, changes []Change) {
	now := e.now()
	for _, c := range changes {
		var err error
		switch c.Op {
		case OpBan:
			e.stats.bans.Add(1)
			err = e.backend.Ban(ctx, c.Ban.Prefix, c.Ban.Remaining(now))
			e.log.Warn("security: banned", "address", c.Ban.Address(), "for", c.Ban.Remaining(now).Round(time.Second).String(),
				"reason", c.Ban.Reason, "offences", c.Ban.Offences)
		case OpUnban:
			err = e.backend.Unban(ctx, c.Ban.Prefix)
			e.log.Info("security: unbanned", "address", c.Ban.Address())
		case OpExpire:
			e.log.Info("security: ban expired", "address", c.Ban.Address())
		}
		if errors.Is(err, ErrNoTable) {
			// Someone flushed the ruleset (a firewall reload, "nft flush ruleset"): put the whole
			// table back, this ban included, rather than leave every ban unenforced.
			e.log.Warn("security: the firewall table disappeared; reinstalling it")
			e.installLocked(ctx, now)
			continue
		}
		if err != nil {
			e.stats.backendErrors.Add(1)
			e.lastErr = err.Error()
			e.log.Error("security: firewall change failed", "op", string(c.Op), "address", c.Ban.Address(), "err", err)
		}
	}
}

func (e *Engine) tick(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.mu.Lock()
			changes := e.policy.Tick(e.now())
			e.applyLocked(ctx, changes)
			e.mu.Unlock()
			if len(changes) > 0 {
				e.notify(ctx, changes)
				e.markDirty()
			}
		}
	}
}

func (e *Engine) markDirty() {
	select {
	case e.dirty <- struct{}{}:
	default:
	}
}

// save writes the state file after changes, off the event path, at most every 200 ms.
func (e *Engine) save(ctx context.Context) {
	defer e.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.dirty:
			start := time.Now()
			if err := e.saveNow(); err != nil {
				e.log.Error("security: cannot save the state file", "err", err)
			}
			// With a very large ban list a save takes a while; spacing saves by ten times their
			// cost keeps the disk from being rewritten continuously during a wide attack.
			pause := max(200*time.Millisecond, 10*time.Since(start))
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}
}

func (e *Engine) saveNow() error {
	e.mu.Lock()
	now := e.now()
	x := e.policy.Export(now)
	e.mu.Unlock()
	return SaveState(e.cfg.StatePath, x.State(now))
}

// BanUpdate is one entry of asterisk_plus.access_ban.agent_ban_update (contract §6.4). Times are
// UTC in Odoo's datetime format; expires_at is when the ban ends (ban) or ended (unban, expire).
type BanUpdate struct {
	Address   string `json:"address"`
	Action    string `json:"action"`
	Reason    string `json:"reason"`
	ExpiresAt string `json:"expires_at"`
	Service   string `json:"service"`
	AccountID string `json:"account_id"`
}

// OdooTime formats t as Odoo stores datetimes.
func OdooTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func (e *Engine) notify(ctx context.Context, changes []Change) {
	if e.cfg.Enqueuer == nil || len(changes) == 0 {
		return
	}
	now := e.now()
	updates := make([]BanUpdate, 0, len(changes))
	for _, c := range changes {
		end := c.Ban.Expires
		if c.Op == OpUnban || (c.Op == OpExpire && end.After(now)) {
			end = now
		}
		updates = append(updates, BanUpdate{Address: c.Ban.Address(), Action: string(c.Op), Reason: c.Ban.Reason,
			ExpiresAt: OdooTime(end), Service: c.Ban.Service, AccountID: c.Ban.AccountID})
	}
	args, err := json.Marshal([]any{updates})
	if err != nil {
		e.log.Error("security: cannot encode ban updates", "err", err)
		return
	}
	item := delivery.Item{Lane: Lane, Model: OdooModel, Method: OdooMethod, Args: args, Created: now, Origin: "security"}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.cfg.Enqueuer.Enqueue(ectx, item); err != nil {
		e.log.Error("security: cannot queue ban updates for Odoo", "err", err, "updates", len(updates))
	}
}

// rulesetLocked is the whole table content at now.
func (e *Engine) rulesetLocked(now time.Time) Ruleset {
	allow, deny := e.policy.AccessLists()
	rs := Ruleset{PortsTCP: e.opts.PortsTCP, PortsUDP: e.opts.PortsUDP}
	for _, r := range allow {
		rs.Allow = append(rs.Allow, r.Prefix)
	}
	for _, r := range deny {
		rs.Deny = append(rs.Deny, r.Prefix)
	}
	for _, b := range e.policy.Bans(now) {
		rs.Bans = append(rs.Bans, BanEntry{Prefix: b.Prefix, TTL: b.Remaining(now)})
	}
	return rs
}

// Health implements agent.Component.
func (e *Engine) Health() agent.Health {
	detail := e.statusDetail()
	_, errs := e.options()
	switch {
	case len(errs) > 0:
		return agent.Health{OK: false, State: "misconfigured", Detail: detail}
	case !e.enabled.Load():
		return agent.Health{OK: true, State: "disabled", Detail: detail}
	case !e.running.Load():
		return agent.Health{OK: false, State: "stopped", Detail: detail}
	}
	e.mu.Lock()
	available := e.backend.Available()
	e.mu.Unlock()
	if !available {
		return agent.Health{OK: false, State: "dry-run", Detail: detail}
	}
	return agent.Health{OK: true, State: "running", Detail: detail}
}

// Status is security.status's result and the security part of agent.status.
type Status struct {
	Enabled   bool     `json:"enabled"`
	Available bool     `json:"available"`
	Backend   string   `json:"backend"`
	Bans      int      `json:"bans"`
	Allow     int      `json:"allow"`
	Deny      int      `json:"deny"`
	Ports     Ports    `json:"ports"`
	Errors    []string `json:"errors,omitempty"`
	LastError string   `json:"last_error,omitempty"`
	Counters  Counters `json:"counters"`
}

// Ports are the guarded ports.
type Ports struct {
	TCP []uint16 `json:"tcp"`
	UDP []uint16 `json:"udp"`
}

// Counters are event and ban counts since start.
type Counters struct {
	Events        int64 `json:"events"`
	Failures      int64 `json:"failures"`
	Successes     int64 `json:"successes"`
	Info          int64 `json:"info"`
	Unparseable   int64 `json:"unparseable"`
	Dropped       int64 `json:"dropped"`
	Bans          int64 `json:"bans"`
	BackendErrors int64 `json:"backend_errors"`
	Tracked       int   `json:"tracked"`
}

// Status returns the engine's state now.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	allow, deny := e.policy.AccessLists()
	s := Status{
		Enabled: e.enabled.Load(), Available: e.enabled.Load() && e.backend.Available(), Backend: e.backend.Name(),
		Bans: e.policy.ActiveBans(e.now()), Allow: len(allow), Deny: len(deny),
		Ports:     Ports{TCP: e.opts.PortsTCP, UDP: e.opts.PortsUDP},
		LastError: e.lastErr,
		Counters: Counters{
			Events: e.stats.events.Load(), Failures: e.stats.failures.Load(), Successes: e.stats.successes.Load(),
			Info: e.stats.info.Load(), Unparseable: e.stats.unparseable.Load(), Dropped: e.stats.dropped.Load(),
			Bans: e.stats.bans.Load(), BackendErrors: e.stats.backendErrors.Load(), Tracked: e.policy.Tracked(),
		},
	}
	for _, err := range e.optErrs {
		s.Errors = append(s.Errors, err.Error())
	}
	return s
}

func (e *Engine) statusDetail() map[string]any {
	s := e.Status()
	b, _ := json.Marshal(s)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// BanView is one ban as list_bans, the control socket and the CLI show it.
type BanView struct {
	Address   string `json:"address"`
	Family    string `json:"family"`
	ExpiresIn int64  `json:"expires_in"`
	ExpiresAt string `json:"expires_at"`
	Reason    string `json:"reason"`
	Offences  int    `json:"offences"`
	Created   string `json:"created"`
	Service   string `json:"service,omitempty"`
	AccountID string `json:"account_id,omitempty"`
	Manual    bool   `json:"manual,omitempty"`
}

// ViewOf renders a ban at now.
func ViewOf(b Ban, now time.Time) BanView {
	return BanView{
		Address: b.Address(), Family: Family(b.Prefix),
		ExpiresIn: int64((b.Remaining(now) + time.Second - 1) / time.Second),
		ExpiresAt: OdooTime(b.Expires), Reason: b.Reason, Offences: b.Offences, Created: OdooTime(b.Created),
		Service: b.Service, AccountID: b.AccountID, Manual: b.Manual,
	}
}

// ErrDisabled is returned by the engine's operations while security is off.
var ErrDisabled = errors.New("security: security is off (set security_enabled: yes)")

// ListBans returns the running bans.
func (e *Engine) ListBans() ([]BanView, error) {
	if !e.enabled.Load() {
		return nil, ErrDisabled
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	bans := e.policy.Bans(now)
	out := make([]BanView, 0, len(bans))
	for _, b := range bans {
		out = append(out, ViewOf(b, now))
	}
	return out, nil
}

// Ban bans an address or network by hand; ttl zero means security_banned_timeout.
func (e *Engine) Ban(ctx context.Context, p netip.Prefix, ttl time.Duration, reason string) (BanView, error) {
	if !e.enabled.Load() {
		return BanView{}, ErrDisabled
	}
	e.mu.Lock()
	if ttl == 0 {
		ttl = e.opts.BannedTimeout
	}
	now := e.now()
	b, err := e.policy.Ban(p, ttl, reason, now)
	if err != nil {
		e.mu.Unlock()
		return BanView{}, err
	}
	if err := e.backend.Ban(ctx, b.Prefix, b.Remaining(now)); err != nil {
		e.policy.Unban(b.Prefix)
		e.mu.Unlock()
		return BanView{}, err
	}
	e.stats.bans.Add(1)
	e.mu.Unlock()
	e.log.Warn("security: banned by hand", "address", b.Address(), "for", ttl.String(), "reason", b.Reason)
	e.notify(ctx, []Change{{Op: OpBan, Ban: b}})
	e.markDirty()
	return ViewOf(b, now), nil
}

// Unban lifts bans; addresses that were not banned are listed in notFound. The firewall entry is
// removed even when the engine did not know the ban (one added by hand with nft, or a stale one).
func (e *Engine) Unban(ctx context.Context, addrs []netip.Prefix) (removed, notFound []string, err error) {
	if !e.enabled.Load() {
		return nil, nil, ErrDisabled
	}
	var changes []Change
	e.mu.Lock()
	for _, p := range addrs {
		b, ok := e.policy.Unban(p)
		key := b.Prefix
		if !ok {
			key = p
			if p.IsSingleIP() {
				key = e.policy.Key(p.Addr())
			}
		}
		if berr := e.backend.Unban(ctx, key); berr != nil {
			err = errors.Join(err, berr)
		}
		if ok {
			removed = append(removed, b.Address())
			changes = append(changes, Change{Op: OpUnban, Ban: b})
		} else {
			notFound = append(notFound, FormatPrefix(p))
		}
	}
	e.mu.Unlock()
	for _, c := range changes {
		e.log.Info("security: unbanned by hand", "address", c.Ban.Address())
	}
	e.notify(ctx, changes)
	if len(changes) > 0 {
		e.markDirty()
	}
	return removed, notFound, err
}

// SetAccessLists replaces the allow and deny lists in the firewall and then in the policy; a
// firewall failure changes neither.
func (e *Engine) SetAccessLists(ctx context.Context, allow, deny []AccessRule) error {
	if !e.enabled.Load() {
		return ErrDisabled
	}
	toPrefixes := func(rules []AccessRule) []netip.Prefix {
		out := make([]netip.Prefix, 0, len(rules))
		for _, r := range rules {
			out = append(out, r.Prefix)
		}
		return out
	}
	e.mu.Lock()
	err := e.backend.SetAccessLists(ctx, toPrefixes(allow), toPrefixes(deny))
	if err == nil {
		e.policy.SetAccessLists(allow, deny)
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	e.log.Info("security: access lists replaced", "allow", len(allow), "deny", len(deny))
	e.markDirty()
	return nil
}
