package security

import (
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testOptions() Options {
	o := DefaultOptions()
	o.Enabled = true
	return o
}

func failure(addr string) Event {
	return Event{Name: "ChallengeResponseFailed", Class: ClassFailure, Addr: netip.MustParseAddr(addr), Service: "PJSIP", AccountID: "101", SessionID: "s1"}
}

func success(addr string) Event {
	return Event{Name: "SuccessfulAuth", Class: ClassSuccess, Addr: netip.MustParseAddr(addr), Service: "PJSIP", AccountID: "101"}
}

// failN feeds n failures one second apart from start and returns the bans made.
func failN(p *Policy, ev Event, n int, start time.Time) []Change {
	var out []Change
	for i := 0; i < n; i++ {
		out = append(out, p.Observe(ev, start.Add(time.Duration(i)*time.Second)).Changes...)
	}
	return out
}

func TestThresholdBansOnFifthFailure(t *testing.T) {
	p := NewPolicy(testOptions(), nil)
	ev := failure("203.0.113.10")
	if c := failN(p, ev, 4, t0); len(c) != 0 {
		t.Fatalf("banned before the threshold: %+v", c)
	}
	out := p.Observe(ev, t0.Add(10*time.Second))
	if len(out.Changes) != 1 || out.Changes[0].Op != OpBan {
		t.Fatalf("fifth failure: %+v", out)
	}
	b := out.Changes[0].Ban
	if b.Prefix != netip.MustParsePrefix("203.0.113.10/32") || b.Expires.Sub(b.Created) != time.Hour ||
		b.Reason != "PJSIP ChallengeResponseFailed 101" || b.Offences != 1 || b.Service != "PJSIP" || b.AccountID != "101" {
		t.Fatalf("ban: %+v", b)
	}
	if got := p.Observe(ev, t0.Add(11*time.Second)); got.Skipped != "already banned" || len(got.Changes) != 0 {
		t.Errorf("failure while banned: %+v", got)
	}
}

func TestSlidingWindowForgetsOldFailures(t *testing.T) {
	p := NewPolicy(testOptions(), nil)
	ev := failure("198.51.100.20")
	failN(p, ev, 4, t0)
	out := p.Observe(ev, t0.Add(3*time.Second+601*time.Second))
	if len(out.Changes) != 0 || out.Count != 1 {
		t.Fatalf("failures older than findtime still counted: %+v", out)
	}
	// Three more plus the one just counted are four; the fifth within the window bans.
	failN(p, ev, 3, t0.Add(700*time.Second))
	if out := p.Observe(ev, t0.Add(710*time.Second)); len(out.Changes) != 1 {
		t.Fatalf("five failures within the window did not ban: %+v", out)
	}
}

func TestSuccessClearsAndTrusts(t *testing.T) {
	o := testOptions()
	p := NewPolicy(o, nil)
	addr := "203.0.113.30"
	failN(p, failure(addr), 4, t0)
	p.Observe(success(addr), t0.Add(5*time.Second))
	// Trusted now: twenty failures are needed, and the four before the success are forgotten.
	if c := failN(p, failure(addr), 19, t0.Add(10*time.Second)); len(c) != 0 {
		t.Fatalf("trusted address banned before 20 failures: %+v", c)
	}
	if c := failN(p, failure(addr), 1, t0.Add(40*time.Second)); len(c) != 1 {
		t.Fatal("trusted address not banned at 20 failures")
	}
	// Trust ends after security_authenticated_timeout.
	q := NewPolicy(o, nil)
	q.Observe(success(addr), t0)
	later := t0.Add(o.AuthenticatedTimeout + time.Second)
	if c := failN(q, failure(addr), 5, later); len(c) != 1 {
		t.Fatal("trust did not expire")
	}
}

func TestNeverBanned(t *testing.T) {
	o := testOptions()
	o.Ignore = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	p := NewPolicy(o, []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")})
	p.SetAccessLists([]AccessRule{{Prefix: netip.MustParsePrefix("2001:db8:aa::/48")}}, nil)
	for addr, why := range map[string]string{
		"127.0.0.1": "loopback", "127.8.9.10": "loopback", "::1": "loopback",
		"192.0.2.1": "exempt", "198.51.100.99": "ignored", "2001:db8:aa::5": "allow-listed",
		"10.1.2.3": "private", "172.20.0.1": "private", "192.168.1.1": "private", "100.64.0.1": "private",
		"169.254.1.1": "private", "fd00::1": "private", "fe80::1": "private",
	} {
		if c := failN(p, failure(addr), 50, t0); len(c) != 0 {
			t.Errorf("%s banned", addr)
		}
		if got := p.Observe(failure(addr), t0.Add(time.Hour)); got.Skipped != why {
			t.Errorf("%s: skipped %q, want %q", addr, got.Skipped, why)
		}
		if _, err := p.Ban(netip.MustParsePrefix(addr+"/"+bitsOf(addr)), time.Hour, "x", t0); err == nil {
			t.Errorf("%s: manual ban allowed", addr)
		}
	}
	o.IgnorePrivate = false
	q := NewPolicy(o, nil)
	if c := failN(q, failure("10.1.2.3"), 5, t0); len(c) != 1 {
		t.Error("private address not banned with security_ignore_private off")
	}
	if c := failN(q, failure("127.0.0.1"), 5, t0); len(c) != 0 {
		t.Error("loopback banned with security_ignore_private off")
	}
}

func bitsOf(addr string) string {
	if netip.MustParseAddr(addr).Is4() {
		return "32"
	}
	return "128"
}

func TestMappedAddressCountsAsIPv4(t *testing.T) {
	p := NewPolicy(testOptions(), nil)
	failN(p, failure("203.0.113.40"), 2, t0)
	c := failN(p, failure("::ffff:203.0.113.40"), 3, t0.Add(5*time.Second))
	if len(c) != 1 || c[0].Ban.Prefix != netip.MustParsePrefix("203.0.113.40/32") {
		t.Fatalf("mapped address: %+v", c)
	}
}

func TestEscalation(t *testing.T) {
	o := testOptions()
	o.MaxBannedTimeout = 5 * time.Hour
	p := NewPolicy(o, nil)
	ev := failure("203.0.113.50")
	now := t0
	want := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 5 * time.Hour, 5 * time.Hour}
	for i, w := range want {
		c := failN(p, ev, 5, now)
		if len(c) != 1 {
			t.Fatalf("offence %d: no ban", i+1)
		}
		b := c[0].Ban
		if got := b.Expires.Sub(b.Created); got != w || b.Offences != i+1 {
			t.Fatalf("offence %d: banned %s (offences %d), want %s", i+1, got, b.Offences, w)
		}
		exp := p.Tick(b.Expires)
		if len(exp) != 1 || exp[0].Op != OpExpire || exp[0].Ban.Prefix != b.Prefix {
			t.Fatalf("offence %d: expiry %+v", i+1, exp)
		}
		now = b.Expires.Add(time.Hour) // back within 24 h of the end
	}
	// A quiet day resets the length, but the offence count remembers the week.
	c := failN(p, ev, 5, now.Add(25*time.Hour))
	if len(c) != 1 || c[0].Ban.Expires.Sub(c[0].Ban.Created) != time.Hour || c[0].Ban.Offences != 6 {
		t.Fatalf("after a quiet day: %+v", c)
	}
}

func TestRequestNotAllowedFromAccountIsInfo(t *testing.T) {
	m := messageOf("Event", "RequestNotAllowed", "Service", "AMI", "AccountID", "readonly",
		"RemoteAddress", "IPV4/TCP/203.0.113.60/40000", "RequestType", "Action: Originate")
	ev, ok, err := Classify(m)
	if !ok || err != nil || ev.Class != ClassInfo {
		t.Fatalf("%+v %v %v", ev, ok, err)
	}
	m = messageOf("Event", "RequestNotAllowed", "Service", "AMI", "AccountID", "",
		"RemoteAddress", "IPV4/TCP/203.0.113.60/40000", "RequestType", "Action: Ping")
	if ev, _, _ := Classify(m); ev.Class != ClassFailure {
		t.Fatalf("anonymous RequestNotAllowed: %v", ev.Class)
	}
}

func TestChallengeMode(t *testing.T) {
	o := testOptions()
	o.ChallengeTimeout = 2 * time.Second
	o.MaxRetry = 2
	p := NewPolicy(o, nil)
	ch := func(session string) Event {
		return Event{Name: "ChallengeSent", Class: ClassChallenge, Addr: netip.MustParseAddr("203.0.113.70"), Service: "PJSIP", AccountID: "101", SessionID: session}
	}
	// Answered by a SuccessfulAuth: nothing counted.
	p.Observe(ch("a"), t0)
	p.Observe(success("203.0.113.70"), t0.Add(time.Second))
	if c := p.Tick(t0.Add(5 * time.Second)); len(c) != 0 {
		t.Fatalf("answered challenge counted: %+v", c)
	}
	// Followed by ChallengeResponseFailed of the same session: counted once, not twice.
	p = NewPolicy(o, nil)
	p.Observe(ch("b"), t0)
	f := failure("203.0.113.70")
	f.SessionID = "b"
	p.Observe(f, t0.Add(time.Second))
	if c := p.Tick(t0.Add(5 * time.Second)); len(c) != 0 {
		t.Fatalf("failed challenge counted twice: %+v", c)
	}
	// Two unanswered challenges: two failures, a ban at maxretry 2.
	p = NewPolicy(o, nil)
	p.Observe(ch("c"), t0)
	p.Observe(ch("d"), t0.Add(time.Second))
	if c := p.Tick(t0.Add(time.Second)); len(c) != 0 {
		t.Fatal("challenge counted before its timeout")
	}
	c := p.Tick(t0.Add(4 * time.Second))
	if len(c) != 1 || c[0].Op != OpBan {
		t.Fatalf("unanswered challenges: %+v", c)
	}
	// Off by default: ChallengeSent alone never counts.
	q := NewPolicy(testOptions(), nil)
	for i := 0; i < 10; i++ {
		q.Observe(ch(string(rune('e'+i))), t0)
	}
	if c := q.Tick(t0.Add(time.Hour)); len(c) != 0 {
		t.Fatal("ChallengeSent counted with challenge mode off")
	}
}

func TestIPv6PrefixMode(t *testing.T) {
	o := testOptions()
	o.IPv6Prefix = 64
	p := NewPolicy(o, nil)
	var c []Change
	for i, a := range []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1:0:ffff::9", "2001:db8:1::5"} {
		c = append(c, p.Observe(failure(a), t0.Add(time.Duration(i)*time.Second)).Changes...)
	}
	if len(c) != 1 || c[0].Ban.Prefix != netip.MustParsePrefix("2001:db8:1::/64") {
		t.Fatalf("/64 mode: %+v", c)
	}
	// Per-address mode keeps them apart.
	q := NewPolicy(testOptions(), nil)
	for i, a := range []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4", "2001:db8:1::5"} {
		if len(q.Observe(failure(a), t0.Add(time.Duration(i)*time.Second)).Changes) != 0 {
			t.Fatal("per-address mode banned after one failure each")
		}
	}
}

