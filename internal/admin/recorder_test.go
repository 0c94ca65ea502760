package admin

import (
	"fmt"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

// replayFixture feeds a recorded transcript to the recorder, calling at after each event.
func replayFixture(t *testing.T, name string, r *Recorder, at func(i int, m *ami.Message)) {
	t.Helper()
	for i, m := range amitest.FixtureMessages(t, name) {
		r.Observe(m)
		if at != nil {
			at(i, m)
		}
	}
}

func TestRecorderTracksACallFromTheRecording(t *testing.T) {
	r := NewRecorder(10, 0)
	var sawUp bool
	replayFixture(t, "05c-sip-call-101-to-ext-100.txt", r, func(i int, m *ami.Message) {
		calls := r.Calls()
		switch {
		case m.Event() == "Newchannel":
			if len(calls) != 1 || calls[0].From != "101" || calls[0].To != "100" || calls[0].Linkedid != "1795627331.19" ||
				calls[0].Direction != "internal" || calls[0].State != "ringing" {
				t.Fatalf("after Newchannel: %+v", calls)
			}
		case m.Event() == "Newstate" && m.Get("ChannelState") == "6":
			sawUp = len(calls) == 1 && calls[0].State == "up"
		}
	})
	if !sawUp {
		t.Fatal("the call never showed as up")
	}
	if calls := r.Calls(); len(calls) != 0 {
		t.Fatalf("call still listed after its Hangup: %+v", calls)
	}
	ev := r.Events()
	if len(ev) != 10 || ev[0].Name != "DeviceStateChange" || ev[0].Summary != "PJSIP/101 NOT_INUSE" {
		t.Fatalf("newest first, 10 kept: %+v", ev[0])
	}
	for _, e := range ev {
		if e.Name == "Hangup" && e.Summary != "PJSIP/101-00000000 Normal Clearing (16)" {
			t.Fatalf("%+v", e)
		}
	}
}

func TestRecorderGroupsLocalChannelsByLinkedid(t *testing.T) {
	r := NewRecorder(0, 0)
	maxChannels := 0
	replayFixture(t, "02-originate-local-call.txt", r, func(int, *ami.Message) {
		for _, c := range r.Calls() {
			if c.Channels > maxChannels {
				maxChannels = c.Channels
			}
			if c.Linkedid != "1795627163.0" {
				t.Fatalf("%+v", c)
			}
		}
	})
	if maxChannels != 4 || len(r.Calls()) != 0 {
		t.Fatalf("max %d channels, %d calls left", maxChannels, len(r.Calls()))
	}
}

func TestRecorderBoundsCalls(t *testing.T) {
	r := NewRecorder(5, 3)
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tick := 0
	r.now = func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Second) }
	for i := 0; i < 5; i++ {
		uid := fmt.Sprintf("1795627000.%d", i)
		r.Observe(ami.NewMessage("Event", "Newchannel", "Privilege", "call,all", "Channel", "PJSIP/trunk-0000000"+fmt.Sprint(i),
			"ChannelState", "4", "CallerIDNum", "+12125550142", "Context", "from-trunk", "Exten", "5551000", "Uniqueid", uid, "Linkedid", uid))
	}
	calls := r.Calls()
	if len(calls) != 3 || calls[0].Linkedid != "1795627000.2" || calls[0].Direction != "inbound" {
		t.Fatalf("%+v", calls)
	}
	r.Observe(ami.NewMessage("Response", "Success", "ActionID", "x"))
	if len(r.Events()) != 5 {
		t.Fatalf("%d events", len(r.Events()))
	}
}
