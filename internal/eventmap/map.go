// Package eventmap holds the events map (contract §3): which Odoo method handles which AMI event
// or FastAGI script, under which Starlark condition. It loads the map from Odoo, keeps the last
// good copy on disk for restarts while Odoo is down, compiles every condition once per load, and
// swaps the map in atomically so readers never see half of one.
package eventmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/odoo"
)

// StateFileName is the saved map's name inside state_dir.
const StateFileName = "events_map.json"

// StateFile is the saved map's path for a state_dir.
func StateFile(stateDir string) string { return filepath.Join(stateDir, StateFileName) }

// DefaultRefreshEvery is the hash-compare refresh period (contract §3.2).
const DefaultRefreshEvery = 300 * time.Second

// conditionErrorLogEvery limits runtime-error logs to one per row per minute.
const conditionErrorLogEvery = time.Minute

// Odoo names used to load the map.
const (
	serverModel     = "asterisk_plus.server"
	getConfigMethod = "agent_get_config"
	eventModel      = "asterisk_plus.event"
)

// Config configures a Map.
type Config struct {
	// Odoo is the client the map is loaded with.
	Odoo odoo.Client
	// StatePath is the saved map's file, normally StateFile(state_dir). Empty: nothing is saved.
	StatePath string
	Logger    *slog.Logger
	// Registerer receives the map's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// RefreshEvery is the periodic reload; 0 means DefaultRefreshEvery, negative disables it.
	RefreshEvery time.Duration
	// OnChange, if set, is called after a new map is swapped in (not when a refresh found the
	// same map), from the goroutine that reloaded, while the reload lock is held: it must not call
	// Reload. The lead uses it to re-login the events session when EventsMask changes, and to
	// pass new options on.
	OnChange func(*Snapshot)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ReloadResult is the agent.reload_config result (contract §4.5).
type ReloadResult struct {
	Events  int      `json:"events"`
	Options int      `json:"options"`
	Errors  []string `json:"errors"`
}

// Map is the live events map. All methods are safe for concurrent use.
type Map struct {
	cfg     Config
	log     *slog.Logger
	snap    atomic.Pointer[Snapshot]
	metrics mapMetrics

	reloadMu sync.Mutex // one reload at a time

	stateMu     sync.Mutex
	lastAttempt time.Time
	lastError   string

	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}
}

var _ agent.Component = (*Map)(nil)

