package ami

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// State is the connection state of the client, as callers can watch it.
type State int32

const (
	StateDisconnected State = iota
	StateConnecting
	StateConnected
	// StateAuthFailed: Asterisk refused the login; the client backs off (2 s doubling to 300 s).
	StateAuthFailed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateAuthFailed:
		return "auth_failed"
	default:
		return "disconnected"
	}
}

// Errors returned by Client.Do.
var (
	ErrNotConnected = errors.New("ami: not connected")
	ErrTimeout      = errors.New("ami: action timeout")
	// ErrAuthFailed is Asterisk's "Authentication failed" (wrong secret, unknown user or ACL: they
	// look the same to the client), or EOF right after a Login.
	ErrAuthFailed = errors.New("ami: authentication failed")
)

// InvalidActionError is an action refused before it was sent: a bad header name, CR or LF in a
// value, a line over 1024 bytes, more than 128 headers, or Originate with Async false.
type InvalidActionError struct{ Reason string }

func (e *InvalidActionError) Error() string { return "ami: invalid action: " + e.Reason }

// ClientConfig configures a Client.
type ClientConfig struct {
	Address  string // host:port
	Username string
	Secret   string
	Auth     string // "md5" (default, falls back to plain when Challenge is refused) or "plain"
	TLS      *tls.Config
	// Events is the Events: mask of the events session ("on", "off", "call,system,...").
	Events string
	// SingleSession carries actions on the events session (degraded but correct, contract §2.10).
	SingleSession bool
	PingInterval  time.Duration // default 10 s
	PingTimeout   time.Duration // default 5 s
	// QueueSize bounds the events queue (default 65536); when full the newest event is dropped and counted.
	QueueSize int
	// Limits bound the reader (zero fields take the defaults).
	Limits Limits
	// OnEventsConnected is called (in its own goroutine) after every login of the events session,
	// with how long the session was down (0 on the first connect).
	OnEventsConnected func(ctx context.Context, gap time.Duration)
	Logger            *slog.Logger

	// OriginateGrace is added to an Originate's Timeout to bound the wait for its
	// OriginateResponse (default 15 s, contract §4.6).
	OriginateGrace time.Duration

	// Backoff bounds, for tests; zero means the contract's values.
	ReconnectMin, ReconnectMax time.Duration // 1 s, 30 s
	AuthRetryMin, AuthRetryMax time.Duration // 2 s, 300 s
}

type role int

const (
	roleEvents role = iota
	roleActions
)

func (r role) String() string {
	if r == roleEvents {
		return "events"
	}
	return "actions"
}

func (r role) letter() string {
	if r == roleEvents {
		return "E"
	}
	return "A"
}

// Stats are the client's counters, for metrics and status.
type Stats struct {
	State          string `json:"state"`
	Version        string `json:"version"`
	EventsReceived uint64 `json:"events_received"`
	EventsDropped  uint64 `json:"events_dropped"`
	FrameErrors    uint64 `json:"frame_errors"`
	ProtocolErrors uint64 `json:"protocol_errors"`
	Reconnects     uint64 `json:"reconnects"`
	AuthFailures   uint64 `json:"auth_failures"`
	ActionsSent    uint64 `json:"actions_sent"`
	ActionTimeouts uint64 `json:"action_timeouts"`
	QueueDepth     int    `json:"queue_depth"`
	QueueCapacity  int    `json:"queue_capacity"`
}

// Client keeps the AMI sessions alive and correlates actions with their replies. The correlator
// is shared by both sessions: OriginateResponse reaches only the events session, while the
// Originate went out on the actions session.
type Client struct {
	cfg    ClientConfig
	log    *slog.Logger
	prefix string // this client's ActionID namespace: 8 random hex digits
	seq    atomic.Uint64
	events chan *Message

	mu       sync.Mutex
	pending  map[string]*pending
	sessions [2]*session
	ready    [2]chan struct{} // closed while the role's session is up
	states   [2]State
	mask     string
	version  string
	watchers map[chan State]struct{}

	eventsReceived, eventsDropped, frameErrors, protocolErrors atomic.Uint64
	reconnects, authFailures, actionsSent, actionTimeouts      atomic.Uint64
	lastDropLog                                                atomic.Int64
}

