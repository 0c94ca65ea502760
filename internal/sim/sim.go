// Package sim is a PBX simulator: an AMI server that speaks like Asterisk 22.10.1 (AMI 11.0.0) in the
// project's recorded transcripts, with generated call traffic, click-to-call Originates, optional
// SIP attackers, and a virtual clock so that a seed replays the same calls and tests run in
// milliseconds. It backs `odoopbx-agent sim`, the demo and the load benchmarks.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/ami"
)

// Defaults of Config.
const (
	DefaultListen        = "127.0.0.1:5038"
	DefaultAuthFailDelay = time.Second
	// DefaultWriteTimeout is manager.conf writetimeout as `init` sets it for the agent user.
	DefaultWriteTimeout = 5 * time.Second
	DefaultSessionQueue = 8192
	AMIVersion          = "11.0.0"
	AsteriskVersion     = "22.10.1"
)

// Config configures a simulator.
type Config struct {
	// Listen is the AMI address (default 127.0.0.1:5038; use port 0 for any free port).
	Listen string
	// Users maps AMI usernames to secrets. Every user may read and write every class.
	Users map[string]string
	// CallsPerSecond is the rate of generated calls (virtual time); 0 generates none.
	CallsPerSecond float64
	// Attackers is how many remote SIP addresses keep failing authentication.
	Attackers int
	// Seed makes generated traffic repeatable: the same seed and Start give the same calls and
	// headers (only Ping's Timestamp and Challenge numbers follow the wall clock).
	Seed int64
	// Start is the origin of the virtual clock (Uniqueid epochs, EventTV, Cdr times). Default: now.
	Start time.Time
	// TimeScale is virtual seconds per real second (default 1). 1000 runs a 3 s call in 3 ms.
	TimeScale float64
	// ManualClock stops the clock: only (*Sim).Advance moves virtual time. For tests.
	ManualClock bool
	// AuthFailDelay is how long a failed login waits before "Authentication failed" (Asterisk waits
	// about 1 s). 0 means the default; a negative value means no delay.
	AuthFailDelay time.Duration
	// WriteTimeout drops a session whose socket write stalls this long, like manager.conf
	// writetimeout (default 5 s).
	WriteTimeout time.Duration
	// SessionQueue is how many messages may wait for a session's socket; a session that falls
	// further behind is dropped, so a slow reader never blocks the generator (default 8192).
	SessionQueue int
	// OnCall is called, in order and from one goroutine, with each finished call.
	OnCall func(CallSummary)
	Logger *slog.Logger
}

// CallSummary describes one finished simulated call, for the demo's terminal lines.
type CallSummary struct {
	Linkedid    string
	Kind        string // inbound, outbound, internal, queue, click2call, originate
	From, To    string
	Disposition string // ANSWERED, BUSY, NO ANSWER, FAILED
	Recording   string // MIXMONITOR_FILENAME, when the call was recorded
	ActionID    string // the Originate's ActionID, for originated calls
	Start, End  time.Time
	Billsec     time.Duration
	Channels    int
}

// Stats are the simulator's counters.
type Stats struct {
	Sessions        int
	ActiveCalls     int
	ActiveChannels  int
	CallsFinished   uint64
	EventsSent      uint64
	SessionsDropped uint64
}

// Sim is a running (or ready) PBX simulator. It implements agent.Component.
type Sim struct {
	cfg   Config
	log   *slog.Logger
	clock *scheduler

	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessMu   sync.RWMutex
	sessions map[uint64]*session
	nextSess uint64

	// mu guards the PBX state below. Scheduled steps and actions that touch calls hold it.
	mu        sync.Mutex
	rng       *rand.Rand // generated traffic
	origRng   *rand.Rand // click-to-call outcomes, apart so clients do not disturb generated traffic
	uniqueSeq uint64
	techSeq   map[string]uint64
	channels  map[string]*channel // by name
	// devicesInUse counts live channels per phone, so a busy phone answers busy.
	devicesInUse map[string]int
	calls        map[string]*call  // by linkedid
	db           map[string]string // "family/key" -> value
	bridgeSeq    uint64
	processed    int
	callSeq      uint64
	started      time.Time // virtual start, for uptime
	wallStart    time.Time
	onCall       []func(CallSummary)
	summaries    chan CallSummary
	summClosed   bool
	arriving     bool // a generated-call arrival is scheduled
	eventsSent   atomic.Uint64
	dropped      atomic.Uint64
	finished     atomic.Uint64
	running      atomic.Bool
}

