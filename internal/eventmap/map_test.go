package eventmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/odoo"
)

func methods(rows []Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Method)
	}
	return out
}

func TestReloadFromAgentGetConfig(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", defaultMapJSON)
	m, path := newTestMap(t, fo)

	res, err := m.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 12 || res.Options != 3 || res.Errors == nil || len(res.Errors) != 0 {
		t.Fatalf("result %+v", res)
	}
	// errors is [] in JSON, never null.
	if data, _ := json.Marshal(res); string(data) != `{"events":12,"options":3,"errors":[]}` {
		t.Fatalf("result JSON %s", data)
	}
	s := m.Current()
	if s.Source != LoadSourceOdoo || s.Fallback || s.ServerID != 1 || s.SystemName != "pbx1" {
		t.Fatalf("snapshot %+v", s.RemoteConfig)
	}
	if m.NotifyMethod() != "asterisk_plus_notify" {
		t.Fatalf("notify_method %q", m.NotifyMethod())
	}
	if got := m.OptionStrings(); got["security_enabled"] != "true" || got["security_ban_time"] != "3600" || got["fagi_timeout"] != "3" {
		t.Fatalf("options %v", got)
	}
	if string(m.AccessLists()) != `[{"address":"10.0.0.0/8","access_type":"allow","comment":"lan"}]` {
		t.Fatalf("access_lists %s", m.AccessLists())
	}
	// The call itself: no arguments.
	if fo.calls[0].Model != "asterisk_plus.server" || fo.calls[0].Method != "agent_get_config" || len(fo.calls[0].Args) != 0 {
		t.Fatalf("call %+v", fo.calls[0])
	}
	// FullyBooted's condition was false: it always matches.
	rows, errs := m.Match(SourceAMI, "FullyBooted", eventOf("Event", "FullyBooted"))
	if errs != 0 || len(rows) != 1 || rows[0].Method != "on_fully_booted" || rows[0].Delay != 0 {
		t.Fatalf("FullyBooted rows %+v, %d errors", rows, errs)
	}
	// FAGI rows are kept apart from AMI rows.
	if rows, _ := m.Match(SourceAMI, "route_did", eventOf()); len(rows) != 0 {
		t.Fatalf("FAGI row matched an AMI event: %+v", rows)
	}
	if rows, _ := m.Match(SourceFAGI, "route_did", eventOf("agi_network_script", "route_did")); len(rows) != 1 {
		t.Fatalf("FAGI rows %+v", rows)
	}
	// The map was saved.
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("not saved: %v", err)
	}
	h := m.Health()
	if !h.OK || h.State != "loaded" || h.Detail["rows"] != 12 || h.Detail["hash"] != s.MapHash || len(s.MapHash) != 64 {
		t.Fatalf("health %+v", h)
	}
}

func TestReloadFallsBackToSearchRead(t *testing.T) {
	fo := newFakeOdoo()
	fo.setErr("asterisk_plus.server.agent_get_config", &odoo.Error{Kind: odoo.KindMissingMethod, Name: "builtins.AttributeError", Message: "type object has no attribute 'agent_get_config'"})
	fo.setJSON("asterisk_plus.event.search_read", `[
	 {"id": 3, "name": "Hangup", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_hangup", "delay": false, "condition": false},
	 {"id": 1, "name": "Newchannel", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_new_channel", "delay": 0.0, "condition": "not event['Channel'].startswith('Local/')"},
	 {"id": 2, "name": "Newchannel", "source": "AMI", "model": "asterisk_plus.channel", "method": "second", "delay": 1.5, "condition": null}
	]`)
	m, _ := newTestMap(t, fo)
	res, err := m.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 3 || res.Options != 0 || len(res.Errors) != 0 {
		t.Fatalf("result %+v", res)
	}
	if !m.Current().Fallback {
		t.Fatal("Fallback not set")
	}
	call := fo.calls[1]
	wantArgs := []any{
		[]any{[]any{"is_enabled", "=", true}, []any{"source", "in", []any{"AMI", "FAGI"}}},
		[]any{"id", "name", "source", "model", "method", "delay", "condition"},
	}
	if call.Model != "asterisk_plus.event" || call.Method != "search_read" || !reflect.DeepEqual(call.Args, wantArgs) {
		t.Fatalf("search_read call %+v", call)
	}
	// The missing sequence defaults to 10, so the id decides the order.
	rows, _ := m.Match(SourceAMI, "Newchannel", eventOf("Event", "Newchannel", "Channel", "PJSIP/101-1"))
	if got := methods(rows); !reflect.DeepEqual(got, []string{"on_ami_new_channel", "second"}) {
		t.Fatalf("order %v", got)
	}
	if rows[1].Sequence != DefaultSequence || rows[1].DelayDuration() != 1500*time.Millisecond {
		t.Fatalf("row %+v", rows[1])
	}
}

