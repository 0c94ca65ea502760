package sim

import (
	"bytes"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// recordTraffic runs a simulator with generated calls, attackers and two originates for d of
// virtual time, then lets every call finish, and returns what an events-on session received.
func recordTraffic(t *testing.T, seed int64, d time.Duration) []*ami.Message {
	t.Helper()
	s := startSim(t, func(c *Config) { c.Seed = seed; c.CallsPerSecond = 1; c.Attackers = 4 })
	c := dial(t, s)
	c.login("on")
	c.drain("start")
	c.send("Action", "Originate", "ActionID", "c2c-1", "Channel", "PJSIP/102", "Context", "from-internal",
		"Exten", "+12125550142", "Priority", "1", "CallerID", `"Odoo" <102>`, "Timeout", "20000", "Async", "true",
		"Variable", "ODOO_CALL_ID=c2c-42")
	c.send("Action", "Originate", "ActionID", "orig-1", "Channel", "Local/200@test", "Context", "test",
		"Exten", "100", "Priority", "1", "Async", "true")
	// Both are queued once their responses are in: client actions happen at the virtual time they
	// arrive, so wait for them before moving the clock.
	for _, m := range c.drain("queued") {
		if m.Get("Message") != "Originate successfully queued" {
			t.Fatalf("before any event of the call, want the queued response: %s", m)
		}
	}
	// Advance in steps and read as we go, like a live client (a reader that stops reading is
	// dropped, as Asterisk drops it).
	var msgs []*ami.Message
	for step := 0; step < int(d/time.Second); step++ {
		s.Advance(time.Second)
		msgs = append(msgs, c.drain("step-"+strconv.Itoa(step))...)
	}
	// No new calls past d: stop the generator, let the calls in progress finish.
	s.SetCallRate(0)
	for i := 0; i < 8; i++ {
		s.Advance(5 * time.Minute)
		msgs = append(msgs, c.drain("tail-"+strconv.Itoa(i))...)
	}
	return msgs
}

func eventsNamed(msgs []*ami.Message, name string) []*ami.Message {
	var out []*ami.Message
	for _, m := range msgs {
		if m.Event() == name {
			out = append(out, m)
		}
	}
	return out
}

// TestGeneratedEventsHaveTheRecordedShapes compares every event the simulator sends with the
// header names and order Asterisk 22.10.1 used for the same event in the recordings.
func TestGeneratedEventsHaveTheRecordedShapes(t *testing.T) {
	shapes := fixtureShapes(t)
	// A DialState with a caller has the same headers as a DialEnd with a caller (the recordings
	// only hold the originate variant without one).
	shapes["DialState"] = append(shapes["DialState"], shapes["DialEnd"]...)
	msgs := recordTraffic(t, 7, 90*time.Second)
	seen := map[string]int{}
	for _, m := range msgs {
		if m.Kind() != ami.KindEvent {
			continue
		}
		name := m.Event()
		seen[name]++
		known, ok := shapes[name]
		if !ok {
			continue // queue events are not in the recordings
		}
		got := strings.Join(names(m), "|")
		if !slices.Contains(known, got) {
			t.Errorf("%s headers\n  %s\nnot as recorded:\n  %s", name, got, strings.Join(known, "\n  "))
			delete(shapes, name) // one report per event name
		}
	}
	for _, want := range []string{"Newchannel", "Newstate", "Newexten", "VarSet", "Hangup", "SoftHangupRequest",
		"HangupRequest", "DialBegin", "DialEnd", "BridgeCreate", "BridgeEnter", "BridgeLeave", "BridgeDestroy",
		"Cdr", "CEL", "OriginateResponse", "MixMonitorStart", "MixMonitorStop", "LocalBridge", "DeviceStateChange",
		"ChallengeSent", "ChallengeResponseFailed", "InvalidAccountID", "NewCallerid", "NewConnectedLine", "QueueCallerJoin"} {
		if seen[want] == 0 {
			t.Errorf("no %s event in 90 s of traffic (%v)", want, seen)
		}
	}
	for _, h := range eventsNamed(msgs, "Hangup") {
		if h.Get("Cause-txt") == "" || h.Get("Cause") == "" {
			t.Errorf("Hangup without a cause: %s", h)
		}
	}
	for _, v := range eventsNamed(msgs, "VarSet") {
		if v.Get("Variable") == "MIXMONITOR_FILENAME" && !strings.HasPrefix(v.Get("Value"), "/var/spool/asterisk/monitor/") {
			t.Errorf("recording path %q", v.Get("Value"))
		}
	}
}

var uniqueidRe = regexp.MustCompile(`^\d{10}\.\d+$`)

// TestChannelLifecycleAndLinkedids checks the channel facts of contract §2.9 on generated traffic:
// Uniqueids are <epoch>.<seq>, a call's Linkedid is its first channel's Uniqueid, every channel
// ends with Hangup and nothing follows Hangup for that Uniqueid.
func TestChannelLifecycleAndLinkedids(t *testing.T) {
	msgs := recordTraffic(t, 11, 60*time.Second)
	first := map[string]string{} // linkedid -> uniqueid of the first Newchannel with it
	hungUp := map[string]bool{}
	open := map[string]bool{}
	for _, m := range msgs {
		uid := m.Get("Uniqueid")
		switch m.Event() {
		case "", "OriginateResponse", "Cdr", "CEL": // records about the call, not channel events
			continue
		}
		if uid == "" {
			continue
		}
		if hungUp[uid] {
			t.Fatalf("%s after Hangup of %s", m.Event(), uid)
		}
		switch m.Event() {
		case "Newchannel":
			if !uniqueidRe.MatchString(uid) {
				t.Errorf("Uniqueid %q", uid)
			}
			epoch, _ := strconv.ParseInt(strings.Split(uid, ".")[0], 10, 64)
			if epoch < testStart.Unix() || epoch > testStart.Add(2*time.Hour).Unix() {
				t.Errorf("Uniqueid %q not from the virtual clock", uid)
			}
			link := m.Get("Linkedid")
			if _, ok := first[link]; !ok {
				first[link] = uid
				if link != uid {
					t.Errorf("first channel of a call: Linkedid %s != Uniqueid %s", link, uid)
				}
			}
			open[uid] = true
		case "Hangup":
			hungUp[uid] = true
			delete(open, uid)
		}
		if link := m.Get("Linkedid"); link != "" && first[link] == "" {
			t.Errorf("%s with Linkedid %s before any Newchannel of that call", m.Event(), link)
		}
	}
	if len(first) < 20 {
		t.Fatalf("only %d calls in 60 s at 1 call/s", len(first))
	}
	if len(open) != 0 {
		t.Errorf("%d channels never hung up", len(open))
	}
	if n := len(eventsNamed(msgs, "Cdr")); n != len(first) {
		t.Errorf("%d Cdr for %d calls", n, len(first))
	}
}

// TestSameSeedSameTraffic: the same seed gives byte-identical call and attack events; another
// seed does not. (AMI security events of the test's own login carry socket ports, so they are
// left out.)
func TestSameSeedSameTraffic(t *testing.T) {
	wire := func(seed int64) []byte {
		var b []byte
		for _, m := range recordTraffic(t, seed, 40*time.Second) {
			if m.Kind() == ami.KindEvent && m.Get("Service") != "AMI" {
				b = m.AppendWire(b)
			}
		}
		return b
	}
	a, b, other := wire(5), wire(5), wire(6)
	if len(a) < 10000 {
		t.Fatalf("only %d bytes of events", len(a))
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the same seed gave different traffic")
	}
	if bytes.Equal(a, other) {
		t.Fatal("another seed gave the same traffic")
	}
}

// parseRemoteAddress follows contract §2.8: split on "/", first token IPV4 or IPV6, last token a
// port, the address just before it.
func parseRemoteAddress(v string) (netip.Addr, bool) {
	parts := strings.Split(v, "/")
	if len(parts) < 3 {
		return netip.Addr{}, false
	}
	if f := strings.ToUpper(parts[0]); f != "IPV4" && f != "IPV6" {
		return netip.Addr{}, false
	}
	if _, err := strconv.ParseUint(parts[len(parts)-1], 10, 16); err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.Trim(parts[len(parts)-2], "[]"))
	return a.Unmap(), err == nil
}

