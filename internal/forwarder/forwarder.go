// Package forwarder turns AMI events into durable Odoo calls (contract §3): for each event it adds
// the enrichment fields, picks the map rows whose condition holds, computes the event's lane (its
// call's Linkedid) and hands one delivery.Item per row to the spool. It never blocks the AMI
// reader for long: items of all the events waiting in the queue go to the spool in one Enqueue, so
// the spool's group commit serves many events per fsync.
package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/eventmap"
)

// Actioner sends one AMI action and returns its reply messages (ami.Client satisfies it).
type Actioner interface {
	Do(ctx context.Context, action *ami.Message) ([]*ami.Message, error)
}

// Enrichment field names (contract §3.5, §3.6).
const (
	FieldSystemName         = "SystemName"
	FieldAsteriskSystemName = "AsteriskSystemName"
	FieldEventTime          = "EventTime"
	FieldAgentEventID       = "AgentEventId"
	// FieldAsteriskPrefix renames a header Asterisk sent under an enrichment field's name (CEL
	// carries its own EventTime text; a UserEvent could carry an AgentEventId) so nothing is lost
	// and the agent's value is the one handlers read.
	FieldAsteriskPrefix = "Asterisk"

	SnapshotEvent     = "AgentChannelsSnapshot"
	FieldUniqueids    = "Uniqueids"
	FieldGapSeconds   = "GapSeconds"
	snapshotActionTTL = 30 * time.Second
)

// Defaults.
const (
	DefaultBatchMax       = 256
	DefaultEnqueueTimeout = 10 * time.Second
	sweepEvery            = 10 * time.Second
)

// Config configures a Forwarder.
type Config struct {
	Map      *eventmap.Map
	Enqueuer delivery.Enqueuer
	// SystemName is system_name from the config (default: the hostname).
	SystemName string
	// Events is the AMI client's bounded events queue.
	Events <-chan *ami.Message
	// AMI runs CoreShowChannels for the snapshot event; nil skips the snapshot.
	AMI        Actioner
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// RecentEvents is how many received events the status view keeps (default 100).
	RecentEvents int
	// BatchMax bounds how many queued events share one Enqueue (default 256).
	BatchMax int
	// EnqueueTimeout bounds one Enqueue call (default 10 s).
	EnqueueTimeout time.Duration
	// Now and NewEventID replace the clock and UUIDv7 source in tests.
	Now        func() time.Time
	NewEventID func() (string, error)
}

// Forwarder is the events-to-Odoo component.
type Forwarder struct {
	cfg     Config
	log     *slog.Logger
	lanes   *laneTable
	view    *view
	metrics metrics

	// Counters mirrored for Health (Prometheus counters are write-only).
	eventsIn, matched, enqueued, refused, conditionErrors atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ agent.Component = (*Forwarder)(nil)

// New returns a Forwarder; Start begins consuming events.
func New(cfg Config) (*Forwarder, error) {
	if cfg.Map == nil {
		return nil, errors.New("forwarder: no events map")
	}
	if cfg.Enqueuer == nil {
		return nil, errors.New("forwarder: no enqueuer")
	}
	if cfg.SystemName == "" {
		cfg.SystemName, _ = os.Hostname()
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = DefaultBatchMax
	}
	if cfg.EnqueueTimeout <= 0 {
		cfg.EnqueueTimeout = DefaultEnqueueTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewEventID == nil {
		cfg.NewEventID = newUUIDv7
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		cfg:   cfg,
		log:   log.With("component", "forwarder"),
		lanes: newLaneTable(),
		view:  newView(cfg.RecentEvents),
	}
	if err := f.metrics.register(cfg.Registerer, f); err != nil {
		return nil, err
	}
	return f, nil
}

func newUUIDv7() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// Name is the component name.
func (f *Forwarder) Name() string { return "forwarder" }

// Start consumes the events queue until ctx ends or Stop.
func (f *Forwarder) Start(ctx context.Context) error {
	if f.cfg.Events == nil {
		return errors.New("forwarder: no events queue")
	}
	ctx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.run(ctx)
	}()
	return nil
}

// Stop stops consuming, after handing what is already queued to the spool.
func (f *Forwarder) Stop(ctx context.Context) error {
	if f.cancel == nil {
		return nil
	}
	f.cancel()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("forwarder: stop: %w", ctx.Err())
	}
}

func (f *Forwarder) run(ctx context.Context) {
	if !f.waitForMap(ctx) {
		return
	}
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	batch := make([]*ami.Message, 0, f.cfg.BatchMax)
	for {
		select {
		case <-ctx.Done():
			f.drain(batch[:0])
			return
		case <-sweep.C:
			now := f.cfg.Now()
			f.lanes.sweep(now)
			f.view.sweep(now)
		case msg, ok := <-f.cfg.Events:
			if !ok {
				return
			}
			batch = f.fill(append(batch[:0], msg))
			f.HandleBatch(ctx, batch)
		}
	}
}

