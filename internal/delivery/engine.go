package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/odoo"
)

// Backoff is an exponential backoff with jitter: Initial, doubling up to Max, each wait spread
// by ±Jitter (a fraction).
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  float64
}

// Delay is the wait before retry number n (n >= 1).
func (b Backoff) Delay(n int) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		d = time.Duration(float64(d) * (1 - b.Jitter + 2*b.Jitter*rand.Float64()))
	}
	return d
}

// Odoo states reported by Health.
const (
	OdooOK          = "ok"
	OdooUnreachable = "unreachable"
	OdooAuthFailed  = "auth_failed"
	OdooConfigError = "config_error"
)

// Config configures the engine.
type Config struct {
	// Spool holds the items (a *spool.Spool).
	Spool Store
	// Odoo makes the calls. If it also has Login(ctx) error (as *odoo.JSONRPC does), the engine
	// uses it to re-login while paused on an auth failure; otherwise it retries a call to probe.
	Odoo odoo.Client
	// MaxAge is spool.max_age: an item older than this is dead-lettered instead of being retried
	// (the spool's own MaxAge, when set, applies as well).
	MaxAge time.Duration
	// MaxParallel is delivery.max_parallel, the number of lanes delivered at once (default 8).
	MaxParallel int
	// HandlerAttempts is how many handler errors an item gets before it is dead-lettered (default 3).
	HandlerAttempts int
	// Backoff spaces retries of transient and handler failures (default 0.5 s doubling to 60 s, ±20 %).
	Backoff Backoff
	// AuthBackoff spaces re-logins while paused (default: Backoff).
	AuthBackoff Backoff
	// CallTimeout bounds one call on top of the client's own timeout (default none).
	CallTimeout time.Duration
	// ExpireInterval is how often items past spool.max_age are swept from idle lanes (default 1 min).
	ExpireInterval time.Duration
	Logger         *slog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Engine delivers the spool's items to Odoo: each lane strictly in order, lanes in parallel.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	login   func(context.Context) error
	metrics *metrics

	// kick wakes the dispatcher; newLanes holds lanes with new items for it.
	mu       sync.Mutex
	newLanes map[string]struct{}
	busySet  map[string]struct{}
	kick     chan struct{}

	odooState atomic.Value // string
	busy      atomic.Int64
	paused    atomic.Bool

	cancel  context.CancelFunc
	stopped chan struct{}
}

var _ Enqueuer = (*Engine)(nil)
var _ agent.Component = (*Engine)(nil)

// New builds the engine; Start runs it.
func New(cfg Config) *Engine {
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 8
	}
	if cfg.HandlerAttempts <= 0 {
		cfg.HandlerAttempts = 3
	}
	if cfg.Backoff.Initial <= 0 {
		cfg.Backoff = Backoff{Initial: 500 * time.Millisecond, Max: 60 * time.Second, Jitter: 0.2}
	}
	if cfg.Backoff.Max < cfg.Backoff.Initial {
		cfg.Backoff.Max = cfg.Backoff.Initial
	}
	if cfg.AuthBackoff.Initial <= 0 {
		cfg.AuthBackoff = cfg.Backoff
	}
	if cfg.AuthBackoff.Max < cfg.AuthBackoff.Initial {
		cfg.AuthBackoff.Max = cfg.AuthBackoff.Initial
	}
	if cfg.ExpireInterval <= 0 {
		cfg.ExpireInterval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, newLanes: map[string]struct{}{}, busySet: map[string]struct{}{},
		kick: make(chan struct{}, 1)}
	if l, ok := cfg.Odoo.(interface{ Login(context.Context) error }); ok {
		e.login = l.Login
	}
	e.odooState.Store(OdooOK)
	e.metrics = newMetrics(e)
	if cfg.Registerer != nil {
		if err := e.metrics.register(cfg.Registerer); err != nil {
			e.log.Error("delivery: metrics not registered", "err", err)
		}
	}
	return e
}

