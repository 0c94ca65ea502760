package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// call is one simulated call: every channel that shares a Linkedid.
type call struct {
	kind       string
	linkedid   string
	from, to   string
	actionID   string
	started    time.Time
	answered   time.Time
	channels   []*channel
	dest       *channel
	dialStatus string // ANSWER, BUSY, NOANSWER, CHANUNAVAIL
	recording  string
	ended      bool
	onEnd      []func()
}

func (c *call) disposition() string {
	switch c.dialStatus {
	case "ANSWER":
		return "ANSWERED"
	case "BUSY":
		return "BUSY"
	case "NOANSWER":
		return "NO ANSWER"
	}
	if !c.answered.IsZero() {
		return "ANSWERED"
	}
	return "FAILED"
}

// endCall runs when the last channel of a call hangs up: Cdr, CEL LINKEDID_END and the summary.
func (s *Sim) endCall(c *call) {
	if c.ended {
		return
	}
	c.ended = true
	s.cdr(c)
	if len(c.channels) > 0 {
		last := c.channels[0]
		s.cel(last, "LINKEDID_END", "", "")
	}
	delete(s.calls, c.linkedid)
	s.processed++
	for _, fn := range c.onEnd {
		fn()
	}
	sum := CallSummary{Linkedid: c.linkedid, Kind: c.kind, From: c.from, To: c.to, Disposition: c.disposition(),
		Recording: c.recording, ActionID: c.actionID, Start: c.started, End: s.clock.Now(), Channels: len(c.channels)}
	if !c.answered.IsZero() {
		sum.Billsec = sum.End.Sub(c.answered)
	}
	s.publishSummary(sum)
}

// step schedules fn after d unless the call has ended meanwhile (a Hangup action, say).
func (s *Sim) step(c *call, d time.Duration, fn func()) {
	s.at(d, func() {
		if !c.ended {
			fn()
		}
	})
}

// exec runs the next dialplan priority (the first one is 1).
func (s *Sim) execNext(ch *channel, app, data string) {
	prio := 1
	if ch.app != "" {
		prio = ch.priority + 1
	}
	s.exec(ch, prio, app, data)
}

// gotoExten moves a channel to context,exten,1 (its next exec is priority 1).
func gotoExten(ch *channel, context, exten string) {
	ch.context, ch.exten, ch.app, ch.appData = context, exten, "", ""
}

// phone is a simulated desk phone, a PJSIP endpoint.
type phone struct{ ext, name string }

var phones = []phone{
	{"101", "Alice Martin"}, {"102", "Bob Dupont"}, {"103", "Carla Rossi"}, {"104", "David Kim"},
	{"105", "Emma Weber"}, {"106", "Farid Haddad"}, {"107", "Grace Okafor"}, {"108", "Hugo Silva"},
}

// mainDID is the company's public number that inbound calls reach.
const mainDID = "5551000"

// externalNumber draws a fictional North American number: NXX-555-01XX is reserved for fiction.
func (s *Sim) externalNumber() string {
	return fmt.Sprintf("+1%d55501%02d", 200+s.rng.IntN(700), s.rng.IntN(100))
}

func (s *Sim) randomPhone() phone { return phones[s.rng.IntN(len(phones))] }

// freePhone draws a phone that is not on a call, so a caller never dials from a busy desk; when
// every phone is busy it returns any phone.
func (s *Sim) freePhone() phone {
	for range len(phones) {
		if p := s.randomPhone(); s.devicesInUse["PJSIP/"+p.ext] == 0 {
			return p
		}
	}
	return s.randomPhone()
}

type outcome int

const (
	outAnswer outcome = iota
	outBusy
	outNoAnswer
)

func (s *Sim) pickOutcome() outcome {
	r := s.rng.Float64()
	switch {
	case r < 0.72:
		return outAnswer
	case r < 0.84:
		return outBusy
	default:
		return outNoAnswer
	}
}

// seconds draws a duration around mean seconds (exponential, at least min), rounded to 10 ms.
func (s *Sim) seconds(min, mean float64) time.Duration {
	v := min + s.rng.ExpFloat64()*(mean-min)
	v = math.Min(v, 20*mean)
	return time.Duration(v*100) * 10 * time.Millisecond
}

// scheduleArrival plans the next generated call (a Poisson process at CallsPerSecond). The chain
// stops when the rate is set to 0. The caller holds s.mu.
func (s *Sim) scheduleArrival() {
	s.arriving = true
	gap := time.Duration(s.rng.ExpFloat64() / s.cfg.CallsPerSecond * float64(time.Second))
	s.at(gap, func() {
		if s.cfg.CallsPerSecond <= 0 {
			s.arriving = false
			return
		}
		s.generateCall()
		s.scheduleArrival()
	})
}

