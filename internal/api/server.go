// Package api serves the job API (contract §4): Odoo POSTs a job envelope over HTTPS, the agent
// validates it, acknowledges at once and runs the job in a bounded pool; the result goes back to
// Odoo through the durable delivery spool as a callback and/or a user notification.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/jobs"
	"github.com/odoopbx/odoopbx/internal/tlsutil"
)

// Path is the job endpoint (contract §4.1).
const Path = "/app/asterisk_plus/agent"

// Server limits of contract §4.1 and §4.7.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 15 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// syncWait is how long a sync request waits for its result before going on async.
	syncWait = 4 * time.Second
	// enqueueTimeout bounds the hand-over of a result to the spool.
	enqueueTimeout = 10 * time.Second
)

// Defaults for zero Config fields (Appendix A).
const (
	DefaultMaxBodyBytes = 4 << 20
	DefaultWorkers      = 16
	DefaultQueue        = 1000
	DefaultMaxConns     = 512
	DefaultNotifyMethod = "asterisk_plus_notify"
)

// ErrNoToken is returned when no api.token is configured: the job API fails closed.
var ErrNoToken = errors.New("api: no api.token is configured, so the job API stays off (set api.token, e.g. with odoopbx-agent init)")

// Functions is what the server needs of the function registry; *jobs.Registry implements it.
type Functions interface {
	Lookup(name string) (f jobs.Func, canonical string, ok bool)
	Timeout(canonical string) time.Duration
}

// Config configures the job API.
type Config struct {
	// Listen is host:port (api.listen).
	Listen string
	// TLS serves HTTPS (api.tls). Plain HTTP is allowed only on a loopback address (§1.4).
	TLS bool
	// The certificate, by precedence: TLSConfig, Certificate, or CertFile/KeyFile loaded (or
	// generated, with ExtraSANs) by tlsutil.LoadOrCreate.
	TLSConfig         *tls.Config
	Certificate       *tls.Certificate
	CertFile, KeyFile string
	ExtraSANs         []string
	// Tokens are api.token and api.token_next; empty ones are ignored, at least one is required.
	Tokens []config.Secret
	// AllowFrom lists source CIDRs or addresses (api.allow_from); empty allows any source.
	AllowFrom    []string
	MaxBodyBytes int64
	Workers      int
	Queue        int
	// MaxConns bounds concurrent connections, so a flood cannot exhaust goroutines.
	MaxConns  int
	Functions Functions
	// Enqueuer takes callbacks and notifications for durable delivery.
	Enqueuer delivery.Enqueuer
	// NotifyMethod is odoo.notify_method.
	NotifyMethod string
	// OnAuthFailure is called for each request with a missing or wrong token (the security
	// engine's AgentAuthFailed pseudo-event). It runs in the request goroutine: it must not block.
	OnAuthFailure func(netip.AddrPort)
	Logger        *slog.Logger
	// Registerer receives the API's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer

	// syncWait overrides the 4 s sync wait in tests.
	syncWait time.Duration
}

// Server is the job API; it implements agent.Component.
type Server struct {
	cfg     Config
	log     *slog.Logger
	allow   []netip.Prefix
	tokens  [][sha256.Size]byte
	queue   chan *job
	limiter *authLimiter
	dedup   *dedupCache
	metrics *metrics

	ready   atomic.Bool // accepting jobs
	running atomic.Int32
	busy    atomic.Int32 // workers running a job

	mu          sync.Mutex
	httpServer  *http.Server
	listener    net.Listener
	fingerprint string
	cancel      context.CancelFunc
	workers     sync.WaitGroup
	serveDone   chan struct{}
	stopOnce    sync.Once
	stopErr     error
}

var _ agent.Component = (*Server)(nil)

// job is one accepted request.
type job struct {
	env       envelope
	f         jobs.Func
	canonical string
	timeout   time.Duration
	accepted  time.Time

	mu          sync.Mutex
	syncWaiting bool // the HTTP handler still waits to answer inline
	finished    bool
	outcome     outcome
	done        chan struct{}
}