// Name implements agent.Component.
func (e *Engine) Name() string { return "delivery" }

// Enqueue stores items in the spool and schedules their lanes. It returns once they are on disk,
// or with the spool's error (full, closed, bad item): then none of them is stored.
func (e *Engine) Enqueue(ctx context.Context, items ...Item) error {
	if len(items) == 0 {
		return nil
	}
	stored, err := e.cfg.Spool.Append(ctx, items...)
	if err != nil {
		e.metrics.refused.Add(float64(len(items)))
		return fmt.Errorf("delivery: %w", err)
	}
	e.metrics.in.Add(float64(len(stored)))
	e.wakeLanes(stored)
	return nil
}

func (e *Engine) wakeLanes(items []Item) {
	e.mu.Lock()
	for _, it := range items {
		e.newLanes[it.Lane] = struct{}{}
	}
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Start runs the dispatcher and the workers until Stop; the lanes already in the spool (from
// before a restart) are delivered first.
func (e *Engine) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.stopped = make(chan struct{})
	work := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for i := 0; i < e.cfg.MaxParallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lane := range work {
				// The dispatcher reads every result, also while shutting down.
				results <- e.deliverHead(ctx, lane)
			}
		}()
	}
	d := &dispatcher{e: e, work: work, results: results, ready: newLaneQueue(), delayed: map[string]time.Time{},
		busy: map[string]bool{}, workers: e.cfg.MaxParallel}
	for _, l := range e.cfg.Spool.Lanes() {
		d.ready.push(l)
	}
	go func() {
		defer close(e.stopped)
		d.run(ctx)
		close(work)
		wg.Wait()
	}()
	return nil
}

// Stop stops delivering and waits for the in-flight calls to end (they are cut short); nothing
// is lost: undelivered items stay in the spool. The spool itself is closed by its owner.
func (e *Engine) Stop(ctx context.Context) error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	select {
	case <-e.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("delivery: stop: %w", ctx.Err())
	}
}

// Health implements agent.Component.
func (e *Engine) Health() agent.Health {
	state := e.odooState.Load().(string)
	h := agent.Health{OK: state == OdooOK, State: "running", Detail: map[string]any{
		"odoo":       state,
		"lanes_busy": e.busy.Load(),
		"paused":     e.paused.Load(),
	}}
	st := e.cfg.Spool.Stats()
	h.Detail["depth"], h.Detail["bytes"], h.Detail["dead"], h.Detail["refused"] = st.Pending, st.Bytes, st.Dead, st.Refused
	if e.paused.Load() {
		h.State = "paused"
	}
	return h
}

// outcome is what delivering a lane's head led to.
type outcome int

const (
	outDone  outcome = iota // delivered or dead-lettered: the lane may go on
	outEmpty                // nothing pending
	outWait                 // retry or start at `until`
	outPause                // auth or config failure: pause every lane
	outStop                 // shutting down
)

type result struct {
	lane    string
	outcome outcome
	until   time.Time
	kind    odoo.Kind
	err     error
}

