package daemon_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami/amitest"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/daemon"
	"github.com/odoopbx/odoopbx/internal/demo"
	"github.com/odoopbx/odoopbx/internal/eventmap"
	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenCases are recorded calls: AMI bytes in, the execute_kw calls Odoo must see out.
var goldenCases = []string{
	"05c-sip-call-101-to-ext-100",
	"05d-sip-click-to-call-originate-pjsip-102",
	"02-originate-local-call",
	"07-mixmonitor-call",
}

func TestGoldenAMIToOdoo(t *testing.T) {
	for _, name := range goldenCases {
		t.Run(name, func(t *testing.T) {
			got := runGolden(t, name, false)
			compareGolden(t, name, got)
		})
	}
}

// TestGoldenSurvivesOdooOutage replays a call while Odoo is down, then brings Odoo back: the
// same calls arrive, in the same order per call.
func TestGoldenSurvivesOdooOutage(t *testing.T) {
	name := "05c-sip-call-101-to-ext-100"
	compareGolden(t, name, runGolden(t, name, true))
}

func runGolden(t *testing.T, name string, outage bool) string {
	t.Helper()
	read := func(f string) []byte { return amitest.ReadFixture(t, f) }
	pbx, err := amitest.Replay(read(name+".txt"), read(name+".sent.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pbx.Start(); err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()

	odoo := odootest.Start(t, odootest.Options{})
	odoo.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		var m map[string]any
		_ = json.Unmarshal(demo.DefaultMap, &m)
		return odootest.Response{Result: m}
	})

	dir := t.TempDir()
	cfg := config.Default()
	cfg.SystemName = "golden"
	cfg.StateDir = dir
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	host, port := splitHostPort(t, pbx.Addr())
	cfg.AMI.Host, cfg.AMI.Port = host, port
	cfg.AMI.User, cfg.AMI.Secret = "odoo", "odoo-secret"
	cfg.Odoo.URL, cfg.Odoo.DB, cfg.Odoo.User, cfg.Odoo.Password = odoo.URL(), odoo.DB(), odoo.User(), config.Secret(odoo.Password())

	// The map must be known before the call's events arrive: here from the saved file, as after
	// any earlier run; in the outage case Odoo is unreachable from the start.
	saveMap(t, dir)
	if outage {
		odoo.Stop()
	}
	ag, err := daemon.New(daemon.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), NoFirewall: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The transcript's own actions (the click-to-call Originate) go through the agent, as Odoo's
	// job would send them, so the replay can go on.
	actions, err := amitest.Actions(read(name + ".sent.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		go func() {
			actx, acancel := context.WithTimeout(ctx, 20*time.Second)
			defer acancel()
			if _, err := ag.AMI.Do(actx, a); err != nil {
				t.Errorf("%s: %v", a.Get("Action"), err)
			}
		}()
	}
	waitFor(t, pbx.Finished, "the transcript replayed")
	if outage {
		// The call's events wait in the spool while Odoo is away; then Odoo comes back.
		waitFor(t, func() bool { return ag.Delivery.Status().Pending > 0 }, "events spooled during the outage")
		time.Sleep(300 * time.Millisecond)
		if len(odoo.Calls()) != 0 {
			t.Fatal("a call reached a stopped Odoo")
		}
		if err := odoo.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	// Done when the spool is empty and nothing more arrives for a while.
	last, stableSince := -1, time.Now()
	waitFor(t, func() bool {
		n := len(odoo.Calls())
		if n != last || ag.Delivery.Status().Pending > 0 {
			last, stableSince = n, time.Now()
			return false
		}
		return time.Since(stableSince) > 500*time.Millisecond
	}, "deliveries to settle")
	return render(t, odoo.Calls())
}

// saveMap writes the default map where the agent keeps its last map, as the agent saves it.
func saveMap(t *testing.T, stateDir string) {
	t.Helper()
	saved := fmt.Sprintf(`{"saved_at":%q,"config":%s}`, time.Now().UTC().Format(time.RFC3339), demo.DefaultMap)
	if err := os.WriteFile(eventmap.StateFile(stateDir), []byte(saved), 0o600); err != nil {
		t.Fatal(err)
	}
}

// render groups the calls by lane (Linkedid) and writes one line per call: order is guaranteed
// within a call, not across calls.
func render(t *testing.T, calls []odootest.Call) string {
	t.Helper()
	lanes := map[string][]string{}
	for _, c := range calls {
		if c.Method == "agent_get_config" {
			continue
		}
		if len(c.Args) != 1 {
			t.Errorf("%s.%s: %d args, want the event alone", c.Model, c.Method, len(c.Args))
			continue
		}
		ev, ok := c.Args[0].(map[string]any)
		if !ok {
			t.Errorf("%s.%s: the argument is not an object", c.Model, c.Method)
			continue
		}
		for _, k := range []string{"SystemName", "EventTime", "AgentEventId"} {
			if _, ok := ev[k]; !ok {
				t.Errorf("%s.%s: no %s enrichment", c.Model, c.Method, k)
			}
		}
		if ev["SystemName"] != "golden" {
			t.Errorf("SystemName %v", ev["SystemName"])
		}
		lane := str(ev["Linkedid"])
		line := fmt.Sprintf("%s.%s %s %s uniqueid=%s", c.Model, c.Method, str(ev["Event"]), str(ev["Channel"]), str(ev["Uniqueid"]))
		if s := str(ev["ChannelStateDesc"]); s != "" {
			line += " state=" + s
		}
		if s := str(ev["Cause"]); s != "" {
			line += " cause=" + s
		}
		if s := str(ev["Value"]); s != "" && str(ev["Event"]) == "VarSet" {
			line += " value=" + s
		}
		lanes[lane] = append(lanes[lane], line)
	}
	keys := make([]string, 0, len(lanes))
	for k := range lanes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "lane %s\n", k)
		for _, l := range lanes[k] {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	return b.String()
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/daemon -run Golden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("Odoo saw a different sequence.\n--- got\n%s\n--- want\n%s", got, want)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func splitHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var port int
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	return addr[:i], port
}
