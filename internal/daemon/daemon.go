// Package daemon wires the agent's parts together in one place: every part is an agent.agent.Component,
// built from the config, started in order and stopped in reverse (in the manner of CoreDNS).
package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/api"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/control"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/eventmap"
	"github.com/odoopbx/odoopbx/internal/forwarder"
	"github.com/odoopbx/odoopbx/internal/jobs"
	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/security"
	"github.com/odoopbx/odoopbx/internal/security/nft"
	"github.com/odoopbx/odoopbx/internal/spool"
	"github.com/odoopbx/odoopbx/internal/version"
)

// Options build an Agent.
type Options struct {
	Config config.Config
	// Reread re-reads the local config (for SIGHUP and agent.reload_config); nil keeps Config.
	Reread func() (config.Config, error)
	Logger *slog.Logger
	// Odoo replaces the JSON-RPC client (the demo's local sink); nil builds one from the config.
	Odoo odoo.Client
	// Registry receives every part's metrics; nil makes a new one.
	Registry *prometheus.Registry
	// NoFirewall forces the dry-run security backend (demo, tests without root).
	NoFirewall bool
}

// Agent is the running daemon: every part, wired in one place, started in order and stopped in
// reverse.
type Agent struct {
	opts    Options
	log     *slog.Logger
	reg     *prometheus.Registry
	started time.Time

	mu  sync.Mutex
	cfg config.Config
	// secOptions are the security options last applied, to reconfigure only on a change.
	secOptions string

	AMI      *ami.Client
	Odoo     odoo.Client
	Spool    *spool.Spool
	Delivery *delivery.Engine
	Map      *eventmap.Map
	Forward  *forwarder.Forwarder
	Security *security.Engine
	API      *api.Server // nil when no api.token is set (fail closed)
	Jobs     *jobs.Registry
	Control  *control.Server

	parts     []agent.Component
	extra     []agent.Component
	fwdEvents chan *ami.Message
}

