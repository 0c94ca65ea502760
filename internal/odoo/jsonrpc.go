package odoo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/odoopbx/odoopbx/internal/version"
)

// Options configure the JSON-RPC client.
type Options struct {
	// URL is Odoo's base URL (odoo.url), e.g. https://odoo.example.com; /jsonrpc is appended.
	URL string
	DB  string
	// User is the agent user's login; Password is its password or an API key (Odoo checks both).
	User     string
	Password string
	// CAFile is a PEM bundle of a private CA that signs Odoo's certificate, used instead of the
	// system roots.
	CAFile string
	// InsecureSkipVerify turns TLS verification off; the constructor logs a WARN.
	InsecureSkipVerify bool
	// ConnectTimeout bounds the TCP connect and the TLS handshake (default 5 s).
	ConnectTimeout time.Duration
	// Timeout bounds one HTTP request, answer included (default 30 s).
	Timeout time.Duration
	Logger  *slog.Logger
	// OnLogin is called after every successful login and re-login, synchronously and outside the
	// client's locks (so it may call ExecuteKw); it should not block for long.
	OnLogin func()
}

// JSONRPC is the Client over Odoo's /jsonrpc endpoint: common.authenticate (or common.login) once,
// then object.execute_kw with the uid and the password on every call. It is safe for concurrent use
// and keeps connections alive through one http.Transport.
type JSONRPC struct {
	opts     Options
	endpoint string
	http     *http.Client
	log      *slog.Logger
	reqID    atomic.Int64

	loginMu sync.Mutex // serialises logins
	mu      sync.Mutex // guards uid and gen
	uid     int
	gen     uint64 // counts successful logins, so concurrent callers re-login only once
}

var _ Client = (*JSONRPC)(nil)

// errPostRedirect stops the http.Client from turning a POST into a GET on 301/302/303.
var errPostRedirect = errors.New("odoo: POST redirected with a method-changing status")

// NewJSONRPC checks the options and builds the client; it does not contact Odoo (Login does).
func NewJSONRPC(o Options) (*JSONRPC, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	u, err := url.Parse(strings.TrimRight(o.URL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, &Error{Kind: KindConfig, Message: fmt.Sprintf("odoo.url %q is not an http(s) URL like https://odoo.example.com", o.URL)}
	}
	if o.DB == "" || o.User == "" {
		return nil, &Error{Kind: KindConfig, Message: "odoo.db and odoo.user are required"}
	}
	log := o.Logger
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, &Error{Kind: KindConfig, Message: "odoo.ca_file: " + err.Error(), Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &Error{Kind: KindConfig, Message: fmt.Sprintf("odoo.ca_file %s holds no PEM certificate", o.CAFile)}
		}
		tlsCfg.RootCAs = pool
	}
	if o.InsecureSkipVerify {
		tlsCfg.InsecureSkipVerify = true
		log.Warn("odoo: TLS verification is OFF (odoo.insecure_skip_verify): anyone on the path can read the agent's Odoo password", "url", o.URL)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		log.Warn("odoo: odoo.url is plain http: the agent's Odoo password travels in clear", "url", o.URL)
	}
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: o.ConnectTimeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 32,
		// Below common server keep-alive timeouts (nginx 75 s), so we rarely reuse a closing connection.
		IdleConnTimeout:       50 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	c := &JSONRPC{
		opts:     o,
		endpoint: u.String() + "/jsonrpc",
		log:      log,
		http: &http.Client{
			Transport: tr,
			Timeout:   o.Timeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				// 307/308 keep the method and body (the body is re-sent through GetBody);
				// 301/302/303 would silently become a GET, which Odoo would not understand.
				if req.Response != nil {
					switch req.Response.StatusCode {
					case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther:
						return errPostRedirect
					}
				}
				if len(via) >= 5 {
					return errors.New("odoo: stopped after 5 redirects")
				}
				return nil
			},
		},
	}
	return c, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// TLSInsecure reports odoo.insecure_skip_verify, for agent.status.
func (c *JSONRPC) TLSInsecure() bool { return c.opts.InsecureSkipVerify }

// Close drops idle keep-alive connections.
func (c *JSONRPC) Close() { c.http.CloseIdleConnections() }

// UID is the uid of the last successful login, 0 before.
func (c *JSONRPC) UID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uid
}

// Login authenticates now (check and startup use it to fail early); ExecuteKw logs in by itself.
func (c *JSONRPC) Login(ctx context.Context) error {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	return c.relogin(ctx, gen)
}