// New validates the configuration and registers the metrics; Start listens.
func New(cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.NotifyMethod == "" {
		cfg.NotifyMethod = DefaultNotifyMethod
	}
	if cfg.syncWait <= 0 {
		cfg.syncWait = syncWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("part", "api"),
		limiter: newAuthLimiter(),
		dedup:   newDedupCache(),
	}
	for _, t := range cfg.Tokens {
		if t.Reveal() != "" {
			s.tokens = append(s.tokens, sha256.Sum256([]byte(t.Reveal())))
		}
	}
	if len(s.tokens) == 0 {
		return nil, ErrNoToken
	}
	if cfg.Functions == nil {
		return nil, errors.New("api: no function registry")
	}
	if cfg.Enqueuer == nil {
		return nil, errors.New("api: no delivery enqueuer for job results")
	}
	for _, a := range cfg.AllowFrom {
		p, err := parseAllow(a)
		if err != nil {
			return nil, err
		}
		s.allow = append(s.allow, p)
	}
	s.queue = make(chan *job, cfg.Queue)
	m, err := newMetrics(cfg.Registerer, func() float64 { return float64(len(s.queue)) })
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

func parseAllow(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("api: api.allow_from entry %q is not a CIDR or an address (write 10.0.0.0/8 or 192.0.2.7)", s)
}

// Name implements agent.Component.
func (s *Server) Name() string { return "api" }

// Start listens on cfg.Listen and starts the workers.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpServer != nil {
		return errors.New("api: already started")
	}
	var tlsConf *tls.Config
	if s.cfg.TLS {
		c, err := s.tlsConfig()
		if err != nil {
			return err
		}
		tlsConf = c
	}
	if !s.cfg.TLS && !loopbackListen(s.cfg.Listen) {
		return fmt.Errorf("api: plain HTTP is allowed only on a loopback address, and api.listen is %s: turn api.tls on or listen on 127.0.0.1", s.cfg.Listen)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", s.cfg.Listen, err)
	}
	if !s.cfg.TLS {
		if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
			ln.Close()
			return fmt.Errorf("api: plain HTTP is allowed only on a loopback address, and api.listen is %s: turn api.tls on or listen on 127.0.0.1", s.cfg.Listen)
		}
		s.log.Warn("api: serving plain HTTP on loopback (api.tls is off)", "listen", ln.Addr().String())
	}
	ln = netutil.LimitListener(ln, s.cfg.MaxConns)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	// HTTP/1.1 only: Odoo's client speaks nothing else, and HTTP/2 would let one connection open
	// hundreds of streams, each a goroutine, before any token is checked.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	s.httpServer = &http.Server{
		Protocols:         protocols,
		Handler:           http.HandlerFunc(s.serveHTTP),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return runCtx },
	}
	s.listener = ln
	for range s.cfg.Workers {
		s.workers.Add(1)
		go s.worker(runCtx)
	}
	s.serveDone = make(chan struct{})
	srv := s.httpServer
	go func() {
		defer close(s.serveDone)
		var err error
		if tlsConf != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api: server stopped", "err", err)
		}
	}()
	s.ready.Store(true)
	s.running.Store(1)
	// Bound to ctx as well as to Stop: when the agent's context ends first, shut down in order.
	go func() {
		select {
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			defer cancel()
			if err := s.Stop(stopCtx); err != nil {
				s.log.Error("api: stop", "err", err)
			}
		case <-runCtx.Done():
		}
	}()
	s.log.Info("api: job API listening", "listen", ln.Addr().String(), "tls", s.cfg.TLS, "workers", s.cfg.Workers, "queue", s.cfg.Queue)
	return nil
}

// loopbackListen reports whether a listen address can only be a loopback one: a loopback IP
// literal or localhost. An empty host (every interface) is not. The bound address is checked
// again after listening, since localhost is resolved.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (s *Server) tlsConfig() (*tls.Config, error) {
	switch {
	case s.cfg.TLSConfig != nil:
		c := s.cfg.TLSConfig.Clone()
		if c.MinVersion < tls.VersionTLS12 {
			c.MinVersion = tls.VersionTLS12
		}
		return c, nil
	case s.cfg.Certificate != nil:
		return tlsutil.ServerConfig(*s.cfg.Certificate), nil
	case s.cfg.CertFile != "" && s.cfg.KeyFile != "":
		cert, fp, err := tlsutil.LoadOrCreate(s.cfg.CertFile, s.cfg.KeyFile, s.cfg.ExtraSANs)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		s.fingerprint = fp
		return tlsutil.ServerConfig(cert), nil
	}
	return nil, errors.New("api: api.tls is on but no certificate is configured (tls.cert and tls.key)")
}

// Addr is the listening address, once started.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Fingerprint is the SHA-256 of the certificate loaded from CertFile, once started ("" otherwise).
func (s *Server) Fingerprint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fingerprint
}

