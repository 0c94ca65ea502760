package security

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// TestRecordedEventsClassify checks the classification of every security event Asterisk 22 sent in
// the recordings, and that every RemoteAddress in them parses.
func TestRecordedEventsClassify(t *testing.T) {
	want := map[string][]string{
		"03-security-events-privileged.txt": {
			"SuccessfulAuth:success", "InvalidPassword:failure", "InvalidAccountID:failure", "FailedACL:failure",
			"RequestNotAllowed:failure", "RequestNotAllowed:failure", "SuccessfulAuth:success",
			"RequestNotAllowed:info", "RequestNotAllowed:info",
		},
		"05a-sip-register-wrong-password-security.txt": {
			"SuccessfulAuth:success", "ChallengeSent:challenge", "ChallengeResponseFailed:failure",
			"InvalidAccountID:failure", "ChallengeSent:challenge", "InvalidAccountID:failure", "ChallengeResponseFailed:failure",
		},
	}
	for file, classes := range want {
		var got []string
		for _, m := range securityOnly(readFixture(t, file)) {
			ev, _, err := Classify(m)
			if err != nil {
				t.Errorf("%s: %v", file, err)
			}
			if ev.Addr != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("%s: %s address %v", file, ev.Name, ev.Addr)
			}
			got = append(got, ev.Name+":"+ev.Class.String())
		}
		if strings.Join(got, " ") != strings.Join(classes, " ") {
			t.Errorf("%s:\n got %v\nwant %v", file, got, classes)
		}
	}
	// 05b: successful registrations carry UsingPassword 1 and are successes.
	var successes int
	for _, m := range securityOnly(readFixture(t, "05b-sip-register-success.txt")) {
		ev, _, err := Classify(m)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Class == ClassFailure {
			t.Errorf("05b: successful registration classified as failure: %s", ev.Name)
		}
		if ev.Class == ClassSuccess && ev.Service == "PJSIP" {
			successes++
		}
	}
	if successes != 2 {
		t.Errorf("05b: %d PJSIP SuccessfulAuth, want 2", successes)
	}
	// Exactly the events of class security are ours: a whole call's events are not.
	var ours int
	for _, m := range readFixture(t, "02-originate-local-call.txt") {
		_, ok, _ := Classify(m)
		if isSecurity := strings.Contains(m.Get("Privilege"), "security"); ok != isSecurity {
			t.Errorf("02: %s (Privilege %q) taken as ours: %v", m.Event(), m.Get("Privilege"), ok)
		}
		if ok {
			ours++
		}
	}
	if ours != 1 {
		t.Errorf("02: %d security events, want the login's SuccessfulAuth only", ours)
	}
}

// The recordings come from loopback, which is never banned, however often it fails.
func TestRecordedLoopbackNeverBanned(t *testing.T) {
	p := NewPolicy(testOptions(), nil)
	for round := 0; round < 10; round++ {
		for _, m := range securityOnly(readFixture(t, "05a-sip-register-wrong-password-security.txt")) {
			ev, _, _ := Classify(m)
			if out := p.Observe(ev, t0); len(out.Changes) != 0 {
				t.Fatalf("loopback banned: %+v", out)
			}
		}
	}
}

// readdress moves the events of the given services to addr, as if the attack came from there.
func readdress(ms []*ami.Message, addr string, services ...string) []*ami.Message {
	var out []*ami.Message
	for _, m := range ms {
		c := m.Clone()
		for _, s := range services {
			if strings.EqualFold(c.Get("Service"), s) {
				ra := c.Get("RemoteAddress")
				fam := "IPV4"
				if strings.Contains(addr, ":") {
					fam = "IPV6"
				}
				parts := strings.Split(ra, "/")
				c.Set("RemoteAddress", fam+"/"+strings.Join(parts[1:len(parts)-2], "/")+"/"+addr+"/"+parts[len(parts)-1])
			}
		}
		out = append(out, c)
	}
	return out
}

// TestRecordedSIPAttackBans replays the recorded wrong-password and unknown-user REGISTERs as if
// they came from a TEST-NET address (IPv4 and IPv6): one round is four failures, under the
// threshold; the fifth failure, in the second round, bans.
func TestRecordedSIPAttackBans(t *testing.T) {
	for _, addr := range []string{"203.0.113.7", "2001:db8::7"} {
		p := NewPolicy(testOptions(), nil)
		recorded := securityOnly(readFixture(t, "05a-sip-register-wrong-password-security.txt"))
		events := readdress(recorded, addr, "PJSIP")
		var bans []Change
		var failures int
		for round := 0; round < 2; round++ {
			for _, m := range events {
				ev, _, err := Classify(m)
				if err != nil {
					t.Fatal(err)
				}
				if ev.Class == ClassFailure {
					failures++
				}
				out := p.Observe(ev, t0.Add(time.Duration(failures)*time.Second))
				if len(out.Changes) > 0 && failures != 5 {
					t.Fatalf("%s: banned at failure %d", addr, failures)
				}
				bans = append(bans, out.Changes...)
			}
		}
		if len(bans) != 1 {
			t.Fatalf("%s: %d bans", addr, len(bans))
		}
		b := bans[0].Ban
		if b.Address() != addr || b.Service != "PJSIP" || !strings.HasPrefix(b.Reason, "PJSIP ") {
			t.Errorf("%s: ban %+v", addr, b)
		}
	}
}

// TestRecordedAMIProbeBans replays the AMI failures of recording 03 from a TEST-NET address: wrong
// password, unknown user, ACL, and two actions before login make five failures and a ban; the
// restricted user's refused actions are not failures.
func TestRecordedAMIProbeBans(t *testing.T) {
	p := NewPolicy(testOptions(), nil)
	var bans []Change
	for i, m := range securityOnly(readFixture(t, "03-security-events-privileged.txt")) {
		if ev, _, _ := Classify(m); ev.Class == ClassFailure {
			m = readdress([]*ami.Message{m}, "198.51.100.3", "AMI")[0]
		}
		ev, _, err := Classify(m)
		if err != nil {
			t.Fatal(err)
		}
		bans = append(bans, p.Observe(ev, t0.Add(time.Duration(i)*time.Second)).Changes...)
	}
	if len(bans) != 1 || bans[0].Ban.Address() != "198.51.100.3" || bans[0].Ban.Reason != "AMI RequestNotAllowed" {
		t.Fatalf("bans: %+v", bans)
	}
}