// ExecuteKw calls model.method(*args, **kwargs). It logs in first if needed and, when a call
// that used an earlier login is refused (session or key expired), logs in again and retries once.
func (c *JSONRPC) ExecuteKw(ctx context.Context, model, method string, args []any, kwargs map[string]any) (json.RawMessage, error) {
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	c.mu.Lock()
	uid, gen := c.uid, c.gen
	c.mu.Unlock()
	freshLogin := false
	if uid == 0 {
		if err := c.relogin(ctx, gen); err != nil {
			return nil, err
		}
		freshLogin = true
		c.mu.Lock()
		uid, gen = c.uid, c.gen
		c.mu.Unlock()
	}
	res, err := c.executeKw(ctx, uid, model, method, args, kwargs)
	if err == nil || freshLogin || KindOf(err) != KindAuth {
		return res, err
	}
	c.log.Info("odoo: call refused, logging in again", "model", model, "method", method, "err", err)
	if lerr := c.relogin(ctx, gen); lerr != nil {
		return nil, lerr
	}
	c.mu.Lock()
	uid = c.uid
	c.mu.Unlock()
	return c.executeKw(ctx, uid, model, method, args, kwargs)
}

func (c *JSONRPC) executeKw(ctx context.Context, uid int, model, method string, args []any, kwargs map[string]any) (json.RawMessage, error) {
	res, err := c.call(ctx, "object", "execute_kw", []any{c.opts.DB, uid, c.opts.Password, model, method, args, kwargs})
	var oe *Error
	if err != nil && errors.As(err, &oe) && oe.Kind == KindHandler && isAttributeError(oe.Name) &&
		strings.Contains(oe.Message, "'"+method+"'") {
		// An AttributeError naming the called method means the method does not exist (an older
		// addon); an AttributeError raised inside the method is the handler's own bug.
		oe.Kind = KindMissingMethod
	}
	return res, err
}

// relogin logs in unless another caller already did since generation gen.
func (c *JSONRPC) relogin(ctx context.Context, gen uint64) error {
	c.loginMu.Lock()
	c.mu.Lock()
	if c.gen != gen && c.uid != 0 {
		c.mu.Unlock()
		c.loginMu.Unlock()
		return nil
	}
	c.mu.Unlock()
	uid, err := c.login(ctx)
	if err != nil {
		c.loginMu.Unlock()
		return err
	}
	c.mu.Lock()
	c.uid = uid
	c.gen++
	c.mu.Unlock()
	c.loginMu.Unlock()
	c.log.Info("odoo: logged in", "url", c.opts.URL, "db", c.opts.DB, "user", c.opts.User, "uid", uid)
	if c.opts.OnLogin != nil {
		c.opts.OnLogin()
	}
	return nil
}

func (c *JSONRPC) login(ctx context.Context) (int, error) {
	res, err := c.call(ctx, "common", "authenticate", []any{c.opts.DB, c.opts.User, c.opts.Password, map[string]any{}})
	var oe *Error
	if err != nil && errors.As(err, &oe) && oe.Kind == KindHandler {
		// A server without common.authenticate (or one that fails inside it for reasons unrelated
		// to the credentials): try the older common.login.
		c.log.Debug("odoo: common.authenticate failed, trying common.login", "err", err)
		res, err = c.call(ctx, "common", "login", []any{c.opts.DB, c.opts.User, c.opts.Password})
	}
	if err != nil {
		return 0, err
	}
	var uid int
	if json.Unmarshal(res, &uid) != nil || uid <= 0 {
		// Odoo answers false for a wrong login or password.
		return 0, &Error{Kind: KindAuth, Name: "odoo.exceptions.AccessDenied",
			Message: fmt.Sprintf("login refused for user %q on database %q (check odoo.user and odoo.password)", c.opts.User, c.opts.DB)}
	}
	return uid, nil
}

type rpcRequest struct {
	JSONRPC string    `json:"jsonrpc"`
	Method  string    `json:"method"`
	Params  rpcParams `json:"params"`
	ID      int64     `json:"id"`
}

type rpcParams struct {
	Service string `json:"service"`
	Method  string `json:"method"`
	Args    []any  `json:"args"`
}

type rpcResponse struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Name    string `json:"name"`
			Message string `json:"message"`
		} `json:"data"`
	} `json:"error"`
}