// SetCallRate changes the rate of generated calls; 0 stops generating (calls in progress finish).
func (s *Sim) SetCallRate(callsPerSecond float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if callsPerSecond < 0 {
		callsPerSecond = 0
	}
	s.cfg.CallsPerSecond = callsPerSecond
	if callsPerSecond > 0 && !s.arriving && s.running.Load() {
		s.scheduleArrival()
	}
}

// generateCall starts one call of a random kind, modelled on the recorded transcripts.
func (s *Sim) generateCall() {
	s.callSeq++
	now := s.clock.Now()
	c := &call{started: now}
	record := s.rng.Float64() < 0.25
	out := s.pickOutcome()
	ring := s.seconds(1.5, 5)
	talk := s.seconds(3, 45)
	callerHangsUp := s.rng.IntN(2) == 0
	var a *channel
	var dest leg
	viaQueue := false
	switch r := s.rng.Float64(); {
	case r < 0.35:
		c.kind = "inbound"
		c.from, c.to = s.externalNumber(), mainDID
		a = s.newChannel(c, "PJSIP", "trunk", "", stateRing, c.from, "", "from-trunk", mainDID, "")
		p := s.randomPhone()
		dest = phoneLeg(p)
	case r < 0.65:
		c.kind = "outbound"
		p := s.freePhone()
		c.from, c.to = p.ext, s.externalNumber()
		a = s.newChannel(c, "PJSIP", p.ext, "PJSIP/"+p.ext, stateRing, p.ext, p.name, "from-internal", c.to, "")
		dest = leg{tech: "PJSIP", resource: "trunk", dialString: c.to + "@trunk", cidNum: c.to}
	case r < 0.80:
		c.kind = "internal"
		p, q := s.freePhone(), s.randomPhone()
		for q.ext == p.ext {
			q = s.randomPhone()
		}
		c.from, c.to = p.ext, q.ext
		a = s.newChannel(c, "PJSIP", p.ext, "PJSIP/"+p.ext, stateRing, p.ext, p.name, "from-internal", q.ext, "")
		dest = phoneLeg(q)
	default:
		c.kind = "queue"
		c.from, c.to = s.externalNumber(), "support"
		a = s.newChannel(c, "PJSIP", "trunk", "", stateRing, c.from, "", "from-trunk", mainDID, "")
		dest = phoneLeg(s.freePhone())
		viaQueue = true
	}
	a.dnid = a.exten
	s.deviceState(a.device, "INUSE")
	s.varSet(a, "SIPDOMAIN", "pbx.example.com")
	s.execNext(a, "NoOp", c.kind)
	if record || viaQueue {
		s.execNext(a, "Answer", "")
		s.setState(a, stateUp)
	}
	if record {
		s.startRecording(c, a)
	}
	if viaQueue {
		s.queueCall(c, a, dest, out, talk, callerHangsUp)
		return
	}
	s.execNext(a, "Dial", dest.dialString+",20")
	s.dial(c, a, dest, out, ring, talk, callerHangsUp, false)
}

// leg is what a Dial reaches.
type leg struct {
	tech, resource, device, dialString string
	cidNum, cidName                    string
}

func phoneLeg(p phone) leg {
	return leg{tech: "PJSIP", resource: p.ext, device: "PJSIP/" + p.ext, dialString: "PJSIP/" + p.ext, cidNum: p.ext, cidName: p.name}
}

func (s *Sim) startRecording(c *call, a *channel) {
	file := fmt.Sprintf("%s-%s.wav", c.kind, a.uniqueid)
	s.execNext(a, "MixMonitor", file)
	c.recording = "/var/spool/asterisk/monitor/" + file
	s.varSet(a, "MIXMONITOR_FILENAME", c.recording)
	s.emitChannel(classCall, "MixMonitorStart", a)
}