// NewClient returns a client; Run connects it.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Auth == "" {
		cfg.Auth = "md5"
	}
	if cfg.Events == "" {
		cfg.Events = "on"
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 10 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 5 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 65536
	}
	if cfg.OriginateGrace <= 0 {
		cfg.OriginateGrace = 15 * time.Second
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = time.Second
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 30 * time.Second
	}
	if cfg.AuthRetryMin <= 0 {
		cfg.AuthRetryMin = 2 * time.Second
	}
	if cfg.AuthRetryMax <= 0 {
		cfg.AuthRetryMax = 300 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	c := &Client{
		cfg:      cfg,
		log:      log,
		prefix:   hex.EncodeToString(b[:]),
		events:   make(chan *Message, cfg.QueueSize),
		pending:  make(map[string]*pending),
		mask:     cfg.Events,
		watchers: make(map[chan State]struct{}),
	}
	for i := range c.ready {
		c.ready[i] = make(chan struct{})
	}
	return c
}

// Run connects and reconnects the sessions until ctx is done. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	roles := []role{roleEvents}
	if !c.cfg.SingleSession {
		roles = append(roles, roleActions)
	}
	for _, r := range roles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.keepSession(ctx, r)
		}()
	}
	wg.Wait()
	return nil
}

// Events is the bounded queue of events from the events session.
func (c *Client) Events() <-chan *Message { return c.events }

// State is the combined state: connected only when every session is up.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

func (c *Client) stateLocked() State {
	s := c.states[roleEvents]
	if c.cfg.SingleSession {
		return s
	}
	a := c.states[roleActions]
	switch {
	case s == StateAuthFailed || a == StateAuthFailed:
		return StateAuthFailed
	case s == StateConnected && a == StateConnected:
		return StateConnected
	case s == StateConnecting || a == StateConnecting:
		return StateConnecting
	case s == StateConnected || a == StateConnected:
		return StateConnecting
	}
	return StateDisconnected
}

// Watch returns a channel that receives the combined state whenever it changes (the latest value
// wins if the reader is slow); it is closed when ctx is done, so a range over it ends.
func (c *Client) Watch(ctx context.Context) <-chan State {
	ch := make(chan State, 1)
	c.mu.Lock()
	c.watchers[ch] = struct{}{}
	ch <- c.stateLocked()
	c.mu.Unlock()
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		delete(c.watchers, ch)
		close(ch) // under c.mu, so setState never sends on it afterwards
		c.mu.Unlock()
	}()
	return ch
}

// Version is the AMI version from the last banner ("11.0.0"), or "".
func (c *Client) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		State:          c.State().String(),
		Version:        c.Version(),
		EventsReceived: c.eventsReceived.Load(),
		EventsDropped:  c.eventsDropped.Load(),
		FrameErrors:    c.frameErrors.Load(),
		ProtocolErrors: c.protocolErrors.Load(),
		Reconnects:     c.reconnects.Load(),
		AuthFailures:   c.authFailures.Load(),
		ActionsSent:    c.actionsSent.Load(),
		ActionTimeouts: c.actionTimeouts.Load(),
		QueueDepth:     len(c.events),
		QueueCapacity:  cap(c.events),
	}
}

// SetEventMask changes the events session's Events: mask now (if connected) and for every later
// login, so a new events map is subscribed at once and after reconnects.
func (c *Client) SetEventMask(ctx context.Context, mask string) error {
	c.mu.Lock()
	changed := c.mask != mask
	c.mask = mask
	s := c.sessions[roleEvents]
	c.mu.Unlock()
	if !changed || s == nil {
		return nil
	}
	_, err := c.roundTrip(ctx, s, NewMessage("Action", "Events", "EventMask", mask), &pending{})
	return err
}