// call makes one JSON-RPC call and sorts every failure into an *Error.
func (c *JSONRPC) call(ctx context.Context, service, method string, args []any) (json.RawMessage, error) {
	body, err := json.Marshal(rpcRequest{JSONRPC: "2.0", Method: "call", ID: c.reqID.Add(1),
		Params: rpcParams{Service: service, Method: method, Args: args}})
	if err != nil {
		return nil, &Error{Kind: KindHandler, Message: "cannot encode the call's arguments: " + err.Error(), Err: err}
	}
	resp, reused, err := c.post(ctx, body)
	if err != nil && reused && staleConn(err) {
		// A kept-alive connection the server had just closed (Odoo restarted, or its idle timeout
		// raced ours): Go does not retry a POST by itself, so try once on a fresh connection.
		resp, _, err = c.post(ctx, body)
	}
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusMovedPermanently || resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther:
		return nil, &Error{Kind: KindConfig, HTTPStatus: resp.StatusCode,
			Message: fmt.Sprintf("POST %s was redirected to %q with a method-changing status: use 308 or fix odoo.url", c.endpoint, resp.Header.Get("Location"))}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, &Error{Kind: KindTransient, HTTPStatus: resp.StatusCode, Message: snippet(resp.Body)}
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, &Error{Kind: KindConfig, HTTPStatus: resp.StatusCode,
			Message: fmt.Sprintf("%s asks for HTTP authentication (a proxy in front of Odoo?): %s", c.endpoint, snippet(resp.Body))}
	case resp.StatusCode == http.StatusNotFound:
		return nil, &Error{Kind: KindConfig, HTTPStatus: resp.StatusCode,
			Message: fmt.Sprintf("no JSON-RPC endpoint at %s (check odoo.url)", c.endpoint)}
	case resp.StatusCode != http.StatusOK:
		return nil, &Error{Kind: KindHandler, HTTPStatus: resp.StatusCode, Message: snippet(resp.Body)}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, c.transportError(err)
	}
	var out rpcResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, &Error{Kind: KindTransient, Message: "answer is not JSON-RPC: " + err.Error(), Err: err}
	}
	if out.Error != nil {
		name, msg := out.Error.Data.Name, out.Error.Data.Message
		if msg == "" {
			msg = out.Error.Message
		}
		return nil, &Error{Kind: kindOfException(name, out.Error.Code), Name: name, Message: msg}
	}
	if out.Result == nil {
		return nil, &Error{Kind: KindTransient, Message: "answer has neither result nor error"}
	}
	return out.Result, nil
}

// post sends one request and tells whether it went on a reused keep-alive connection.
func (c *JSONRPC) post(ctx context.Context, body []byte) (*http.Response, bool, error) {
	var reused atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, false, &Error{Kind: KindConfig, Message: err.Error(), Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := c.http.Do(req)
	return resp, reused.Load(), err
}

// staleConn tells a connection closed under the request from other failures.
func staleConn(err error) bool {
	// net/http's errServerClosedIdle is unexported; its text is stable.
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || strings.Contains(err.Error(), "server closed idle connection")
}

func (c *JSONRPC) transportError(err error) error {
	var oe *Error
	if errors.As(err, &oe) {
		return oe
	}
	if errors.Is(err, errPostRedirect) {
		return &Error{Kind: KindConfig, Message: "POST " + c.endpoint + " was redirected with a method-changing status: use 308 or fix odoo.url", Err: err}
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return &Error{Kind: KindConfig, Message: "TLS verification of " + c.endpoint + " failed (set odoo.ca_file for a private CA): " + err.Error(), Err: err}
	}
	return &Error{Kind: KindTransient, Message: err.Error(), Err: err}
}

// kindOfException sorts an Odoo exception name (error.data.name) by what the caller should do.
func kindOfException(name string, code int) Kind {
	short := name
	if i := strings.LastIndex(name, "."); i >= 0 {
		short = name[i+1:]
	}
	switch {
	case short == "AccessDenied" || short == "SessionExpiredException" || code == 100:
		return KindAuth
	case strings.HasPrefix(name, "psycopg2.") && (short == "OperationalError" || short == "SerializationFailure" ||
		short == "LockNotAvailable" || short == "DeadlockDetected" || short == "InterfaceError"):
		return KindTransient
	case short == "SerializationFailure" || short == "LockNotAvailable" || short == "DeadlockDetected":
		return KindTransient // psycopg (3) or a re-raised wrapper
	default:
		return KindHandler
	}
}

func isAttributeError(name string) bool {
	return name == "AttributeError" || name == "builtins.AttributeError"
}

func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	return strings.TrimSpace(string(b))
}