// Stop refuses new jobs (503 not_ready), lets in-flight requests finish, cancels running jobs and
// reports the jobs that were queued but never ran as failed, since jobs execute at most once.
func (s *Server) Stop(ctx context.Context) error {
	// Both the lead and the end of Start's context may stop the server: the first call does it,
	// later ones wait for it and get its result.
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	s.mu.Lock()
	srv, cancel, serveDone := s.httpServer, s.cancel, s.serveDone
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	s.ready.Store(false)
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
	}
	<-serveDone
	cancel()
	workersDone := make(chan struct{})
	go func() { s.workers.Wait(); close(workersDone) }()
	select {
	case <-workersDone:
	case <-ctx.Done():
		s.running.Store(0)
		return fmt.Errorf("api: stop: workers still running: %w", ctx.Err())
	}
	for {
		select {
		case j := <-s.queue:
			s.finish(j, stoppedOutcome())
		default:
			s.running.Store(0)
			if err != nil {
				return fmt.Errorf("api: stop: %w", err)
			}
			return nil
		}
	}
}

// stoppedOutcome is the result of a job accepted but never started before the agent stopped.
func stoppedOutcome() outcome {
	const msg = "the agent stopped before the job ran"
	return outcome{result: errorResult(jobs.CodeInternal, msg), code: jobs.CodeInternal, message: msg}
}

// Health implements agent.Component.
func (s *Server) Health() agent.Health {
	detail := map[string]any{
		"queue_depth":    len(s.queue),
		"queue_capacity": s.cfg.Queue,
		"workers":        s.cfg.Workers,
		"workers_busy":   int(s.busy.Load()),
		"tls":            s.cfg.TLS,
	}
	if a := s.Addr(); a != nil {
		detail["listen"] = a.String()
	}
	if fp := s.Fingerprint(); fp != "" {
		detail["cert_sha256"] = fp
	}
	if s.running.Load() == 0 {
		return agent.Health{OK: false, State: "stopped", Detail: detail}
	}
	return agent.Health{OK: true, State: "running", Detail: detail}
}

// worker runs queued jobs until ctx is cancelled.
func (s *Server) worker(ctx context.Context) {
	defer s.workers.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.queue:
			if ctx.Err() != nil {
				// Stopping: select picks at random among ready cases, so a job may come out
				// after the cancel. It must not start.
				s.finish(j, stoppedOutcome())
				return
			}
			s.busy.Add(1)
			jctx, cancel := context.WithTimeout(ctx, j.timeout)
			o := runFunc(jctx, j)
			cancel()
			s.busy.Add(-1)
			s.finish(j, o)
		}
	}
}

// finish records the outcome and delivers it, unless a sync request answers it inline.
func (s *Server) finish(j *job, o outcome) {
	outcomeLabel := "ok"
	if o.failed() {
		outcomeLabel = o.code
	}
	s.metrics.jobs.WithLabelValues(j.canonical, outcomeLabel).Inc()
	s.metrics.latency.WithLabelValues(j.canonical).Observe(time.Since(j.accepted).Seconds())

	j.mu.Lock()
	j.outcome, j.finished = o, true
	inline := j.syncWaiting
	close(j.done)
	j.mu.Unlock()
	if o.failed() {
		s.log.Info("api: job failed", "job_id", j.env.JobID, "fun", j.env.Fun, "code", o.code, "err", o.message)
	} else {
		s.log.Debug("api: job done", "job_id", j.env.JobID, "fun", j.env.Fun)
	}
	if inline {
		return
	}
	items := resultItems(j.env, o, s.cfg.NotifyMethod, time.Now())
	if len(items) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), enqueueTimeout)
	defer cancel()
	if err := s.cfg.Enqueuer.Enqueue(ctx, items...); err != nil {
		s.metrics.deliveryErrs.Inc()
		s.log.Error("api: job result not queued for delivery, Odoo will not get it", "job_id", j.env.JobID, "fun", j.env.Fun, "err", err)
	}
}

