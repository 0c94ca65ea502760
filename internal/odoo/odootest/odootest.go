// Package odootest is an in-process fake of Odoo's JSON-RPC endpoint (POST /jsonrpc) for tests:
// it checks the login, records every execute_kw call in arrival order, answers with scripted
// results, Odoo error objects, HTTP statuses, delays or dropped connections, and can be stopped
// and restarted on the same address to play an Odoo outage.
//
// Typical use:
//
//	srv := odootest.Start(t, odootest.Options{})
//	srv.Queue("res.partner", "write", odootest.Response{ErrorName: odootest.ErrSerializationFailure})
//	client := odoo.NewJSONRPC(odoo.Options{URL: srv.URL(), DB: srv.DB(), User: srv.User(), Password: srv.Password()})
//	...
//	srv.WaitCalls(ctx, 3)
//	calls := srv.Calls()
package odootest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Odoo exception names as Odoo 17 reports them in error.data.name.
const (
	ErrAccessDenied         = "odoo.exceptions.AccessDenied"
	ErrAccessError          = "odoo.exceptions.AccessError"
	ErrUserError            = "odoo.exceptions.UserError"
	ErrValidationError      = "odoo.exceptions.ValidationError"
	ErrMissingError         = "odoo.exceptions.MissingError"
	ErrSessionExpired       = "odoo.http.SessionExpiredException"
	ErrAttributeError       = "builtins.AttributeError"
	ErrTypeError            = "builtins.TypeError"
	ErrOperationalError     = "psycopg2.OperationalError"
	ErrSerializationFailure = "psycopg2.errors.SerializationFailure"
	ErrLockNotAvailable     = "psycopg2.errors.LockNotAvailable"
	ErrDeadlockDetected     = "psycopg2.errors.DeadlockDetected"
)

// Options configure the fake. Zero values get the defaults shown.
type Options struct {
	DB       string // "odoo"
	User     string // "agent"
	Password string // "secret" (a password or an API key: Odoo checks both the same way)
	UID      int    // 2
	// TLS serves HTTPS with a certificate for 127.0.0.1/localhost signed by a private CA (see
	// CACertPEM and WriteCAFile).
	TLS bool
	// Addr is the listen address; "127.0.0.1:0" by default.
	Addr string
}

// Response is one scripted answer to an execute_kw call.
type Response struct {
	// Result is marshalled as the JSON-RPC result (nil means true, Odoo's usual answer to write).
	Result any
	// ErrorName, when set, answers an Odoo error object with this exception name (see the Err* constants).
	ErrorName string
	// ErrorMessage is the error's message ("Something went wrong" when empty).
	ErrorMessage string
	// HTTPStatus, when set, answers this status with a plain text body instead of JSON-RPC.
	HTTPStatus int
	// Location is sent with HTTPStatus (for redirects).
	Location string
	// Delay waits this long before answering (cut short when the client goes away or the server stops).
	Delay time.Duration
	// Drop closes the connection without answering.
	Drop bool
}

// Call is one recorded execute_kw call.
type Call struct {
	Model  string
	Method string
	Args   []any
	Kwargs map[string]any
	// RawArgs and RawKwargs are the JSON as received, for exact comparisons.
	RawArgs   json.RawMessage
	RawKwargs json.RawMessage
	// UID is the uid the client sent.
	UID int
	// UserAgent is the request's User-Agent header.
	UserAgent string
	// Answer is what the fake answered ("ok", an exception name, "http <status>", "drop").
	Answer string
	At     time.Time
}

// Handler computes the answer to a call dynamically.
type Handler func(Call) Response

// Server is the fake Odoo.
type Server struct {
	opts Options
	ca   *x509.Certificate
	caPE []byte
	cert tls.Certificate

	mu         sync.Mutex
	addr       string
	srv        *http.Server
	ln         net.Listener
	stopped    bool
	stopCh     chan struct{} // closed on Stop, to cut delays short
	queues     map[string][]Response
	handlers   map[string]Handler
	fallback   Handler
	calls      []Call
	changed    chan struct{} // closed and replaced whenever a call is recorded
	logins     int
	loginFails int
	needLogin  bool
	noAuthent  bool
	password   string
	uid        int
	redirect   struct {
		status   int
		location string
	}
	conns  map[net.Conn]struct{}
	opened int
}

