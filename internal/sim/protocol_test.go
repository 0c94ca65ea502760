package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

func TestBannerLoginFullyBootedThenSuccessfulAuth(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	if c.banner != "Asterisk Call Manager/11.0.0" {
		t.Fatalf("banner %q", c.banner)
	}
	c.login("")
	fb := c.read()
	if fb.Event() != "FullyBooted" || fb.Get("Privilege") != "system,all" || fb.Get("Status") != "Fully Booted" {
		t.Fatalf("want FullyBooted first, got %s", fb)
	}
	auth := c.read()
	if auth.Event() != "SuccessfulAuth" || auth.Get("AccountID") != "odoo" || auth.Get("UsingPassword") != "0" || auth.Get("Service") != "AMI" {
		t.Fatalf("want own SuccessfulAuth, got %s", auth)
	}
	shapes := fixtureShapes(t)
	if !slices.Contains(shapes["SuccessfulAuth"], strings.Join(names(auth), "|")) {
		t.Errorf("SuccessfulAuth headers %v not as recorded %v", names(auth), shapes["SuccessfulAuth"])
	}
	c.send("Action", "Logoff", "ActionID", "logoff-1")
	bye := c.read()
	if bye.Get("Response") != "Goodbye" || bye.Get("Message") != "Thanks for all the fish." || bye.ActionID() != "logoff-1" {
		t.Fatalf("logoff: %s", bye)
	}
	c.expectEOF()
}

func TestLoginEventsOffSendsNoEvents(t *testing.T) {
	s := startSim(t, func(c *Config) { c.Attackers = 3 })
	c := dial(t, s)
	c.login("off")
	s.Advance(30 * time.Second)
	c.send("Action", "Ping", "ActionID", "ping-1")
	m := c.read()
	if m.Kind() != ami.KindResponse || m.Get("Ping") != "Pong" || m.ActionID() != "ping-1" {
		t.Fatalf("want the Pong and no event before it, got %s", m)
	}
	if ts := m.Get("Timestamp"); !strings.Contains(ts, ".") || len(ts) < 17 {
		t.Errorf("Timestamp %q, want <sec>.<usec>", ts)
	}
}

func TestFailedLoginAnswersThenClosesAndRaisesSecurityEvents(t *testing.T) {
	s := startSim(t, nil)
	watcher := dial(t, s)
	watcher.login("security")
	watcher.drain("sync")
	shapes := fixtureShapes(t)

	for _, tc := range []struct {
		user, secret, event string
	}{
		{"odoo", "wrong", "InvalidPassword"},
		{"nosuchuser", "x", "InvalidAccountID"},
	} {
		c := dial(t, s)
		c.send("Action", "Login", "ActionID", "login-bad", "Username", tc.user, "Secret", tc.secret)
		resp := c.read()
		if !resp.IsError() || resp.Get("Message") != "Authentication failed" || resp.ActionID() != "login-bad" {
			t.Fatalf("%s: %s", tc.user, resp)
		}
		c.expectEOF()
		ev := watcher.read()
		if ev.Event() != tc.event || ev.Get("AccountID") != tc.user || ev.Get("SessionTV") != "1970-01-01T00:00:00.000+0000" {
			t.Fatalf("want %s for %s, got %s", tc.event, tc.user, ev)
		}
		if !slices.Contains(shapes[tc.event], strings.Join(names(ev), "|")) {
			t.Errorf("%s headers %v not as recorded %v", tc.event, names(ev), shapes[tc.event])
		}
	}
}

func TestFailedLoginWaitsTheConfiguredDelay(t *testing.T) {
	s := startSim(t, func(c *Config) { c.AuthFailDelay = 150 * time.Millisecond })
	c := dial(t, s)
	begin := time.Now()
	c.send("Action", "Login", "Username", "odoo", "Secret", "bad")
	if resp := c.read(); resp.Get("Message") != "Authentication failed" {
		t.Fatalf("%s", resp)
	}
	if waited := time.Since(begin); waited < 150*time.Millisecond {
		t.Fatalf("answered after %v, want at least the 150ms delay", waited)
	}
	c.expectEOF()
}