// New validates cfg and returns a simulator; Start opens the listener.
func New(cfg Config) (*Sim, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if len(cfg.Users) == 0 {
		return nil, errors.New("sim: at least one AMI user is required")
	}
	if cfg.CallsPerSecond < 0 || cfg.Attackers < 0 {
		return nil, errors.New("sim: calls per second and attackers must not be negative")
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.TimeScale < 0 {
		return nil, errors.New("sim: time scale must be positive")
	}
	if cfg.AuthFailDelay == 0 {
		cfg.AuthFailDelay = DefaultAuthFailDelay
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.SessionQueue <= 0 {
		cfg.SessionQueue = DefaultSessionQueue
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	cfg.Start = cfg.Start.UTC().Truncate(time.Millisecond)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	seed := uint64(cfg.Seed)
	s := &Sim{
		cfg:          cfg,
		log:          log.With("part", "sim"),
		clock:        newScheduler(cfg.Start),
		sessions:     make(map[uint64]*session),
		rng:          rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		origRng:      rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc909)),
		techSeq:      make(map[string]uint64),
		channels:     make(map[string]*channel),
		devicesInUse: make(map[string]int),
		calls:        make(map[string]*call),
		db:           make(map[string]string),
		started:      cfg.Start,
		summaries:    make(chan CallSummary, 4096),
	}
	if cfg.OnCall != nil {
		s.onCall = append(s.onCall, cfg.OnCall)
	}
	return s, nil
}

// OnCall adds a callback for finished calls. Call it before Start. Callbacks run in order on one
// goroutine; a callback that blocks delays only later summaries (they are dropped past 4096).
func (s *Sim) OnCall(fn func(CallSummary)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCall = append(s.onCall, fn)
}

// Name implements agent.Component.
func (s *Sim) Name() string { return "sim" }

// Start listens and starts the clock, the call generator and the attackers.
func (s *Sim) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("sim: listen: %w", err)
	}
	s.ln = ln
	s.wallStart = time.Now()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.running.Store(true)

	s.mu.Lock()
	if s.cfg.CallsPerSecond > 0 {
		s.scheduleArrival()
	}
	for i := 0; i < s.cfg.Attackers; i++ {
		s.startAttacker(i)
	}
	s.mu.Unlock()

	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.acceptLoop(runCtx) }()
	go func() { defer s.wg.Done(); s.deliverSummaries() }()
	if !s.cfg.ManualClock {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.clock.run(runCtx, s.cfg.TimeScale) }()
	}
	s.log.Info("sim: listening", "addr", ln.Addr().String(), "calls_per_second", s.cfg.CallsPerSecond, "attackers", s.cfg.Attackers, "seed", s.cfg.Seed)
	return nil
}

// Stop closes the listener and every session and waits for the goroutines, at most until ctx is done.
func (s *Sim) Stop(ctx context.Context) error {
	if !s.running.Swap(false) {
		return nil
	}
	s.cancel()
	_ = s.ln.Close()
	s.sessMu.Lock()
	open := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		open = append(open, sess)
	}
	s.sessMu.Unlock()
	for _, sess := range open {
		sess.close()
	}
	s.mu.Lock()
	s.summClosed = true
	close(s.summaries)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sim: stop: %w", ctx.Err())
	}
}

// Health implements agent.Component.
func (s *Sim) Health() agent.Health {
	st := s.Stats()
	state := "running"
	if !s.running.Load() {
		state = "stopped"
	}
	return agent.Health{OK: s.running.Load(), State: state, Detail: map[string]any{
		"sessions": st.Sessions, "active_calls": st.ActiveCalls, "calls_finished": st.CallsFinished,
		"sessions_dropped": st.SessionsDropped,
	}}
}

// Addr is the address the simulator listens on (after Start).
func (s *Sim) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Now is the virtual time.
func (s *Sim) Now() time.Time { return s.clock.Now() }

// Advance moves the virtual clock by d and runs every step due meanwhile. With ManualClock it is
// the only thing that moves time; it returns once those steps have run (and their events are
// queued to the sessions).
func (s *Sim) Advance(d time.Duration) { s.clock.advance(d) }

// Stats returns the counters.
func (s *Sim) Stats() Stats {
	s.sessMu.RLock()
	n := len(s.sessions)
	s.sessMu.RUnlock()
	s.mu.Lock()
	calls, chans := len(s.calls), len(s.channels)
	s.mu.Unlock()
	return Stats{Sessions: n, ActiveCalls: calls, ActiveChannels: chans, CallsFinished: s.finished.Load(),
		EventsSent: s.eventsSent.Load(), SessionsDropped: s.dropped.Load()}
}

// at schedules fn after d of virtual time, holding s.mu while it runs.
func (s *Sim) at(d time.Duration, fn func()) {
	s.clock.after(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		fn()
	})
}

func (s *Sim) acceptLoop(ctx context.Context) {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("sim: accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sess := s.newSession(conn)
		if sess == nil {
			continue
		}
		s.wg.Add(2)
		go func() { defer s.wg.Done(); sess.writeLoop() }()
		go func() { defer s.wg.Done(); sess.serve(ctx) }()
	}
}

func (s *Sim) newSession(conn net.Conn) *session {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if !s.running.Load() {
		_ = conn.Close()
		return nil
	}
	s.nextSess++
	sess := &session{
		sim:  s,
		id:   s.nextSess,
		conn: conn,
		out:  make(chan []byte, s.cfg.SessionQueue),
		done: make(chan struct{}),
	}
	s.sessions[sess.id] = sess
	return sess
}

func (s *Sim) removeSession(sess *session) {
	s.sessMu.Lock()
	delete(s.sessions, sess.id)
	s.sessMu.Unlock()
}

// broadcast sends an event to every logged-in session whose read class and Events mask include
// cls. It never blocks: a session whose queue is full is a slow reader and is dropped, as
// Asterisk drops a session whose write exceeds writetimeout.
func (s *Sim) broadcast(cls class, m *ami.Message) {
	var data []byte
	s.sessMu.RLock()
	defer s.sessMu.RUnlock()
	for _, sess := range s.sessions {
		if !sess.wants(cls) {
			continue
		}
		if data == nil {
			data = encodeBytes(m)
		}
		if !sess.tryEnqueue(data) {
			s.dropped.Add(1)
			s.log.Warn("sim: dropping slow AMI session", "session", sess.id, "user", sess.username())
			go sess.close()
			continue
		}
		s.eventsSent.Add(1)
	}
}

func (s *Sim) deliverSummaries() {
	for sum := range s.summaries {
		s.mu.Lock()
		fns := append([]func(CallSummary){}, s.onCall...)
		s.mu.Unlock()
		for _, fn := range fns {
			fn(sum)
		}
	}
}

// publishSummary queues a finished call for the OnCall callbacks. The caller holds s.mu.
func (s *Sim) publishSummary(sum CallSummary) {
	s.finished.Add(1)
	if s.summClosed {
		return
	}
	select {
	case s.summaries <- sum:
	default:
	}
}
