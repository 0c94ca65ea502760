package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami/amitest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/jobs"
	"github.com/odoopbx/odoopbx/internal/jobs/jobstest"
	"github.com/odoopbx/odoopbx/internal/tlsutil"
)

var fixtureDir, _ = amitest.FixtureDir()

// recEnqueuer records what the server hands to the delivery spool.
type recEnqueuer struct {
	mu     sync.Mutex
	items  []delivery.Item
	err    error
	notify chan struct{}
}

func newRecEnqueuer() *recEnqueuer { return &recEnqueuer{notify: make(chan struct{}, 1000)} }

func (r *recEnqueuer) Enqueue(_ context.Context, items ...delivery.Item) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.items = append(r.items, items...)
	r.notify <- struct{}{}
	return nil
}

func (r *recEnqueuer) snapshot() []delivery.Item {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery.Item(nil), r.items...)
}

// waitItems waits for at least n items; the deadline only turns a hang into a failure.
func (r *recEnqueuer) waitItems(t *testing.T, n int) []delivery.Item {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if items := r.snapshot(); len(items) >= n {
			return items
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("waited for %d delivery items, have %d", n, len(r.snapshot()))
		}
	}
}

// itemsFor returns the items of one job's lane.
func itemsFor(items []delivery.Item, jobID string) []delivery.Item {
	var out []delivery.Item
	for _, it := range items {
		if it.Lane == "job:"+jobID {
			out = append(out, it)
		}
	}
	return out
}

// gate is a job function that blocks until released or its context ends.
type gate struct {
	started chan struct{}
	release chan struct{}
	runs    atomic.Int32
}

func newGate() *gate { return &gate{started: make(chan struct{}, 100), release: make(chan struct{})} }

func (g *gate) fn(ctx context.Context, _ []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	g.runs.Add(1)
	g.started <- struct{}{}
	select {
	case <-g.release:
		return "released", nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gate) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the job never started")
	}
}

type harness struct {
	srv      *Server
	url      string
	enq      *recEnqueuer
	gate     *gate
	fake     *jobstest.FakeAMI
	reg      *jobs.Registry
	metrics  *prometheus.Registry
	authFail chan netip.AddrPort
	counter  atomic.Int32
}

func newHarness(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{enq: newRecEnqueuer(), gate: newGate(), metrics: prometheus.NewRegistry(), authFail: make(chan netip.AddrPort, 100)}
	fake, err := jobstest.NewFakeAMI(fixtureDir, "04d-action-originate-variants", "04a-actions-ping-coresettings-corestatus")
	if err != nil {
		t.Fatal(err)
	}
	h.fake = fake
	reg, err := jobs.Builtins(jobs.Deps{AMI: fake, Config: func() config.Config { return config.Default() }})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(reg.Register("test.block", h.gate.fn))
	must(reg.Register("test.echo", func(_ context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
		return map[string]any{"args": args, "kwargs": kwargs}, nil
	}))
	must(reg.Register("test.count", func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
		return h.counter.Add(1), nil
	}))
	must(reg.Register("test.fail", func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
		return nil, jobs.Errorf(jobs.CodeIOError, "disk <full>")
	}))
	must(reg.Register("test.text", func(_ context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
		var s string
		json.Unmarshal(args[0], &s)
		return s, nil
	}))
	must(reg.Register("test.panic", func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
		panic("boom")
	}))
	h.reg = reg
	cfg := Config{
		Listen:        "127.0.0.1:0",
		Tokens:        []config.Secret{"tok-current", "tok-next"},
		Workers:       2,
		Queue:         8,
		Functions:     reg,
		Enqueuer:      h.enq,
		Registerer:    h.metrics,
		OnAuthFailure: func(a netip.AddrPort) { h.authFail <- a },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	h.srv = srv
	scheme := "http"
	if cfg.TLS {
		scheme = "https"
	}
	h.url = scheme + "://" + srv.Addr().String() + Path
	return h
}

type reply struct {
	status int
	body   map[string]any
	raw    string
}

func (r reply) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func doPost(t testing.TB, client *http.Client, url, token, contentType string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("x-token", token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("reply %d is not JSON: %q", resp.StatusCode, raw)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("reply Content-Type = %q", resp.Header.Get("Content-Type"))
	}
	return reply{resp.StatusCode, m, string(raw)}
}