func (c *Client) setState(r role, st State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.stateLocked()
	c.states[r] = st
	after := c.stateLocked()
	if before == after {
		return
	}
	for ch := range c.watchers {
		select {
		case ch <- after:
		default:
			select { // drop the stale value so the latest one wins
			case <-ch:
			default:
			}
			ch <- after
		}
	}
}

// keepSession connects one session, serves it until it dies and reconnects with backoff.
func (c *Client) keepSession(ctx context.Context, r role) {
	log := c.log.With("session", r.String())
	retry := backoff{min: c.cfg.ReconnectMin, max: c.cfg.ReconnectMax}
	authRetry := backoff{min: c.cfg.AuthRetryMin, max: c.cfg.AuthRetryMax}
	var downSince time.Time
	for ctx.Err() == nil {
		c.setState(r, StateConnecting)
		s, err := c.connect(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var wait time.Duration
			if errors.Is(err, ErrAuthFailed) {
				c.authFailures.Add(1)
				c.setState(r, StateAuthFailed)
				wait = authRetry.next()
				log.Error("ami: login refused; check ami.user, ami.secret and the user's permit/deny in manager.conf", "err", err, "retry_in", wait.Round(time.Millisecond))
			} else {
				c.setState(r, StateDisconnected)
				wait = retry.next()
				log.Warn("ami: connect failed", "addr", c.cfg.Address, "err", err, "retry_in", wait.Round(time.Millisecond))
			}
			if downSince.IsZero() {
				downSince = time.Now()
			}
			if !sleepCtx(ctx, wait) {
				break
			}
			continue
		}
		authRetry.reset()
		gap := time.Duration(0)
		if !downSince.IsZero() {
			gap = time.Since(downSince)
			c.reconnects.Add(1)
		}
		c.attach(r, s)
		log.Info("ami: connected", "addr", c.cfg.Address, "version", s.version)
		if r == roleEvents && c.cfg.OnEventsConnected != nil {
			go c.cfg.OnEventsConnected(ctx, gap)
		}
		err = c.serve(ctx, s)
		c.detach(r, s)
		downSince = time.Now()
		if ctx.Err() != nil {
			break
		}
		c.setState(r, StateDisconnected)
		// A session that died young backs off, so a flapping Asterisk is not hammered.
		if time.Since(s.started) < 30*time.Second {
			wait := retry.next()
			log.Warn("ami: session lost", "err", err, "retry_in", wait.Round(time.Millisecond))
			if !sleepCtx(ctx, wait) {
				break
			}
		} else {
			retry.reset()
			log.Warn("ami: session lost, reconnecting", "err", err)
		}
	}
	c.setState(r, StateDisconnected)
}

func (c *Client) attach(r role, s *session) {
	c.mu.Lock()
	c.sessions[r] = s
	c.version = s.version
	close(c.ready[r])
	if c.cfg.SingleSession {
		c.sessions[roleActions] = s
		close(c.ready[roleActions])
	}
	c.mu.Unlock()
	c.setState(r, StateConnected)
}

// detach forgets a dead session and fails the actions still waiting on it.
func (c *Client) detach(r role, s *session) {
	c.mu.Lock()
	c.sessions[r] = nil
	c.ready[r] = make(chan struct{})
	if c.cfg.SingleSession {
		c.sessions[roleActions] = nil
		c.ready[roleActions] = make(chan struct{})
	}
	var orphans []*pending
	for _, p := range c.pending {
		if p.sess == s {
			orphans = append(orphans, p)
		}
	}
	c.mu.Unlock()
	for _, p := range orphans {
		p.abandon()
	}
}

// session is one logged-in AMI connection.
type session struct {
	role    role
	conn    net.Conn
	r       *Reader
	version string
	started time.Time

	wmu      sync.Mutex
	wbuf     []byte
	dead     chan struct{}
	deadOnce sync.Once
	deadErr  error
}

func (s *session) kill(err error) {
	s.deadOnce.Do(func() {
		s.deadErr = err
		close(s.dead)
		s.conn.Close()
	})
}