// Start starts a fake for a test and stops it at the test's end.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("odootest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a fake; Close stops it for good.
func New(opts Options) (*Server, error) {
	if opts.DB == "" {
		opts.DB = "odoo"
	}
	if opts.User == "" {
		opts.User = "agent"
	}
	if opts.Password == "" {
		opts.Password = "secret"
	}
	if opts.UID == 0 {
		opts.UID = 2
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	s := &Server{
		opts:     opts,
		queues:   map[string][]Response{},
		handlers: map[string]Handler{},
		changed:  make(chan struct{}),
		password: opts.Password,
		uid:      opts.UID,
		conns:    map[net.Conn]struct{}{},
		stopCh:   make(chan struct{}),
	}
	if opts.TLS {
		if err := s.makeCerts(); err != nil {
			return nil, fmt.Errorf("odootest: %w", err)
		}
	}
	if err := s.listen(opts.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// URL is the base URL (http://127.0.0.1:port or https://...), what odoo.url holds.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	scheme := "http"
	if s.opts.TLS {
		scheme = "https"
	}
	return scheme + "://" + s.addr
}

// Addr is the listen address (host:port), stable across Stop/Restart.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) DB() string   { return s.opts.DB }
func (s *Server) User() string { return s.opts.User }

// Password is the currently accepted password.
func (s *Server) Password() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.password
}

// UID is the uid a successful login returns.
func (s *Server) UID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uid
}

// CACertPEM is the private CA's certificate (TLS only).
func (s *Server) CACertPEM() []byte { return s.caPE }

// WriteCAFile writes the CA certificate to dir/ca.pem and returns the path (TLS only).
func (s *Server) WriteCAFile(dir string) (string, error) {
	if s.caPE == nil {
		return "", errors.New("odootest: not a TLS server")
	}
	p := filepath.Join(dir, "ca.pem")
	return p, os.WriteFile(p, s.caPE, 0o600)
}

// SetPassword changes the accepted password: calls with the old one fail with AccessDenied.
func (s *Server) SetPassword(p string) {
	s.mu.Lock()
	s.password = p
	s.mu.Unlock()
}

// SetUID changes the uid a login returns (and the uid execute_kw accepts).
func (s *Server) SetUID(uid int) {
	s.mu.Lock()
	s.uid = uid
	s.mu.Unlock()
}

// ExpireSession makes execute_kw fail with AccessDenied until the client logs in again, as after
// the agent user's session or API key was revoked and renewed.
func (s *Server) ExpireSession() {
	s.mu.Lock()
	s.needLogin = true
	s.mu.Unlock()
}

// DisableAuthenticate makes common.authenticate fail as on a server without it, so clients fall
// back to common.login.
func (s *Server) DisableAuthenticate(disabled bool) {
	s.mu.Lock()
	s.noAuthent = disabled
	s.mu.Unlock()
}

// Redirect answers every POST to /jsonrpc with status and Location (other paths are served
// normally, so a redirect to "/odoo/jsonrpc" works). status 0 removes it.
func (s *Server) Redirect(status int, location string) {
	s.mu.Lock()
	s.redirect.status, s.redirect.location = status, location
	s.mu.Unlock()
}

// Queue appends scripted answers for model.method, used one per call in order; when the queue is
// empty the Handle function, then the fallback, then the default (result true) answers.
func (s *Server) Queue(model, method string, rs ...Response) {
	s.mu.Lock()
	k := model + "." + method
	s.queues[k] = append(s.queues[k], rs...)
	s.mu.Unlock()
}

// Handle sets a dynamic answer for model.method (nil removes it).
func (s *Server) Handle(model, method string, h Handler) {
	s.mu.Lock()
	if h == nil {
		delete(s.handlers, model+"."+method)
	} else {
		s.handlers[model+"."+method] = h
	}
	s.mu.Unlock()
}

// HandleAll sets the answer for every model.method without a queue or handler of its own.
func (s *Server) HandleAll(h Handler) {
	s.mu.Lock()
	s.fallback = h
	s.mu.Unlock()
}