// New builds every part from the config; nothing runs until Run.
func New(opts Options) (*Agent, error) {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	a := &Agent{opts: opts, log: log, reg: reg, cfg: cfg, fwdEvents: make(chan *ami.Message, 1024)}

	a.Control = control.NewServer(control.SocketPath(cfg.StateDir), log)

	a.Odoo = opts.Odoo
	if a.Odoo == nil {
		client, err := odoo.NewJSONRPC(odoo.Options{
			URL:                cfg.Odoo.URL,
			DB:                 cfg.Odoo.DB,
			User:               cfg.Odoo.User,
			Password:           cfg.Odoo.Password.Reveal(),
			CAFile:             cfg.Odoo.CAFile,
			InsecureSkipVerify: cfg.Odoo.InsecureSkipVerify,
			ConnectTimeout:     cfg.Odoo.ConnectTimeout.D(),
			Timeout:            cfg.Odoo.Timeout.D(),
			Logger:             log,
			// Every (re)login after an outage reloads the map (contract §3.2).
			OnLogin: func() {
				if a.Map != nil {
					a.Map.Kick()
				}
			},
		})
		if err != nil {
			return nil, err
		}
		a.Odoo = client
	}

	sp, err := spool.Open(cfg.Spool.Dir, spool.Options{
		MaxBytes: cfg.Spool.MaxBytes,
		MaxAge:   cfg.Spool.MaxAge.D(),
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	a.Spool = sp
	a.Delivery = delivery.New(delivery.Config{
		Spool:       sp,
		Odoo:        a.Odoo,
		MaxParallel: cfg.Delivery.MaxParallel,
		Logger:      log,
		Registerer:  reg,
	})

	a.Map, err = eventmap.New(eventmap.Config{
		Odoo:       a.Odoo,
		StatePath:  eventmap.StateFile(cfg.StateDir),
		Logger:     log,
		Registerer: reg,
		OnChange:   a.mapChanged,
	})
	if err != nil {
		sp.Close()
		return nil, err
	}
	if err := a.Map.LoadSaved(); err != nil {
		log.Info("agent: no saved events map yet; it loads from Odoo", "err", err)
	}

	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	exempt, exemptErrs := security.ExemptAddresses(rctx, net.DefaultResolver, cfg.AMI.Host, cfg.Odoo.URL)
	rcancel()
	for _, err := range exemptErrs {
		log.Warn("security: an address that must never be banned could not be resolved", "err", err)
	}
	merged := a.mergedOptions()
	a.secOptions = securityKey(merged)
	secOpts, secErrs := security.ParseOptions(merged)
	backend, why := a.firewall(secOpts)
	a.Security, err = security.New(security.Config{
		Options:      secOpts,
		OptionErrors: secErrs,
		Backend:      backend,
		StatePath:    filepath.Join(cfg.StateDir, "security.json"),
		Exempt:       exempt,
		Enqueuer:     a.Delivery,
		Logger:       log,
	})
	if err != nil {
		sp.Close()
		return nil, err
	}
	if why != "" {
		log.Info("security: firewall in dry-run mode", "reason", why)
	}

	amiTLS, err := AMITLS(cfg)
	if err != nil {
		sp.Close()
		return nil, err
	}
	a.AMI = ami.NewClient(ami.ClientConfig{
		Address:       cfg.AMI.Address(),
		Username:      cfg.AMI.User,
		Secret:        cfg.AMI.Secret.Reveal(),
		Auth:          cfg.AMI.Auth,
		TLS:           amiTLS,
		Events:        a.eventsMask(),
		SingleSession: cfg.AMI.SingleSession,
		PingInterval:  cfg.AMI.PingInterval.D(),
		PingTimeout:   cfg.AMI.PingTimeout.D(),
		OnEventsConnected: func(ctx context.Context, gap time.Duration) {
			if a.Forward != nil {
				a.Forward.OnEventsConnected(ctx, gap)
			}
		},
		Logger: log,
	})
	registerAMIMetrics(reg, a.AMI)

	a.Forward, err = forwarder.New(forwarder.Config{
		Map:        a.Map,
		Enqueuer:   a.Delivery,
		SystemName: cfg.SystemName,
		Events:     a.fwdEvents,
		AMI:        a.AMI,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		sp.Close()
		return nil, err
	}

	a.Jobs, err = jobs.Builtins(jobs.Deps{
		AMI:         a.AMI,
		Reload:      func(ctx context.Context) (any, error) { return a.Reload(ctx) },
		Status:      func(ctx context.Context) (any, error) { return a.Status(), nil },
		OnOriginate: a.Forward.NoteOriginate,
		Config:      a.Config,
		Logger:      log,
	})
	if err != nil {
		sp.Close()
		return nil, err
	}
	for name, f := range a.Security.JobFuncs() {
		if err := a.Jobs.Register(name, f); err != nil {
			sp.Close()
			return nil, err
		}
	}

	if cfg.API.Token == "" && cfg.API.TokenNext == "" {
		log.Warn("api: no api.token set, so the job API stays off (fail closed); `odoopbx-agent init` sets it")
	} else {
		certFile, keyFile := TLSFiles(cfg)
		a.API, err = api.New(api.Config{
			Listen:       cfg.API.Listen,
			TLS:          cfg.API.TLS,
			CertFile:     certFile,
			KeyFile:      keyFile,
			Tokens:       []config.Secret{cfg.API.Token, cfg.API.TokenNext},
			AllowFrom:    cfg.API.AllowFrom,
			MaxBodyBytes: cfg.API.MaxBodyBytes,
			Workers:      cfg.Jobs.Workers,
			Queue:        cfg.Jobs.Queue,
			Functions:    a.Jobs,
			Enqueuer:     a.Delivery,
			NotifyMethod: a.notifyMethod(),
			OnAuthFailure: func(from netip.AddrPort) {
				a.Security.HandleEvent(security.AgentAuthFailedMessage(from, "API"))
			},
			Logger:     log,
			Registerer: reg,
		})
		if err != nil {
			sp.Close()
			return nil, err
		}
	}

	a.Delivery.ControlRoutes(a.Control)
	a.Security.Mount(a.Control)
	a.Control.Handle("GET /status", statusHandler(a))

	a.parts = []agent.Component{a.Control, a.Delivery, a.Map, a.Security, a.Forward, &amiPart{client: a.AMI, tee: a.tee}}
	if a.API != nil {
		a.parts = append(a.parts, a.API)
	}
	return a, nil
}

// Add registers another part (the admin listener, the demo's simulator) to start after the others.
func (a *Agent) Add(c agent.Component) { a.extra = append(a.extra, c) }

// Config is the current local configuration.
func (a *Agent) Config() config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Run starts every part, waits until ctx is done, then stops them in reverse order.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	parts := append(append([]agent.Component(nil), a.parts...), a.extra...)
	var running []agent.Component
	stopAll := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for i := len(running) - 1; i >= 0; i-- {
			if err := running[i].Stop(sctx); err != nil {
				a.log.Warn("agent: stop", "part", running[i].Name(), "err", err)
			}
		}
		if err := a.Spool.Close(); err != nil {
			a.log.Warn("agent: spool close", "err", err)
		}
	}
	for _, p := range parts {
		if err := p.Start(ctx); err != nil {
			stopAll()
			if strings.HasPrefix(err.Error(), p.Name()+":") {
				return err // the part already says who it is
			}
			return fmt.Errorf("%s: %w", p.Name(), err)
		}
		running = append(running, p)
	}
	a.log.Info("agent: running", "version", version.Version, "system_name", a.cfg.SystemName, "parts", names(running))
	<-ctx.Done()
	a.log.Info("agent: stopping")
	stopAll()
	return nil
}

func names(parts []agent.Component) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p.Name()
	}
	return out
}

