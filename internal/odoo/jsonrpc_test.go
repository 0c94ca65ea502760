package odoo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
	"github.com/odoopbx/odoopbx/internal/version"
)

func newClient(t *testing.T, srv *odootest.Server, mod func(*odoo.Options)) *odoo.JSONRPC {
	t.Helper()
	o := odoo.Options{URL: srv.URL(), DB: srv.DB(), User: srv.User(), Password: srv.Password(),
		ConnectTimeout: time.Second, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&o)
	}
	c, err := odoo.NewJSONRPC(o)
	if err != nil {
		t.Fatalf("NewJSONRPC: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantKind(t *testing.T, err error, kind odoo.Kind) *odoo.Error {
	t.Helper()
	var oe *odoo.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not an *odoo.Error", err, err)
	}
	if oe.Kind != kind {
		t.Fatalf("kind = %s, want %s (error: %v)", oe.Kind, kind, err)
	}
	return oe
}

func TestLoginAndExecuteKw(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{UID: 7})
	var logins atomic.Int32
	c := newClient(t, srv, func(o *odoo.Options) { o.OnLogin = func() { logins.Add(1) } })
	srv.Queue("res.partner", "search_read", odootest.Response{Result: []map[string]any{{"id": 1, "name": "Ann"}}})

	res, err := c.ExecuteKw(ctxT(t), "res.partner", "search_read", []any{[]any{[]any{"phone", "=", "100"}}}, map[string]any{"fields": []string{"name"}})
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(res, &rows); err != nil || len(rows) != 1 || rows[0]["name"] != "Ann" {
		t.Fatalf("result = %s (%v)", res, err)
	}
	calls := srv.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls = %d, want 1", len(calls))
	}
	c0 := calls[0]
	if c0.UID != 7 || c0.Model != "res.partner" || c0.Method != "search_read" {
		t.Fatalf("call = %+v", c0)
	}
	if string(c0.RawArgs) != `[[["phone","=","100"]]]` || string(c0.RawKwargs) != `{"fields":["name"]}` {
		t.Fatalf("args = %s kwargs = %s", c0.RawArgs, c0.RawKwargs)
	}
	if c0.UserAgent != "odoopbx-agent/"+version.Version {
		t.Fatalf("User-Agent = %q", c0.UserAgent)
	}
	if srv.Logins() != 1 || logins.Load() != 1 || c.UID() != 7 {
		t.Fatalf("logins = %d, OnLogin = %d, uid = %d", srv.Logins(), logins.Load(), c.UID())
	}
	// A second call reuses the login.
	if _, err := c.ExecuteKw(ctxT(t), "res.partner", "write", []any{[]int{1}, map[string]any{"name": "B"}}, nil); err != nil {
		t.Fatal(err)
	}
	if srv.Logins() != 1 {
		t.Fatalf("logins = %d after two calls, want 1", srv.Logins())
	}
	if got := string(srv.Calls()[1].RawKwargs); got != "{}" {
		t.Fatalf("nil kwargs sent as %s, want {}", got)
	}
}

func TestLoginRefused(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, func(o *odoo.Options) { o.Password = "wrong" })
	_, err := c.ExecuteKw(ctxT(t), "res.partner", "read", []any{1}, nil)
	oe := wantKind(t, err, odoo.KindAuth)
	if !strings.Contains(oe.Message, "login refused") {
		t.Fatalf("message = %q", oe.Message)
	}
	if len(srv.Calls()) != 0 || srv.LoginFailures() != 1 {
		t.Fatalf("calls = %d, login failures = %d", len(srv.Calls()), srv.LoginFailures())
	}
	if err := c.Login(ctxT(t)); odoo.KindOf(err) != odoo.KindAuth {
		t.Fatalf("Login = %v, want auth", err)
	}
}

func TestLoginFallsBackToCommonLogin(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.DisableAuthenticate(true)
	c := newClient(t, srv, nil)
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatalf("Login with common.login fallback: %v", err)
	}
	if c.UID() != srv.UID() {
		t.Fatalf("uid = %d", c.UID())
	}
}