func (s *session) write(m *Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.dead:
		return ErrNotConnected
	default:
	}
	s.wbuf = m.AppendWire(s.wbuf[:0])
	_ = s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.conn.Write(s.wbuf); err != nil {
		s.kill(fmt.Errorf("ami: write: %w", err))
		return ErrNotConnected
	}
	return nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if c.cfg.TLS != nil {
		td := &tls.Dialer{NetDialer: d, Config: c.cfg.TLS}
		return td.DialContext(ctx, "tcp", c.cfg.Address)
	}
	return d.DialContext(ctx, "tcp", c.cfg.Address)
}

// connect dials, reads the banner and logs in. The reader it creates is kept for the session,
// so events that arrive right after the login response (FullyBooted) are not lost.
func (c *Client) connect(ctx context.Context, r role) (*session, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	s := &session{role: r, conn: conn, r: NewReaderLimits(conn, c.cfg.Limits), started: time.Now(), dead: make(chan struct{})}
	banner, err := s.r.ReadBanner()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ami: banner: %w", err)
	}
	s.version = BannerVersion(banner)
	if err := c.login(s, r); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return s, nil
}

func (c *Client) login(s *session, r role) error {
	events := "off"
	if r == roleEvents {
		c.mu.Lock()
		events = c.mask
		c.mu.Unlock()
	}
	login := NewMessage("Action", "Login", "ActionID", c.nextID(r), "Username", c.cfg.Username)
	if strings.EqualFold(c.cfg.Auth, "md5") {
		id := c.nextID(r)
		if err := s.write(NewMessage("Action", "Challenge", "ActionID", id, "AuthType", "MD5")); err != nil {
			return fmt.Errorf("ami: challenge: %w", s.deadErr)
		}
		resp, err := readResponse(s.r, id)
		if err != nil {
			return fmt.Errorf("ami: challenge: %w", err)
		}
		if challenge := resp.Get("Challenge"); !resp.IsError() && challenge != "" {
			sum := md5.Sum([]byte(challenge + c.cfg.Secret))
			login.Add("AuthType", "MD5")
			login.Add("Key", hex.EncodeToString(sum[:]))
		} else {
			c.log.Warn("ami: MD5 challenge refused, falling back to plain login", "message", resp.Get("Message"))
			login.Add("Secret", c.cfg.Secret)
		}
	} else {
		login.Add("Secret", c.cfg.Secret)
	}
	login.Add("Events", events)
	if err := s.write(login); err != nil {
		return fmt.Errorf("ami: login: %w", s.deadErr)
	}
	resp, err := readResponse(s.r, login.ActionID())
	if err != nil {
		// Asterisk closes the socket after a failed login: EOF here is a refusal, not a network error.
		return fmt.Errorf("%w (connection closed after Login: %v)", ErrAuthFailed, err)
	}
	if resp.IsError() {
		return fmt.Errorf("%w: %s", ErrAuthFailed, resp.Get("Message"))
	}
	return nil
}

// readResponse reads until the response with the ActionID; nothing else arrives before login.
func readResponse(r *Reader, id string) (*Message, error) {
	for {
		m, err := r.ReadMessage()
		if err != nil {
			var fe *FrameError
			if errors.As(err, &fe) {
				continue
			}
			return nil, err
		}
		if m.Kind() == KindResponse && m.ActionID() == id {
			return m, nil
		}
	}
}

// serve reads the session until it dies, pinging it on the side.
func (c *Client) serve(ctx context.Context, s *session) error {
	stop := context.AfterFunc(ctx, func() {
		// A polite Logoff lets Asterisk log a clean disconnect; the close follows at once.
		_ = s.write(NewMessage("Action", "Logoff", "ActionID", c.nextID(s.role)))
		s.kill(ctx.Err())
	})
	defer stop()
	go c.pingLoop(s)
	for {
		m, err := s.r.ReadMessage()
		if err != nil {
			var fe *FrameError
			if errors.As(err, &fe) {
				c.frameErrors.Add(1)
				c.log.Error("ami: skipped a malformed message", "session", s.role.String(), "err", err)
				continue
			}
			s.kill(fmt.Errorf("ami: read: %w", err))
			return s.deadErr
		}
		m.Received = time.Now()
		c.route(s, m)
	}
}

