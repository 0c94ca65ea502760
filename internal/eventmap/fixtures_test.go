package eventmap

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

// The default map of contract §3.7 against the recorded calls. The expected counts were taken
// from the transcripts independently (an awk pass over the raw bytes).
func TestDefaultMapAgainstFixtures(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", defaultMapJSON)
	m, _ := newTestMap(t, fo)
	if _, err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		fixture string
		want    map[string]int // event name → events that matched at least one row
	}{
		{"02-", map[string]int{"FullyBooted": 1}}, // every channel is Local/: nothing else
		{"05c-", map[string]int{"FullyBooted": 1, "Newchannel": 1, "Newstate": 1, "Hangup": 1}},
		{"05d-", map[string]int{"FullyBooted": 1, "Newchannel": 1, "Newstate": 1, "Hangup": 1}},
		{"07-", map[string]int{"FullyBooted": 1, "VarSet": 1}},
		{"08-", map[string]int{"FullyBooted": 1}}, // OdooTest/OdooPing are not CallAnswered/SetTransfer
		{"04d-", map[string]int{"FullyBooted": 1, "OriginateResponse": 3}},
	}
	for _, c := range cases {
		got := map[string]int{}
		for _, msg := range amitest.FixtureEvents(t, c.fixture) {
			rows, errs := m.Match(SourceAMI, msg.Event(), EventFromMessage(msg, 0))
			if errs != 0 {
				t.Errorf("%s: %s: %d condition errors", c.fixture, msg.Event(), errs)
			}
			if len(rows) > 0 {
				got[msg.Event()]++
			}
			if msg.Event() == "VarSet" && len(rows) == 1 && rows[0].Method != "update_recording_filename" {
				t.Errorf("VarSet matched %s", rows[0].Method)
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: matched %v, want %v", c.fixture, got, c.want)
		}
	}
}

// The event→class table agrees with the Privilege header of every event Asterisk sent.
func TestEventClassesAgreeWithFixtures(t *testing.T) {
	checked := 0
	for _, pattern := range []string{"01-", "02-", "03-", "05a-", "05b-", "05c-", "05d-", "05f-", "07-", "08-", "04c-", "04d-"} {
		for _, msg := range amitest.FixtureEvents(t, pattern) {
			priv := msg.Get("Privilege")
			if priv == "" {
				continue // list items of actions carry no class
			}
			want := strings.ToLower(strings.Split(priv, ",")[0])
			got, ok := EventClass(msg.Event())
			if !ok || got != want {
				t.Errorf("%s: class %q (known %v), Asterisk sent Privilege %q", msg.Event(), got, ok, priv)
			}
			checked++
		}
	}
	if checked < 300 {
		t.Fatalf("only %d events checked", checked)
	}
}

func TestEventsMask(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", defaultMapJSON)
	m, _ := newTestMap(t, fo)
	if got := m.EventsMask(false); got != "call" {
		t.Fatalf("before any load: %q", got)
	}
	if _, err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Newchannel/Newstate/Hangup/OriginateResponse: call; VarSet: dialplan; UserEvent: user;
	// FullyBooted: system; the snapshot is synthetic; route_did is FAGI.
	if got := m.EventsMask(false); got != "call,system,dialplan,user" {
		t.Fatalf("default map: %q", got)
	}
	if got := m.EventsMask(true); got != "call,system,dialplan,user,security" {
		t.Fatalf("with security: %q", got)
	}
	cases := []struct {
		names []string
		sec   bool
		want  string
	}{
		{nil, false, "call"},
		{nil, true, "call,security"},
		{[]string{"Cdr", "CEL"}, false, "call,cdr"},
		{[]string{"NewExten", "newexten"}, false, "call,dialplan"},
		{[]string{"QueueCallerJoin", "AgentConnect"}, false, "call,agent"},
		{[]string{"DTMFEnd", "RTCPSent", "AsyncAGIStart"}, false, "call,reporting,dtmf,agi"},
		{[]string{"Newchannel", "MyCustomModuleEvent"}, true, "on"},
		{[]string{"AgentChannelsSnapshot"}, false, "call"},
		{[]string{"InvalidPassword"}, false, "call,security"},
	}
	for _, c := range cases {
		if got := EventsMask(c.names, c.sec); got != c.want {
			t.Errorf("EventsMask(%v, %v) = %q, want %q", c.names, c.sec, got, c.want)
		}
	}
}