// waitForMap holds forwarding until a first events map is known (from disk or Odoo): on the very
// first start there is none yet, and an event handled now would find no handler and be lost. The
// events wait in the AMI client's bounded queue meanwhile. It reports false if ctx ended first.
func (f *Forwarder) waitForMap(ctx context.Context) bool {
	if f.mapLoaded() {
		return true
	}
	f.log.Info("forwarder: waiting for the first events map from Odoo; events queue meanwhile")
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			if f.mapLoaded() {
				return true
			}
		}
	}
}

func (f *Forwarder) mapLoaded() bool {
	s := f.cfg.Map.Current()
	return s != nil && s.Source != eventmap.LoadSourceNone
}

// fill takes what else is already queued, up to BatchMax, without waiting.
func (f *Forwarder) fill(batch []*ami.Message) []*ami.Message {
	for len(batch) < f.cfg.BatchMax {
		select {
		case msg, ok := <-f.cfg.Events:
			if !ok {
				return batch
			}
			batch = append(batch, msg)
		default:
			return batch
		}
	}
	return batch
}

// drain hands the events still queued at Stop to the spool, without waiting for more.
func (f *Forwarder) drain(batch []*ami.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.EnqueueTimeout)
	defer cancel()
	for {
		batch = f.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		f.HandleBatch(ctx, batch)
	}
}

// pending is one processed event of a batch.
type pending struct {
	slot    int
	eventID string
	items   int
}

// HandleBatch processes events received together and enqueues all their items in one call, in
// receive order. It is the consumer's body, exported for benchmarks and for callers that feed
// events themselves.
func (f *Forwarder) HandleBatch(ctx context.Context, batch []*ami.Message) {
	now := f.cfg.Now()
	var items []delivery.Item
	var done []pending
	for _, msg := range batch {
		at := now
		if !msg.Received.IsZero() {
			at = msg.Received // the AMI client's read time, exact per event
		}
		var p pending
		items, p = f.process(msg, at, items)
		if p.items > 0 {
			done = append(done, p)
		}
	}
	if len(items) == 0 {
		return
	}
	f.enqueue(ctx, items, done)
}

func (f *Forwarder) enqueue(ctx context.Context, items []delivery.Item, done []pending) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.EnqueueTimeout)
	defer cancel()
	err := f.cfg.Enqueuer.Enqueue(ctx, items...)
	if err == nil {
		f.enqueued.Add(uint64(len(items)))
		f.metrics.enqueued.Add(float64(len(items)))
		return
	}
	f.refused.Add(uint64(len(items)))
	f.metrics.refused.Add(float64(len(items)))
	for _, p := range done {
		f.view.setOutcome(p.slot, p.eventID, OutcomeRefused)
	}
	msg := "forwarder: the spool refused event deliveries; they are lost"
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "forwarder: the spool did not confirm event deliveries in time; they may be lost"
	}
	f.log.Error(msg, "items", len(items), "events", len(done), "first", items[0].Origin, "first_lane", items[0].Lane, "err", err)
}

// process handles one message received at now and appends its items.
func (f *Forwarder) process(msg *ami.Message, now time.Time, items []delivery.Item) ([]delivery.Item, pending) {
	name := msg.Event()
	if name == "" {
		return items, pending{}
	}
	f.eventsIn.Add(1)
	f.metrics.eventsIn.Inc()

	lane := f.lanes.laneOf(msg, name, now)
	if !strings.HasPrefix(lane, "event:") {
		f.view.track(msg, name, lane, now)
	}
	if !f.cfg.Map.Handles(eventmap.SourceAMI, name) {
		// Most events (Newexten, CEL, most VarSets) name no row: skip the encoding and the id.
		f.view.record(RecentEvent{Time: now, Name: name, Lane: lane, Channel: msg.Get("Channel"),
			Uniqueid: msg.Get("Uniqueid"), Outcome: OutcomeNoHandler})
		return items, pending{}
	}
	ev, eventID := f.enrich(eventmap.EventFromMessage(msg, 4), msg.Get("Timestamp"), now)
	rows, condErrs := f.cfg.Map.Match(eventmap.SourceAMI, name, ev)
	if condErrs > 0 {
		f.conditionErrors.Add(uint64(condErrs))
		f.metrics.conditionErrors.Add(float64(condErrs))
	}
	outcome := OutcomeNoHandler
	if len(rows) > 0 {
		outcome = OutcomeEnqueued
		f.matched.Add(1)
		f.metrics.matched.Inc()
		items = appendItems(items, rows, ev, lane, "event:"+name, now)
	}
	slot := f.view.record(RecentEvent{
		Time: now, Name: name, Lane: lane, AgentEventID: eventID,
		Channel: msg.Get("Channel"), Uniqueid: msg.Get("Uniqueid"),
		Handlers: len(rows), ConditionErrors: condErrs, Outcome: outcome,
	})
	return items, pending{slot: slot, eventID: eventID, items: len(rows)}
}