// dial plays A's Dial of dest: the callee channel, DialBegin, ringing, then the outcome. For an
// answered call it bridges both sides, talks, and hangs up from one side; the survivor finishes
// its dialplan (StopMixMonitor when recording, then Hangup).
func (s *Sim) dial(c *call, a *channel, dest leg, out outcome, ring, talk time.Duration, callerHangsUp, viaQueue bool) {
	if !viaQueue && dest.device != "" && s.devicesInUse[dest.device] > 0 && out == outAnswer {
		out = outBusy // the phone is already on a call (a queue only rings free members)
	}
	b := s.newChannel(c, dest.tech, dest.resource, dest.device, stateDown, dest.cidNum, dest.cidName, "from-internal", "s", "")
	c.dest = b
	b.exten = a.exten
	s.execNext(b, "AppDial", "(Outgoing Line)")
	s.setConnected(b, a.cidNum, a.cidName)
	s.dialEvent("DialBegin", a, b, "DialString", dest.dialString)
	s.step(c, 40*time.Millisecond, func() {
		s.setState(b, stateRinging)
		s.dialEvent("DialState", a, b, "DialStatus", "RINGING")
		s.deviceState(b.device, "RINGING")
		if a.state == stateRing {
			s.setState(a, stateRinging)
		}
	})
	switch out {
	case outAnswer:
		s.step(c, ring, func() {
			s.setState(b, stateUp)
			s.dialEvent("DialEnd", a, b, "DialStatus", "ANSWER")
			c.dialStatus = "ANSWER"
			if viaQueue {
				s.emitChannel(classAgent, "QueueCallerLeave", a, "Queue", "support", "Count", "0", "Position", "1")
			}
			s.setState(a, stateUp)
			if c.answered.IsZero() {
				c.answered = s.clock.Now()
			}
			s.setConnected(a, b.cidNum, b.cidName)
			s.varSet(a, "DIALSTATUS", "ANSWER")
			s.deviceState(b.device, "INUSE")
			s.bridge(a, b)
			s.step(c, talk, func() {
				if callerHangsUp {
					s.hangup(a, causeNormal, false)
					s.hangup(b, causeNormal, true)
					return
				}
				s.hangup(b, causeNormal, false)
				s.finishDialplan(c, a, causeNormal)
			})
		})
	case outBusy:
		s.step(c, ring, func() {
			s.setState(b, stateBusy)
			s.dialEvent("DialEnd", a, b, "DialStatus", "BUSY")
			c.dialStatus = "BUSY"
			s.hangup(b, causeBusy, false)
			s.varSet(a, "DIALSTATUS", "BUSY")
			s.finishDialplan(c, a, causeBusy)
		})
	case outNoAnswer:
		s.step(c, 20*time.Second, func() {
			s.dialEvent("DialEnd", a, b, "DialStatus", "NOANSWER")
			c.dialStatus = "NOANSWER"
			s.hangup(b, causeNoAnswer, true)
			s.varSet(a, "DIALSTATUS", "NOANSWER")
			if viaQueue {
				s.emitChannel(classAgent, "QueueCallerAbandon", a, "Queue", "support", "Position", "1", "OriginalPosition", "1", "HoldTime", "20")
			}
			s.finishDialplan(c, a, causeNoAnswer)
		})
	}
}

// finishDialplan runs what follows Dial on the surviving channel: StopMixMonitor when recording
// (a channel that simply hangs up sends no MixMonitorStop), then Hangup.
func (s *Sim) finishDialplan(c *call, a *channel, cause int) {
	s.step(c, 20*time.Millisecond, func() {
		if c.recording != "" {
			s.execNext(a, "StopMixMonitor", "")
			s.emitChannel(classCall, "MixMonitorStop", a)
		}
		s.execNext(a, "Hangup", "")
		s.hangup(a, cause, true)
	})
}

// queueCall puts A in queue "support": QueueCallerJoin, a wait, then a member's phone rings.
func (s *Sim) queueCall(c *call, a *channel, member leg, out outcome, talk time.Duration, callerHangsUp bool) {
	s.execNext(a, "Queue", "support,,,,60")
	s.emitChannel(classAgent, "QueueCallerJoin", a, "Queue", "support", "Position", "1", "Count", "1")
	wait := s.seconds(1, 8)
	if out == outBusy { // a busy member is skipped; model it as the caller answered by the next one
		out = outAnswer
	}
	ring := s.seconds(1.5, 4)
	s.step(c, wait, func() {
		s.dial(c, a, member, out, ring, talk, callerHangsUp, true)
	})
}

// pjsipSecurity publishes a PJSIP security event (Service PJSIP, EventVersion 1).
func (s *Sim) pjsipSecurity(name, severity, account, sessionID, local, remote string, extra ...string) {
	m := ami.NewMessage("Event", name, "Privilege", classSecurity.privilege(),
		"EventTV", eventTV(s.clock.Now()), "Severity", severity, "Service", "PJSIP", "EventVersion", "1",
		"AccountID", account, "SessionID", sessionID, "LocalAddress", local, "RemoteAddress", remote)
	for i := 0; i+1 < len(extra); i += 2 {
		m.Add(extra[i], extra[i+1])
	}
	s.broadcast(classSecurity, m)
}
