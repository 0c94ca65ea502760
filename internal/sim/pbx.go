package sim

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

func netipAddrPort(a net.Addr) (netip.AddrPort, error) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort(), nil
	}
	return netip.ParseAddrPort(a.String())
}

// Channel states as Asterisk numbers and names them.
const (
	stateDown    = 0
	stateRing    = 4
	stateRinging = 5
	stateUp      = 6
	stateBusy    = 7
)

func stateDesc(st int) string {
	switch st {
	case stateDown:
		return "Down"
	case 1:
		return "Rsrvd"
	case 2:
		return "OffHook"
	case 3:
		return "Dialing"
	case stateRing:
		return "Ring"
	case stateRinging:
		return "Ringing"
	case stateUp:
		return "Up"
	case stateBusy:
		return "Busy"
	default:
		return "Unknown"
	}
}

// Hangup causes used by the simulator, with Asterisk's Cause-txt.
const (
	causeUnknown  = 0
	causeNormal   = 16
	causeBusy     = 17
	causeNoAnswer = 19
)

func causeText(c int) string {
	switch c {
	case causeNormal:
		return "Normal Clearing"
	case causeBusy:
		return "User busy"
	case 18:
		return "No user responding"
	case causeNoAnswer:
		return "User alerting, no answer"
	case 21:
		return "Call Rejected"
	case 34:
		return "Circuit/channel congestion"
	default:
		return "Unknown"
	}
}

const unknown = "<unknown>"

// channel is one simulated Asterisk channel.
type channel struct {
	name     string
	tech     string
	device   string // "PJSIP/101" for device-state events; "" when none
	state    int
	cidNum   string
	cidName  string
	connNum  string
	connName string
	context  string
	exten    string
	priority int
	uniqueid string
	linkedid string
	app      string
	appData  string
	dnid     string
	created  time.Time
	answered time.Time
	bridge   *bridge
	call     *call
	gone     bool
}

type bridge struct {
	id      string
	members []*channel
}

// newChannel creates a channel in call c and publishes Newchannel and CEL CHAN_START. The first
// channel of a call gives the call its Linkedid.
func (s *Sim) newChannel(c *call, tech, resource, device string, state int, cidNum, cidName, context, exten, uniqueid string) *channel {
	seq := s.techSeq[tech]
	s.techSeq[tech] = seq + 1
	name := fmt.Sprintf("%s/%s-%08x", tech, resource, seq)
	return s.createChannel(c, name, tech, device, state, cidNum, cidName, context, exten, uniqueid)
}

// createChannel is newChannel with the name already chosen (Local halves end in ;1 and ;2).
func (s *Sim) createChannel(c *call, name, tech, device string, state int, cidNum, cidName, context, exten, uniqueid string) *channel {
	now := s.clock.Now()
	if uniqueid == "" {
		uniqueid = fmt.Sprintf("%d.%d", now.Unix(), s.uniqueSeq)
		s.uniqueSeq++
	}
	if c.linkedid == "" {
		c.linkedid = uniqueid
		s.calls[uniqueid] = c
	}
	ch := &channel{
		name: name, tech: tech, device: device, state: state,
		cidNum: orUnknown(cidNum), cidName: orUnknown(cidName), connNum: unknown, connName: unknown,
		context: context, exten: exten, priority: 1, uniqueid: uniqueid, linkedid: c.linkedid,
		created: now, call: c,
	}
	c.channels = append(c.channels, ch)
	s.channels[ch.name] = ch
	if device != "" {
		s.devicesInUse[device]++
	}
	s.emitChannel(classCall, "Newchannel", ch)
	s.cel(ch, "CHAN_START", "", "")
	return ch
}

func orUnknown(v string) string {
	if v == "" {
		return unknown
	}
	return v
}

// snapshot appends a channel's standard headers, each name prefixed ("Dest", "LocalOne").
func snapshot(m *ami.Message, prefix string, ch *channel) {
	m.Add(prefix+"Channel", ch.name)
	m.Add(prefix+"ChannelState", strconv.Itoa(ch.state))
	m.Add(prefix+"ChannelStateDesc", stateDesc(ch.state))
	m.Add(prefix+"CallerIDNum", ch.cidNum)
	m.Add(prefix+"CallerIDName", ch.cidName)
	m.Add(prefix+"ConnectedLineNum", ch.connNum)
	m.Add(prefix+"ConnectedLineName", ch.connName)
	m.Add(prefix+"Language", "en")
	m.Add(prefix+"AccountCode", "")
	m.Add(prefix+"Context", ch.context)
	m.Add(prefix+"Exten", ch.exten)
	m.Add(prefix+"Priority", strconv.Itoa(ch.priority))
	m.Add(prefix+"Uniqueid", ch.uniqueid)
	m.Add(prefix+"Linkedid", ch.linkedid)
}

