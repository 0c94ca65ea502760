// Package control is the daemon's local control socket: an HTTP server on a Unix socket in the
// state dir (mode 0600) through which the CLI reaches the running agent (queue, bans, status), so the
// CLI never fights the daemon over the spool's lock or the firewall's state.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/odoopbx/odoopbx/internal/agent"
)

// SocketName is the socket's file name inside the state dir.
const SocketName = "control.sock"

// SocketPath returns the socket path for a state dir.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketName) }

// Server serves registered handlers on the control socket.
type Server struct {
	path   string
	mux    *http.ServeMux
	log    *slog.Logger
	srv    *http.Server
	ln     net.Listener
	served chan struct{}
}

// NewServer returns a server for the socket at path; Handle mounts handlers before Start.
func NewServer(path string, log *slog.Logger) *Server {
	return &Server{path: path, mux: http.NewServeMux(), log: log}
}

// Handle mounts h on pattern (http.ServeMux syntax, e.g. "GET /queue").
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Name implements agent.Component.
func (s *Server) Name() string { return "control" }

// Health reports whether the socket is being served.
func (s *Server) Health() agent.Health {
	if s.ln == nil {
		return agent.Health{OK: false, State: "stopped"}
	}
	return agent.Health{OK: true, State: "listening", Detail: map[string]any{"socket": s.path}}
}

// Start listens on the socket, replacing a stale socket file left by a crashed agent.
func (s *Server) Start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if c, err := net.DialTimeout("unix", s.path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control: another agent is already running (socket %s answers)", s.path)
	}
	_ = os.Remove(s.path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", s.path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control: serve failed", "err", err)
		}
	}()
	return nil
}

// Stop closes the socket and removes its file.
func (s *Server) Stop(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	<-s.served
	_ = os.Remove(s.path)
	return err
}

// ErrNoDaemon means no agent answers on the control socket; the CLI then works offline.
var ErrNoDaemon = errors.New("control: no running agent")

// Call sends one request to the running agent: body (if not nil) is sent as JSON and the JSON
// answer decoded into out (if not nil). A non-2xx answer becomes an error carrying the answer's
// "error" text. It returns ErrNoDaemon when no agent listens.
func Call(ctx context.Context, stateDir, method, path string, body, out any) error {
	sock := SocketPath(stateDir)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, rd)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return ErrNoDaemon
		}
		return fmt.Errorf("control: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("control: %s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("control: bad answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// WriteJSON answers v as JSON with the status code; handlers use it so the CLI decodes uniformly.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers {"error": msg} with the status code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"error": msg})
}
