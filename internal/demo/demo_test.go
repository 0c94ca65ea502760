package demo

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/daemon"
)

// syncBuffer is written by the demo's goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDemoShowsCallsAndStopsCleanly runs the demo as `make demo` does, faster: simulated calls are
// printed, their events reach the Odoo stand-in, the status page answers, and it stops by itself.
func TestDemoShowsCallsAndStopsCleanly(t *testing.T) {
	out := &syncBuffer{}
	listen := freePort(t)
	page := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(context.Background(), Options{
			StatusListen:   listen,
			CallsPerSecond: 2,
			Attackers:      1,
			Seed:           3,
			TimeScale:      20,
			Duration:       6 * time.Second,
			Out:            out,
			StatusPage: func(cfg config.Config, ag *daemon.Agent) (agent.Component, string, error) {
				srv, err := daemon.NewAdmin(ag, nil)
				if err == nil {
					page <- "http://" + cfg.Metrics.Listen + "/"
				}
				return srv, "http://" + cfg.Metrics.Listen + "/", err
			},
		})
	}()
	url := <-page
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			body = b.String()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, "OdooPBX") {
		t.Errorf("the status page did not answer: %.200q", body)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop by itself")
	}
	text := out.String()
	for _, want := range []string{"OdooPBX demo: simulated Asterisk on", "Status page: " + url, "deliveries to Odoo", "Stopped:"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	calls := strings.Count(text, "deliveries to Odoo\n")
	if calls < 3 {
		t.Errorf("only %d call lines:\n%s", calls, text)
	}
	if strings.Contains(text, " 0 deliveries to Odoo") && calls == strings.Count(text, " 0 deliveries to Odoo") {
		t.Errorf("no call's events reached the Odoo stand-in:\n%s", text)
	}
}