func TestManualBanAndUnban(t *testing.T) {
	p := NewPolicy(testOptions(), nil)
	b, err := p.Ban(netip.MustParsePrefix("198.51.100.80/32"), 90*time.Second, "manual: test", t0)
	if err != nil || !b.Manual || b.Expires != t0.Add(90*time.Second) || b.Reason != "manual: test" {
		t.Fatalf("%+v %v", b, err)
	}
	if _, err := p.Ban(netip.MustParsePrefix("198.51.100.0/24"), time.Hour, "", t0); err == nil {
		t.Error("IPv4 network ban accepted; networks belong in the deny list")
	}
	if _, err := p.Ban(netip.MustParsePrefix("2001:db8::/64"), time.Hour, "", t0); err == nil {
		t.Error("IPv6 /64 ban accepted in per-address mode")
	}
	if got := p.Bans(t0); len(got) != 1 || got[0].Prefix != b.Prefix {
		t.Fatalf("bans: %+v", got)
	}
	if _, ok := p.Unban(netip.MustParsePrefix("198.51.100.80/32")); !ok {
		t.Fatal("unban not found")
	}
	if _, ok := p.Unban(netip.MustParsePrefix("198.51.100.80/32")); ok {
		t.Fatal("second unban found a ban")
	}
}

func TestRestoreDropsExpired(t *testing.T) {
	p := NewPolicy(testOptions(), nil)
	live := Ban{Prefix: netip.MustParsePrefix("203.0.113.90/32"), Created: t0, Expires: t0.Add(time.Hour)}
	dead := Ban{Prefix: netip.MustParsePrefix("203.0.113.91/32"), Created: t0, Expires: t0.Add(time.Minute)}
	exp := p.Restore([]Ban{live, dead}, nil, t0.Add(30*time.Minute))
	if len(exp) != 1 || exp[0].Ban.Prefix != dead.Prefix || exp[0].Op != OpExpire {
		t.Fatalf("expired: %+v", exp)
	}
	if got := p.Bans(t0.Add(30 * time.Minute)); len(got) != 1 || got[0].Remaining(t0.Add(30*time.Minute)) != 30*time.Minute {
		t.Fatalf("restored: %+v", got)
	}
}

func TestCountersAreBounded(t *testing.T) {
	o := testOptions()
	p := NewPolicy(o, nil)
	base := netip.MustParseAddr("2001:db8:4::").As16()
	for i := 0; i < maxTracked+1000; i++ {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		p.Observe(Event{Class: ClassFailure, Addr: netip.AddrFrom16(a), Name: "InvalidAccountID"}, t0)
	}
	if p.Tracked() > maxTracked {
		t.Fatalf("tracking %d sources, bound is %d", p.Tracked(), maxTracked)
	}
	p.Tick(t0.Add(o.FindTime + 2*time.Minute))
	if p.Tracked() != 0 {
		t.Fatalf("stale counters kept: %d", p.Tracked())
	}
}
