// Package admin is the agent's local admin listener (contract L12): /healthz for probes, /metrics
// for Prometheus and a read-only status page that updates itself over Server-Sent Events. It is
// off unless metrics.listen is set, and requires a bearer token (metrics.token) on any address
// that is not loopback.
package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/odoopbx/odoopbx/internal/agent"
)

// DefaultListen is the address used when the listener is enabled without one.
const DefaultListen = "127.0.0.1:48002"

const (
	defaultRefresh  = 2 * time.Second
	statusTimeout   = 2 * time.Second
	maxStreams      = 32
	tokenCookieName = "odoopbx_admin"
)

// Config configures the admin listener.
type Config struct {
	// Listen is host:port (DefaultListen when empty).
	Listen string
	// Token is the bearer token; required when Listen is not a loopback address. When set it is
	// checked on every request, loopback or not.
	Token string
	// Registry is what /metrics serves (an empty registry when nil).
	Registry *prometheus.Registry
	// Health reports every part's health for /healthz and the page (nil: no parts).
	Health func() map[string]agent.Health
	// Status feeds the status page (nil: the page shows the health parts only).
	Status StatusSource
	// Refresh is how often the live page updates (default 2 s).
	Refresh time.Duration
	Logger  *slog.Logger
}

// Server is the admin listener. It implements agent.Component.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	started time.Time

	mu      sync.Mutex
	srv     *http.Server
	ln      net.Listener
	serving atomic.Bool
	streams atomic.Int32
	done    chan struct{}
	quit    chan struct{} // closed when Stop begins, so live pages end and Shutdown can finish
}

// New validates the config and builds the handler; Start listens.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: metrics.listen %q: %w", cfg.Listen, err)
	}
	if !isLoopback(host) && cfg.Token == "" {
		return nil, fmt.Errorf("admin: metrics.token is required when metrics.listen (%s) is not a loopback address", cfg.Listen)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = defaultRefresh
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, log: log.With("part", "admin"), started: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{ErrorLog: slogErrorLog{s.log}}))
	mux.HandleFunc("GET /status.json", s.statusJSON)
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /{$}", s.page)
	s.handler = s.authenticate(mux)
	return s, nil
}

type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Error("admin: metrics: " + fmt.Sprint(v...)) }

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Handler is the HTTP handler (for tests and for mounting elsewhere).
func (s *Server) Handler() http.Handler { return s.handler }

// Name implements agent.Component.
func (s *Server) Name() string { return "admin" }

// Start listens on cfg.Listen and serves until Stop.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	quit := make(chan struct{})
	var once sync.Once
	srv.RegisterOnShutdown(func() { once.Do(func() { close(quit) }) })
	s.mu.Lock()
	s.srv, s.ln, s.done, s.quit = srv, ln, make(chan struct{}), quit
	s.mu.Unlock()
	s.serving.Store(true)
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin: serve", "err", err)
		}
		s.serving.Store(false)
	}()
	s.log.Info("admin: listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the listening address after Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop closes the listener and the live streams, waiting at most until ctx is done.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		_ = srv.Close()
	}
	<-done
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: stop: %w", err)
	}
	return nil
}

// Health implements agent.Component.
func (s *Server) Health() agent.Health {
	if !s.serving.Load() {
		return agent.Health{OK: false, State: "stopped"}
	}
	return agent.Health{OK: true, State: "running", Detail: map[string]any{"addr": s.Addr(), "live_pages": s.streams.Load()}}
}

