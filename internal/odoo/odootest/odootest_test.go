package odootest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
)

type answer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code int `json:"code"`
		Data struct {
			Name    string `json:"name"`
			Message string `json:"message"`
		} `json:"data"`
	} `json:"error"`
}

func rpc(t *testing.T, hc *http.Client, url, service, method string, args ...any) (answer, int, error) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1,
		"params": map[string]any{"service": service, "method": method, "args": args}})
	resp, err := hc.Post(url+"/jsonrpc", "application/json", bytes.NewReader(body))
	if err != nil {
		return answer{}, 0, err
	}
	defer resp.Body.Close()
	var a answer
	_ = json.NewDecoder(resp.Body).Decode(&a)
	return a, resp.StatusCode, nil
}

func execKw(t *testing.T, srv *odootest.Server, hc *http.Client, model, method string, args ...any) (answer, int, error) {
	return rpc(t, hc, srv.URL(), "object", "execute_kw", srv.DB(), srv.UID(), srv.Password(), model, method, args, map[string]any{})
}

func TestLoginChecks(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{UID: 5})
	hc := &http.Client{}
	a, _, err := rpc(t, hc, srv.URL(), "common", "authenticate", srv.DB(), srv.User(), srv.Password(), map[string]any{})
	if err != nil || string(a.Result) != "5" {
		t.Fatalf("good login = %s %v", a.Result, err)
	}
	a, _, _ = rpc(t, hc, srv.URL(), "common", "login", srv.DB(), srv.User(), "nope")
	if string(a.Result) != "false" {
		t.Fatalf("bad password = %s", a.Result)
	}
	if srv.Logins() != 1 || srv.LoginFailures() != 1 {
		t.Fatalf("logins %d failures %d", srv.Logins(), srv.LoginFailures())
	}
	a, _, _ = rpc(t, hc, srv.URL(), "object", "execute_kw", srv.DB(), 5, "nope", "m", "x", []any{}, map[string]any{})
	if a.Error == nil || a.Error.Data.Name != odootest.ErrAccessDenied {
		t.Fatalf("execute_kw with a bad password = %+v", a)
	}
}

func TestScriptsAndRecording(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	hc := &http.Client{}
	srv.Queue("m", "x", odootest.Response{Result: 1}, odootest.Response{ErrorName: odootest.ErrUserError, ErrorMessage: "nope"})
	srv.Handle("m", "x", func(c odootest.Call) odootest.Response { return odootest.Response{Result: 42} })
	srv.HandleAll(func(c odootest.Call) odootest.Response { return odootest.Response{HTTPStatus: 503} })
	want := []string{"1", "error " + odootest.ErrUserError, "42", "42"}
	for i, w := range want {
		a, _, err := execKw(t, srv, hc, "m", "x", i)
		if err != nil {
			t.Fatal(err)
		}
		got := string(a.Result)
		if a.Error != nil {
			got = "error " + a.Error.Data.Name
		}
		if got != w {
			t.Fatalf("call %d = %s, want %s", i, got, w)
		}
	}
	if _, status, _ := execKw(t, srv, hc, "other", "y"); status != 503 {
		t.Fatalf("fallback status = %d", status)
	}
	calls := srv.CallsTo("m", "x")
	if len(calls) != 4 || string(calls[2].RawArgs) != "[2]" || calls[1].Answer != odootest.ErrUserError {
		t.Fatalf("calls = %+v", calls)
	}
}

func TestConcurrentCallsAreAllRecorded(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	hc := &http.Client{}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, _, err := execKw(t, srv, hc, "m", "x", i); err != nil {
				t.Error(err)
			}
		}(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitCalls(ctx, 40); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, c := range srv.Calls() {
		seen[string(c.RawArgs)] = true
	}
	if len(seen) != 40 {
		t.Fatalf("%d distinct calls recorded", len(seen))
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := srv.WaitCalls(short, 41); err == nil {
		t.Fatal("WaitCalls returned without the calls")
	}
}

func TestDropDelayStopRestart(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	hc := &http.Client{Timeout: 2 * time.Second}
	srv.Queue("m", "x", odootest.Response{Drop: true})
	if _, _, err := execKw(t, srv, hc, "m", "x"); err == nil {
		t.Fatal("a dropped connection answered")
	}
	srv.Queue("m", "x", odootest.Response{Delay: 100 * time.Millisecond})
	start := time.Now()
	if _, _, err := execKw(t, srv, hc, "m", "x"); err != nil || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("delay: %v after %s", err, time.Since(start))
	}
	addr := srv.Addr()
	srv.Stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("a stopped server accepted a connection")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Fatalf("restarted on %s, was %s", srv.Addr(), addr)
	}
	hc.CloseIdleConnections()
	if _, _, err := execKw(t, srv, hc, "m", "x"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestStopCutsDelayedCalls(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	hc := &http.Client{Timeout: 5 * time.Second}
	srv.Queue("m", "slow", odootest.Response{Delay: 10 * time.Second})
	done := make(chan error, 1)
	go func() { _, _, err := execKw(t, srv, hc, "m", "slow"); done <- err }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a call cut by Stop got an answer")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Stop did not cut the delayed call")
	}
}

func TestTLS(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{TLS: true})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CACertPEM()) {
		t.Fatal("bad CA PEM")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, _, err := execKw(t, srv, hc, "m", "x"); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if _, _, err := execKw(t, srv, &http.Client{}, "m", "x"); err == nil {
		t.Fatal("verified against the system roots")
	}
	srv.Stop()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	hc.CloseIdleConnections() // the old connection was cut; a POST on it is not retried
	if _, _, err := execKw(t, srv, hc, "m", "x"); err != nil {
		t.Fatalf("TLS after restart: %v", err)
	}
}