func TestErrorKinds(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, func(o *odoo.Options) { o.Timeout = 500 * time.Millisecond })
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		method string
		resp   odootest.Response
		kind   odoo.Kind
	}{
		{"user error", "m1", odootest.Response{ErrorName: odootest.ErrUserError, ErrorMessage: "no partner"}, odoo.KindHandler},
		{"validation", "m2", odootest.Response{ErrorName: odootest.ErrValidationError}, odoo.KindHandler},
		{"attribute error naming the method", "agent_get_config", odootest.Response{ErrorName: odootest.ErrAttributeError,
			ErrorMessage: "The method 'agent_get_config' does not exist on the model 'asterisk_plus.server'"}, odoo.KindMissingMethod},
		{"attribute error inside the handler", "m3", odootest.Response{ErrorName: odootest.ErrAttributeError,
			ErrorMessage: "'NoneType' object has no attribute 'id'"}, odoo.KindHandler},
		{"operational", "m4", odootest.Response{ErrorName: odootest.ErrOperationalError}, odoo.KindTransient},
		{"serialization", "m5", odootest.Response{ErrorName: odootest.ErrSerializationFailure}, odoo.KindTransient},
		{"lock", "m6", odootest.Response{ErrorName: odootest.ErrLockNotAvailable}, odoo.KindTransient},
		{"deadlock", "m7", odootest.Response{ErrorName: odootest.ErrDeadlockDetected}, odoo.KindTransient},
		{"http 429", "m8", odootest.Response{HTTPStatus: 429}, odoo.KindTransient},
		{"http 502", "m9", odootest.Response{HTTPStatus: 502}, odoo.KindTransient},
		{"http 503", "m10", odootest.Response{HTTPStatus: 503}, odoo.KindTransient},
		{"http 400", "m11", odootest.Response{HTTPStatus: 400}, odoo.KindHandler},
		{"http 401 from a proxy", "m15", odootest.Response{HTTPStatus: 401}, odoo.KindConfig},

		{"timeout", "m13", odootest.Response{Delay: 3 * time.Second}, odoo.KindTransient},
		{"access error", "m14", odootest.Response{ErrorName: odootest.ErrAccessError}, odoo.KindHandler},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv.Queue("x.model", tc.method, tc.resp)
			_, err := c.ExecuteKw(ctxT(t), "x.model", tc.method, nil, nil)
			oe := wantKind(t, err, tc.kind)
			if tc.resp.ErrorName != "" && oe.Name != tc.resp.ErrorName {
				t.Fatalf("Name = %q, want %q", oe.Name, tc.resp.ErrorName)
			}
			if tc.resp.HTTPStatus != 0 && oe.HTTPStatus != tc.resp.HTTPStatus {
				t.Fatalf("HTTPStatus = %d", oe.HTTPStatus)
			}
		})
	}
}

func TestDroppedConnection(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Cut twice: the client retries once on a fresh connection (the first cut could be a
	// kept-alive connection closing under it), then reports a transient failure.
	srv.Queue("x", "cut", odootest.Response{Drop: true}, odootest.Response{Drop: true})
	_, err := c.ExecuteKw(ctxT(t), "x", "cut", nil, nil)
	wantKind(t, err, odoo.KindTransient)
	if n := len(srv.CallsTo("x", "cut")); n != 2 {
		t.Fatalf("calls = %d, want 2 (one retry)", n)
	}
	// Cut once on a kept-alive connection: the retry gets the answer (a possible duplicate, which
	// at-least-once allows).
	if _, err := c.ExecuteKw(ctxT(t), "x", "warm", nil, nil); err != nil {
		t.Fatal(err)
	}
	srv.Queue("x", "cut1", odootest.Response{Drop: true})
	if _, err := c.ExecuteKw(ctxT(t), "x", "cut1", nil, nil); err != nil {
		t.Fatalf("single cut: %v", err)
	}
	if n := len(srv.CallsTo("x", "cut1")); n != 2 {
		t.Fatalf("calls = %d, want 2", n)
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	srv.Stop()
	_, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil)
	wantKind(t, err, odoo.KindTransient)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestRestartWithKeptAliveConnection(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		srv := odootest.Start(t, odootest.Options{TLS: useTLS})
		c := newClient(t, srv, func(o *odoo.Options) { o.InsecureSkipVerify = true })
		for i := 0; i < 20; i++ {
			if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
				t.Fatalf("tls=%v round %d before restart: %v", useTLS, i, err)
			}
			// Odoo restarts at once: the kept-alive connection is dead, the address answers again.
			srv.Stop()
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
				t.Fatalf("tls=%v round %d after restart: %v", useTLS, i, err)
			}
		}
	}
}

func TestCancelledContextIsTransient(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv.Queue("x", "slow", odootest.Response{Delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.ExecuteKw(ctx, "x", "slow", nil, nil)
	oe := wantKind(t, err, odoo.KindTransient)
	if !errors.Is(oe, context.DeadlineExceeded) {
		t.Fatalf("error %v does not wrap the deadline", err)
	}
}

func TestReauthAfterSessionExpiry(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	var logins atomic.Int32
	c := newClient(t, srv, func(o *odoo.Options) { o.OnLogin = func() { logins.Add(1) } })
	if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
		t.Fatal(err)
	}
	srv.ExpireSession()
	srv.SetUID(9) // the re-login may give another uid
	if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
		t.Fatalf("call after expiry: %v", err)
	}
	calls := srv.Calls()
	if len(calls) != 3 || calls[1].Answer != odootest.ErrAccessDenied || calls[2].Answer != "ok" || calls[2].UID != 9 {
		t.Fatalf("calls = %+v", calls)
	}
	if srv.Logins() != 2 || logins.Load() != 2 {
		t.Fatalf("logins = %d, OnLogin = %d, want 2", srv.Logins(), logins.Load())
	}
}