// authenticate enforces the bearer token when one is configured. A browser cannot send a bearer
// header, so GET /?token=... trades the token for a strict, HTTP-only cookie and redirects to /.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	want := []byte(s.cfg.Token)
	ok := func(got string) bool { return got != "" && subtle.ConstantTimeCompare([]byte(got), want) == 1 }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found && ok(strings.TrimSpace(auth)) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(tokenCookieName); err == nil && ok(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/" && r.Method == http.MethodGet && ok(r.URL.Query().Get("token")) {
			http.SetCookie(w, &http.Cookie{Name: tokenCookieName, Value: s.cfg.Token, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="odoopbx-agent"`)
		http.Error(w, "admin: a valid bearer token is required", http.StatusUnauthorized)
	})
}

// healthReport is the /healthz body.
type healthReport struct {
	Status string                  `json:"status"`
	Parts  map[string]agent.Health `json:"parts"`
}

func (s *Server) health() healthReport {
	parts := map[string]agent.Health{}
	if s.cfg.Health != nil {
		for name, h := range s.cfg.Health() {
			parts[name] = h
		}
	}
	status := "ok"
	for _, h := range parts {
		if !h.OK {
			status = "degraded"
		}
	}
	return healthReport{Status: status, Parts: parts}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	rep := s.health()
	code := http.StatusOK
	if rep.Status != "ok" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rep)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "admin: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// snapshot is one rendering of the page's data.
type snapshot struct {
	Status
	Health    healthReport `json:"health"`
	Generated time.Time    `json:"generated"`
}

func (s *Server) snapshot(ctx context.Context) snapshot {
	snap := snapshot{Health: s.health(), Generated: time.Now()}
	if s.cfg.Status != nil {
		ctx, cancel := context.WithTimeout(ctx, statusTimeout)
		snap.Status = s.status(ctx)
		cancel()
	}
	if snap.Uptime == 0 {
		snap.Uptime = time.Since(s.started)
	}
	sort.SliceStable(snap.Calls, func(i, j int) bool { return snap.Calls[i].Started.Before(snap.Calls[j].Started) })
	return snap
}

// status calls the source, never letting a panic in an adapter take the agent down.
func (s *Server) status(ctx context.Context) (st Status) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("admin: status source panicked", "panic", p)
			st = Status{}
		}
	}()
	return s.cfg.Status.Status(ctx)
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.snapshot(r.Context()))
}

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:]) // no + or /, which the template would escape
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	nonce := newNonce()
	var buf bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&buf, "page", pageData{snapshot: s.snapshot(r.Context()), Nonce: nonce,
		RefreshSeconds: int((s.cfg.Refresh + time.Second - 1) / time.Second)}); err != nil {
		s.log.Error("admin: render", "err", err)
		http.Error(w, "admin: render failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", fmt.Sprintf("default-src 'none'; style-src 'nonce-%s'; script-src 'nonce-%s'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'", nonce, nonce))
	_, _ = w.Write(buf.Bytes())
}

// events streams the page's live section as Server-Sent Events ("event: status", the HTML of the
// section in data lines), once at once and then every Refresh.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "admin: streaming unsupported", http.StatusInternalServerError)
		return
	}
	if s.streams.Add(1) > maxStreams {
		s.streams.Add(-1)
		http.Error(w, "admin: too many live pages", http.StatusServiceUnavailable)
		return
	}
	defer s.streams.Add(-1)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	s.mu.Lock()
	quit := s.quit
	s.mu.Unlock()
	ticker := time.NewTicker(s.cfg.Refresh)
	defer ticker.Stop()
	var buf bytes.Buffer
	for {
		buf.Reset()
		if err := pageTemplate.ExecuteTemplate(&buf, "live", pageData{snapshot: s.snapshot(r.Context())}); err != nil {
			s.log.Error("admin: render", "err", err)
			return
		}
		if _, err := io.WriteString(w, sseFrame("status", buf.String())); err != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-quit:
			return
		case <-ticker.C:
		}
	}
}

// sseFrame encodes one event: every line of data gets its own "data:" field.
func sseFrame(event, data string) string {
	var b strings.Builder
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteByte('\n')
	for _, line := range strings.Split(strings.ReplaceAll(data, "\r", ""), "\n") {
		b.WriteString("data: ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.String()
}