// deliverHead makes one attempt at a lane's head item.
func (e *Engine) deliverHead(ctx context.Context, lane string) result {
	r := result{lane: lane}
	it, ok, err := e.cfg.Spool.Head(lane)
	if err != nil {
		e.log.Error("delivery: cannot read the lane's head", "lane", lane, "err", err)
		r.outcome, r.until = outWait, time.Now().Add(e.cfg.Backoff.Max)
		return r
	}
	if !ok {
		r.outcome = outEmpty
		return r
	}
	if e.cfg.Spool.Expired(it) {
		e.deadLetter(it, e.cfg.Spool.ExpiredReason())
		r.outcome = outDone
		return r
	}
	if e.cfg.MaxAge > 0 && time.Since(it.Created) > e.cfg.MaxAge {
		e.deadLetter(it, fmt.Sprintf("not delivered within spool.max_age (%s)", e.cfg.MaxAge))
		r.outcome = outDone
		return r
	}
	if wait := time.Until(it.NotBefore); wait > 0 {
		r.outcome, r.until = outWait, it.NotBefore
		return r
	}
	args, kwargs, err := rawArgs(it)
	if err != nil {
		e.deadLetter(it, "undecodable arguments: "+err.Error())
		r.outcome = outDone
		return r
	}
	callCtx := ctx
	if e.cfg.CallTimeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, e.cfg.CallTimeout)
		defer cancel()
	}
	start := time.Now()
	err = e.call(callCtx, it, args, kwargs)
	if err == nil {
		if derr := e.cfg.Spool.Done(it.ID); derr != nil {
			e.log.Error("delivery: cannot acknowledge a delivered item", "id", it.ID, "err", derr)
		}
		e.metrics.out.Inc()
		e.metrics.callSeconds.Observe(time.Since(start).Seconds())
		since := it.Created
		if it.NotBefore.After(since) {
			since = it.NotBefore
		}
		e.metrics.latency.Observe(time.Since(since).Seconds())
		e.setOdooState(OdooOK)
		r.outcome = outDone
		return r
	}
	if ctx.Err() != nil {
		r.outcome = outStop
		return r
	}
	kind := odoo.KindOf(err)
	e.metrics.failures.WithLabelValues(kind.String()).Inc()
	r.kind, r.err = kind, err
	switch kind {
	case odoo.KindTransient:
		e.setOdooState(OdooUnreachable)
		r.outcome = outWait // the dispatcher picks the backoff from the lane's failure count
	case odoo.KindAuth, odoo.KindConfig:
		r.outcome = outPause
	default: // handler, missing_method: the call reached Odoo and Odoo refused it
		e.setOdooState(OdooOK)
		it.Attempts++
		it.LastError = err.Error()
		if it.Attempts >= e.cfg.HandlerAttempts {
			e.deadLetter(it, fmt.Sprintf("%s error after %d attempts", kind, it.Attempts))
			r.outcome = outDone
			return r
		}
		if uerr := e.cfg.Spool.Update(it); uerr != nil {
			e.log.Error("delivery: cannot record the attempt", "id", it.ID, "err", uerr)
		}
		e.log.Warn("delivery: Odoo refused the call, will retry", "lane", lane, "id", it.ID, "origin", it.Origin,
			"model", it.Model, "method", it.Method, "attempt", it.Attempts, "err", err)
		r.outcome, r.until = outWait, time.Now().Add(e.cfg.Backoff.Delay(it.Attempts))
	}
	return r
}

// rawArgs splits an item's arguments into their JSON values, passed on verbatim (decoding them to
// float64 and back would change large integers).
func rawArgs(it Item) ([]any, map[string]any, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(it.Args, &list); err != nil {
		return nil, nil, err
	}
	args := make([]any, len(list))
	for i, a := range list {
		args[i] = a
	}
	var kwargs map[string]any
	if len(it.Kwargs) > 0 {
		var kw map[string]json.RawMessage
		if err := json.Unmarshal(it.Kwargs, &kw); err != nil {
			return nil, nil, err
		}
		kwargs = make(map[string]any, len(kw))
		for k, v := range kw {
			kwargs[k] = v
		}
	}
	return args, kwargs, nil
}

// call makes the Odoo call; a panic in the client becomes a handler error instead of a crash.
func (e *Engine) call(ctx context.Context, it Item, args []any, kwargs map[string]any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("delivery: the Odoo client panicked", "id", it.ID, "panic", p)
			err = &odoo.Error{Kind: odoo.KindHandler, Message: fmt.Sprintf("client panic: %v", p)}
		}
	}()
	_, err = e.cfg.Odoo.ExecuteKw(ctx, it.Model, it.Method, args, kwargs)
	return err
}

func (e *Engine) deadLetter(it Item, reason string) {
	if err := e.cfg.Spool.Dead(it, reason); err != nil {
		e.log.Error("delivery: cannot dead-letter", "id", it.ID, "err", err)
		return
	}
	e.metrics.dead.Inc()
	e.log.Warn("delivery: item dead-lettered", "id", it.ID, "lane", it.Lane, "origin", it.Origin, "model", it.Model,
		"method", it.Method, "attempts", it.Attempts, "reason", reason, "last_error", it.LastError)
}