func (h *harness) post(t *testing.T, body string) reply {
	t.Helper()
	return doPost(t, http.DefaultClient, h.url, "tok-current", "application/json", strings.NewReader(body))
}

func TestAuthTokens(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		token  string
		status int
	}{
		{"tok-current", 200},
		{"tok-next", 200},
		{"", 401},
		{"tok-curren", 401},
		{"TOK-CURRENT", 401},
	} {
		r := doPost(t, http.DefaultClient, h.url, tc.token, "application/json", strings.NewReader(`{"fun":"test.ping"}`))
		if r.status != tc.status {
			t.Errorf("token %q: %d %s", tc.token, r.status, r.raw)
		}
		if tc.status == 401 && r.errCode() != "unauthorized" {
			t.Errorf("token %q: code %q", tc.token, r.errCode())
		}
		if tc.status == 200 && (r.body["status"] != "accepted" || r.body["job_id"] == "") {
			t.Errorf("token %q: body %s", tc.token, r.raw)
		}
	}
	if n := len(h.authFail); n != 3 {
		t.Fatalf("OnAuthFailure called %d times, want 3", n)
	}
	if a := <-h.authFail; a.Addr() != netip.MustParseAddr("127.0.0.1") || a.Port() == 0 {
		t.Errorf("OnAuthFailure got %v", a)
	}
	if got := metricValue(t, h.metrics, "odoopbx_api_auth_failures_total"); got != 3 {
		t.Errorf("auth failure metric = %v", got)
	}
}

func TestNoTokenFailsClosed(t *testing.T) {
	reg := jobs.NewRegistry()
	for _, tokens := range [][]config.Secret{nil, {"", ""}} {
		_, err := New(Config{Listen: "127.0.0.1:0", Tokens: tokens, Functions: reg, Enqueuer: newRecEnqueuer()})
		if !errors.Is(err, ErrNoToken) {
			t.Errorf("tokens %v: err = %v", tokens, err)
		}
	}
}

func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", "[::]:0", ":0", "192.0.2.1:48000"} {
		srv, err := New(Config{Listen: listen, Tokens: []config.Secret{"t"}, Functions: jobs.NewRegistry(), Enqueuer: newRecEnqueuer()})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
			srv.Stop(context.Background())
			t.Errorf("%s: Start err = %v", listen, err)
		}
	}
	for listen, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "127.9.9.9:1": true, "10.0.0.1:1": false, "nohost": false} {
		if got := loopbackListen(listen); got != want {
			t.Errorf("loopbackListen(%q) = %v", listen, got)
		}
	}
	// TLS on with no certificate is a clear error too.
	srv, _ := New(Config{Listen: "127.0.0.1:0", TLS: true, Tokens: []config.Secret{"t"}, Functions: jobs.NewRegistry(), Enqueuer: newRecEnqueuer()})
	if err := srv.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("TLS without a certificate: %v", err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	h := newHarness(t, func(c *Config) {
		c.TLS = true
		c.CertFile, c.KeyFile = certFile, keyFile
	})
	fp := h.srv.Fingerprint()
	if len(fp) != 64 {
		t.Fatalf("fingerprint %q", fp)
	}
	// Odoo's fingerprint mode: no chain check, the leaf's SHA-256 pinned during the handshake.
	pinned := func(want string, maxVersion uint16) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true,
			MaxVersion:         maxVersion,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if got := tlsutil.Fingerprint(cs.PeerCertificates[0]); got != want {
					return fmt.Errorf("fingerprint %s, want %s", got, want)
				}
				return nil
			},
		}}}
	}
	r := doPost(t, pinned(fp, 0), h.url, "tok-current", "application/json", strings.NewReader(`{"fun":"test.ping","sync":true}`))
	if r.status != 200 || r.body["status"] != "done" || r.body["result"] != true {
		t.Fatalf("over TLS: %d %s", r.status, r.raw)
	}
	req, _ := http.NewRequest(http.MethodPost, h.url, strings.NewReader(`{"fun":"test.ping"}`))
	if _, err := pinned(strings.Repeat("0", 64), 0).Do(req); err == nil {
		t.Error("a wrong pin was accepted")
	}
	req, _ = http.NewRequest(http.MethodPost, h.url, strings.NewReader(`{"fun":"test.ping"}`))
	if _, err := pinned(fp, tls.VersionTLS11).Do(req); err == nil {
		t.Error("TLS 1.1 was accepted")
	}
	// Plain HTTP to the TLS port gets no job run.
	plainURL := "http://" + h.srv.Addr().String() + Path
	req, _ = http.NewRequest(http.MethodPost, plainURL, strings.NewReader(`{"fun":"test.ping"}`))
	req.Header.Set("x-token", "tok-current")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP accepted on the TLS port")
		}
	}
}

