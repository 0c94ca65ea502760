package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/agent"
)

func newTestServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestHealthzCodesAndShape(t *testing.T) {
	for _, tc := range []struct {
		amiOK  bool
		code   int
		status string
	}{{true, 200, "ok"}, {false, 503, "degraded"}} {
		ts := newTestServer(t, Config{Health: sampleHealth(tc.amiOK)})
		resp, body := get(t, ts.URL+"/healthz")
		if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("ami ok=%v: %d %s", tc.amiOK, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var rep struct {
			Status string `json:"status"`
			Parts  map[string]struct {
				OK     bool           `json:"ok"`
				State  string         `json:"state"`
				Detail map[string]any `json:"detail"`
			} `json:"parts"`
		}
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Status != tc.status || len(rep.Parts) != 4 || rep.Parts["ami"].OK != tc.amiOK || rep.Parts["forwarder"].State != "running" {
			t.Fatalf("%s", body)
		}
	}
}

func TestHealthzWithoutPartsIsOK(t *testing.T) {
	ts := newTestServer(t, Config{})
	if resp, body := get(t, ts.URL+"/healthz"); resp.StatusCode != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestMetricsServesTheRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	events := prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_ami_events_total", Help: "AMI events read."})
	reg.MustRegister(events)
	events.Add(42)
	ts := newTestServer(t, Config{Registry: reg})
	resp, body := get(t, ts.URL+"/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "odoopbx_ami_events_total 42") {
		t.Fatalf("%s", body)
	}
}

func TestStatusPageShowsEverySectionEscaped(t *testing.T) {
	ts := newTestServer(t, Config{Health: sampleHealth(false), Status: sampleSource()})
	resp, body := get(t, ts.URL+"/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`id="ami"`, `id="odoo"`, `id="calls"`, `id="events"`, `id="queue"`, `id="bans"`, `id="health"`,
		"22.10.1", "erp.example.com", "12125550142", "101 Alice Martin", "203.0.113.7", "2001:db8::5",
		"1 dead letter", "Degraded", "connection refused", `<meta http-equiv="refresh"`, `new EventSource("events")`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert(1)</script>") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("an event summary was not escaped")
	}
	if strings.Contains(body, `src="http`) || strings.Contains(body, `href="http`) || strings.Contains(body, "@import") {
		t.Error("the page loads an external asset")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(body, `<script nonce="`) {
		t.Errorf("CSP %q", csp)
	}
	nonce := csp[strings.Index(csp, "'nonce-")+7:]
	nonce = nonce[:strings.Index(nonce, "'")]
	if !strings.Contains(body, `<script nonce="`+nonce+`">`) || !strings.Contains(body, `<style nonce="`+nonce+`">`) {
		t.Error("the inline script and style do not carry the CSP nonce")
	}
}

func TestStatusPageWithoutSource(t *testing.T) {
	ts := newTestServer(t, Config{Health: sampleHealth(true)})
	resp, body := get(t, ts.URL+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, "No active calls.") || !strings.Contains(body, "All systems normal") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, ts.URL+"/nope"); resp.StatusCode != 404 {
		t.Fatalf("unknown path: %d", resp.StatusCode)
	}
}

func TestStatusJSON(t *testing.T) {
	ts := newTestServer(t, Config{Health: sampleHealth(true), Status: sampleSource()})
	resp, body := get(t, ts.URL+"/status.json")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	var snap struct {
		AMI    AMIStatus   `json:"ami"`
		Calls  []Call      `json:"calls"`
		Queue  QueueStatus `json:"queue"`
		Bans   []Ban       `json:"bans"`
		Health struct {
			Status string `json:"status"`
		} `json:"health"`
	}
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.AMI.State != "connected" || len(snap.Calls) != 3 || snap.Queue.Dead != 1 || len(snap.Bans) != 2 || snap.Health.Status != "ok" {
		t.Fatalf("%s", body)
	}
	// Calls come oldest first.
	for i := 1; i < len(snap.Calls); i++ {
		if snap.Calls[i].Started.Before(snap.Calls[i-1].Started) {
			t.Fatalf("calls not by start: %v", snap.Calls)
		}
	}
}

func TestEventsStreamsTheLiveSection(t *testing.T) {
	calls := make(chan int, 8)
	n := 0
	src := StatusFunc(func(ctx context.Context) Status {
		n++
		calls <- n
		st := sampleStatus(time.Now())
		st.Queue.Depth = 1000 + n
		return st
	})
	ts := newTestServer(t, Config{Status: src, Refresh: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%q", resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	var frames []string
	var cur strings.Builder
	for len(frames) < 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			frames = append(frames, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	for i, f := range frames {
		if !strings.HasPrefix(f, "event: status\ndata: ") || !strings.Contains(f, `id="calls"`) || strings.Contains(f, "<html") {
			t.Fatalf("frame %d: %q", i, f)
		}
		for _, line := range strings.Split(strings.TrimSuffix(f, "\n"), "\n")[1:] {
			if !strings.HasPrefix(line, "data: ") {
				t.Fatalf("frame %d has a line outside data: %q", i, line)
			}
		}
	}
	if !strings.Contains(frames[0], ">1001<") || !strings.Contains(frames[1], ">1002<") {
		t.Fatal("the stream did not refresh the data")
	}
}

func TestTokenRequiredOffLoopback(t *testing.T) {
	if _, err := New(Config{Listen: "0.0.0.0:48002"}); err == nil || !strings.Contains(err.Error(), "metrics.token") {
		t.Fatalf("want a token error, got %v", err)
	}
	if _, err := New(Config{Listen: "[::]:48002"}); err == nil {
		t.Fatal("[::] without a token accepted")
	}
	if _, err := New(Config{Listen: "192.0.2.10:48002"}); err == nil {
		t.Fatal("a public address without a token accepted")
	}
	for _, l := range []string{"127.0.0.1:48002", "[::1]:48002", "localhost:48002"} {
		if _, err := New(Config{Listen: l}); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
	}
	if _, err := New(Config{Listen: "nonsense"}); err == nil {
		t.Fatal("bad listen address accepted")
	}
}

func TestBearerTokenEnforced(t *testing.T) {
	s, err := New(Config{Listen: "0.0.0.0:0", Token: "s3cret-token", Health: sampleHealth(true), Status: sampleSource()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, path := range []string{"/healthz", "/metrics", "/", "/status.json", "/events"} {
		if resp, _ := get(t, ts.URL+path); resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s without token: %d", path, resp.StatusCode)
		}
		if resp, _ := get(t, ts.URL+path, "Authorization", "Bearer wrong"); resp.StatusCode != 401 {
			t.Errorf("%s with a wrong token: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := get(t, ts.URL+"/healthz", "Authorization", "Bearer s3cret-token"); resp.StatusCode != 200 {
		t.Fatalf("with the token: %d", resp.StatusCode)
	}
	// A browser trades ?token= for a cookie, then browses with it.
	resp, _ := get(t, ts.URL+"/?token=s3cret-token")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("token link: %d", resp.StatusCode)
	}
	cookie := resp.Cookies()
	if len(cookie) != 1 || !cookie[0].HttpOnly || cookie[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", cookie)
	}
	if resp, body := get(t, ts.URL+"/", "Cookie", cookie[0].Name+"="+cookie[0].Value); resp.StatusCode != 200 || !strings.Contains(body, `id="calls"`) {
		t.Fatalf("with the cookie: %d", resp.StatusCode)
	}
	if resp, _ := get(t, ts.URL+"/?token=wrong"); resp.StatusCode != 401 {
		t.Fatalf("wrong token link: %d", resp.StatusCode)
	}
}

func TestStartServeStop(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Health: func() map[string]agent.Health {
		return map[string]agent.Health{"ami": {OK: true, State: "connected"}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := s.Health(); !h.OK || s.Name() != "admin" {
		t.Fatalf("%+v", h)
	}
	resp, body := get(t, "http://"+s.Addr()+"/healthz")
	if resp.StatusCode != 200 || !strings.Contains(body, `"ami"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// A live page must not hold Stop up.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Addr()+"/events", nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if s.Health().OK {
		t.Fatal("healthy after Stop")
	}
}

func TestStatusSourcePanicDoesNotCrash(t *testing.T) {
	ts := newTestServer(t, Config{Status: StatusFunc(func(context.Context) Status { panic("adapter bug") })})
	if resp, _ := get(t, ts.URL+"/"); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
}