func (c *Client) pingLoop(s *session) {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.dead:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PingTimeout)
		_, err := c.roundTrip(ctx, s, NewMessage("Action", "Ping"), &pending{})
		cancel()
		if err != nil {
			s.kill(fmt.Errorf("ami: no answer to Ping within %s", c.cfg.PingTimeout))
			return
		}
	}
}

// route hands a message to the action waiting for it, to the events queue, or both.
func (c *Client) route(s *session, m *Message) {
	kind, event, id := m.envelope()
	if kind == KindInvalid {
		c.protocolErrors.Add(1)
		c.log.Warn("ami: message is neither event nor response", "session", s.role.String(), "message", truncate(m.String(), 200))
		return
	}
	consumed := false
	var p *pending
	if len(id) > len(c.prefix) && id[:len(c.prefix)] == c.prefix {
		c.mu.Lock()
		p = c.pending[id]
		c.mu.Unlock()
		if p != nil {
			consumed = p.deliver(m)
		}
	}
	if kind != KindEvent {
		if !consumed {
			c.log.Debug("ami: response with no waiting action (timed out earlier?)", "action_id", id)
		}
		return
	}
	// OriginateResponse and action-sent UserEvents are broadcast events: they answer an action
	// and are also forwarded through the events map. List items only answer their action.
	if consumed && !isBroadcast(event) {
		return
	}
	if s.role != roleEvents {
		return
	}
	if consumed {
		m = p.forwardCopy(m)
	}
	c.eventsReceived.Add(1)
	select {
	case c.events <- m:
	default:
		n := c.eventsDropped.Add(1)
		// Asterisk drops a slow reader, so the reader never waits: the newest event is dropped,
		// counted, and logged at most once a second.
		now := time.Now().UnixNano()
		if last := c.lastDropLog.Load(); now-last > int64(time.Second) && c.lastDropLog.CompareAndSwap(last, now) {
			c.log.Error("ami: events queue full, dropping events", "dropped_total", n, "capacity", cap(c.events))
		}
	}
}

func isBroadcast(event string) bool {
	return strings.EqualFold(event, "OriginateResponse") || strings.EqualFold(event, "UserEvent")
}

func (c *Client) nextID(r role) string {
	return c.prefix + "-" + r.letter() + "-" + fmt.Sprintf("%06d", c.seq.Add(1))
}

// Do sends one action on the actions session and returns every message of its reply: the
// response; for a list action the response, the items and the Complete event; for an async
// Originate the response and the correlated OriginateResponse event (contract §2.4-2.5, §4.6).
//
// A "Response: Error" is a reply, not an error: err is only ErrNotConnected (no session came up
// before ctx ended, or it died), ErrTimeout (ctx's deadline passed before the reply), an
// *InvalidActionError, or ctx's error when it was cancelled.
//
// The ActionID is always the client's own; one given by the caller is put back in every returned
// message. Originate is forced async (an explicit false is refused), and after its Success the
// client waits for the OriginateResponse up to the Originate's Timeout/1000 + 15 s (at most 180 s),
// past ctx's deadline but not past its cancellation. Command output is normalised: the response
// holds one Output header per line and a "content" header with the lines joined by "\n".
func (c *Client) Do(ctx context.Context, action *Message) ([]*Message, error) {
	a, origID, err := c.prepare(action)
	if err != nil {
		return nil, err
	}
	s, err := c.waitSession(ctx, roleActions)
	if err != nil {
		return nil, err
	}
	p := &pending{
		origID:    origID,
		originate: strings.EqualFold(a.Get("Action"), "Originate"),
		channelID: a.Get("ChannelId"),
	}
	msgs, err := c.roundTrip(ctx, s, a, p)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(a.Get("Action"), "Command") && len(msgs) > 0 {
		msgs[0].Add("content", strings.Join(msgs[0].Values("Output"), "\n"))
	}
	if origID != "" {
		for _, m := range msgs {
			m.Set("ActionID", origID)
		}
	}
	return msgs, nil
}