func TestMD5Login(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	c.send("Action", "Challenge", "ActionID", "chal-1", "AuthType", "MD5")
	ch := c.read()
	if ch.Get("Response") != "Success" || ch.Get("Challenge") == "" {
		t.Fatalf("challenge: %s", ch)
	}
	c.send("Action", "Login", "ActionID", "login-1", "AuthType", "MD5", "Username", "odoo",
		"Key", md5Key(ch.Get("Challenge"), "odoo-secret"), "Events", "off")
	if resp := c.read(); resp.Get("Message") != "Authentication accepted" {
		t.Fatalf("md5 login: %s", resp)
	}

	bad := dial(t, s)
	bad.send("Action", "Challenge", "AuthType", "MD5")
	ch = bad.read()
	bad.send("Action", "Login", "AuthType", "MD5", "Username", "odoo", "Key", md5Key(ch.Get("Challenge"), "wrong"))
	if resp := bad.read(); resp.Get("Message") != "Authentication failed" {
		t.Fatalf("bad md5 login: %s", resp)
	}
	bad.expectEOF()
}

func TestActionsBeforeLoginArePermissionDeniedAndKeepTheConnection(t *testing.T) {
	s := startSim(t, nil)
	watcher := dial(t, s)
	watcher.login("security")
	watcher.drain("sync")

	c := dial(t, s)
	c.send("Action", "Ping", "ActionID", "ping-nologin")
	c.send("Action", "Originate", "ActionID", "orig-nologin", "Channel", "PJSIP/101", "Exten", "100")
	for _, id := range []string{"ping-nologin", "orig-nologin"} {
		resp := c.read()
		if !resp.IsError() || resp.Get("Message") != "Permission denied" || resp.ActionID() != id {
			t.Fatalf("%s: %s", id, resp)
		}
	}
	ev := watcher.read()
	if ev.Event() != "RequestNotAllowed" || ev.Get("RequestType") != "Action: Ping" || ev.Get("AccountID") != "" {
		t.Fatalf("want RequestNotAllowed for Ping, got %s", ev)
	}
	c.login("off") // still open
}

func TestErrorsForUnknownAndMissingAction(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	c.login("off")
	c.send("Action", "NoSuchAction", "ActionID", "bad-1")
	if m := c.read(); m.Get("Message") != "Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show available commands." || !m.IsError() {
		t.Fatalf("%s", m)
	}
	c.send("ActionID", "no-action-header", "Foo", "bar")
	if m := c.read(); m.Get("Message") != "Missing action in request" || m.ActionID() != "no-action-header" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "Events", "ActionID", "events-1", "EventMask", "off")
	if m := c.read(); m.Get("Events") != "Off" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "Events", "ActionID", "events-2", "EventMask", "call,system")
	if m := c.read(); m.Get("Events") != "On" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "CoreSettings", "ActionID", "cs")
	if m := c.read(); m.Get("AMIversion") != "11.0.0" || m.Get("AsteriskVersion") != "22.10.1" {
		t.Fatalf("%s", m)
	}
}

// TestEventsMaskPerSession checks that each session gets only the classes it asked for, at login
// and through the Events action.
func TestEventsMaskPerSession(t *testing.T) {
	s := startSim(t, func(c *Config) { c.CallsPerSecond = 2; c.Attackers = 2 })
	callOnly, secOnly, dialplan, all := dial(t, s), dial(t, s), dial(t, s), dial(t, s)
	callOnly.login("call")
	secOnly.login("security")
	dialplan.login("off")
	all.login("on")
	dialplan.send("Action", "Events", "ActionID", "ev", "EventMask", "dialplan")
	if m := dialplan.read(); m.Get("Events") != "On" {
		t.Fatalf("%s", m)
	}
	for _, c := range []*client{callOnly, secOnly, dialplan, all} {
		c.drain("before")
	}
	s.Advance(20 * time.Second)

	privileges := func(c *client) map[string]int {
		got := map[string]int{}
		for _, m := range c.drain("after") {
			got[strings.TrimSuffix(m.Get("Privilege"), ",all")]++
		}
		return got
	}
	allGot := privileges(all)
	for _, want := range []string{"call", "security", "dialplan", "cdr"} {
		if allGot[want] == 0 {
			t.Errorf("events on: no %s event in %v", want, allGot)
		}
	}
	for name, tc := range map[string]struct {
		c    *client
		only string
	}{"call": {callOnly, "call"}, "security": {secOnly, "security"}, "dialplan": {dialplan, "dialplan"}} {
		got := privileges(tc.c)
		if got[tc.only] != allGot[tc.only] {
			t.Errorf("%s session: %d %s events, the all session got %d", name, got[tc.only], tc.only, allGot[tc.only])
		}
		for p := range got {
			if p != tc.only {
				t.Errorf("%s session got class %q (%d events)", name, p, got[p])
			}
		}
	}
}