func eventHead(name string, cls class, size int) *ami.Message {
	m := &ami.Message{Headers: make([]ami.Header, 0, size)}
	m.Add("Event", name)
	m.Add("Privilege", cls.privilege())
	return m
}

// emitChannel publishes a channel event: Event, Privilege, the snapshot, then extra pairs.
func (s *Sim) emitChannel(cls class, name string, ch *channel, extra ...string) {
	m := eventHead(name, cls, 16+len(extra)/2)
	snapshot(m, "", ch)
	for i := 0; i+1 < len(extra); i += 2 {
		m.Add(extra[i], extra[i+1])
	}
	s.broadcast(cls, m)
}

func (s *Sim) setState(ch *channel, st int) {
	if ch.state == st {
		return
	}
	ch.state = st
	s.emitChannel(classCall, "Newstate", ch)
	if st == stateUp && ch.answered.IsZero() {
		ch.answered = s.clock.Now()
		s.cel(ch, "ANSWER", "", "")
	}
}

// exec runs dialplan priority prio with app(data): Newexten.
func (s *Sim) exec(ch *channel, prio int, app, data string) {
	ch.priority = prio
	ch.app, ch.appData = app, data
	s.emitChannel(classDialplan, "Newexten", ch, "Extension", ch.exten, "Application", app, "AppData", data)
}

func (s *Sim) varSet(ch *channel, name, value string) {
	s.emitChannel(classDialplan, "VarSet", ch, "Variable", name, "Value", value)
}