// prepare validates a copy of the action and puts Action and a fresh ActionID first.
func (c *Client) prepare(action *Message) (*Message, string, error) {
	name := action.Get("Action")
	switch strings.ToLower(name) {
	case "":
		return nil, "", &InvalidActionError{Reason: "the Action header is missing"}
	case "login", "logoff", "challenge":
		return nil, "", &InvalidActionError{Reason: name + " is managed by the agent's own sessions"}
	}
	origID := action.ActionID()
	a := &Message{Headers: make([]Header, 0, len(action.Headers)+2)}
	a.Add("Action", name)
	a.Add("ActionID", c.nextID(roleActions))
	for _, h := range action.Headers {
		if strings.EqualFold(h.Name, "Action") || strings.EqualFold(h.Name, "ActionID") {
			continue
		}
		a.Headers = append(a.Headers, h)
	}
	if strings.EqualFold(name, "Originate") {
		if v, ok := a.Lookup("Async"); !ok {
			a.Add("Async", "true")
		} else if !astTrue(v) {
			return nil, "", &InvalidActionError{Reason: "Originate must be asynchronous (Async: true): a synchronous one blocks the AMI session until the dial ends"}
		}
	}
	if err := ValidateAction(a); err != nil {
		return nil, "", err
	}
	return a, origID, nil
}

// astTrue is Asterisk's ast_true: yes, true, y, t, 1, on.
func astTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

// waitSession waits for the role's session until ctx ends (contract §4.6: "if AMI is down, wait up
// to timeout for a reconnect").
func (c *Client) waitSession(ctx context.Context, r role) (*session, error) {
	for {
		c.mu.Lock()
		s, ready := c.sessions[r], c.ready[r]
		c.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, ctx.Err()
			}
			return nil, ErrNotConnected
		}
	}
}

// roundTrip sends a prepared action on s and waits for its whole reply; p says what to wait for.
func (c *Client) roundTrip(ctx context.Context, s *session, a *Message, p *pending) ([]*Message, error) {
	id := a.ActionID()
	if id == "" {
		id = c.nextID(s.role)
		a.Set("ActionID", id)
	}
	p.sess, p.responded, p.done = s, make(chan struct{}), make(chan struct{})
	originate := p.originate
	c.mu.Lock()
	c.pending[id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := s.write(a); err != nil {
		return nil, err
	}
	c.actionsSent.Add(1)

	if err := c.wait(ctx, p, p.responded); err != nil {
		return nil, err
	}
	if originate {
		if resp := p.response(); resp != nil && !resp.IsError() {
			c.awaitOriginateResponse(ctx, p, a)
			select {
			case <-p.done:
			default: // the wait ended by cancellation, not by a reply
				return nil, ctx.Err()
			}
		}
	}
	if err := c.wait(ctx, p, p.done); err != nil {
		return nil, err
	}
	if p.lost {
		return nil, ErrNotConnected
	}
	return p.reply(), nil
}

// wait waits for ch (or the end of the whole reply) unless ctx ends first. A reply that is already
// complete wins over a deadline that passed at the same moment.
func (c *Client) wait(ctx context.Context, p *pending, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-p.done:
		return nil
	case <-ctx.Done():
		select {
		case <-ch:
			return nil
		case <-p.done:
			return nil
		default:
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		c.actionTimeouts.Add(1)
		return ErrTimeout
	}
}

// awaitOriginateResponse waits for the correlated OriginateResponse, past ctx's deadline (the
// Originate's own Timeout governs) but not past its cancellation.
func (c *Client) awaitOriginateResponse(ctx context.Context, p *pending, a *Message) {
	wait := 30*time.Second + c.cfg.OriginateGrace // Asterisk's default Originate Timeout is 30 s
	if ms, err := strconv.ParseInt(strings.TrimSpace(a.Get("Timeout")), 10, 64); err == nil && ms >= 0 {
		wait = time.Duration(ms)*time.Millisecond + c.cfg.OriginateGrace
	}
	wait = min(wait, 180*time.Second)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			close(cancelled)
		}
	})
	defer stop()
	select {
	case <-p.done:
	case <-cancelled:
	case <-timer.C:
		p.finishWith(NewMessage("Response", "Error", "ActionID", a.ActionID(), "Message", "OriginateResponse timeout"))
	}
}

