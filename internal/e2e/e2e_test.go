// Package e2e checks the whole chain against a real Asterisk and a real Odoo with the
// asterisk_plus addon: it places a call and asserts the call record Odoo shows. It installs nothing
// and skips unless both systems are given.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/daemon"
	"github.com/odoopbx/odoopbx/internal/eventmap"
	"github.com/odoopbx/odoopbx/internal/odoo"
)

// env returns the variable or the default.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TestCallReachesOdoo: with the agent between them, an originated call between a channel that
// answers (ODOOPBX_TEST_CHANNEL, default PJSIP/102, e.g. a registered sipp) and an extension
// (ODOOPBX_TEST_CONTEXT/ODOOPBX_TEST_EXTEN, default test/100) ends up in Odoo as a finished call
// whose status follows contract §9.4. test/100 answers in the dialplan and dials nobody, so the
// primary channel is Up, hangs up with cause 16 and no second leg rang: status `ended`, not
// `answered`. An extension that dials a second phone gives `answered`: set
// ODOOPBX_TEST_EXPECT_STATUS for it.
//
// The agent's own Odoo user may not read calls (group PBX / Agent only writes through the event
// handlers), so the check reads them as a person: ODOOPBX_TEST_ODOO_READER_USER and
// ODOOPBX_TEST_ODOO_READER_PASSWORD, an Odoo user with PBX / User or above (default admin/admin).
func TestCallReachesOdoo(t *testing.T) {
	amiAddr, odooURL := os.Getenv("ODOOPBX_TEST_AMI"), os.Getenv("ODOOPBX_TEST_ODOO")
	if amiAddr == "" || odooURL == "" {
		t.Skip("end-to-end test skipped: set ODOOPBX_TEST_AMI and ODOOPBX_TEST_ODOO (plus their users) to run it")
	}
	cfg := config.Default()
	dir := t.TempDir()
	cfg.SystemName = "e2e"
	cfg.StateDir, cfg.Spool.Dir = dir, filepath.Join(dir, "spool")
	host, port, _ := strings.Cut(amiAddr, ":")
	cfg.AMI.Host = host
	cfg.AMI.Port, _ = strconv.Atoi(port)
	cfg.AMI.User = env("ODOOPBX_TEST_AMI_USER", "odoo")
	cfg.AMI.Secret = config.Secret(env("ODOOPBX_TEST_AMI_SECRET", "odoo-secret"))
	cfg.Odoo.URL = odooURL
	cfg.Odoo.DB = env("ODOOPBX_TEST_ODOO_DB", "odoopbx")
	cfg.Odoo.User = env("ODOOPBX_TEST_ODOO_USER", "agent")
	cfg.Odoo.Password = config.Secret(env("ODOOPBX_TEST_ODOO_PASSWORD", "agent"))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ag, err := daemon.New(daemon.Options{Config: cfg, Logger: log, NoFirewall: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, 30*time.Second, "AMI connected and the map loaded from Odoo", func() bool {
		s := ag.Map.Current()
		return ag.AMI.State() == ami.StateConnected && s != nil && s.Source == eventmap.LoadSourceOdoo
	})

	octx, ocancel := context.WithTimeout(ctx, 60*time.Second)
	defer ocancel()
	reply, err := ag.AMI.Do(octx, ami.NewMessage(
		"Action", "Originate",
		"Channel", env("ODOOPBX_TEST_CHANNEL", "PJSIP/102"),
		"Context", env("ODOOPBX_TEST_CONTEXT", "test"),
		"Exten", env("ODOOPBX_TEST_EXTEN", "100"),
		"Priority", "1",
		"Timeout", "15000",
		"CallerID", `"OdooPBX e2e" <5550100>`,
	))
	if err != nil {
		t.Fatal(err)
	}
	last := reply[len(reply)-1]
	if last.Event() != "OriginateResponse" || last.Get("Response") != "Success" {
		t.Fatalf("the call was not placed: %v", reply)
	}
	uniqueid := last.Get("Uniqueid")

	reader, err := odoo.NewJSONRPC(odoo.Options{URL: cfg.Odoo.URL, DB: cfg.Odoo.DB,
		User: env("ODOOPBX_TEST_ODOO_READER_USER", "admin"), Password: env("ODOOPBX_TEST_ODOO_READER_PASSWORD", "admin")})
	if err != nil {
		t.Fatal(err)
	}
	search := func(model string, fields ...string) []map[string]any {
		raw, err := reader.ExecuteKw(ctx, model, "search_read",
			[]any{[]any{[]any{"uniqueid", "=", uniqueid}}}, map[string]any{"fields": fields})
		if err != nil {
			t.Fatalf("%s search_read as the reader user: %v", model, err)
		}
		var rows []map[string]any
		if err := json.Unmarshal(raw, &rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	var calls []map[string]any
	waitFor(t, 60*time.Second, "the finished call in Odoo", func() bool {
		calls = search("asterisk_plus.call", "status", "direction", "is_active", "started", "answered", "ended", "duration", "calling_number")
		return len(calls) == 1 && calls[0]["is_active"] == false
	})
	c := calls[0]
	if want := env("ODOOPBX_TEST_EXPECT_STATUS", "ended"); c["status"] != want || c["ended"] == false || c["started"] == false {
		t.Errorf("call record %v: want a finished call with status %q", c, want)
	}
	channels := search("asterisk_plus.channel", "channel", "is_primary", "is_active", "was_up", "cause")
	if len(channels) != 1 || channels[0]["is_primary"] != true || channels[0]["is_active"] != false ||
		channels[0]["was_up"] != true || channels[0]["cause"] != "16" {
		t.Errorf("channel records %v: want one primary channel, answered (was_up) and hung up with cause 16", channels)
	}
	fmt.Printf("e2e: call %s in Odoo: %v; channel %v\n", uniqueid, c, channels)
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