// New returns a Map holding an empty snapshot (source none). Start loads the saved map and begins
// reloading from Odoo.
func New(cfg Config) (*Map, error) {
	if cfg.RefreshEvery == 0 {
		cfg.RefreshEvery = DefaultRefreshEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Map{cfg: cfg, log: log.With("component", "eventmap"), kick: make(chan struct{}, 1)}
	if err := m.metrics.register(cfg.Registerer); err != nil {
		return nil, err
	}
	m.publish(compile(RemoteConfig{}, LoadSourceNone, time.Time{}))
	return m, nil
}

// Name is the component name.
func (m *Map) Name() string { return "eventmap" }

// Current returns the snapshot in use.
func (m *Map) Current() *Snapshot { return m.snap.Load() }

func (m *Map) publish(s *Snapshot) {
	m.snap.Store(s)
	m.metrics.rows.Set(float64(len(s.rows)))
	m.metrics.disabled.Set(float64(len(s.Disabled)))
	if !s.LoadedAt.IsZero() {
		m.metrics.loadedAt.Set(float64(s.LoadedAt.UnixNano()) / 1e9)
	}
}

// Start loads the saved map (so a restart while Odoo is down still forwards), then reloads from
// Odoo in the background: at once, again with backoff until a fresh map has loaded, then every
// RefreshEvery. It returns at once.
func (m *Map) Start(ctx context.Context) error {
	if m.Current().Source != LoadSourceNone {
		// The owner already loaded the saved map (to read its options before building the parts).
	} else if err := m.LoadSaved(); err != nil {
		m.log.Warn("eventmap: the saved map is not usable; waiting for Odoo", "path", m.cfg.StatePath, "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	m.done = make(chan struct{})
	go m.loop(ctx)
	return nil
}

// Stop ends the refresh loop.
func (m *Map) Stop(ctx context.Context) error {
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("eventmap: stop: %w", ctx.Err())
	}
}

// Kick asks the refresh loop for a reload without waiting for it (for hooks that must not block,
// such as the Odoo client's login hook).
func (m *Map) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

const (
	retryFirst = 5 * time.Second
	retryMax   = 5 * time.Minute
)

func (m *Map) loop(ctx context.Context) {
	defer close(m.done)
	retry := retryFirst
	fresh := false
	for {
		_, err := m.Reload(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case err == nil:
			fresh = true
			retry = retryFirst
			wait = m.cfg.RefreshEvery
		case !fresh:
			// No fresh map since start: retry sooner than the refresh period.
			wait = retry
			retry = min(retry*2, retryMax)
		default:
			wait = m.cfg.RefreshEvery
		}
		if m.cfg.RefreshEvery < 0 && fresh {
			wait = 0 // periodic refresh disabled: wait for a kick only
		} else if m.cfg.RefreshEvery > 0 {
			wait = min(wait, m.cfg.RefreshEvery)
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-m.kick:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// Reload loads the map from Odoo, compiles it and swaps it in when it changed. On failure the map
// in use stays. The result lists disabled rows and a failed save in Errors.
func (m *Map) Reload(ctx context.Context) (ReloadResult, error) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	now := m.cfg.Now()
	m.stateMu.Lock()
	m.lastAttempt = now
	m.stateMu.Unlock()

	cfg, fallback, err := m.fetch(ctx)
	if err != nil {
		m.metrics.reloads.WithLabelValues("error").Inc()
		m.stateMu.Lock()
		m.lastError = err.Error()
		m.stateMu.Unlock()
		m.log.Warn("eventmap: reload failed; keeping the map in use", "source", m.Current().Source, "err", err)
		return ReloadResult{Errors: []string{err.Error()}}, err
	}
	m.stateMu.Lock()
	m.lastError = ""
	m.stateMu.Unlock()

	next := compile(cfg, LoadSourceOdoo, now)
	next.Fallback = fallback
	cur := m.Current()
	result := resultOf(next)
	if next.configHash == cur.configHash && cur.Source == LoadSourceOdoo {
		// Same map: keep the compiled rows (and their log limiters), refresh the metadata only.
		same := *cur
		same.LoadedAt = now
		same.Fallback = fallback
		m.publish(&same)
		m.metrics.reloads.WithLabelValues("unchanged").Inc()
		return result, nil
	}
	changed := next.configHash != cur.configHash
	m.publish(next)
	m.metrics.reloads.WithLabelValues("changed").Inc()
	for _, d := range next.Disabled {
		m.log.Error("eventmap: row disabled", "id", d.Row.ID, "event", d.Row.Name, "reason", d.Reason)
	}
	m.log.Info("eventmap: map loaded from Odoo", "rows", len(next.rows), "disabled", len(next.Disabled),
		"hash", next.MapHash, "fallback", fallback)
	if changed || cur.Source != LoadSourceOdoo {
		if err := m.save(next); err != nil {
			m.log.Error("eventmap: saving the map failed", "path", m.cfg.StatePath, "err", err)
			result.Errors = append(result.Errors, err.Error())
		}
	}
	if changed && m.cfg.OnChange != nil {
		m.cfg.OnChange(next)
	}
	return result, nil
}

func resultOf(s *Snapshot) ReloadResult {
	r := ReloadResult{Events: len(s.rows), Options: len(s.Options), Errors: []string{}}
	for _, d := range s.Disabled {
		r.Errors = append(r.Errors, fmt.Sprintf("event row %d (%s): %s", d.Row.ID, d.Row.Name, d.Reason))
	}
	return r
}

// fetch asks Odoo for the config, falling back to search_read on an older addon.
func (m *Map) fetch(ctx context.Context) (RemoteConfig, bool, error) {
	if m.cfg.Odoo == nil {
		return RemoteConfig{}, false, errors.New("eventmap: no Odoo client")
	}
	raw, err := m.cfg.Odoo.ExecuteKw(ctx, serverModel, getConfigMethod, []any{}, nil)
	if err == nil {
		var cfg RemoteConfig
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return RemoteConfig{}, false, fmt.Errorf("eventmap: %s.%s: %w", serverModel, getConfigMethod, err)
		}
		if cfg.APIVersion > 1 {
			m.log.Warn("eventmap: Odoo speaks a newer api_version; reading what this agent knows", "api_version", cfg.APIVersion)
		}
		return cfg, false, nil
	}
	if odoo.KindOf(err) != odoo.KindMissingMethod {
		return RemoteConfig{}, false, fmt.Errorf("eventmap: %s.%s: %w", serverModel, getConfigMethod, err)
	}
	m.log.Info("eventmap: Odoo has no agent_get_config; reading asterisk_plus.event directly")
	domain := []any{
		[]any{"is_enabled", "=", true},
		[]any{"source", "in", []any{SourceAMI, SourceFAGI}},
	}
	fields := []any{"id", "name", "source", "model", "method", "delay", "condition"}
	raw, err = m.cfg.Odoo.ExecuteKw(ctx, eventModel, "search_read", []any{domain, fields}, nil)
	if err != nil {
		return RemoteConfig{}, true, fmt.Errorf("eventmap: %s.search_read: %w", eventModel, err)
	}
	var cfg RemoteConfig
	if err := json.Unmarshal(raw, &cfg.EventsMap); err != nil {
		return RemoteConfig{}, true, fmt.Errorf("eventmap: %s.search_read: %w", eventModel, err)
	}
	cfg.APIVersion = 1
	return cfg, true, nil
}

// Handles reports whether any usable row of source names the event, so callers can skip building
// an event nobody handles.
func (m *Map) Handles(source, name string) bool {
	return len(m.snap.Load().lookup(source, name)) > 0
}

// Match returns the rows of source whose event name is name and whose condition holds for ev,
// in (sequence, id) order. A condition that fails at run time skips its row; the count of such
// failures is returned for the caller's metric, and each failing row logs at most once a minute.
func (m *Map) Match(source, name string, ev *Event) (rows []Row, conditionErrors int) {
	s := m.snap.Load()
	dict := &eventDict{ev: ev}
	for _, r := range s.lookup(source, name) {
		ok, err := r.cond.eval(dict, func(msg string) {
			m.log.Debug("eventmap: condition print", "id", r.ID, "event", r.Name, "msg", msg)
		})
		if err != nil {
			conditionErrors++
			m.metrics.conditionErrors.WithLabelValues(source).Inc()
			m.logConditionError(r, err)
			continue
		}
		if ok {
			rows = append(rows, r.Row)
		}
	}
	return rows, conditionErrors
}

func (m *Map) logConditionError(r *compiledRow, err error) {
	now := m.cfg.Now().UnixNano()
	last := r.lastLogged.Load()
	if last != 0 && now-last < int64(conditionErrorLogEvery) {
		return
	}
	if !r.lastLogged.CompareAndSwap(last, now) {
		return
	}
	m.log.Warn("eventmap: condition failed; handler skipped (logged once a minute per row)",
		"id", r.ID, "event", r.Name, "condition", r.Condition, "err", err)
}

// ReloadEventsAction is the pseudo-action that reloads the map (contract §4.6 item 1); it is
// answered by the agent and never sent to Asterisk.
const ReloadEventsAction = "ReloadEvents"

// IsReloadEvents reports whether an Action header names the ReloadEvents pseudo-action (any case).
func IsReloadEvents(action string) bool {
	return strings.EqualFold(strings.TrimSpace(action), ReloadEventsAction)
}

// EventsMask is the Events: mask the map needs (contract §2.9).
func (m *Map) EventsMask(securityOn bool) string {
	return EventsMask(m.Current().EventNames(SourceAMI), securityOn)
}

// Options are the agent_options from Odoo (empty in fallback mode or before a load).
func (m *Map) Options() map[string]any { return m.Current().Options }

// OptionStrings are the options as strings (see RemoteConfig.OptionStrings).
func (m *Map) OptionStrings() map[string]string { return m.Current().OptionStrings() }

// AccessLists is Odoo's access_lists as raw JSON (nil when none), for the security part's parser.
func (m *Map) AccessLists() json.RawMessage { return m.Current().AccessLists }

// NotifyMethod is Odoo's notify_method ("" when not given).
func (m *Map) NotifyMethod() string { return m.Current().NotifyMethod }

// Hash identifies the rows in use (agent.status map.hash).
func (m *Map) Hash() string { return m.Current().MapHash }

// Disabled lists the rows refused at the last load.
func (m *Map) Disabled() []DisabledRow { return m.Current().Disabled }

// Health reports the map: OK once any map (fresh or saved) is in use.
func (m *Map) Health() agent.Health {
	s := m.Current()
	m.stateMu.Lock()
	lastAttempt, lastError := m.lastAttempt, m.lastError
	m.stateMu.Unlock()
	detail := map[string]any{
		"rows":     len(s.rows),
		"disabled": len(s.Disabled),
		"hash":     s.MapHash,
		"source":   s.Source,
		"fallback": s.Fallback,
	}
	if !s.LoadedAt.IsZero() {
		detail["loaded_at"] = s.LoadedAt.UTC().Format(time.RFC3339)
	}
	if !lastAttempt.IsZero() {
		detail["last_attempt"] = lastAttempt.UTC().Format(time.RFC3339)
	}
	if lastError != "" {
		detail["last_error"] = lastError
	}
	state := map[string]string{LoadSourceOdoo: "loaded", LoadSourceDisk: "saved_copy", LoadSourceNone: "empty"}[s.Source]
	return agent.Health{OK: s.Source != LoadSourceNone, State: state, Detail: detail}
}

type mapMetrics struct {
	rows     prometheus.Gauge
	disabled prometheus.Gauge
	loadedAt prometheus.Gauge
	reloads  *prometheus.CounterVec
	// conditionErrors counts runtime failures by source, so FastAGI's are counted too.
	conditionErrors *prometheus.CounterVec
}

func (mm *mapMetrics) register(reg prometheus.Registerer) error {
	mm.rows = prometheus.NewGauge(prometheus.GaugeOpts{Name: "odoopbx_eventmap_rows", Help: "Usable rows of the events map in use."})
	mm.disabled = prometheus.NewGauge(prometheus.GaugeOpts{Name: "odoopbx_eventmap_disabled_rows", Help: "Rows of the events map refused at the last load."})
	mm.loadedAt = prometheus.NewGauge(prometheus.GaugeOpts{Name: "odoopbx_eventmap_loaded_timestamp_seconds", Help: "When the map in use was loaded (unix seconds)."})
	mm.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "odoopbx_eventmap_reloads_total", Help: "Map reloads from Odoo by result (changed, unchanged, error)."}, []string{"result"})
	mm.conditionErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "odoopbx_eventmap_condition_errors_total", Help: "Condition evaluations that failed at run time (handler skipped), by source."}, []string{"source"})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{mm.rows, mm.disabled, mm.loadedAt, mm.reloads, mm.conditionErrors} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("eventmap: metrics: %w", err)
		}
	}
	return nil
}