func TestAttackersFailSIPAuthFromTestAddresses(t *testing.T) {
	s := startSim(t, func(c *Config) { c.Attackers = 8 })
	c := dial(t, s)
	c.login("security")
	c.drain("start")
	s.Advance(30 * time.Second)
	var v4, v6 int
	kinds := map[string]int{}
	for _, m := range c.drain("end") {
		if m.Get("Service") != "PJSIP" {
			continue
		}
		kinds[m.Event()]++
		raw := m.Get("RemoteAddress")
		addr, ok := parseRemoteAddress(raw)
		if !ok || !AttackerAddr(addr) {
			t.Fatalf("RemoteAddress %q is not a test address", raw)
		}
		if addr.Is4() {
			v4++
		} else {
			v6++
			if strings.Contains(raw, "[") || !strings.HasPrefix(raw, "IPV6/UDP/2001:db8:") {
				t.Fatalf("IPv6 RemoteAddress %q", raw)
			}
		}
		if m.Event() == "ChallengeResponseFailed" && (m.Get("Response") == "" || m.Get("ExpectedResponse") != "") {
			t.Fatalf("%s", m)
		}
	}
	if v4 == 0 || v6 == 0 {
		t.Fatalf("IPv4 %d, IPv6 %d events: want both", v4, v6)
	}
	for _, k := range []string{"ChallengeSent", "ChallengeResponseFailed", "InvalidAccountID"} {
		if kinds[k] == 0 {
			t.Errorf("no %s (%v)", k, kinds)
		}
	}
}

func TestOnCallReportsEveryFinishedCall(t *testing.T) {
	var mu sync.Mutex
	var got []CallSummary
	s := startSim(t, func(c *Config) {
		c.CallsPerSecond = 2
		c.OnCall = func(cs CallSummary) { mu.Lock(); got = append(got, cs); mu.Unlock() }
	})
	s.Advance(60 * time.Second)
	s.SetCallRate(0)
	s.Advance(2 * time.Hour)
	want := s.Stats().CallsFinished
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := uint64(len(got))
		mu.Unlock()
		if n == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if uint64(len(got)) != want || want < 60 {
		t.Fatalf("%d summaries for %d finished calls", len(got), want)
	}
	kinds := map[string]bool{}
	for _, cs := range got {
		kinds[cs.Kind] = true
		if !slices.Contains([]string{"ANSWERED", "BUSY", "NO ANSWER", "FAILED"}, cs.Disposition) || cs.Linkedid == "" || cs.End.Before(cs.Start) {
			t.Fatalf("%+v", cs)
		}
		if cs.Disposition != "ANSWERED" && cs.Billsec != 0 {
			t.Fatalf("unanswered call billed: %+v", cs)
		}
	}
	for _, k := range []string{"inbound", "outbound", "internal", "queue"} {
		if !kinds[k] {
			t.Errorf("no %s call in %v", k, kinds)
		}
	}
}