func (e *Engine) setOdooState(s string) { e.odooState.Store(s) }

// dispatcher owns the schedule: which lanes are ready, waiting or being delivered.
type dispatcher struct {
	e        *Engine
	work     chan string
	results  chan result
	ready    *laneQueue
	delayed  map[string]time.Time
	busy     map[string]bool
	dirty    map[string]bool // busy lanes that got new items meanwhile
	failures map[string]int  // consecutive transient failures per lane
	workers  int
	idle     int
	paused   bool
	// pauses counts pauses since the last delivery, so an item that keeps raising AccessDenied
	// after every successful re-login is retried ever more slowly instead of every Initial.
	pauses   int
	resume   chan error
	sweeping atomic.Bool
	sweepWG  sync.WaitGroup
}

// startSweep expires old items in the background (a sweep of a large spool must not stall the
// lanes), one sweep at a time.
func (d *dispatcher) startSweep() {
	if !d.sweeping.CompareAndSwap(false, true) {
		return
	}
	d.sweepWG.Add(1)
	go func() {
		defer d.sweepWG.Done()
		defer d.sweeping.Store(false)
		d.sweep()
	}()
}

func (d *dispatcher) run(ctx context.Context) {
	e := d.e
	d.idle = d.workers
	d.failures = map[string]int{}
	d.dirty = map[string]bool{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	expire := time.NewTicker(e.cfg.ExpireInterval)
	defer expire.Stop()
	d.startSweep()
	defer d.sweepWG.Wait()
	for {
		now := time.Now()
		next := time.Time{}
		for lane, t := range d.delayed {
			if !t.After(now) {
				delete(d.delayed, lane)
				d.ready.push(lane)
			} else if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		if next.IsZero() {
			next = now.Add(time.Hour)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(next))

		var work chan string
		var lane string
		if !d.paused && d.idle > 0 && d.ready.len() > 0 {
			work, lane = d.work, d.ready.peek()
		}
		select {
		case <-ctx.Done():
			// Wait for the busy workers so none is left writing to results.
			for d.idle < d.workers {
				<-d.results
				d.idle++
			}
			return
		case work <- lane:
			d.ready.pop()
			d.busy[lane] = true
			d.idle--
			d.setBusy(lane, true)
		case r := <-d.results:
			d.idle++
			delete(d.busy, r.lane)
			d.setBusy(r.lane, false)
			d.handle(ctx, r)
		case <-e.kick:
			e.mu.Lock()
			lanes := e.newLanes
			e.newLanes = map[string]struct{}{}
			e.mu.Unlock()
			for l := range lanes {
				d.schedule(l)
			}
		case err := <-d.resume:
			d.resume = nil
			if err == nil {
				d.paused = false
				e.paused.Store(false)
				e.metrics.paused.Set(0)
				e.log.Info("delivery: Odoo accepts the agent again, resuming every lane")
			}
		case <-timer.C:
		case <-expire.C:
			d.startSweep()
		}
	}
}

// schedule makes a lane with new items ready unless it is already queued, busy or waiting.
func (d *dispatcher) schedule(lane string) {
	if d.busy[lane] {
		// Its worker may have found it empty just before the append: look again when it reports.
		d.dirty[lane] = true
		return
	}
	if d.ready.has(lane) {
		return
	}
	if _, ok := d.delayed[lane]; ok {
		return
	}
	d.ready.push(lane)
}

func (d *dispatcher) setBusy(lane string, busy bool) {
	e := d.e
	e.mu.Lock()
	if busy {
		e.busySet[lane] = struct{}{}
	} else {
		delete(e.busySet, lane)
	}
	n := len(e.busySet)
	e.mu.Unlock()
	e.busy.Store(int64(n))
	e.metrics.busy.Set(float64(n))
}

func (d *dispatcher) handle(ctx context.Context, r result) {
	e := d.e
	delete(d.dirty, r.lane)
	switch r.outcome {
	case outDone:
		d.pauses = 0
		delete(d.failures, r.lane)
		d.ready.push(r.lane) // next item, after the other ready lanes had their turn
	case outEmpty:
		delete(d.failures, r.lane)
		if d.dirty[r.lane] {
			d.ready.push(r.lane)
		}
	case outWait:
		until := r.until
		if r.kind == odoo.KindTransient && r.err != nil {
			d.failures[r.lane]++
			n := d.failures[r.lane]
			until = time.Now().Add(e.cfg.Backoff.Delay(n))
			e.log.Warn("delivery: Odoo unreachable, will retry", "lane", r.lane, "retry", n, "in", time.Until(until).Round(time.Millisecond), "err", r.err)
		}
		d.delayed[r.lane] = until
	case outPause:
		d.ready.pushFront(r.lane)
		if !d.paused {
			d.paused = true
			e.paused.Store(true)
			e.metrics.paused.Set(1)
			state := OdooAuthFailed
			if r.kind == odoo.KindConfig {
				state = OdooConfigError
			}
			e.setOdooState(state)
			e.log.Error("delivery: Odoo refuses the agent, pausing every lane until a login works", "err", r.err)
			d.resume = make(chan error, 1)
			d.pauses++
			go d.relogin(ctx, d.resume, d.pauses)
		}
	case outStop:
		d.ready.pushFront(r.lane)
	}
}

// relogin retries the login with backoff until it works (or, without a Login method, just waits
// one backoff so a call can probe), then reports on done.
func (d *dispatcher) relogin(ctx context.Context, done chan<- error, first int) {
	e := d.e
	for n := first; ; n++ {
		t := time.NewTimer(e.cfg.AuthBackoff.Delay(n))
		select {
		case <-ctx.Done():
			t.Stop()
			done <- ctx.Err()
			return
		case <-t.C:
		}
		if e.login == nil {
			done <- nil
			return
		}
		err := e.login(ctx)
		if err == nil {
			e.setOdooState(OdooOK)
			done <- nil
			return
		}
		switch odoo.KindOf(err) {
		case odoo.KindTransient:
			e.setOdooState(OdooUnreachable)
		case odoo.KindConfig:
			e.setOdooState(OdooConfigError)
		default:
			e.setOdooState(OdooAuthFailed)
		}
		e.metrics.loginFailures.Inc()
		e.log.Warn("delivery: re-login failed", "attempt", n, "err", err)
	}
}

// sweep dead-letters expired items of idle lanes.
func (d *dispatcher) sweep() {
	e := d.e
	n, err := e.cfg.Spool.Expire(func(lane string) bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		_, busy := e.busySet[lane]
		return busy
	})
	if err != nil {
		d.e.log.Error("delivery: expiring old items failed", "err", err)
	}
	if n > 0 {
		d.e.metrics.dead.Add(float64(n))
		d.e.log.Warn("delivery: items past spool.max_age dead-lettered", "count", n)
	}
}

// laneQueue is a FIFO of distinct lanes.
type laneQueue struct {
	items []string
	set   map[string]bool
}

func newLaneQueue() *laneQueue { return &laneQueue{set: map[string]bool{}} }

func (q *laneQueue) len() int             { return len(q.items) }
func (q *laneQueue) has(lane string) bool { return q.set[lane] }
func (q *laneQueue) peek() string         { return q.items[0] }

func (q *laneQueue) push(lane string) {
	if q.set[lane] {
		return
	}
	q.set[lane] = true
	q.items = append(q.items, lane)
}

func (q *laneQueue) pushFront(lane string) {
	if q.set[lane] {
		return
	}
	q.set[lane] = true
	q.items = append([]string{lane}, q.items...)
}

func (q *laneQueue) pop() string {
	l := q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	delete(q.set, l)
	return l
}