func (s *Sim) setCallerID(ch *channel, num, name string) {
	ch.cidNum, ch.cidName = orUnknown(num), orUnknown(name)
	s.emitChannel(classCall, "NewCallerid", ch, "CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
}

func (s *Sim) setConnected(ch *channel, num, name string) {
	ch.connNum, ch.connName = orUnknown(num), orUnknown(name)
	s.emitChannel(classCall, "NewConnectedLine", ch)
}

// dialEvent publishes DialBegin, DialState or DialEnd. A nil caller (an Originate) leaves out the
// caller's headers, as Asterisk does.
func (s *Sim) dialEvent(name string, caller, dest *channel, extra ...string) {
	m := eventHead(name, classCall, 34)
	if caller != nil {
		snapshot(m, "", caller)
	}
	snapshot(m, "Dest", dest)
	for i := 0; i+1 < len(extra); i += 2 {
		m.Add(extra[i], extra[i+1])
	}
	s.broadcast(classCall, m)
}

func (s *Sim) deviceState(device, state string) {
	if device == "" {
		return
	}
	s.broadcast(classCall, ami.NewMessage("Event", "DeviceStateChange", "Privilege", classCall.privilege(),
		"Device", device, "State", state))
}

func (s *Sim) bridgeEvent(name string, b *bridge, ch *channel) {
	m := eventHead(name, classCall, 24)
	m.Add("BridgeUniqueid", b.id)
	m.Add("BridgeType", "basic")
	m.Add("BridgeTechnology", "simple_bridge")
	m.Add("BridgeCreator", unknown)
	m.Add("BridgeName", unknown)
	m.Add("BridgeNumChannels", strconv.Itoa(len(b.members)))
	m.Add("BridgeVideoSourceMode", "none")
	if ch != nil {
		snapshot(m, "", ch)
	}
	s.broadcast(classCall, m)
}

// bridgeUniqueid is a UUID-shaped id drawn from the call generator, so a seed repeats it.
func (s *Sim) bridgeUniqueid() string {
	s.bridgeSeq++
	a, b := s.rng.Uint64(), s.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", uint32(a>>32), uint16(a>>16), uint16(a)&0xfff,
		uint16(b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

func (s *Sim) bridge(a, b *channel) *bridge {
	br := &bridge{id: s.bridgeUniqueid()}
	s.bridgeEvent("BridgeCreate", br, nil)
	for _, ch := range []*channel{b, a} {
		br.members = append(br.members, ch)
		ch.bridge = br
		s.bridgeEvent("BridgeEnter", br, ch)
	}
	s.varSet(b, "BRIDGEPEER", a.name)
	s.varSet(a, "BRIDGEPEER", b.name)
	return br
}

func (s *Sim) leaveBridge(ch *channel) {
	br := ch.bridge
	if br == nil {
		return
	}
	ch.bridge = nil
	for i, m := range br.members {
		if m == ch {
			br.members = append(br.members[:i], br.members[i+1:]...)
			break
		}
	}
	s.bridgeEvent("BridgeLeave", br, ch)
	if len(br.members) == 0 {
		s.bridgeEvent("BridgeDestroy", br, nil)
	}
}

// hangup ends one channel: a hangup request (soft when the dialplan or an action asked, plain
// when the far end did), leaving its bridge, Hangup with Cause and Cause-txt, CEL and the
// device state. The last channel of a call ends the call.
func (s *Sim) hangup(ch *channel, cause int, soft bool) {
	if ch.gone {
		return
	}
	if soft {
		s.emitChannel(classCall, "SoftHangupRequest", ch, "Cause", strconv.Itoa(cause))
	} else {
		s.emitChannel(classCall, "HangupRequest", ch, "Cause", strconv.Itoa(cause))
	}
	s.leaveBridge(ch)
	ch.gone = true
	delete(s.channels, ch.name)
	if ch.device != "" {
		if s.devicesInUse[ch.device]--; s.devicesInUse[ch.device] <= 0 {
			delete(s.devicesInUse, ch.device)
		}
	}
	extra := fmt.Sprintf(`{"hangupcause":%d,"hangupsource":"%s","dialstatus":"%s"}`, cause, ch.name, ch.call.dialStatus)
	s.cel(ch, "HANGUP", "", extra)
	s.cel(ch, "CHAN_END", "", "")
	s.emitChannel(classCall, "Hangup", ch, "Cause", strconv.Itoa(cause), "Cause-txt", causeText(cause))
	s.deviceState(ch.device, "NOT_INUSE")
	c := ch.call
	for _, other := range c.channels {
		if !other.gone {
			return
		}
	}
	s.endCall(c)
}

// cel publishes a CEL event (Asterisk sends CEL with Privilege call,all).
func (s *Sim) cel(ch *channel, eventName, peer, extra string) {
	now := s.clock.Now()
	ani := ""
	if eventName != "CHAN_START" {
		ani = ch.cidNum
	}
	m := eventHead("CEL", classCall, 24)
	m.Add("EventName", eventName)
	m.Add("AccountCode", "")
	m.Add("CallerIDnum", ch.cidNum)
	m.Add("CallerIDname", ch.cidName)
	m.Add("CallerIDani", ani)
	m.Add("CallerIDrdnis", "")
	m.Add("CallerIDdnid", ch.dnid)
	m.Add("Exten", ch.exten)
	m.Add("Context", ch.context)
	m.Add("Channel", ch.name)
	m.Add("Application", ch.app)
	m.Add("AppData", ch.appData)
	m.Add("EventTime", now.UTC().Format(time.DateTime))
	m.Add("AMAFlags", "DOCUMENTATION")
	m.Add("UniqueID", ch.uniqueid)
	m.Add("LinkedID", ch.linkedid)
	m.Add("Userfield", "")
	m.Add("Peer", peer)
	m.Add("PeerAccount", "")
	m.Add("Extra", extra)
	s.broadcast(classCall, m)
}

// cdr publishes the call's Cdr record (class cdr) for its first channel.
func (s *Sim) cdr(c *call) {
	if len(c.channels) == 0 {
		return
	}
	a := c.channels[0]
	destChan := ""
	if c.dest != nil {
		destChan = c.dest.name
	}
	end := s.clock.Now()
	answer := ""
	bill := 0
	if !c.answered.IsZero() {
		answer = c.answered.UTC().Format(time.DateTime)
		bill = int(end.Sub(c.answered).Seconds())
	}
	callerID := fmt.Sprintf("%q <%s>", a.cidName, a.cidNum)
	m := eventHead("Cdr", classCDR, 22)
	m.Add("AccountCode", "")
	m.Add("Source", a.cidNum)
	m.Add("Destination", c.to)
	m.Add("DestinationContext", a.context)
	m.Add("CallerID", callerID)
	m.Add("Channel", a.name)
	m.Add("DestinationChannel", destChan)
	m.Add("LastApplication", a.app)
	m.Add("LastData", a.appData)
	m.Add("StartTime", c.started.UTC().Format(time.DateTime))
	m.Add("AnswerTime", answer)
	m.Add("EndTime", end.UTC().Format(time.DateTime))
	m.Add("Duration", strconv.Itoa(int(end.Sub(c.started).Seconds())))
	m.Add("BillableSeconds", strconv.Itoa(bill))
	m.Add("Disposition", c.disposition())
	m.Add("AMAFlags", "DOCUMENTATION")
	m.Add("UniqueID", a.uniqueid)
	m.Add("UserField", "")
	s.broadcast(classCDR, m)
}