// serveHTTP is the job endpoint. The checks run cheapest and least revealing first: source,
// lockout, route, token, then the body.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	src, _ := netip.ParseAddrPort(r.RemoteAddr)
	ip := src.Addr().Unmap()
	if !s.allowed(ip) {
		s.fail(w, http.StatusForbidden, "forbidden", "source address not allowed")
		return
	}
	if s.limiter.locked(ip, time.Now()) {
		w.Header().Set("Retry-After", "300")
		s.fail(w, http.StatusTooManyRequests, "rate_limited", "too many authentication failures, try again later")
		return
	}
	if r.URL.Path != Path {
		s.fail(w, http.StatusNotFound, "not_found", "no such endpoint; jobs go to POST "+Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	if !s.tokenOK(r.Header.Get("x-token")) {
		s.metrics.authFailures.Inc()
		if s.limiter.fail(ip, time.Now()) {
			s.log.Warn("api: source locked out after repeated authentication failures", "addr", ip.String(), "for", authLockout)
		}
		if s.cfg.OnAuthFailure != nil {
			s.cfg.OnAuthFailure(netip.AddrPortFrom(ip, src.Port()))
		}
		s.fail(w, http.StatusUnauthorized, "unauthorized", "missing or wrong x-token")
		return
	}
	if !s.ready.Load() {
		s.fail(w, http.StatusServiceUnavailable, "not_ready", "the agent is shutting down")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		s.fail(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("the body is over %d bytes", s.cfg.MaxBodyBytes))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.fail(w, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("the body is over %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		s.fail(w, http.StatusBadRequest, "bad_request", "could not read the body: "+err.Error())
		return
	}
	env, err := parseEnvelope(body)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f, canonical, ok := s.cfg.Functions.Lookup(env.Fun)
	if !ok {
		s.fail(w, http.StatusUnprocessableEntity, "unknown_function", fmt.Sprintf("unknown function %q", env.Fun))
		return
	}
	s.accept(w, r, env, f, canonical)
}

// accept de-duplicates, queues and acknowledges a valid job.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, env envelope, f jobs.Func, canonical string) {
	if env.JobID == "" {
		env.JobID = strings.ToLower(rand.Text())
	}
	entry, first := s.dedup.reserve(env.JobID, time.Now())
	if !first {
		select {
		case <-entry.ready:
		case <-r.Context().Done():
			return
		}
		status, reply, ok := s.dedup.result(entry)
		if !ok {
			s.fail(w, http.StatusServiceUnavailable, "busy", "the job queue is full, try again later")
			return
		}
		s.metrics.replies.WithLabelValues("duplicate").Inc()
		writeJSON(w, status, reply)
		return
	}
	timeout := env.Timeout
	if timeout == 0 {
		timeout = s.cfg.Functions.Timeout(canonical)
	}
	j := &job{
		env: env, f: f, canonical: canonical,
		timeout:     min(timeout, jobs.MaxTimeout),
		accepted:    time.Now(),
		syncWaiting: env.Sync,
		done:        make(chan struct{}),
	}
	select {
	case s.queue <- j:
	default:
		s.dedup.drop(entry)
		s.fail(w, http.StatusServiceUnavailable, "busy", "the job queue is full, try again later")
		return
	}
	if env.Sync {
		timer := time.NewTimer(s.cfg.syncWait)
		defer timer.Stop()
		select {
		case <-j.done:
		case <-timer.C:
		case <-r.Context().Done():
		}
		j.mu.Lock()
		finished, o := j.finished, j.outcome
		if !finished {
			j.syncWaiting = false // the worker delivers the result as for an async job
		}
		j.mu.Unlock()
		if finished {
			reply, _ := json.Marshal(struct {
				Status string          `json:"status"`
				JobID  string          `json:"job_id"`
				Result json.RawMessage `json:"result"`
			}{"done", env.JobID, o.result})
			s.dedup.settle(entry, http.StatusOK, reply)
			s.metrics.replies.WithLabelValues("done").Inc()
			writeJSON(w, http.StatusOK, reply)
			return
		}
	}
	reply, _ := json.Marshal(map[string]string{"status": "accepted", "job_id": env.JobID})
	s.dedup.settle(entry, http.StatusOK, reply)
	s.metrics.replies.WithLabelValues("accepted").Inc()
	writeJSON(w, http.StatusOK, reply)
}

func (s *Server) allowed(ip netip.Addr) bool {
	if len(s.allow) == 0 {
		return true
	}
	for _, p := range s.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// tokenOK compares the token with every configured one in constant time: hashing first makes the
// comparison independent of the lengths, and no comparison is skipped.
func (s *Server) tokenOK(token string) bool {
	if token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	match := 0
	for i := range s.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], s.tokens[i][:])
	}
	return match == 1
}

func (s *Server) fail(w http.ResponseWriter, status int, code, message string) {
	s.metrics.replies.WithLabelValues(code).Inc()
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