// appendItems builds one item per matching row. The handlers share one encoded Args: the event
// is encoded once, and nobody modifies an item's Args after Enqueue.
func appendItems(items []delivery.Item, rows []eventmap.Row, ev *eventmap.Event, lane, origin string, now time.Time) []delivery.Item {
	args := ev.AppendJSON(append(make([]byte, 0, 1024), '['))
	args = append(args, ']')
	for _, r := range rows {
		items = append(items, delivery.Item{
			Lane:      lane,
			Model:     r.Model,
			Method:    r.Method,
			Args:      args,
			NotBefore: now.Add(r.DelayDuration()),
			Created:   now,
			Origin:    origin,
		})
	}
	return items
}

// enrich adds SystemName, EventTime and AgentEventId (contract §3.5) and returns the event id.
func (f *Forwarder) enrich(ev *eventmap.Event, timestamp string, now time.Time) (*eventmap.Event, string) {
	if sent := ev.Get(FieldSystemName); sent != "" && sent != f.cfg.SystemName {
		ev.Rename(FieldSystemName, FieldAsteriskSystemName)
	}
	ev.SetString(FieldSystemName, f.cfg.SystemName)

	eventTime := float64(now.UnixMicro()) / 1e6
	if timestamp != "" { // timestampevents = yes (contract §2.9)
		if ts, err := strconv.ParseFloat(strings.TrimSpace(timestamp), 64); err == nil && ts > 0 {
			eventTime = ts
		}
	}
	ev.Rename(FieldEventTime, FieldAsteriskPrefix+FieldEventTime)
	ev.SetFloat(FieldEventTime, eventTime)

	id, err := f.cfg.NewEventID()
	if err != nil {
		// crypto/rand failing is not recoverable in any useful way; a random v4 keeps ids unique.
		id = uuid.NewString()
		f.log.Error("forwarder: UUIDv7 failed; using a v4 id", "err", err)
	}
	ev.Rename(FieldAgentEventID, FieldAsteriskPrefix+FieldAgentEventID)
	ev.SetString(FieldAgentEventID, id)
	return ev, id
}

// NoteOriginate tells the forwarder the ChannelId of an Originate sent with actionID, so a failed
// OriginateResponse (Uniqueid: <unknown>) joins that channel's lane. The job code calls it before
// sending the action.
func (f *Forwarder) NoteOriginate(actionID, channelID string) {
	f.lanes.noteOriginate(actionID, channelID, f.cfg.Now())
}

// RecentEvents returns the last events received, oldest first.
func (f *Forwarder) RecentEvents() []RecentEvent { return f.view.recentEvents() }

// ActiveCalls returns the calls in progress, oldest first.
func (f *Forwarder) ActiveCalls() []ActiveCall { return f.view.activeCalls() }

// Health reports the counters, the lane table and the map in use.
func (f *Forwarder) Health() agent.Health {
	channels, originates := f.lanes.size()
	snap := f.cfg.Map.Current()
	return agent.Health{
		OK:    true,
		State: "running",
		Detail: map[string]any{
			"events":           f.eventsIn.Load(),
			"matched":          f.matched.Load(),
			"enqueued":         f.enqueued.Load(),
			"refused":          f.refused.Load(),
			"condition_errors": f.conditionErrors.Load(),
			"lane_channels":    channels,
			"originate_notes":  originates,
			"active_calls":     f.view.callCount(),
			"map_rows":         snap.RowCount(),
			"map_disabled":     len(snap.Disabled),
			"map_hash":         snap.MapHash,
			"map_source":       snap.Source,
			"map_loaded_at":    snap.LoadedAt,
		},
	}
}

type metrics struct {
	eventsIn, matched, enqueued, conditionErrors, refused prometheus.Counter
	snapshots                                             *prometheus.CounterVec
}

func (m *metrics) register(reg prometheus.Registerer, f *Forwarder) error {
	m.eventsIn = prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_forwarder_events_total", Help: "AMI events received by the forwarder."})
	m.matched = prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_forwarder_events_matched_total", Help: "Events that matched at least one map row."})
	m.enqueued = prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_forwarder_items_enqueued_total", Help: "Deliveries (event x handler) accepted by the spool."})
	m.conditionErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_forwarder_condition_errors_total", Help: "Condition evaluations that failed at run time (handler skipped)."})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_forwarder_items_refused_total", Help: "Deliveries the spool refused (lost)."})
	m.snapshots = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "odoopbx_forwarder_snapshots_total", Help: "AgentChannelsSnapshot attempts by result."}, []string{"result"})
	laneEntries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "odoopbx_forwarder_lane_channels", Help: "Channels in the Uniqueid-to-Linkedid lane table."},
		func() float64 { n, _ := f.lanes.size(); return float64(n) })
	activeCalls := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "odoopbx_forwarder_active_calls", Help: "Calls in progress as the events show them."},
		func() float64 { return float64(f.view.callCount()) })
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.eventsIn, m.matched, m.enqueued, m.conditionErrors, m.refused, m.snapshots, laneEntries, activeCalls} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("forwarder: metrics: %w", err)
		}
	}
	return nil
}