func TestRoutesAndContentType(t *testing.T) {
	h := newHarness(t, nil)
	base := strings.TrimSuffix(h.url, Path)
	if r := doPost(t, http.DefaultClient, base+"/other", "tok-current", "application/json", strings.NewReader(`{}`)); r.status != 404 {
		t.Errorf("other path: %d", r.status)
	}
	resp, err := http.Get(h.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	for ct, status := range map[string]int{
		"":                                  415,
		"text/plain":                        415,
		"application/x-www-form-urlencoded": 415,
		"application/json; charset=utf-8":   200,
		"Application/JSON":                  200,
	} {
		r := doPost(t, http.DefaultClient, h.url, "tok-current", ct, strings.NewReader(`{"fun":"test.ping"}`))
		if r.status != status {
			t.Errorf("Content-Type %q: %d %s", ct, r.status, r.raw)
		}
		if status == 415 && r.errCode() != "unsupported_media_type" {
			t.Errorf("Content-Type %q: code %q", ct, r.errCode())
		}
	}
	// Unauthenticated requests learn nothing about content types.
	if r := doPost(t, http.DefaultClient, h.url, "bad", "text/plain", strings.NewReader(`x`)); r.status != 401 {
		t.Errorf("bad token and content type: %d", r.status)
	}
}

func TestBadEnvelopes(t *testing.T) {
	h := newHarness(t, nil)
	for _, body := range []string{
		`{`,
		`not json`,
		`[]`,
		`"fun"`,
		`null`,
		`{"fun":"test.ping"} trailing`,
		`{}`,
		`{"fun":""}`,
		`{"fun":1}`,
		`{"fun":"test.ping","kwargs":[]}`,
		`{"fun":"test.ping","kwargs":"x"}`,
		`{"fun":"test.ping","res_model":"m"}`,
		`{"fun":"test.ping","res_method":"m"}`,
		`{"fun":"test.ping","res_model":1,"res_method":"m"}`,
		`{"fun":"test.ping","pass_back":[1]}`,
		`{"fun":"test.ping","res_notify_uid":"7"}`,
		`{"fun":"test.ping","res_notify_uid":1.5}`,
		`{"fun":"test.ping","res_notify_uid":-3}`,
		`{"fun":"test.ping","res_notify_title":5}`,
		`{"fun":"test.ping","job_id":"has space"}`,
		`{"fun":"test.ping","job_id":""}`,
		`{"fun":"test.ping","job_id":7}`,
		`{"fun":"test.ping","job_id":"` + strings.Repeat("x", 129) + `"}`,
		`{"fun":"test.ping","timeout":601}`,
		`{"fun":"test.ping","timeout":0}`,
		`{"fun":"test.ping","timeout":"10"}`,
		`{"fun":"test.ping","sync":"yes"}`,
	} {
		r := h.post(t, body)
		if r.status != 400 || r.errCode() != "bad_request" {
			t.Errorf("%s: %d %s", body, r.status, r.raw)
		}
		if msg, _ := r.body["error"].(map[string]any)["message"].(string); msg == "" {
			t.Errorf("%s: no message", body)
		}
	}
	// Accepted: Odoo's False for unset fields, unknown keys, a 600 s timeout.
	for _, body := range []string{
		`{"fun":"test.ping","res_model":false,"res_method":false,"res_notify_uid":false,"pass_back":null,"extra":{"x":1}}`,
		`{"fun":"test.ping","timeout":600,"sync":false,"kwargs":null,"args":null}`,
	} {
		if r := h.post(t, body); r.status != 200 {
			t.Errorf("%s: %d %s", body, r.status, r.raw)
		}
	}
}

func TestBodyLimits(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	big := `{"fun":"test.ping","args":["` + strings.Repeat("a", 2000) + `"]}`
	if r := h.post(t, big); r.status != 413 || r.errCode() != "payload_too_large" {
		t.Errorf("with Content-Length: %d %s", r.status, r.raw)
	}
	// Chunked, so no Content-Length to refuse early: the reader limit catches it.
	chunked := io.MultiReader(strings.NewReader(big[:10]), strings.NewReader(big[10:]))
	if r := doPost(t, http.DefaultClient, h.url, "tok-current", "application/json", io.NopCloser(chunked)); r.status != 413 {
		t.Errorf("chunked: %d %s", r.status, r.raw)
	}
	nested := func(depth int) string { // the envelope object is level 1
		return `{"fun":"test.ping","args":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
	}
	if r := h.post(t, nested(32)); r.status != 200 {
		t.Errorf("depth 32: %d %s", r.status, r.raw)
	}
	if r := h.post(t, nested(33)); r.status != 400 || !strings.Contains(r.raw, "nested") {
		t.Errorf("depth 33: %d %s", r.status, r.raw)
	}
	// Brackets inside strings are not nesting.
	if r := h.post(t, `{"fun":"test.ping","args":["`+strings.Repeat("[{", 100)+`"]}`); r.status != 200 {
		t.Errorf("brackets in a string: %d %s", r.status, r.raw)
	}
}

func TestUnknownAndReservedFunctions(t *testing.T) {
	h := newHarness(t, nil)
	for _, fun := range []string{"no.such", "sip.get_peers", "download_prompt", "delete_prompt", "asterisk.tts_create_sound"} {
		r := h.post(t, `{"fun":"`+fun+`"}`)
		if r.status != 422 || r.errCode() != "unknown_function" || !strings.Contains(r.raw, fun) {
			t.Errorf("%s: %d %s", fun, r.status, r.raw)
		}
	}
	if r := h.post(t, `{"fun":"agent_reload_config"}`); r.status != 422 {
		t.Errorf("alias of a function the lead did not pass: %d", r.status)
	}
}

func TestQueueFull(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Workers, c.Queue = 1, 1 })
	defer close(h.gate.release)
	if r := h.post(t, `{"fun":"test.block"}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	h.gate.waitStarted(t) // the only worker is busy
	if r := h.post(t, `{"fun":"test.block","job_id":"queued"}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	r := h.post(t, `{"fun":"test.ping","job_id":"refused"}`)
	if r.status != 503 || r.errCode() != "busy" {
		t.Fatalf("full queue: %d %s", r.status, r.raw)
	}
	if d := h.srv.Health().Detail["queue_depth"]; d != 1 {
		t.Errorf("queue depth = %v", d)
	}
	if got := metricValue(t, h.metrics, "odoopbx_api_replies_total", "status", "busy"); got != 1 {
		t.Errorf("busy replies = %v", got)
	}
}

func TestJobIDDeduplication(t *testing.T) {
	h := newHarness(t, nil)
	body := `{"fun":"test.count","job_id":"dup-1","res_model":"m","res_method":"cb"}`
	first := h.post(t, body)
	if first.status != 200 || first.body["job_id"] != "dup-1" {
		t.Fatal(first.raw)
	}
	h.enq.waitItems(t, 1)
	second := h.post(t, body)
	if second.raw != first.raw {
		t.Errorf("repeat reply %s, first %s", second.raw, first.raw)
	}
	// A different job afterwards proves the repeat would have been delivered by now.
	h.post(t, `{"fun":"test.ping","job_id":"after","res_model":"m","res_method":"cb"}`)
	items := h.enq.waitItems(t, 2)
	if n := len(itemsFor(items, "dup-1")); n != 1 || h.counter.Load() != 1 {
		t.Fatalf("dup-1 ran %d times, delivered %d items", h.counter.Load(), n)
	}
	// A sync repeat gets the first (done) answer back, result included.
	s1 := h.post(t, `{"fun":"test.count","job_id":"dup-sync","sync":true}`)
	s2 := h.post(t, `{"fun":"test.count","job_id":"dup-sync","sync":true}`)
	if s1.body["status"] != "done" || s2.raw != s1.raw || h.counter.Load() != 2 {
		t.Fatalf("sync repeat: %s then %s, runs %d", s1.raw, s2.raw, h.counter.Load())
	}
}

func TestRefusedJobIDMayRetry(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Workers, c.Queue = 1, 1 })
	h.post(t, `{"fun":"test.block"}`)
	h.gate.waitStarted(t)
	h.post(t, `{"fun":"test.block"}`)
	if r := h.post(t, `{"fun":"test.count","job_id":"retry-me"}`); r.status != 503 {
		t.Fatalf("want busy, got %d", r.status)
	}
	close(h.gate.release)
	// Once the queue drains the same job_id runs: a refused request is not remembered.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := h.post(t, `{"fun":"test.count","job_id":"retry-me","sync":true}`)
		if r.status == 200 {
			if r.body["status"] != "done" || r.body["result"] != 1.0 {
				t.Fatalf("retry: %s", r.raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry still refused: %s", r.raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSync(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.syncWait = 100 * time.Millisecond })
	r := h.post(t, `{"fun":"test.ping","sync":true,"job_id":"s1","res_model":"m","res_method":"cb","res_notify_uid":2}`)
	if r.status != 200 || r.body["status"] != "done" || r.body["job_id"] != "s1" || r.body["result"] != true {
		t.Fatalf("sync: %s", r.raw)
	}
	// Past the wait the job goes on async, with the normal callback.
	r = h.post(t, `{"fun":"test.block","sync":true,"job_id":"s2","res_model":"m","res_method":"cb"}`)
	if r.status != 200 || r.body["status"] != "accepted" || r.body["job_id"] != "s2" {
		t.Fatalf("slow sync: %s", r.raw)
	}
	close(h.gate.release)
	items := h.enq.waitItems(t, 1)
	if len(itemsFor(items, "s1")) != 0 {
		t.Errorf("a sync job answered inline was also delivered: %+v", itemsFor(items, "s1"))
	}
	if got := itemsFor(items, "s2"); len(got) != 1 || string(got[0].Args) != `["released"]` {
		t.Fatalf("s2 items = %+v", got)
	}
	// A failure within the wait is answered inline in the usual error shape.
	r = h.post(t, `{"fun":"test.fail","sync":true}`)
	if res, _ := r.body["result"].(map[string]any); r.body["status"] != "done" || res["error_code"] != "io_error" {
		t.Fatalf("sync failure: %s", r.raw)
	}
	def, _ := New(Config{Tokens: []config.Secret{"t"}, Functions: jobs.NewRegistry(), Enqueuer: newRecEnqueuer()})
	if def.cfg.syncWait != 4*time.Second {
		t.Errorf("default sync wait = %v", def.cfg.syncWait)
	}
}

func TestAllowFrom(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AllowFrom = []string{"10.0.0.0/8", "2001:db8::/32"} })
	r := h.post(t, `{"fun":"test.ping"}`)
	if r.status != 403 || r.errCode() != "forbidden" {
		t.Fatalf("outside allow_from: %d %s", r.status, r.raw)
	}
	if r := doPost(t, http.DefaultClient, h.url, "wrong", "application/json", strings.NewReader(`{}`)); r.status != 403 {
		t.Errorf("bad token from a forbidden source: %d (403 comes first)", r.status)
	}
	if len(h.authFail) != 0 {
		t.Error("a forbidden source counted as an auth failure")
	}
	h2 := newHarness(t, func(c *Config) { c.AllowFrom = []string{"10.0.0.0/8", "127.0.0.1"} })
	if r := h2.post(t, `{"fun":"test.ping"}`); r.status != 200 {
		t.Fatalf("inside allow_from: %d %s", r.status, r.raw)
	}
	if _, err := New(Config{Tokens: []config.Secret{"t"}, Functions: jobs.NewRegistry(), Enqueuer: newRecEnqueuer(), AllowFrom: []string{"10.0.0.0/33"}}); err == nil || !strings.Contains(err.Error(), "allow_from") {
		t.Errorf("bad CIDR: %v", err)
	}
}

func TestAuthLockout(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 11 {
		if r := doPost(t, http.DefaultClient, h.url, "wrong", "application/json", strings.NewReader(`{}`)); r.status != 401 {
			t.Fatalf("failure %d: %d", i+1, r.status)
		}
	}
	r := h.post(t, `{"fun":"test.ping"}`)
	if r.status != 429 || r.errCode() != "rate_limited" {
		t.Fatalf("after 11 failures: %d %s", r.status, r.raw)
	}
	if len(h.authFail) != 11 {
		t.Errorf("OnAuthFailure called %d times", len(h.authFail))
	}
}

func TestCallbackAndNotification(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.NotifyMethod = "custom_notify" })
	h.post(t, `{"fun":"test.echo","args":"one","kwargs":{"k":true},"res_model":"asterisk_plus.call","res_method":"on_result","pass_back":{"call_id":42},"res_notify_uid":7,"res_notify_title":"Dial","job_id":"cb-1"}`)
	items := itemsFor(h.enq.waitItems(t, 2), "cb-1")
	if len(items) != 2 {
		t.Fatalf("items = %+v", items)
	}
	cb, note := items[0], items[1]
	if cb.Model != "asterisk_plus.call" || cb.Method != "on_result" || cb.Origin != "job:cb-1" || cb.Created.IsZero() {
		t.Errorf("callback = %+v", cb)
	}
	var args []map[string]any
	if err := json.Unmarshal(cb.Args, &args); err != nil || len(args) != 1 {
		t.Fatalf("callback args %s", cb.Args)
	}
	if fmt.Sprint(args[0]["args"]) != "[one]" || fmt.Sprint(args[0]["kwargs"]) != "map[k:true]" {
		t.Errorf("callback result = %v (args wrapped in a list, kwargs passed)", args[0])
	}
	if string(cb.Kwargs) != `{"call_id":42}` {
		t.Errorf("callback kwargs = %s (pass_back as is)", cb.Kwargs)
	}
	if note.Model != "asterisk_plus.settings" || note.Method != "custom_notify" {
		t.Errorf("notification = %+v", note)
	}
	var kw map[string]any
	json.Unmarshal(note.Kwargs, &kw)
	if kw["title"] != "Dial" || kw["notify_uid"] != 7.0 || kw["warning"] != false || len(kw) != 3 {
		t.Errorf("notification kwargs = %s", note.Kwargs)
	}
	var msg []string
	json.Unmarshal(note.Args, &msg)
	if len(msg) != 1 || !strings.HasPrefix(msg[0], "test.echo: {&#34;args&#34;") {
		t.Errorf("notification message = %q", msg)
	}

	// A failure: the error shape to the callback, a warning notification.
	h.post(t, `{"fun":"test.fail","res_model":"m","res_method":"cb","res_notify_uid":7,"job_id":"cb-2"}`)
	items = itemsFor(h.enq.waitItems(t, 4), "cb-2")
	if string(items[0].Args) != `[{"error":"disk \u003cfull\u003e","error_code":"io_error"}]` && string(items[0].Args) != `[{"error":"disk <full>","error_code":"io_error"}]` {
		t.Errorf("failure callback args = %s", items[0].Args)
	}
	json.Unmarshal(items[1].Args, &msg)
	json.Unmarshal(items[1].Kwargs, &kw)
	if msg[0] != "test.fail failed: disk &lt;full&gt;" || kw["warning"] != true || kw["title"] != "PBX" {
		t.Errorf("failure notification %q %v", msg, kw)
	}

	// Notification only, and OK for a true result.
	h.post(t, `{"fun":"test.ping","res_notify_uid":3,"job_id":"cb-3"}`)
	items = itemsFor(h.enq.waitItems(t, 5), "cb-3")
	json.Unmarshal(items[0].Args, &msg)
	if len(items) != 1 || msg[0] != "test.ping: OK" {
		t.Errorf("ping notification %+v %q", items, msg)
	}

	// No callback and no notification: nothing to deliver.
	h.post(t, `{"fun":"test.ping","job_id":"cb-4"}`)
	h.post(t, `{"fun":"test.ping","res_notify_uid":3,"job_id":"cb-5"}`)
	all := h.enq.waitItems(t, 6)
	if len(itemsFor(all, "cb-4")) != 0 {
		t.Error("items for a job without callback or notification")
	}
}

func TestNotifyMessage(t *testing.T) {
	long := outcome{result: json.RawMessage(`[` + strings.Repeat("1,", 2000) + `1]`)}
	msg := notifyMessage("f", long)
	if n := len([]rune(msg)); n != 1000 || !strings.HasSuffix(msg, "…") {
		t.Errorf("long message: %d chars", n)
	}
	if got := notifyMessage("f", outcome{result: json.RawMessage(`"<script>"`)}); got != "f: &#34;&lt;script&gt;&#34;" {
		t.Errorf("escaping: %q", got)
	}
	// Escaping after cutting never splits an entity.
	tricky := notifyMessage("f", outcome{code: "x", message: strings.Repeat("a", 985) + "<<<<<<<<<<<<<<<<<"})
	if strings.HasSuffix(strings.TrimSuffix(tricky, "…"), "&l") {
		t.Errorf("split entity: %q", tricky[len(tricky)-20:])
	}
	for _, r := range []string{`true`, `null`, `{}`, `[]`} {
		if got := notifyMessage("f", outcome{result: json.RawMessage(r)}); got != "f: OK" {
			t.Errorf("%s: %q", r, got)
		}
	}
}

func TestManagerActionThroughAPI(t *testing.T) {
	h := newHarness(t, nil)
	h.post(t, `{"fun":"asterisk.manager_action","args":[{"Action":"Originate","ActionID":"odoo-1","Channel":"Local/100@test","Application":"Wait","Data":"1","ChannelId":"odoo-11111111-aaaa","OtherChannelId":"odoo-11111111-bbbb"}],"res_model":"asterisk_plus.call","res_method":"originate_result","job_id":"orig"}`)
	items := itemsFor(h.enq.waitItems(t, 1), "orig")
	var args [][]map[string]any
	if err := json.Unmarshal(items[0].Args, &args); err != nil {
		t.Fatalf("args %s: %v", items[0].Args, err)
	}
	if len(args[0]) != 2 || args[0][1]["Event"] != "OriginateResponse" || args[0][1]["ActionID"] != "odoo-1" {
		t.Fatalf("originate result %s", items[0].Args)
	}
	// AMI down: the AMI-style error goes to the callback.
	h.fake.Err = errAMIDown
	h.post(t, `{"fun":"asterisk.manager_action","args":{"Action":"Ping"},"res_model":"m","res_method":"cb","res_notify_uid":1,"job_id":"down"}`)
	items = itemsFor(h.enq.waitItems(t, 3), "down")
	if string(items[0].Args) != `[{"Response":"Error","Message":"AMI not connected"}]` {
		t.Errorf("AMI down result %s", items[0].Args)
	}
	var msg []string
	json.Unmarshal(items[1].Args, &msg)
	if msg[0] != "asterisk.manager_action failed: AMI not connected" {
		t.Errorf("AMI down notification %q", msg)
	}
	if got := metricValue(t, h.metrics, "odoopbx_api_jobs_total", "fun", "asterisk.manager_action", "outcome", "ami_not_connected"); got != 1 {
		t.Errorf("jobs metric = %v", got)
	}
}

func TestTimeoutPanicAndMetrics(t *testing.T) {
	h := newHarness(t, nil)
	defer close(h.gate.release)
	h.post(t, `{"fun":"test.block","timeout":0.05,"res_model":"m","res_method":"cb","job_id":"slow"}`)
	h.post(t, `{"fun":"test.panic","res_model":"m","res_method":"cb","job_id":"panic"}`)
	items := h.enq.waitItems(t, 2)
	var res []map[string]any
	json.Unmarshal(itemsFor(items, "slow")[0].Args, &res)
	if res[0]["error_code"] != "timeout" {
		t.Errorf("slow: %v", res)
	}
	json.Unmarshal(itemsFor(items, "panic")[0].Args, &res)
	if res[0]["error_code"] != "internal" || !strings.Contains(res[0]["error"].(string), "boom") {
		t.Errorf("panic: %v", res)
	}
	h.post(t, `{"fun":"test.ping","sync":true}`)
	if got := metricValue(t, h.metrics, "odoopbx_api_jobs_total", "fun", "test.ping", "outcome", "ok"); got != 1 {
		t.Errorf("ping ok = %v", got)
	}
	if v := metricValue(t, h.metrics, "odoopbx_api_queue_depth"); v != 0 {
		t.Errorf("queue depth = %v", v)
	}
	if v := metricValue(t, h.metrics, "odoopbx_api_job_duration_seconds", "fun", "test.ping"); v != 1 {
		t.Errorf("latency samples = %v", v)
	}
	// Enqueue failures are counted, not fatal.
	h.enq.mu.Lock()
	h.enq.err = errors.New("spool full")
	h.enq.mu.Unlock()
	h.post(t, `{"fun":"test.ping","res_notify_uid":1,"sync":false}`)
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, h.metrics, "odoopbx_api_result_enqueue_failures_total") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("enqueue failure not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStopReportsQueuedJobs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Workers, c.Queue = 1, 4 })
	h.post(t, `{"fun":"test.block","res_model":"m","res_method":"cb","job_id":"running"}`)
	h.gate.waitStarted(t)
	h.post(t, `{"fun":"test.count","res_model":"m","res_method":"cb","job_id":"waiting"}`)
	h.srv.ready.Store(false)
	if r := h.post(t, `{"fun":"test.ping"}`); r.status != 503 || r.errCode() != "not_ready" {
		t.Fatalf("while stopping: %d %s", r.status, r.raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	items := h.enq.snapshot()
	waiting := itemsFor(items, "waiting")
	if len(waiting) != 1 || !strings.Contains(string(waiting[0].Args), "stopped before the job ran") || h.counter.Load() != 0 {
		t.Fatalf("waiting job: %+v (ran %d)", waiting, h.counter.Load())
	}
	if len(itemsFor(items, "running")) != 1 {
		t.Fatalf("running job not reported: %+v", items)
	}
	if h.srv.Health().OK {
		t.Error("healthy after stop")
	}
}

var errAMIDown = fmt.Errorf("wrapped: %w", amiErrNotConnected)

func TestParseEnvelopeArgs(t *testing.T) {
	for body, want := range map[string]string{
		`{"fun":"f"}`:                  `[]`,
		`{"fun":"f","args":null}`:      `[]`,
		`{"fun":"f","args":[null]}`:    `[]`,
		`{"fun":"f","args":[]}`:        `[]`,
		`{"fun":"f","args":"x"}`:       `["x"]`,
		`{"fun":"f","args":{"a":1}}`:   `[{"a":1}]`,
		`{"fun":"f","args":[1,null]}`:  `[1,null]`,
		`{"fun":"f","args":[[1],"b"]}`: `[[1],"b"]`,
		`{"fun":"f","args":0}`:         `[0]`,
	} {
		env, err := parseEnvelope([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		got, _ := json.Marshal(env.Args)
		if env.Args == nil {
			got = []byte(`[]`)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s: args %s, want %s", body, got, want)
		}
	}
	env, _ := parseEnvelope([]byte(`{"fun":"f","timeout":2.5,"res_notify_uid":9}`))
	if env.Timeout != 2500*time.Millisecond || env.NotifyTitle != "PBX" || env.NotifyUID != 9 || string(env.PassBack) != "{}" {
		t.Errorf("defaults: %+v", env)
	}
}

// metricValue reads a counter, gauge or histogram count from the registry; labels are name,
// value pairs that must all match.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func TestFromConfig(t *testing.T) {
	c := config.Default()
	c.API.Token, c.API.TokenNext = "a", "b"
	c.API.AllowFrom = []string{"10.0.0.0/8"}
	got := FromConfig(c)
	if got.Listen != "[::]:48000" || !got.TLS || got.CertFile != "/etc/odoopbx/tls/agent.crt" || got.KeyFile != "/etc/odoopbx/tls/agent.key" ||
		len(got.Tokens) != 2 || got.Tokens[1].Reveal() != "b" || got.MaxBodyBytes != 4<<20 || got.Workers != 16 || got.Queue != 1000 ||
		got.NotifyMethod != "asterisk_plus_notify" || got.AllowFrom[0] != "10.0.0.0/8" {
		t.Fatalf("FromConfig = %+v", got)
	}
	// Without a token the result still fails closed.
	c.API.Token, c.API.TokenNext = "", ""
	cfg := FromConfig(c)
	cfg.Functions, cfg.Enqueuer = jobs.NewRegistry(), newRecEnqueuer()
	if _, err := New(cfg); !errors.Is(err, ErrNoToken) {
		t.Fatalf("err = %v", err)
	}
}

func TestTLSRefusesHTTP2(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, func(c *Config) {
		c.TLS = true
		c.CertFile, c.KeyFile = filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	})
	conn, err := tls.Dial("tcp", h.srv.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Fatalf("negotiated %q", p)
	}
}