// pending is an action waiting for its reply.
type pending struct {
	sess      *session
	originate bool
	// origID is the caller's ActionID and channelID the Originate's ChannelId: the forwarded copy
	// of a broadcast reply carries them, so the events map sees what the caller knows.
	origID, channelID string

	mu        sync.Mutex
	resp      *Message
	items     []*Message
	origResp  *Message
	extra     *Message
	listOpen  bool
	finished  bool
	lost      bool
	responded chan struct{} // closed at the response
	done      chan struct{}
}

// forwardCopy is the broadcast reply as the events map should see it: with the caller's ActionID
// (not the client's wire one) and, for an Originate, its ChannelId, which a failed OriginateResponse
// otherwise lacks (Uniqueid: <unknown>).
func (p *pending) forwardCopy(m *Message) *Message {
	if p.origID == "" && p.channelID == "" {
		return m
	}
	m = m.Clone()
	if p.origID != "" {
		m.Set("ActionID", p.origID)
	}
	if p.channelID != "" && !m.Has("ChannelId") {
		m.Add("ChannelId", p.channelID)
	}
	return m
}

func (p *pending) response() *Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resp
}

// deliver takes a message carrying the action's ActionID and reports whether it belongs to the reply.
func (p *pending) deliver(m *Message) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return false
	}
	switch {
	case m.Kind() == KindResponse && p.resp == nil:
		p.resp = m
		p.markResponded()
		switch {
		case m.IsError(), strings.EqualFold(m.Get("Response"), "Goodbye"):
			p.finish()
		case strings.EqualFold(m.Get("EventList"), "start"):
			p.listOpen = true
		case p.originate:
			if p.origResp != nil {
				p.finish()
			}
		default:
			p.finish()
		}
		return true
	case p.originate && strings.EqualFold(m.Event(), "OriginateResponse"):
		// It can beat the response when the two sessions' readers race.
		p.origResp = m
		if p.resp != nil && !p.resp.IsError() {
			p.finish()
		}
		return true
	case p.listOpen && m.Kind() == KindEvent:
		p.items = append(p.items, m)
		el := m.Get("EventList")
		if strings.EqualFold(el, "Complete") || strings.EqualFold(el, "cancelled") ||
			(el == "" && strings.HasSuffix(m.Event(), "Complete")) {
			p.finish()
		}
		return true
	}
	return false
}

func (p *pending) markResponded() {
	select {
	case <-p.responded:
	default:
		close(p.responded)
	}
}

func (p *pending) finish() {
	if !p.finished {
		p.finished = true
		close(p.done)
	}
}

func (p *pending) finishWith(m *Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.extra = m
	p.finish()
}

// abandon ends the wait because the session died. An Originate already answered keeps waiting: its
// OriginateResponse comes on the events session.
func (p *pending) abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished || (p.originate && p.resp != nil && !p.resp.IsError()) {
		return
	}
	p.lost = true
	p.finish()
}

func (p *pending) reply() []*Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Message, 0, 2+len(p.items))
	if p.resp != nil {
		out = append(out, p.resp.Clone())
	}
	for _, m := range p.items {
		out = append(out, m.Clone())
	}
	if p.origResp != nil {
		out = append(out, p.origResp.Clone())
	}
	if p.extra != nil {
		out = append(out, p.extra)
	}
	return out
}

type backoff struct {
	min, max, cur time.Duration
}

// next doubles the wait up to max, with ±20 % jitter so many agents do not retry in step.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	var r [2]byte
	_, _ = rand.Read(r[:])
	frac := float64(uint16(r[0])<<8|uint16(r[1]))/65535.0*0.4 - 0.2
	return time.Duration(float64(b.cur) * (1 + frac))
}

func (b *backoff) reset() { b.cur = 0 }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