func TestCommandOutput(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	c.login("off")
	c.send("Action", "Command", "ActionID", "cmd-1", "Command", "core show version")
	m := c.read()
	if m.Get("Response") != "Success" || m.Get("Message") != "Command output follows" ||
		!strings.HasPrefix(m.Get("Output"), "Asterisk 22.10.1 built by") {
		t.Fatalf("version: %s", m)
	}
	s.Advance(44 * time.Second)
	c.send("Action", "Command", "ActionID", "cmd-2", "Command", "core show uptime")
	m = c.read()
	if got := m.Values("Output"); len(got) != 2 || got[0] != "System uptime: 44 seconds" || got[1] != "Last reload: 44 seconds" {
		t.Fatalf("uptime: %q", got)
	}
	c.send("Action", "Command", "ActionID", "cmd-6", "Command", "core show channels")
	m = c.read()
	out := m.Values("Output")
	if len(out) != 4 || len(out[0]) != 136 || out[1] != "0 active channels" || out[2] != "0 active calls" || out[3] != "0 calls processed" {
		t.Fatalf("channels: %q", out)
	}
	c.send("Action", "Command", "ActionID", "cmd-4", "Command", "no such cli command")
	m = c.read()
	if !m.IsError() || m.Get("Message") != "Command output follows" ||
		m.Get("Output") != "No such command 'no such cli command' (type 'core show help no such' for other possible commands)" {
		t.Fatalf("unknown: %s", m)
	}
}

func TestDatabaseActions(t *testing.T) {
	s := startSim(t, nil)
	c := dial(t, s)
	c.login("off")
	c.send("Action", "DBPut", "ActionID", "dbput-1", "Family", "odoo", "Key", "dnd/101", "Val", "1")
	if m := c.read(); m.Get("Message") != "Updated database successfully" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "DBGet", "ActionID", "dbget-1", "Family", "odoo", "Key", "dnd/101")
	start, item, done := c.read(), c.read(), c.read()
	if start.Get("EventList") != "start" || start.Get("Message") != "Result will follow" {
		t.Fatalf("%s", start)
	}
	if item.Event() != "DBGetResponse" || item.Get("Val") != "1" || names(item)[len(item.Headers)-1] != "ActionID" {
		t.Fatalf("%s", item)
	}
	if done.Event() != "DBGetComplete" || done.Get("EventList") != "Complete" || done.Get("ListItems") != "1" {
		t.Fatalf("%s", done)
	}
	c.send("Action", "DBGet", "ActionID", "dbget-2", "Family", "odoo", "Key", "missing")
	if m := c.read(); !m.IsError() || m.Get("Message") != "Database entry not found" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "DBDel", "ActionID", "dbdel-1", "Family", "odoo", "Key", "dnd/101")
	if m := c.read(); m.Get("Message") != "Key deleted successfully" {
		t.Fatalf("%s", m)
	}
	c.send("Action", "DBDel", "ActionID", "dbdel-2", "Family", "odoo", "Key", "dnd/101")
	if m := c.read(); !m.IsError() || m.Get("Message") != "Database entry could not be deleted" {
		t.Fatalf("%s", m)
	}
}
