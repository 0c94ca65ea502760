package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// TestClickToCallOriginateAsync plays the 05d shape: the queued response comes first on the
// sender; OriginateResponse carries the ActionID, goes to every session with the call class (not
// to the sender's Events-off session) and comes before DialEnd; DialBegin has no caller Channel.
func TestClickToCallOriginateAsync(t *testing.T) {
	s := startSim(t, nil)
	actions, watcher, other := dial(t, s), dial(t, s), dial(t, s)
	actions.login("off")
	watcher.login("call,dialplan")
	other.login("call")
	watcher.drain("w0")
	other.drain("o0")

	actions.send("Action", "Originate", "ActionID", "c2c-1", "Channel", "PJSIP/102", "Context", "from-internal",
		"Exten", "100", "Priority", "1", "CallerID", `"Odoo" <102>`, "Timeout", "20000", "Async", "true",
		"Variable", "ODOO_CALL_ID=c2c-42")
	resp := actions.read()
	if resp.Get("Response") != "Success" || resp.Get("Message") != "Originate successfully queued" || resp.ActionID() != "c2c-1" {
		t.Fatalf("%s", resp)
	}
	s.Advance(time.Minute)
	if got := actions.drain("a1"); len(got) != 0 {
		t.Fatalf("the Events: off session received %d events, first %s", len(got), got[0])
	}
	shapes := fixtureShapes(t)
	msgs := watcher.drain("w1")
	var uid string
	order := []string{}
	for _, m := range msgs {
		switch m.Event() {
		case "Newchannel":
			if uid == "" {
				uid = m.Get("Uniqueid")
				if !strings.HasPrefix(m.Get("Channel"), "PJSIP/102-") || m.Get("ChannelState") != "0" {
					t.Errorf("%s", m)
				}
			}
		case "VarSet":
			if m.Get("Variable") == "ODOO_CALL_ID" && m.Get("Value") != "c2c-42" {
				t.Errorf("%s", m)
			}
		case "DialBegin":
			if m.Get("DestUniqueid") == uid {
				if m.Has("Channel") || m.Get("DialString") != "102" {
					t.Errorf("originate DialBegin has a caller or a wrong DialString: %s", m)
				}
				if !slices.Contains(shapes["DialBegin"], strings.Join(names(m), "|")) {
					t.Errorf("DialBegin headers %v", names(m))
				}
				order = append(order, "DialBegin")
			}
		case "DialEnd":
			if m.Get("DestUniqueid") == uid {
				order = append(order, "DialEnd:"+m.Get("DialStatus"))
			}
		case "OriginateResponse":
			order = append(order, "OriginateResponse")
			if m.ActionID() != "c2c-1" || m.Get("Response") != "Success" || m.Get("Reason") != "4" || m.Get("Uniqueid") != uid ||
				m.Get("CallerIDNum") != "102" || m.Get("CallerIDName") != "Odoo" || m.Get("Exten") != "100" {
				t.Errorf("%s", m)
			}
			if !slices.Contains(shapes["OriginateResponse"], strings.Join(names(m), "|")) {
				t.Errorf("OriginateResponse headers %v", names(m))
			}
		}
	}
	if want := []string{"DialBegin", "OriginateResponse", "DialEnd:ANSWER"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	var broadcast bool
	for _, m := range other.drain("o1") {
		if m.Event() == "OriginateResponse" && m.ActionID() == "c2c-1" {
			broadcast = true
		}
		if m.Get("Privilege") != "call,all" {
			t.Errorf("call-only session got %s", m.Event())
		}
	}
	if !broadcast {
		t.Fatal("OriginateResponse not broadcast to the other call session")
	}
}

func TestOriginateOutcomes(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	c.login("call")
	c.drain("start")
	for _, o := range [][]string{
		{"orig-fail-async", "Local/999@test", ""},
		{"orig-busy", "Local/500@test", ""},
		{"orig-noanswer", "Local/600@test", "4000"},
		{"orig-ok", "Local/200@test", ""},
	} {
		pairs := []string{"Action", "Originate", "ActionID", o[0], "Channel", o[1], "Context", "test", "Exten", "100",
			"Priority", "1", "Async", "true"}
		if o[2] != "" {
			pairs = append(pairs, "Timeout", o[2])
		}
		c.send(pairs...)
	}
	c.send("Action", "Originate", "ActionID", "orig-app", "Channel", "Local/100@test", "Application", "Wait",
		"Data", "1", "Async", "true", "ChannelId", "odoo-11111111-aaaa", "OtherChannelId", "odoo-11111111-bbbb")
	c.drain("queued")
	s.Advance(time.Minute)
	got := map[string]*ami.Message{}
	for _, m := range c.drain("done") {
		if m.Event() == "OriginateResponse" {
			got[m.ActionID()] = m
		}
	}
	for id, want := range map[string][3]string{
		"orig-fail-async": {"Failure", "0", "Local/999@test"},
		"orig-busy":       {"Failure", "5", "Local/500@test"},
		"orig-noanswer":   {"Failure", "3", "Local/600@test"},
	} {
		m := got[id]
		if m == nil || m.Get("Response") != want[0] || m.Get("Reason") != want[1] || m.Get("Channel") != want[2] ||
			m.Get("Uniqueid") != "<unknown>" || m.Get("CallerIDNum") != "<unknown>" {
			t.Errorf("%s: %v", id, m)
		}
	}
	if m := got["orig-ok"]; m == nil || m.Get("Reason") != "4" || !strings.HasSuffix(m.Get("Channel"), ";1") {
		t.Errorf("orig-ok: %v", m)
	}
	if m := got["orig-app"]; m == nil || m.Get("Uniqueid") != "odoo-11111111-aaaa" || m.Get("Application") != "Wait" || m.Has("Exten") {
		t.Errorf("orig-app: %v", m)
	}
}

func TestSynchronousOriginate(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	c.login("off")
	// A synchronous Originate holds the session until the dial ends; keep the clock moving.
	stop := make(chan struct{})
	ticking := make(chan struct{})
	go func() {
		defer close(ticking)
		for {
			select {
			case <-stop:
				return
			default:
				s.Advance(100 * time.Millisecond)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	defer func() { close(stop); <-ticking }()
	c.send("Action", "Originate", "ActionID", "orig-fail-sync", "Channel", "Local/999@test", "Context", "test", "Exten", "100")
	if m := c.read(); !m.IsError() || m.Get("Message") != "Originate failed" || m.ActionID() != "orig-fail-sync" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "Originate", "ActionID", "orig-sync", "Channel", "PJSIP/101", "Application", "Wait", "Data", "5")
	c.send("Action", "Ping", "ActionID", "after")
	if m := c.read(); m.Get("Response") != "Success" || m.ActionID() != "orig-sync" {
		t.Fatalf("want the Originate's answer before the Ping's: %s", m)
	}
	if m := c.read(); m.ActionID() != "after" {
		t.Fatalf("%s", m)
	}
}

// TestListsAndHangup: CoreShowChannels and Status as EventLists while a call is up, then Hangup.
func TestListsAndHangup(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	c.login("off")
	c.send("Action", "Originate", "ActionID", "orig-long", "Channel", "Local/700@test", "Application", "Wait",
		"Data", "60", "Async", "true")
	c.drain("q")
	s.Advance(3 * time.Second)

	shapes := fixtureShapes(t)
	c.send("Action", "CoreShowChannels", "ActionID", "csc-1")
	msgs := c.readUntil(func(m *ami.Message) bool { return m.Event() == "CoreShowChannelsComplete" })
	if len(msgs) != 4 || msgs[0].Get("EventList") != "start" || msgs[0].Get("Message") != "Channels will follow" {
		t.Fatalf("%v", msgs)
	}
	var names2 []string
	for _, m := range msgs[1:3] {
		if m.Event() != "CoreShowChannel" || m.ActionID() != "csc-1" || !slices.Contains(shapes["CoreShowChannel"], strings.Join(names(m), "|")) {
			t.Fatalf("%s", m)
		}
		names2 = append(names2, m.Get("Channel"))
	}
	if end := msgs[3]; end.Get("EventList") != "Complete" || end.Get("ListItems") != "2" || end.ActionID() != "csc-1" {
		t.Fatalf("%s", end)
	}
	c.send("Action", "Status", "ActionID", "status-1")
	msgs = c.readUntil(func(m *ami.Message) bool { return m.Event() == "StatusComplete" })
	if len(msgs) != 4 || msgs[3].Get("Items") != "2" || msgs[3].Get("ListItems") != "2" {
		t.Fatalf("%v", msgs)
	}
	for _, m := range msgs[1:3] {
		if m.Get("Privilege") != "Call" || names(m)[len(m.Headers)-1] != "ActionID" || !slices.Contains(shapes["Status"], strings.Join(names(m), "|")) {
			t.Fatalf("%s", m)
		}
	}
	c.send("Action", "Status", "ActionID", "status-2", "Channel", "PJSIP/nobody-00000000")
	if m := c.read(); !m.IsError() || m.Get("Message") != "No such channel" {
		t.Fatalf("%s", m)
	}

	watcher := dial(t, s)
	watcher.login("call")
	watcher.drain("w")
	two := names2[0]
	if !strings.HasSuffix(two, ";2") {
		two = names2[1]
	}
	c.send("Action", "Hangup", "ActionID", "hangup-1", "Channel", two, "Cause", "16")
	if m := c.read(); m.Get("Message") != "Channel Hungup" {
		t.Fatalf("%s", m)
	}
	hangups := 0
	for _, m := range watcher.drain("w2") {
		if m.Event() == "Hangup" {
			hangups++
			if m.Get("Cause") != "16" || m.Get("Cause-txt") != "Normal Clearing" {
				t.Errorf("%s", m)
			}
		}
	}
	if hangups != 2 {
		t.Fatalf("%d Hangup events, want both halves", hangups)
	}
	c.send("Action", "Hangup", "ActionID", "hangup-2", "Channel", "Local/nonexistent-00000000;1")
	if m := c.read(); !m.IsError() || m.Get("Message") != "No such channel" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "CoreShowChannels", "ActionID", "csc-2")
	msgs = c.readUntil(func(m *ami.Message) bool { return m.Event() == "CoreShowChannelsComplete" })
	if msgs[len(msgs)-1].Get("ListItems") != "0" {
		t.Fatalf("channels left after Hangup: %v", msgs)
	}
}

func TestUserEventCarriesTheSendersActionID(t *testing.T) {
	s := startSim(t, nil)
	sender, other := dial(t, s), dial(t, s)
	sender.login("off")
	other.login("user")
	other.drain("o")
	sender.send("Action", "UserEvent", "ActionID", "ue-1", "UserEvent", "OdooPing", "Foo", "bar")
	if m := sender.read(); m.Get("Message") != "Event Sent" {
		t.Fatalf("%s", m)
	}
	m := other.read()
	if m.Event() != "UserEvent" || m.ActionID() != "ue-1" || m.Get("Foo") != "bar" || strings.Join(names(m), "|") != "Event|Privilege|UserEvent|ActionID|Foo" {
		t.Fatalf("%s", m)
	}
}