// Health is every part's health, for /healthz and check.
func (a *Agent) Health() map[string]agent.Health {
	out := map[string]agent.Health{}
	for _, p := range append(append([]agent.Component(nil), a.parts...), a.extra...) {
		h := p.Health()
		// A firewall left out on purpose (demo, tests) is not a fault: bans are still counted,
		// logged and listed. Without NoFirewall, a dry run means nftables is missing: degraded.
		if p == agent.Component(a.Security) && a.opts.NoFirewall {
			h.OK = true
		}
		out[p.Name()] = h
	}
	return out
}

// tee hands each AMI event to security (non-blocking) and to the forwarder. When the forwarder
// falls behind, the tee waits, the AMI client's bounded queue absorbs it, and beyond that the AMI
// client drops and counts: the socket reader itself never waits.
func (a *Agent) tee(ctx context.Context, events <-chan *ami.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-events:
			a.Security.HandleEvent(m)
			select {
			case a.fwdEvents <- m:
			case <-ctx.Done():
				return
			}
		}
	}
}

// Reload re-reads the local config file, then the events map, options and access lists
// (agent.reload_config, ReloadEvents, SIGHUP).
func (a *Agent) Reload(ctx context.Context) (eventmap.ReloadResult, error) {
	var errs []string
	if a.opts.Reread != nil {
		cfg, err := a.opts.Reread()
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			a.mu.Lock()
			a.cfg = cfg
			a.mu.Unlock()
		}
	}
	res, err := a.Map.Reload(ctx)
	a.applySecurity(ctx) // the local file may have changed even when the map did not
	res.Errors = append(errs, res.Errors...)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res, err
	}
	return res, nil
}

// mapChanged follows a new map: resubscribe the events session and pass on the access lists.
func (a *Agent) mapChanged(s *eventmap.Snapshot) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if a.AMI != nil {
		if err := a.AMI.SetEventMask(ctx, a.eventsMask()); err != nil {
			a.log.Warn("agent: could not resubscribe the events session", "err", err)
		}
	}
	a.applySecurity(ctx)
}

// applySecurity brings security up to date with the merged options and Odoo's access lists.
func (a *Agent) applySecurity(ctx context.Context) {
	if a.Security == nil {
		return
	}
	a.reconfigureSecurity(ctx)
	if err := a.applyAccessLists(ctx); err != nil {
		a.log.Warn("security: access lists from Odoo refused", "err", err)
	}
}

