package eventmap

import (
	"errors"
	"strings"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

func mustCompile(t *testing.T, src string) *Condition {
	t.Helper()
	c, err := CompileCondition("test", src)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	return c
}

func eventOf(pairs ...string) *Event {
	return EventFromMessage(ami.NewMessage(pairs...), 0)
}

// hangupEvent is a Hangup of fixture 05c, reduced to the headers the conditions read.
var hangupEvent = eventOf(
	"Event", "Hangup", "Channel", "PJSIP/101-00000000", "ChannelStateDesc", "Up",
	"Uniqueid", "1795627331.19", "Linkedid", "1795627331.19", "Cause", "16", "Cause-txt", "Normal Clearing",
	"Variable", "A=1", "Variable", "B=2",
)

func TestConditionPythonStyleExamples(t *testing.T) {
	local := eventOf("Event", "Newchannel", "Channel", "Local/200@test-00000000;1", "ChannelStateDesc", "Down",
		"Uniqueid", "1795627163.1", "Linkedid", "1795627163.0")
	varset := eventOf("Event", "VarSet", "Variable", "MIXMONITOR_FILENAME", "Value", "/var/spool/asterisk/monitor/x.wav")
	cases := []struct {
		cond string
		ev   *Event
		want bool
	}{
		{"event.get('Variable') == 'MIXMONITOR_FILENAME'", varset, true},
		{"event.get('Variable') == 'MIXMONITOR_FILENAME'", local, false},
		{"not event['Channel'].startswith('Local/')", hangupEvent, true},
		{"not event['Channel'].startswith('Local/')", local, false},
		{"event['ChannelStateDesc'] in ['Up']", hangupEvent, true},
		{"event['ChannelStateDesc'] in ['Up']", local, false},
		{"event['ChannelStateDesc'] not in ['Up', 'Ring']", local, true},
		{"event['Uniqueid'] == event['Linkedid']", hangupEvent, true},
		{"event['Uniqueid'] == event['Linkedid']", local, false},
		{"int(event['Cause']) == 16", hangupEvent, true},
		{"int(event['Cause']) == 17", hangupEvent, false},
		{"event['ChannelStateDesc'] == 'Up' and not event['Channel'].startswith('Local/')", hangupEvent, true},
		{"event.get('Nope') == None", hangupEvent, true},
		{"event.get('Nope', 'dflt') == 'dflt'", hangupEvent, true},
		{"'Cause' in event and 'Nope' not in event", hangupEvent, true},
		{"event['Variable'] == ['A=1', 'B=2']", hangupEvent, true},
		{"'B=2' in event['Variable']", hangupEvent, true},
		{"len(event) == 8 and sorted(event.keys())[0] == 'Cause'", hangupEvent, true},
		{"[k for k, v in event.items() if v == '16'] == ['Cause']", hangupEvent, true},
		{"'Normal Clearing' in event.values()", hangupEvent, true},
		{"event['Cause-txt'].lower().find('normal') == 0", hangupEvent, true},
		{"", hangupEvent, true},
		{"   ", hangupEvent, true},
		{"# only a comment\nTrue", hangupEvent, true},
		{"event['Cause'] # trailing comment", hangupEvent, true},
		{"0", hangupEvent, false},
		{"[]", hangupEvent, false},
	}
	for _, c := range cases {
		got, err := mustCompile(t, c.cond).Eval(c.ev, nil)
		if err != nil {
			t.Errorf("%q: %v", c.cond, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q = %v, want %v", c.cond, got, c.want)
		}
	}
}

// Header names are case-insensitive in AMI and Asterisk spells them differently per event
// family, so lookups in conditions are case-insensitive; iteration keeps Asterisk's spelling.
func TestConditionLookupIsCaseInsensitive(t *testing.T) {
	cel := eventOf("Event", "CEL", "EventName", "CHAN_START", "UniqueID", "1795627163.0", "LinkedID", "1795627163.0")
	for _, cond := range []string{
		"event['Uniqueid'] == event['Linkedid']",
		"event.get('linkedid') == '1795627163.0'",
		"'UNIQUEID' in event",
		"'UniqueID' in event.keys() and 'Uniqueid' not in event.keys()",
	} {
		got, err := mustCompile(t, cond).Eval(cel, nil)
		if err != nil || !got {
			t.Errorf("%q on a CEL event = %v, %v; want true", cond, got, err)
		}
	}
}

func TestConditionSeesEnrichmentFields(t *testing.T) {
	ev := eventOf("Event", "FullyBooted")
	ev.Set("SystemName", "pbx1")
	ev.Set("EventTime", 1795627163.25)
	ev.Set("AgentEventId", "0190c5b2-0000-7000-8000-000000000000")
	ev.Set("Uniqueids", []string{"1.1"})
	got, err := mustCompile(t, "event['SystemName'] == 'pbx1' and event['EventTime'] > 1795627163.0 and len(event['AgentEventId']) == 36 and event['Uniqueids'] == ['1.1']").Eval(ev, nil)
	if err != nil || !got {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestConditionCompileErrors(t *testing.T) {
	for _, src := range []string{
		"event['Channel'] ==",                  // syntax
		"channel == 'x'",                       // a free name other than event
		"x = 1",                                // a statement
		"load('x.star', 'y')",                  // load is not an expression
		"1), (2",                               // tries to escape the lambda wrapper
		"event.get('X') is None",               // Python's is: not Starlark
		"1 < int(event['Cause']) < 20",         // chained comparison
		"event['A'] == 1\nevent['B'] == 2",     // two expressions
		"def f(): return 1",                    // a definition
		"lambda: 1)(",                          // unbalanced
		"event['X'] == 'v' if True",            // incomplete conditional
		"__import__('os').system('id') == 0",   // undefined built-in
		"event['X'] == 'v'; event['Y'] == 'w'", // statement list
	} {
		if _, err := CompileCondition("test", src); err == nil {
			t.Errorf("%q compiled, want an error", src)
		}
	}
}

func TestConditionRuntimeErrorsAreReported(t *testing.T) {
	for _, src := range []string{
		"event['Missing'] == 'x'",
		"int(event['Channel']) == 1",
		"event['Variable'].append('C') == None", // the lists are frozen
		"event.update({})",                      // no such method
		"event['Cause'] + 1 == 17",
	} {
		got, err := mustCompile(t, src).Eval(hangupEvent, nil)
		if err == nil {
			t.Errorf("%q = %v, want a runtime error", src, got)
		}
	}
	// The event the handlers will receive is untouched.
	if v, _ := hangupEvent.Lookup("Variable"); len(v.([]string)) != 2 {
		t.Fatalf("a condition changed the event: %v", v)
	}
}

func TestConditionStepLimitStopsBombs(t *testing.T) {
	for _, src := range []string{
		"[x for x in range(1000000)]",
		"len([x for x in range(1000000)]) > 0",
		"[1 for a in range(1000) for b in range(1000)] == []",
	} {
		_, err := mustCompile(t, src).Eval(hangupEvent, nil)
		if !errors.Is(err, ErrStepLimit) {
			t.Errorf("%q: err = %v, want ErrStepLimit", src, err)
		}
	}
	// A modest comprehension stays under the limit.
	got, err := mustCompile(t, "len([x for x in range(100)]) == 100").Eval(hangupEvent, nil)
	if err != nil || !got {
		t.Fatalf("small comprehension: %v, %v", got, err)
	}
}

func TestConditionPrintGoesToTheCallback(t *testing.T) {
	var printed []string
	got, err := mustCompile(t, "print('cause', event['Cause']) == None").Eval(hangupEvent, func(msg string) { printed = append(printed, msg) })
	if err != nil || !got {
		t.Fatalf("got %v, %v", got, err)
	}
	if len(printed) != 1 || printed[0] != "cause 16" {
		t.Fatalf("printed %q", printed)
	}
	// Without a callback print is silent and harmless.
	if _, err := mustCompile(t, "print('x') == None").Eval(hangupEvent, nil); err != nil {
		t.Fatal(err)
	}
}

func TestConditionDictBehaviour(t *testing.T) {
	d := &eventDict{ev: eventOf("Event", "X", "A", "1")}
	if d.Type() != "dict" || d.Len() != 2 || !bool(d.Truth()) {
		t.Fatalf("type %s len %d truth %v", d.Type(), d.Len(), d.Truth())
	}
	if _, err := d.Hash(); err == nil {
		t.Fatal("an event dict must not be hashable")
	}
	if s := d.String(); s != `{"Event": "X", "A": "1"}` {
		t.Fatalf("String() = %s", s)
	}
	if !strings.Contains(strings.Join(d.AttrNames(), ","), "get") {
		t.Fatal("get missing from AttrNames")
	}
	empty := &eventDict{ev: NewEvent(0)}
	if bool(empty.Truth()) {
		t.Fatal("an empty event must be falsy")
	}
}

// One evaluation of a default-map condition against a recorded Newstate.
func BenchmarkConditionEval(b *testing.B) {
	var ev *Event
	for _, m := range amitest.FixtureEvents(b, "05c-") {
		if m.Event() == "Newstate" {
			ev = EventFromMessage(m, 0)
		}
	}
	c, err := CompileCondition("bench", "event['ChannelStateDesc'] == 'Up' and not event['Channel'].startswith('Local/')")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if ok, err := c.Eval(ev, nil); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