func TestRowDecoding(t *testing.T) {
	cases := []struct {
		in   string
		want Row
	}{
		{`{"id": 1, "name": "Hangup", "source": "AMI", "model": "m", "method": "x", "condition": false, "delay": false}`,
			Row{ID: 1, Name: "Hangup", Source: "AMI", Model: "m", Method: "x", Sequence: 10}},
		{`{"id": 2.0, "name": "Hangup", "model": "m", "method": "x", "condition": null, "delay": null, "sequence": false}`,
			Row{ID: 2, Name: "Hangup", Model: "m", Method: "x", Sequence: 10}},
		{`{"id": 3, "name": "Hangup", "model": "m", "method": "x", "condition": "True", "delay": "2.5", "sequence": 3}`,
			Row{ID: 3, Name: "Hangup", Model: "m", Method: "x", Condition: "True", Delay: 2.5, Sequence: 3}},
		{`{"id": 4, "name": "Hangup", "model": "m", "method": "x", "delay": ""}`,
			Row{ID: 4, Name: "Hangup", Model: "m", Method: "x", Sequence: 10}},
		{`{"id": 5, "name": "Hangup", "model": "m", "method": "x", "is_enabled": false}`,
			Row{ID: 5, Name: "Hangup", Model: "m", Method: "x", Sequence: 10, Disabled: true}},
		{`{"id": 6, "name": "Hangup", "model": "m", "method": "x", "is_enabled": true}`,
			Row{ID: 6, Name: "Hangup", Model: "m", Method: "x", Sequence: 10}},
	}
	for _, c := range cases {
		var r Row
		if err := json.Unmarshal([]byte(c.in), &r); err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if r != c.want {
			t.Errorf("%s: got %+v, want %+v", c.in, r, c.want)
		}
	}
	for _, bad := range []string{
		`{"id": "x"}`,
		`{"id": 1.5}`,
		`{"delay": "soon"}`,
		`{"delay": {}}`,
		`{"condition": ["a"]}`,
		`[1]`,
	} {
		var r Row
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s decoded, want an error", bad)
		}
	}
}

func TestDelayIsClamped(t *testing.T) {
	for delay, want := range map[float64]string{-5: "0s", 0: "0s", 0.25: "250ms", 30: "30s", 31: "30s", 1e300: "30s"} {
		if got := (Row{Delay: delay}).DelayDuration().String(); got != want {
			t.Errorf("delay %v → %s, want %s", delay, got, want)
		}
	}
}