// securityKey identifies a set of security options, to reconfigure the engine only on a change
// (a reconfiguration restarts the failure counters).
func securityKey(merged map[string]string) string {
	var keys []string
	for k, v := range merged {
		if strings.HasPrefix(k, "security_") {
			keys = append(keys, k+"="+v)
		}
	}
	sort.Strings(keys)
	return strings.Join(keys, "\n")
}

// reconfigureSecurity applies the merged security options (Odoo's agent_options under the local
// ones) when they changed.
func (a *Agent) reconfigureSecurity(ctx context.Context) {
	merged := a.mergedOptions()
	key := securityKey(merged)
	a.mu.Lock()
	same := key == a.secOptions
	a.secOptions = key
	a.mu.Unlock()
	if same {
		return
	}
	opts, errs := security.ParseOptions(merged)
	if err := a.Security.Reconfigure(ctx, opts, errs); err != nil {
		a.log.Warn("security: new options not applied", "err", err)
	}
}

func (a *Agent) applyAccessLists(ctx context.Context) error {
	if !a.Security.Enabled() {
		return nil // kept by Odoo; applied when security is switched on (the next map load)
	}
	raw := a.Map.AccessLists()
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var rules []json.RawMessage
	if err := json.Unmarshal(raw, &rules); err != nil {
		return err
	}
	allow, deny, err := security.ParseAccessRules(rules)
	if err != nil {
		return err
	}
	return a.Security.SetAccessLists(ctx, allow, deny)
}

// eventsMask is ami.events when set, else what the map needs (plus security's class when on).
func (a *Agent) eventsMask() string {
	cfg := a.Config()
	if cfg.AMI.Events != "" {
		return cfg.AMI.Events
	}
	on := a.Security != nil && a.Security.Enabled()
	if a.Security == nil {
		opts, errs := security.ParseOptions(a.mergedOptions())
		on = len(errs) == 0 && opts.Enabled
	}
	return a.Map.EventsMask(on)
}

// mergedOptions are Odoo's agent_options overlaid by the local ones (a local value wins).
func (a *Agent) mergedOptions() map[string]string {
	out := map[string]string{}
	if a.Map != nil {
		for k, v := range a.Map.OptionStrings() {
			out[k] = v
		}
	}
	for k, v := range a.Config().Options {
		out[k] = v
	}
	return out
}

func (a *Agent) notifyMethod() string {
	if m := a.Map.NotifyMethod(); m != "" {
		return m
	}
	return a.Config().Odoo.NotifyMethod
}

// firewall picks the nftables backend whenever netlink works, so Odoo can switch security on later
// without a restart (the engine installs nothing while it is off); else the dry-run one, with why.
func (a *Agent) firewall(opts security.Options) (security.Backend, string) {
	if a.opts.NoFirewall {
		return security.NewDryRunBackend(a.log, "firewall disabled for this run"), "firewall disabled for this run"
	}
	b, err := nft.New(nft.Config{IPv6Prefix: opts.IPv6Prefix, Logger: a.log})
	if err != nil {
		why := "nftables unavailable: " + err.Error()
		return security.NewDryRunBackend(a.log, why), why
	}
	return b, ""
}

// TLSFiles are the job API's certificate and key: tls.cert/tls.key when either exists (init puts
// them in /etc/odoopbx/tls), else a self-signed pair generated in <state_dir>/tls, because the
// service cannot write /etc (contract Appendix A: "generated TLS key when tls.* are unset").
func TLSFiles(cfg config.Config) (cert, key string) {
	if fileExists(cfg.TLS.Cert) || fileExists(cfg.TLS.Key) {
		return cfg.TLS.Cert, cfg.TLS.Key
	}
	dir := filepath.Join(cfg.StateDir, "tls")
	return filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
}

func fileExists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

// AMITLS returns the TLS config for AMI over TLS (ami.tls), or nil for plain TCP.
func AMITLS(cfg config.Config) (*tls.Config, error) {
	if !cfg.AMI.TLS {
		return nil, nil
	}
	if cfg.AMI.Host == "" {
		return nil, errors.New("config: ami.host is required with ami.tls")
	}
	return &tls.Config{ServerName: cfg.AMI.Host, MinVersion: tls.VersionTLS12}, nil
}