// Calls returns a copy of the recorded execute_kw calls in arrival order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallsTo returns the recorded calls to model.method.
func (s *Server) CallsTo(model, method string) []Call {
	var out []Call
	for _, c := range s.Calls() {
		if c.Model == model && c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Logins counts successful logins; LoginFailures counts refused ones.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

func (s *Server) LoginFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loginFails
}

// Connections counts the connections accepted so far (to check keep-alive).
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

// Reset forgets the recorded calls and login counts (scripts stay).
func (s *Server) Reset() {
	s.mu.Lock()
	s.calls = nil
	s.logins, s.loginFails = 0, 0
	s.mu.Unlock()
}

// Wait blocks until cond(calls) is true for the recorded calls, or ctx is done.
func (s *Server) Wait(ctx context.Context, cond func([]Call) bool) error {
	for {
		s.mu.Lock()
		ok := cond(s.calls)
		ch := s.changed
		n := len(s.calls)
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("odootest: waited for calls (have %d): %w", n, ctx.Err())
		}
	}
}

// WaitCalls blocks until at least n calls (answered or not) are recorded.
func (s *Server) WaitCalls(ctx context.Context, n int) error {
	return s.Wait(ctx, func(c []Call) bool { return len(c) >= n })
}

// Stop refuses new connections and cuts open ones, keeping the address for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	srv := s.srv
	close(s.stopCh)
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	_ = srv.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Restart accepts connections again on the same address.
func (s *Server) Restart() error {
	s.mu.Lock()
	if !s.stopped {
		s.mu.Unlock()
		return nil
	}
	addr := s.addr
	s.stopCh = make(chan struct{})
	s.mu.Unlock()
	var err error
	// The old socket may linger for a moment; Go sets SO_REUSEADDR, so this rarely loops.
	for i := 0; i < 50; i++ {
		if err = s.listen(addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Close stops the fake for good.
func (s *Server) Close() { s.Stop() }

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("odootest: listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(s.serveHTTP),
		ConnState: func(c net.Conn, st http.ConnState) {
			s.mu.Lock()
			defer s.mu.Unlock()
			switch st {
			case http.StateNew:
				s.conns[c] = struct{}{}
				s.opened++
			case http.StateClosed, http.StateHijacked:
				delete(s.conns, c)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0),
		// An empty map keeps the fake on HTTP/1.1, so Drop can hijack the connection.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	if s.opts.TLS {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.srv, s.ln, s.stopped = srv, ln, false
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  struct {
		Service string            `json:"service"`
		Method  string            `json:"method"`
		Args    []json.RawMessage `json:"args"`
	} `json:"params"`
	ID any `json:"id"`
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	red := s.redirect
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if red.status != 0 && r.URL.Path == "/jsonrpc" {
		w.Header().Set("Location", red.location)
		w.WriteHeader(red.status)
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/jsonrpc") {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req rpcRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeRPC(w, nil, nil, rpcError(200, "builtins.ValueError", "bad JSON: "+err.Error()))
		return
	}
	switch req.Params.Service + "." + req.Params.Method {
	case "common.authenticate", "common.login":
		s.serveLogin(w, &req)
	case "common.version":
		writeRPC(w, req.ID, map[string]any{"server_version": "17.0", "server_version_info": []any{17, 0, 0, "final", 0, ""}, "protocol_version": 1}, nil)
	case "object.execute_kw":
		s.serveExecuteKw(w, r, &req)
	default:
		writeRPC(w, req.ID, nil, rpcError(200, ErrAttributeError, fmt.Sprintf("no method %s on service %s", req.Params.Method, req.Params.Service)))
	}
}

func (s *Server) serveLogin(w http.ResponseWriter, req *rpcRequest) {
	var db, login, password string
	a := req.Params.Args
	if len(a) < 3 || json.Unmarshal(a[0], &db) != nil || json.Unmarshal(a[1], &login) != nil || json.Unmarshal(a[2], &password) != nil {
		writeRPC(w, req.ID, nil, rpcError(200, ErrTypeError, "authenticate() missing required positional arguments"))
		return
	}
	s.mu.Lock()
	if s.noAuthent && req.Params.Method == "authenticate" {
		s.mu.Unlock()
		writeRPC(w, req.ID, nil, rpcError(200, ErrAttributeError, "module 'odoo.service.common' has no attribute 'exp_authenticate'"))
		return
	}
	ok := db == s.opts.DB && login == s.opts.User && password == s.password
	uid := s.uid
	if ok {
		s.logins++
		s.needLogin = false
	} else {
		s.loginFails++
	}
	s.changed = notify(s.changed)
	s.mu.Unlock()
	if !ok {
		if db != s.opts.DB {
			writeRPC(w, req.ID, nil, rpcError(200, "psycopg2.OperationalError", fmt.Sprintf("connection to server failed: FATAL:  database %q does not exist", db)))
			return
		}
		writeRPC(w, req.ID, false, nil) // Odoo answers uid false for a bad login
		return
	}
	writeRPC(w, req.ID, uid, nil)
}

func (s *Server) serveExecuteKw(w http.ResponseWriter, r *http.Request, req *rpcRequest) {
	a := req.Params.Args
	var db, password, model, method string
	var uid int
	if len(a) < 5 || json.Unmarshal(a[0], &db) != nil || json.Unmarshal(a[1], &uid) != nil ||
		json.Unmarshal(a[2], &password) != nil || json.Unmarshal(a[3], &model) != nil || json.Unmarshal(a[4], &method) != nil {
		writeRPC(w, req.ID, nil, rpcError(200, ErrTypeError, "execute_kw() takes db, uid, password, model, method, args[, kwargs]"))
		return
	}
	c := Call{Model: model, Method: method, UID: uid, UserAgent: r.Header.Get("User-Agent"), At: time.Now()}
	if len(a) > 5 {
		c.RawArgs = a[5]
		_ = json.Unmarshal(a[5], &c.Args)
	}
	if len(a) > 6 {
		c.RawKwargs = a[6]
		_ = json.Unmarshal(a[6], &c.Kwargs)
	}

	s.mu.Lock()
	authOK := db == s.opts.DB && uid == s.uid && password == s.password && !s.needLogin
	var resp Response
	if !authOK {
		resp = Response{ErrorName: ErrAccessDenied, ErrorMessage: "Access Denied"}
	} else {
		k := model + "." + method
		switch {
		case len(s.queues[k]) > 0:
			resp = s.queues[k][0]
			s.queues[k] = s.queues[k][1:]
		case s.handlers[k] != nil:
			h := s.handlers[k]
			s.mu.Unlock()
			resp = h(c)
			s.mu.Lock()
		case s.fallback != nil:
			h := s.fallback
			s.mu.Unlock()
			resp = h(c)
			s.mu.Lock()
		}
	}
	switch {
	case resp.Drop:
		c.Answer = "drop"
	case resp.HTTPStatus != 0:
		c.Answer = fmt.Sprintf("http %d", resp.HTTPStatus)
	case resp.ErrorName != "":
		c.Answer = resp.ErrorName
	default:
		c.Answer = "ok"
	}
	stop := s.stopCh
	s.calls = append(s.calls, c)
	s.changed = notify(s.changed)
	s.mu.Unlock()

	if resp.Delay > 0 {
		t := time.NewTimer(resp.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-stop:
			// Cut the connection instead of answering: an Odoo that went away answers nothing.
			t.Stop()
			panic(http.ErrAbortHandler)
		}
	}
	switch {
	case resp.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2: abort the stream
	case resp.HTTPStatus != 0:
		if resp.Location != "" {
			w.Header().Set("Location", resp.Location)
		}
		http.Error(w, http.StatusText(resp.HTTPStatus), resp.HTTPStatus)
	case resp.ErrorName != "":
		msg := resp.ErrorMessage
		if msg == "" {
			msg = "Something went wrong"
		}
		code := 200
		if resp.ErrorName == ErrSessionExpired {
			code = 100
		}
		writeRPC(w, req.ID, nil, rpcError(code, resp.ErrorName, msg))
	default:
		result := resp.Result
		if result == nil {
			result = true
		}
		writeRPC(w, req.ID, result, nil)
	}
}

func notify(ch chan struct{}) chan struct{} {
	close(ch)
	return make(chan struct{})
}

// rpcError builds Odoo 17's error object (odoo.http.serialize_exception under code 200).
func rpcError(code int, name, message string) map[string]any {
	top := "Odoo Server Error"
	if code == 100 {
		top = "Odoo Session Expired"
	}
	return map[string]any{
		"code":    code,
		"message": top,
		"data": map[string]any{
			"name":      name,
			"debug":     "Traceback (most recent call last):\n  (odootest)\n" + name + ": " + message + "\n",
			"message":   message,
			"arguments": []any{message},
			"context":   map[string]any{},
		},
	}
}

func writeRPC(w http.ResponseWriter, id any, result any, rpcErr map[string]any) {
	out := map[string]any{"jsonrpc": "2.0", "id": id}
	if rpcErr != nil {
		out["error"] = rpcErr
	} else {
		out["result"] = result
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Server) makeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "odootest private CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	s.ca = ca
	s.caPE = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	s.cert = tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}
	return nil
}