func TestAgentGetConfigDecoding(t *testing.T) {
	var c RemoteConfig
	if err := json.Unmarshal([]byte(`{"api_version": 1, "server_id": [4, "PBX"], "system_name": false, "events_map": false, "options": false, "access_lists": false, "notify_method": false}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.ServerID != 4 || c.SystemName != "" || c.EventsMap != nil || c.Options != nil || c.AccessLists != nil || c.NotifyMethod != "" {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{`[]`, `{"events_map": {"a": 1}}`, `{"options": [1]}`, `{"server_id": "x"}`} {
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s decoded, want an error", bad)
		}
	}
}

// The hand-written encoder says what encoding/json says, for every fixture event and for awkward
// strings.
func TestEventJSONMatchesEncodingJSON(t *testing.T) {
	var msgs int
	for _, pattern := range []string{"02-", "04b-", "04g-", "05c-", "08-"} {
		for _, msg := range amitest.FixtureByPrefix(t, pattern) {
			ev := EventFromMessage(msg, 0)
			mine, _ := ev.MarshalJSON()
			theirs, err := json.Marshal(msg.Map())
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(mine, &a); err != nil {
				t.Fatalf("%s: invalid JSON %s: %v", pattern, mine, err)
			}
			_ = json.Unmarshal(theirs, &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: %s\nwant %s", pattern, mine, theirs)
			}
			msgs++
		}
	}
	ev := NewEvent(0)
	awkward := "quote\" back\\ nl\n cr\r tab\t nul\x00 bell\x07 del\x7f bad\xff utf8é ls\u2028 ps\u2029 <html>&"
	ev.Set("K", awkward)
	ev.Set("L", []string{"a", awkward})
	ev.Set("F", 1795627163.123456)
	ev.Set("I", 7)
	mine, _ := ev.MarshalJSON()
	var got map[string]any
	if err := json.Unmarshal(mine, &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", mine, err)
	}
	wantStr := strings.ToValidUTF8(awkward, "\ufffd")
	if got["K"] != wantStr || got["L"].([]any)[1] != wantStr || got["F"] != 1795627163.123456 || got["I"] != float64(7) {
		t.Fatalf("round trip %q", got)
	}
	if strings.ContainsAny(string(mine), "\n\r\t\x00\u2028") {
		t.Fatalf("raw control characters in %q", mine)
	}
	if msgs < 50 {
		t.Fatalf("only %d messages compared", msgs)
	}
}

func TestEventRepeatedHeadersAndRename(t *testing.T) {
	ev := eventOf("Event", "VarSet", "Variable", "A", "variable", "B", "Value", "x")
	if v, _ := ev.Lookup("VARIABLE"); !reflect.DeepEqual(v, []string{"A", "B"}) {
		t.Fatalf("Variable = %v", v)
	}
	if ev.Fields()[1].Name != "Variable" || ev.Len() != 3 {
		t.Fatalf("fields %+v", ev.Fields())
	}
	if !ev.Rename("value", "OldValue") || ev.Get("OldValue") != "x" || ev.Get("Value") != "" {
		t.Fatalf("rename: %+v", ev.Fields())
	}
	if ev.Rename("absent", "x") {
		t.Fatal("renamed an absent field")
	}
}

func TestIsReloadEvents(t *testing.T) {
	for in, want := range map[string]bool{"ReloadEvents": true, "reloadevents": true, " RELOADEVENTS ": true, "Reload": false, "": false} {
		if IsReloadEvents(in) != want {
			t.Errorf("IsReloadEvents(%q) != %v", in, want)
		}
	}
}

func TestDisabledRowsFromOdooAreDropped(t *testing.T) {
	fo := newFakeOdoo()
	fo.setJSON("asterisk_plus.server.agent_get_config", `{"events_map": [
	 {"id": 1, "name": "Hangup", "source": "AMI", "model": "m", "method": "on", "is_enabled": true},
	 {"id": 2, "name": "Hangup", "source": "AMI", "model": "m", "method": "off", "is_enabled": false}]}`)
	m, _ := newTestMap(t, fo)
	res, err := m.Reload(context.Background())
	if err != nil || res.Events != 1 || len(res.Errors) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if rows, _ := m.Match(SourceAMI, "Hangup", eventOf()); len(rows) != 1 || rows[0].Method != "on" {
		t.Fatalf("rows %+v", rows)
	}
	// The saved copy does not bring the disabled row back.
	again, err := New(Config{StatePath: m.cfg.StatePath, RefreshEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.LoadSaved(); err != nil {
		t.Fatal(err)
	}
	if rows, _ := again.Match(SourceAMI, "Hangup", eventOf()); len(rows) != 1 || rows[0].Method != "on" {
		t.Fatalf("saved rows %+v", rows)
	}
}