// amiPart runs the AMI client as a agent.Component, with the tee that feeds its events onwards.
type amiPart struct {
	client *ami.Client
	tee    func(context.Context, <-chan *ami.Message)
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (p *amiPart) Name() string { return "ami" }

func (p *amiPart) Start(ctx context.Context) error {
	ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.client.Run(ctx) }()
	go func() { defer p.wg.Done(); p.tee(ctx, p.client.Events()) }()
	return nil
}

func (p *amiPart) Stop(ctx context.Context) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ami: stop: %w", ctx.Err())
	}
}

func (p *amiPart) Health() agent.Health {
	st := p.client.Stats()
	return agent.Health{
		OK:    st.State == ami.StateConnected.String(),
		State: st.State,
		Detail: map[string]any{
			"version":         st.Version,
			"events_received": st.EventsReceived,
			"events_dropped":  st.EventsDropped,
			"reconnects":      st.Reconnects,
			"auth_failures":   st.AuthFailures,
			"queue_depth":     st.QueueDepth,
		},
	}
}

func registerAMIMetrics(reg prometheus.Registerer, c *ami.Client) {
	counter := func(name, help string, f func(ami.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "odoopbx", Subsystem: "ami", Name: name, Help: help},
			func() float64 { return float64(f(c.Stats())) }))
	}
	counter("events_received_total", "AMI events read from the events session.", func(s ami.Stats) uint64 { return s.EventsReceived })
	counter("events_dropped_total", "AMI events dropped because the events queue was full.", func(s ami.Stats) uint64 { return s.EventsDropped })
	counter("reconnects_total", "AMI session reconnects.", func(s ami.Stats) uint64 { return s.Reconnects })
	counter("auth_failures_total", "Refused AMI logins.", func(s ami.Stats) uint64 { return s.AuthFailures })
	counter("actions_total", "AMI actions sent.", func(s ami.Stats) uint64 { return s.ActionsSent })
	counter("action_timeouts_total", "AMI actions that timed out.", func(s ami.Stats) uint64 { return s.ActionTimeouts })
	counter("malformed_messages_total", "AMI messages skipped as malformed.", func(s ami.Stats) uint64 { return s.FrameErrors + s.ProtocolErrors })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "odoopbx", Subsystem: "ami", Name: "queue_depth", Help: "AMI events waiting in the events queue."},
		func() float64 { return float64(c.Stats().QueueDepth) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "odoopbx", Subsystem: "ami", Name: "connected", Help: "1 when every AMI session is logged in."},
		func() float64 {
			if c.State() == ami.StateConnected {
				return 1
			}
			return 0
		}))
}

// Status is the agent.status result (contract §4.5).
func (a *Agent) Status() map[string]any {
	st := a.AMI.Stats()
	snap := a.Map.Current()
	m := map[string]any{"hash": a.Map.Hash(), "rows": 0, "disabled": a.Map.Disabled()}
	if snap != nil {
		m["rows"] = len(snap.EventsMap)
		m["source"] = snap.Source
		m["loaded_at"] = snap.LoadedAt
	}
	health := a.Health()
	uptime := time.Duration(0)
	if !a.started.IsZero() {
		uptime = time.Since(a.started).Round(time.Second)
	}
	odooState := "unknown"
	if h, ok := health["delivery"]; ok {
		if s, ok := h.Detail["odoo"].(string); ok {
			odooState = s
		}
	}
	return map[string]any{
		"version":     version.Version,
		"system_name": a.Config().SystemName,
		"uptime":      uptime.Seconds(),
		"ami":         map[string]any{"state": st.State, "version": st.Version, "events_received": st.EventsReceived, "events_dropped": st.EventsDropped},
		"odoo":        map[string]any{"state": odooState, "insecure_skip_verify": a.Config().Odoo.InsecureSkipVerify},
		"spool":       a.Delivery.Status(),
		"map":         m,
		"security":    a.Security.Status(),
		"parts":       health,
	}
}