func TestReauthOnlyOnce(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The method itself keeps raising AccessDenied (a record rule, say): one re-login, then give up.
	srv.Queue("x", "denied", odootest.Response{ErrorName: odootest.ErrAccessDenied}, odootest.Response{ErrorName: odootest.ErrAccessDenied},
		odootest.Response{ErrorName: odootest.ErrAccessDenied})
	_, err := c.ExecuteKw(ctxT(t), "x", "denied", nil, nil)
	wantKind(t, err, odoo.KindAuth)
	if n := len(srv.CallsTo("x", "denied")); n != 2 {
		t.Fatalf("calls = %d, want 2 (one retry after re-login)", n)
	}
	if srv.Logins() != 2 {
		t.Fatalf("logins = %d, want 2", srv.Logins())
	}
}

func TestPasswordChangedIsAuth(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv.SetPassword("rotated")
	_, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil)
	wantKind(t, err, odoo.KindAuth)
}

func TestConcurrentReauthLogsInOnce(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	if err := c.Login(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv.ExpireSession()
	// Everyone's first call fails until someone logs in; only one of them logs in again (the
	// others see the new login generation), and every call succeeds.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call: %v", err)
	}
	if srv.Logins() != 2 {
		t.Fatalf("logins = %d", srv.Logins())
	}
}

func TestRedirects(t *testing.T) {
	for _, status := range []int{307, 308} {
		srv := odootest.Start(t, odootest.Options{})
		srv.Redirect(status, "/odoo/jsonrpc")
		c := newClient(t, srv, nil)
		if _, err := c.ExecuteKw(ctxT(t), "x", "y", []any{1}, nil); err != nil {
			t.Fatalf("%d: %v", status, err)
		}
		if calls := srv.Calls(); len(calls) != 1 || string(calls[0].RawArgs) != "[1]" {
			t.Fatalf("%d: calls = %+v", status, calls)
		}
	}
	for _, status := range []int{301, 302} {
		srv := odootest.Start(t, odootest.Options{})
		srv.Redirect(status, "/odoo/jsonrpc")
		c := newClient(t, srv, nil)
		_, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil)
		oe := wantKind(t, err, odoo.KindConfig)
		if !strings.Contains(oe.Error(), "use 308 or fix odoo.url") {
			t.Fatalf("%d: error = %v", status, err)
		}
		if len(srv.Calls()) != 0 {
			t.Fatalf("%d: the POST was replayed as something", status)
		}
	}
}

func TestNotFoundIsConfig(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	srv.Queue("x", "z", odootest.Response{HTTPStatus: 404})
	_, err := c.ExecuteKw(ctxT(t), "x", "z", nil, nil)
	wantKind(t, err, odoo.KindConfig)
}

func TestTLS(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{TLS: true})
	caFile, err := srv.WriteCAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("private CA", func(t *testing.T) {
		c := newClient(t, srv, func(o *odoo.Options) { o.CAFile = caFile })
		if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("verification fails without the CA", func(t *testing.T) {
		c := newClient(t, srv, nil)
		_, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil)
		oe := wantKind(t, err, odoo.KindConfig)
		if !strings.Contains(oe.Message, "odoo.ca_file") {
			t.Fatalf("message = %q", oe.Message)
		}
	})
	t.Run("insecure skip verify warns", func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&syncWriter{w: &buf}, nil))
		c := newClient(t, srv, func(o *odoo.Options) { o.InsecureSkipVerify = true; o.Logger = log })
		if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "insecure_skip_verify") {
			t.Fatalf("no WARN logged at construction: %q", buf.String())
		}
		if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bad CA file", func(t *testing.T) {
		_, err := odoo.NewJSONRPC(odoo.Options{URL: srv.URL(), DB: "d", User: "u", CAFile: "/nonexistent/ca.pem"})
		wantKind(t, err, odoo.KindConfig)
	})
}

func TestBadOptions(t *testing.T) {
	for _, u := range []string{"", "odoo.example.com", "ftp://x", "https://"} {
		if _, err := odoo.NewJSONRPC(odoo.Options{URL: u, DB: "d", User: "u"}); odoo.KindOf(err) != odoo.KindConfig {
			t.Errorf("URL %q: err = %v, want config", u, err)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	c := newClient(t, srv, nil)
	for i := 0; i < 5; i++ {
		if _, err := c.ExecuteKw(ctxT(t), "x", "y", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Fatalf("connections opened = %d, want 1 (keep-alive)", n)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