func TestReloadOtherOdooErrorDoesNotFallBack(t *testing.T) {
	fo := newFakeOdoo()
	fo.setErr("asterisk_plus.server.agent_get_config", &odoo.Error{Kind: odoo.KindTransient, Message: "connection refused"})
	m, _ := newTestMap(t, fo)
	if _, err := m.Reload(context.Background()); err == nil {
		t.Fatal("want an error")
	}
	if fo.callCount("asterisk_plus.event.search_read") != 0 {
		t.Fatal("fell back on a transient error")
	}
	h := m.Health()
	if h.OK || h.State != "empty" || !strings.Contains(fmt.Sprint(h.Detail["last_error"]), "connection refused") {
		t.Fatalf("health %+v", h)
	}
}

func TestReloadOrdersHandlersAndDisablesBadRows(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", `{"api_version": 1, "events_map": [
	 {"id": 7, "name": "Hangup", "source": "AMI", "model": "m", "method": "seq5_id7", "condition": "", "delay": 0, "sequence": 5},
	 {"id": 2, "name": "Hangup", "source": "AMI", "model": "m", "method": "seq10_id2", "condition": false, "delay": 0, "sequence": 10},
	 {"id": 1, "name": "Hangup", "source": "AMI", "model": "m", "method": "seq10_id1", "condition": false, "delay": 0, "sequence": 10},
	 {"id": 4, "name": "hangup", "source": "ami", "model": "m", "method": "seq1_id4_lowercase", "condition": false, "sequence": 1},
	 {"id": 5, "name": "Hangup", "source": "AMI", "model": "m", "method": "broken", "condition": "event['Cause'] ==", "sequence": 1},
	 {"id": 6, "name": "Hangup", "source": "AMI", "model": "m", "method": "_private", "condition": false},
	 {"id": 8, "name": "Hangup", "source": "AMI", "model": "m", "method": "free_name", "condition": "cause == 16"},
	 {"id": 9, "name": "Hangup", "source": "ARI", "model": "m", "method": "ari"},
	 {"id": 10, "name": "", "source": "AMI", "model": "m", "method": "noname"},
	 {"id": 11, "name": "Hangup", "source": "AMI", "model": "m", "method": "runtime_error", "condition": "event['Missing'] == 1", "sequence": 1}
	]}`)
	m, _ := newTestMap(t, fo)
	res, err := m.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 5 || len(res.Errors) != 5 {
		t.Fatalf("result %+v", res)
	}
	joined := strings.Join(res.Errors, "\n")
	for _, want := range []string{"event row 5 (Hangup)", "syntax", "event row 6", "private", "event row 8", "cause", "event row 9", "ARI", "event row 10", "no event name"} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors lack %q:\n%s", want, joined)
		}
	}
	if len(m.Disabled()) != 5 || m.Health().Detail["disabled"] != 5 {
		t.Fatalf("disabled %+v", m.Disabled())
	}
	rows, condErrs := m.Match(SourceAMI, "Hangup", eventOf("Event", "Hangup", "Cause", "16"))
	want := []string{"seq1_id4_lowercase", "seq5_id7", "seq10_id1", "seq10_id2"}
	if got := methods(rows); !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if condErrs != 1 {
		t.Fatalf("condition errors %d, want 1 (the runtime error row is skipped, the rest run)", condErrs)
	}
	// Event names match case-insensitively (the docs say NewExten, Asterisk sends Newexten).
	if rows, _ := m.Match(SourceAMI, "HANGUP", eventOf("Cause", "16")); len(rows) != 4 {
		t.Fatalf("case-insensitive name: %d rows", len(rows))
	}
}

func TestConditionRuntimeErrorLogIsRateLimited(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", `{"events_map": [
	 {"id": 1, "name": "Hangup", "source": "AMI", "model": "m", "method": "x", "condition": "event['Missing'] == 1"}]}`)
	var logged atomic.Int32
	now := time.Unix(1795627163, 0)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	m, err := New(Config{Odoo: fo, RefreshEvery: -1, Now: func() time.Time { return time.Unix(0, clock.Load()) },
		Logger: newCountingLogger(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := eventOf("Event", "Hangup")
	for i := 0; i < 5; i++ {
		if _, n := m.Match(SourceAMI, "Hangup", ev); n != 1 {
			t.Fatalf("condition errors %d", n)
		}
	}
	if logged.Load() != 1 {
		t.Fatalf("logged %d times within a minute, want 1", logged.Load())
	}
	clock.Store(now.Add(61 * time.Second).UnixNano())
	m.Match(SourceAMI, "Hangup", ev)
	if logged.Load() != 2 {
		t.Fatalf("logged %d times after a minute, want 2", logged.Load())
	}
}

func TestSavedMapServesWhileOdooIsDown(t *testing.T) {
	up := newFakeOdoo()
	up.setJSON("asterisk_plus.server.agent_get_config", defaultMapJSON)
	first, path := newTestMap(t, up)
	if _, err := first.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A restart while Odoo is down.
	down := newFakeOdoo()
	down.setErr("asterisk_plus.server.agent_get_config", &odoo.Error{Kind: odoo.KindTransient, Message: "connection refused"})
	var changes atomic.Int32
	second, err := New(Config{Odoo: down, StatePath: path, RefreshEvery: -1, OnChange: func(*Snapshot) { changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer second.Stop(context.Background())
	s := second.Current()
	if s.Source != LoadSourceDisk || s.RowCount() != 12 || s.MapHash != first.Hash() {
		t.Fatalf("after restart: source %s rows %d", s.Source, s.RowCount())
	}
	if got := second.OptionStrings()["security_ban_time"]; got != "3600" {
		t.Fatalf("saved options lost: %q", got)
	}
	rows, _ := second.Match(SourceAMI, "Newchannel", eventOf("Event", "Newchannel", "Channel", "PJSIP/101-00000000"))
	if len(rows) != 1 {
		t.Fatalf("saved map does not forward: %+v", rows)
	}
	// The failed reloads keep the saved map.
	waitFor(t, func() bool { return down.callCount("asterisk_plus.server.agent_get_config") >= 1 })
	if _, err := second.Reload(context.Background()); err == nil {
		t.Fatal("want an error while Odoo is down")
	}
	if second.Current().Source != LoadSourceDisk {
		t.Fatal("a failed reload replaced the saved map")
	}
	h := second.Health()
	if !h.OK || h.State != "saved_copy" {
		t.Fatalf("health %+v", h)
	}
	if changes.Load() != 1 {
		t.Fatalf("OnChange ran %d times, want once (for the saved map)", changes.Load())
	}
}

func TestCorruptSavedMapIsReportedAndIgnored(t *testing.T) {
	fo := newFakeOdoo()
	m, path := newTestMap(t, fo)
	if err := os.WriteFile(path, []byte(`{"config": {"events_map": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.LoadSaved(); err == nil {
		t.Fatal("want an error for a corrupt file")
	}
	if m.Current().Source != LoadSourceNone {
		t.Fatal("a corrupt file was installed")
	}
	// A missing file is fine.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := m.LoadSaved(); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshSwapsOnlyOnChange(t *testing.T) {
	fo := newFakeOdoo()
	var body atomic.Value
	body.Store(defaultMapJSON)
	fo.set("asterisk_plus.server.agent_get_config", func([]any) (json.RawMessage, error) {
		return json.RawMessage(body.Load().(string)), nil
	})
	reg := prometheus.NewRegistry()
	var changes atomic.Int32
	m, err := New(Config{Odoo: fo, RefreshEvery: -1, Registerer: reg, OnChange: func(*Snapshot) { changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	firstRows := m.Current().rows
	// The same map, with keys in another order and other whitespace.
	var reordered map[string]any
	if err := json.Unmarshal([]byte(defaultMapJSON), &reordered); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(reordered)
	body.Store(string(again))
	if _, err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if changes.Load() != 1 || &m.Current().rows[0] != &firstRows[0] {
		t.Fatalf("an unchanged map was swapped: changes %d", changes.Load())
	}
	if got := metricValue(t, reg, "odoopbx_eventmap_reloads_total", "unchanged"); got != 1 {
		t.Fatalf("unchanged reloads %v", got)
	}
	// An option change alone is a change.
	body.Store(strings.Replace(defaultMapJSON, `"security_ban_time": 3600`, `"security_ban_time": 60`, 1))
	if _, err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if changes.Load() != 2 || m.OptionStrings()["security_ban_time"] != "60" {
		t.Fatalf("option change: changes %d", changes.Load())
	}
	if got := metricValue(t, reg, "odoopbx_eventmap_rows", ""); got != 12 {
		t.Fatalf("rows metric %v", got)
	}
}

// Readers never see half a map: while maps A and B are swapped in turn, every Match returns the
// two handlers of one map, never one of each.
func TestSwapIsAtomicUnderConcurrentReads(t *testing.T) {
	mapJSON := func(tag string) string {
		return fmt.Sprintf(`{"events_map": [
		 {"id": 1, "name": "Hangup", "source": "AMI", "model": "m", "method": "%s1", "condition": "event['Cause'] == '16'"},
		 {"id": 2, "name": "Hangup", "source": "AMI", "model": "m", "method": "%s2", "condition": false}]}`, tag, tag)
	}
	fo := newFakeOdoo()
	var flip atomic.Int32
	fo.set("asterisk_plus.server.agent_get_config", func([]any) (json.RawMessage, error) {
		if flip.Add(1)%2 == 0 {
			return json.RawMessage(mapJSON("a")), nil
		}
		return json.RawMessage(mapJSON("b")), nil
	})
	m, err := New(Config{Odoo: fo, RefreshEvery: -1}) // no StatePath: this test is about memory, not disk
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := eventOf("Event", "Hangup", "Cause", "16")
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	var reads atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				rows, _ := m.Match(SourceAMI, "Hangup", ev)
				got := strings.Join(methods(rows), ",")
				if got != "a1,a2" && got != "b1,b2" {
					bad.Store(got)
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < 200; i++ {
		if _, err := m.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a reader saw a mixed map: %v", v)
	}
	if reads.Load() == 0 {
		t.Fatal("no reads happened")
	}
}

func TestStartRetriesUntilOdooAnswersAndKickReloads(t *testing.T) {
	fo := newFakeOdoo()
	var fail atomic.Bool
	fail.Store(true)
	fo.set("asterisk_plus.server.agent_get_config", func([]any) (json.RawMessage, error) {
		if fail.Load() {
			return nil, &odoo.Error{Kind: odoo.KindTransient, Message: "down"}
		}
		return json.RawMessage(defaultMapJSON), nil
	})
	m, _ := newTestMap(t, fo)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return fo.callCount("asterisk_plus.server.agent_get_config") >= 1 })
	fail.Store(false)
	// The Odoo login hook kicks a reload instead of waiting for the retry.
	m.Kick()
	waitFor(t, func() bool { return m.Current().Source == LoadSourceOdoo })
	n := fo.callCount("asterisk_plus.server.agent_get_config")
	m.Kick()
	waitFor(t, func() bool { return fo.callCount("asterisk_plus.server.agent_get_config") > n })
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := m.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
}

func TestPeriodicRefresh(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", defaultMapJSON)
	m, err := New(Config{Odoo: fo, RefreshEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return fo.callCount("asterisk_plus.server.agent_get_config") >= 3 })
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReloadHonoursContext(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", defaultMapJSON)
	m, _ := newTestMap(t, fo)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Reload(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestMetricsRegisterTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Registerer: reg}); err == nil {
		t.Fatal("want a registration error")
	}
}

// waitFor polls cond for up to 10 s; it is a deadline against hangs, not a timing target.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// metricValue reads one counter or gauge from reg; label is the value of its only label, or "".
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
