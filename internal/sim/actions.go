package sim

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// runAction handles the actions that need the PBX. It returns the messages to send in order and
// whether the action is known. Originate sends its own response (it must precede the call's
// events) and returns nothing.
func (s *Sim) runAction(sess *session, name string, msg *ami.Message, aid string) ([]*ami.Message, bool) {
	switch name {
	case "originate":
		return s.originateAction(sess, msg, aid), true
	case "hangup":
		return s.hangupAction(msg, aid), true
	case "coreshowchannels":
		return s.coreShowChannels(aid), true
	case "status":
		return s.statusAction(msg, aid), true
	case "command":
		return []*ami.Message{s.command(msg.Get("Command"), aid)}, true
	case "dbput", "dbget", "dbdel", "dbgettree", "dbdeltree":
		return s.dbAction(name, msg, aid), true
	case "coresettings":
		return []*ami.Message{response(aid, "Success", "AMIversion", AMIVersion, "AsteriskVersion", AsteriskVersion,
			"SystemName", "", "CoreMaxCalls", "0", "CoreMaxLoadAvg", "0.000000", "CoreRunUser", "", "CoreRunGroup", "",
			"CoreMaxFilehandles", "0", "CoreRealTimeEnabled", "No", "CoreCDRenabled", "Yes", "CoreHTTPenabled", "No",
			"SoundsSearchCustomDir", "No")}, true
	case "corestatus":
		s.mu.Lock()
		calls, processed := len(s.calls), s.processed
		s.mu.Unlock()
		return []*ami.Message{response(aid, "Success",
			"CoreStartupDate", s.started.Format(time.DateOnly), "CoreStartupTime", s.started.Format(time.TimeOnly),
			"CoreReloadDate", s.started.Format(time.DateOnly), "CoreReloadTime", s.started.Format(time.TimeOnly),
			"CoreCurrentCalls", strconv.Itoa(calls), "CoreProcessedCalls", strconv.Itoa(processed))}, true
	case "userevent":
		return s.userEvent(sess, msg, aid), true
	}
	return nil, false
}

// userEvent answers first, then broadcasts the event carrying the sender's ActionID (class user).
func (s *Sim) userEvent(sess *session, msg *ami.Message, aid string) []*ami.Message {
	name := msg.Get("UserEvent")
	if name == "" {
		return []*ami.Message{errorResponse(aid, "Missing UserEvent")}
	}
	sess.send(response(aid, "Success", "Message", "Event Sent"))
	ev := ami.NewMessage("Event", "UserEvent", "Privilege", classUser.privilege(), "UserEvent", name)
	if aid != "" {
		ev.Add("ActionID", aid)
	}
	for _, h := range msg.Headers {
		switch strings.ToLower(h.Name) {
		case "action", "actionid", "userevent":
		default:
			ev.Add(h.Name, h.Value)
		}
	}
	s.broadcast(classUser, ev)
	return nil
}

// originate is one Originate action in flight.
type originate struct {
	actionID  string
	dial      string // the Channel header, as sent
	tech      string
	resource  string
	context   string
	exten     string
	app, data string
	cidNum    string
	cidName   string
	vars      [][2]string
	timeout   time.Duration
	channelID string
	otherID   string
	responded bool
	result    chan bool // sync Originate: true once answered, false on failure
}

// parseCallerID splits `"Name" <num>`, `Name <num>` or a bare number.
func parseCallerID(v string) (num, name string) {
	v = strings.TrimSpace(v)
	if i := strings.LastIndex(v, "<"); i >= 0 && strings.HasSuffix(v, ">") {
		num = v[i+1 : len(v)-1]
		name = strings.Trim(strings.TrimSpace(v[:i]), `"`)
		return num, name
	}
	return v, ""
}

func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "y", "yes", "t", "true", "on":
		return true
	}
	return false
}

func (s *Sim) originateAction(sess *session, msg *ami.Message, aid string) []*ami.Message {
	dial := msg.Get("Channel")
	if dial == "" {
		return []*ami.Message{errorResponse(aid, "Channel not specified")}
	}
	tech, resource, ok := strings.Cut(dial, "/")
	if !ok || resource == "" {
		return []*ami.Message{errorResponse(aid, "Invalid channel")}
	}
	o := &originate{actionID: aid, dial: dial, tech: tech, resource: resource,
		context: msg.Get("Context"), exten: msg.Get("Exten"), app: msg.Get("Application"), data: msg.Get("Data"),
		channelID: msg.Get("ChannelId"), otherID: msg.Get("OtherChannelId"), timeout: 30 * time.Second}
	if o.app == "" && o.exten == "" {
		return []*ami.Message{errorResponse(aid, "Exten not specified")}
	}
	if o.context == "" {
		o.context = "default"
	}
	if t := msg.Get("Timeout"); t != "" {
		ms, err := strconv.Atoi(t)
		if err != nil || ms < 0 {
			return []*ami.Message{errorResponse(aid, "Invalid timeout")}
		}
		if ms > 0 {
			o.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if cid := msg.Get("CallerID"); cid != "" {
		o.cidNum, o.cidName = parseCallerID(cid)
	}
	for _, v := range msg.Values("Variable") {
		for _, kv := range strings.Split(v, ",") {
			if name, value, ok := strings.Cut(kv, "="); ok && name != "" {
				o.vars = append(o.vars, [2]string{name, value})
			}
		}
	}
	async := isTrue(msg.Get("Async"))
	if async {
		sess.send(response(aid, "Success", "Message", "Originate successfully queued"))
	} else {
		o.result = make(chan bool, 1)
	}
	s.mu.Lock()
	s.startOriginate(o)
	s.mu.Unlock()
	if async {
		return nil
	}
	select {
	case ok := <-o.result:
		if ok {
			return []*ami.Message{response(aid, "Success", "Message", "Originate successfully queued")}
		}
		return []*ami.Message{errorResponse(aid, "Originate failed")}
	case <-sess.done:
		return nil
	}
}

// Originate reasons (OriginateResponse Reason).
const (
	reasonFailed   = 0
	reasonHangup   = 1
	reasonNoAnswer = 3
	reasonAnswered = 4
	reasonBusy     = 5
)

// originateResponse publishes OriginateResponse to every session with the call class (like
// Asterisk, not only to the sender) and completes a synchronous Originate.
func (s *Sim) originateResponse(o *originate, a *channel, reason int) {
	if o.responded {
		return
	}
	o.responded = true
	status, channel, uniqueid, num, name := "Failure", o.dial, unknown, unknown, unknown
	if reason == reasonAnswered {
		status, channel, uniqueid, num, name = "Success", a.name, a.uniqueid, a.cidNum, a.cidName
	}
	if o.result != nil {
		// A synchronous Originate gets its answer instead: Asterisk raises OriginateResponse only
		// for Async ones.
		o.result <- reason == reasonAnswered
		return
	}
	m := eventHead("OriginateResponse", classCall, 12)
	if o.actionID != "" {
		m.Add("ActionID", o.actionID)
	}
	m.Add("Response", status)
	m.Add("Channel", channel)
	if o.app != "" {
		m.Add("Application", o.app)
		m.Add("Data", o.data)
	} else {
		m.Add("Context", o.context)
		m.Add("Exten", o.exten)
	}
	m.Add("Reason", strconv.Itoa(reason))
	m.Add("Uniqueid", uniqueid)
	m.Add("CallerIDNum", num)
	m.Add("CallerIDName", name)
	s.broadcast(classCall, m)
}

// originateTarget is the extension an Originate's Channel reaches: "102" for PJSIP/102, "200" for
// Local/200@test. The simulated dialplan: 500 is busy, 600 rings without answer, 999 (and any
// non-numeric target) does not exist; everything else answers.
func originateTarget(o *originate) string {
	ext, _, _ := strings.Cut(o.resource, "@")
	return ext
}

func isDigits(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// startOriginate plays an Originate in the shape of the 05d transcript (click-to-call): the
// originated channel rings, answers, OriginateResponse comes before DialEnd, then the channel runs
// its destination. The caller holds s.mu.
func (s *Sim) startOriginate(o *originate) {
	target := originateTarget(o)
	tech := o.tech
	if !strings.EqualFold(tech, "PJSIP") && !strings.EqualFold(tech, "Local") && !strings.EqualFold(tech, "SIP") {
		s.at(10*time.Millisecond, func() { s.originateResponse(o, nil, reasonFailed) })
		return
	}
	if !isDigits(target) || target == "999" {
		s.at(10*time.Millisecond, func() { s.originateResponse(o, nil, reasonFailed) })
		return
	}
	s.at(0, func() { s.originateCall(o, target) })
}

func (s *Sim) originateCall(o *originate, target string) {
	c := &call{kind: "originate", started: s.clock.Now(), actionID: o.actionID, from: target, to: o.exten}
	if o.app != "" {
		c.to = o.app
	}
	if strings.EqualFold(o.tech, "PJSIP") && o.app == "" {
		c.kind = "click2call"
	}
	local := strings.EqualFold(o.tech, "Local")
	var a, two *channel
	if local {
		a, two = s.newLocalPair(c, o)
	} else {
		name := "Ext " + target
		for _, p := range phones {
			if p.ext == target {
				name = p.name
			}
		}
		a = s.newChannel(c, o.tech, target, o.tech+"/"+target, stateDown, target, name, "from-internal", "s", o.channelID)
	}
	c.onEnd = append(c.onEnd, func() { s.originateResponse(o, a, reasonHangup) })
	s.execNext(a, "AppDial2", "(Outgoing Line)")
	for _, kv := range o.vars {
		s.varSet(a, kv[0], kv[1])
	}
	if o.cidNum != "" || o.cidName != "" {
		s.setCallerID(a, o.cidNum, o.cidName)
		s.setConnected(a, o.cidNum, o.cidName)
	}
	s.dialEvent("DialBegin", nil, a, "DialString", o.resource)
	ring := 2 * time.Second
	switch target {
	case "500":
		s.step(c, time.Second, func() {
			s.setState(a, stateBusy)
			s.dialEvent("DialEnd", nil, a, "DialStatus", "BUSY")
			c.dialStatus = "BUSY"
			s.originateResponse(o, a, reasonBusy)
			s.hangupAll(c, causeBusy)
		})
		return
	}
	s.step(c, 30*time.Millisecond, func() {
		s.setState(a, stateRinging)
		s.dialEvent("DialState", nil, a, "DialStatus", "RINGING")
		s.deviceState(a.device, "RINGING")
	})
	if target == "600" {
		s.step(c, o.timeout, func() {
			s.dialEvent("DialEnd", nil, a, "DialStatus", "NOANSWER")
			c.dialStatus = "NOANSWER"
			s.originateResponse(o, a, reasonNoAnswer)
			s.hangupAll(c, causeNoAnswer)
		})
		return
	}
	s.step(c, ring, func() {
		s.setState(a, stateUp)
		if two != nil {
			s.setState(two, stateUp)
		}
		c.answered = s.clock.Now()
		s.originateResponse(o, a, reasonAnswered)
		s.dialEvent("DialEnd", nil, a, "DialStatus", "ANSWER")
		s.deviceState(a.device, "INUSE")
		if o.app != "" {
			s.runApplication(c, a, o.app, o.data)
			return
		}
		gotoExten(a, o.context, o.exten)
		s.runExten(c, a, o.exten)
	})
}

// newLocalPair creates the ;1 and ;2 halves of a Local channel and their LocalBridge.
func (s *Sim) newLocalPair(c *call, o *originate) (one, two *channel) {
	seq := s.techSeq["Local"]
	base := fmt.Sprintf("Local/%s-%08x", o.resource, seq)
	ctx, ext := "default", o.resource
	if e, cx, ok := strings.Cut(o.resource, "@"); ok {
		ext, ctx = e, cx
	}
	s.techSeq["Local"] = seq + 1
	one = s.createChannel(c, base+";1", "Local", "", stateDown, "", "", ctx, ext, o.channelID)
	two = s.createChannel(c, base+";2", "Local", "", stateRing, "", "", ctx, ext, o.otherID)
	m := eventHead("LocalBridge", classCall, 34)
	snapshot(m, "LocalOne", one)
	snapshot(m, "LocalTwo", two)
	m.Add("Context", ctx)
	m.Add("Exten", ext)
	m.Add("LocalOptimization", "Yes")
	s.broadcast(classCall, m)
	return one, two
}

// runApplication runs an Originate's Application on the answered channel, then hangs up.
func (s *Sim) runApplication(c *call, a *channel, app, data string) {
	s.execNext(a, app, data)
	d := 5 * time.Second
	if strings.EqualFold(app, "Wait") {
		if secs, err := strconv.ParseFloat(data, 64); err == nil && secs >= 0 {
			d = time.Duration(secs * float64(time.Second))
		}
	}
	s.step(c, d, func() { s.hangupAll(c, causeNormal) })
}

// runExten plays the simulated dialplan for exten on an answered originated channel: a known
// phone is dialled, a long number goes out through the trunk, anything else answers, waits 2 s
// and hangs up (like exten 100 of the recording's dialplan).
func (s *Sim) runExten(c *call, a *channel, exten string) {
	s.execNext(a, "NoOp", "click-to-call")
	var dest *leg
	for _, p := range phones {
		if p.ext == exten {
			l := phoneLeg(p)
			dest = &l
		}
	}
	if dest == nil && len(strings.TrimPrefix(exten, "+")) >= 5 && isDigits(strings.TrimPrefix(exten, "+")) {
		dest = &leg{tech: "PJSIP", resource: "trunk", dialString: exten + "@trunk", cidNum: exten}
	}
	if dest == nil {
		s.execNext(a, "Answer", "")
		s.execNext(a, "Wait", "2")
		s.step(c, 2*time.Second, func() {
			s.execNext(a, "Hangup", "")
			s.hangupAll(c, causeNormal)
		})
		return
	}
	s.execNext(a, "Dial", dest.dialString+",30")
	out := outAnswer
	if r := s.origRng.Float64(); r >= 0.8 {
		out = outNoAnswer
		if r < 0.9 {
			out = outBusy
		}
	}
	ring := time.Duration(1+s.origRng.IntN(5)) * time.Second
	talk := time.Duration(5+s.origRng.IntN(60)) * time.Second
	c.dialStatus = ""
	s.dial(c, a, *dest, out, ring, talk, s.origRng.IntN(2) == 0, false)
}

// hangupAll hangs up every live channel of a call (first soft, the rest as their peer left).
func (s *Sim) hangupAll(c *call, cause int) {
	first := true
	for _, ch := range append([]*channel(nil), c.channels...) {
		if ch.gone {
			continue
		}
		s.hangup(ch, cause, first)
		first = false
	}
}

func (s *Sim) hangupAction(msg *ami.Message, aid string) []*ami.Message {
	name := msg.Get("Channel")
	if name == "" {
		return []*ami.Message{errorResponse(aid, "No channel specified")}
	}
	cause := causeNormal
	if v := msg.Get("Cause"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return []*ami.Message{errorResponse(aid, "Invalid cause")}
		}
		cause = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var targets []*channel
	regex := len(name) > 2 && strings.HasPrefix(name, "/") && strings.HasSuffix(name, "/")
	if regex {
		re, err := regexp.Compile(name[1 : len(name)-1])
		if err != nil {
			return []*ami.Message{errorResponse(aid, "Invalid regex")}
		}
		for _, ch := range s.sortedChannels() {
			if re.MatchString(ch.name) {
				targets = append(targets, ch)
			}
		}
	} else if ch, ok := s.channels[name]; ok {
		targets = append(targets, ch)
	}
	if len(targets) == 0 && !regex {
		return []*ami.Message{errorResponse(aid, "No such channel")}
	}
	for _, ch := range targets {
		s.hangupFrom(ch, cause)
	}
	if regex {
		return []*ami.Message{response(aid, "Success", "Message", fmt.Sprintf("%d channels hung up.", len(targets)))}
	}
	return []*ami.Message{response(aid, "Success", "Message", "Channel Hungup")}
}

// hangupFrom hangs up ch at an action's request, then the rest of its call follows.
func (s *Sim) hangupFrom(ch *channel, cause int) {
	if ch.gone {
		return
	}
	s.hangup(ch, cause, true)
	for _, other := range append([]*channel(nil), ch.call.channels...) {
		if !other.gone {
			s.hangup(other, cause, false)
		}
	}
}

// sortedChannels lists the live channels newest first (the order the recordings show).
func (s *Sim) sortedChannels() []*channel {
	out := make([]*channel, 0, len(s.channels))
	for _, ch := range s.channels {
		out = append(out, ch)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].created.Equal(out[j].created) {
			return out[i].created.After(out[j].created)
		}
		return out[i].name > out[j].name
	})
	return out
}

func hms(d time.Duration) string {
	sec := int(d.Seconds())
	return fmt.Sprintf("%02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
}

func (s *Sim) coreShowChannels(aid string) []*ami.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	out := []*ami.Message{response(aid, "Success", "EventList", "start", "Message", "Channels will follow")}
	chans := s.sortedChannels()
	for _, ch := range chans {
		m := &ami.Message{}
		m.Add("Event", "CoreShowChannel")
		if aid != "" {
			m.Add("ActionID", aid)
		}
		snapshot(m, "", ch)
		m.Add("Application", ch.app)
		m.Add("ApplicationData", ch.appData)
		m.Add("Duration", hms(now.Sub(ch.created)))
		bridgeID := ""
		if ch.bridge != nil {
			bridgeID = ch.bridge.id
		}
		m.Add("BridgeId", bridgeID)
		out = append(out, m)
	}
	out = append(out, listComplete("CoreShowChannelsComplete", aid, len(chans)))
	return out
}

func listComplete(event, aid string, n int, extra ...string) *ami.Message {
	m := ami.NewMessage("Event", event)
	if aid != "" {
		m.Add("ActionID", aid)
	}
	m.Add("EventList", "Complete")
	m.Add("ListItems", strconv.Itoa(n))
	for i := 0; i+1 < len(extra); i += 2 {
		m.Add(extra[i], extra[i+1])
	}
	return m
}

func (s *Sim) statusAction(msg *ami.Message, aid string) []*ami.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	chans := s.sortedChannels()
	if name := msg.Get("Channel"); name != "" {
		ch, ok := s.channels[name]
		if !ok {
			return []*ami.Message{errorResponse(aid, "No such channel")}
		}
		chans = []*channel{ch}
	}
	now := s.clock.Now()
	out := []*ami.Message{response(aid, "Success", "EventList", "start", "Message", "Channel status will follow")}
	for _, ch := range chans {
		m := ami.NewMessage("Event", "Status", "Privilege", "Call")
		snapshot(m, "", ch)
		bridgeID := ""
		if ch.bridge != nil {
			bridgeID = ch.bridge.id
		}
		for _, kv := range [][2]string{
			{"Type", ch.tech}, {"DNID", ch.dnid}, {"EffectiveConnectedLineNum", ch.connNum},
			{"EffectiveConnectedLineName", ch.connName}, {"TimeToHangup", "0"}, {"BridgeID", bridgeID},
			{"Application", ch.app}, {"Data", ch.appData}, {"Nativeformats", "(ulaw)"}, {"Readformat", "ulaw"},
			{"Readtrans", ""}, {"Writeformat", "ulaw"}, {"Writetrans", ""}, {"Callgroup", "0"}, {"Pickupgroup", "0"},
			{"Seconds", strconv.Itoa(int(now.Sub(ch.created).Seconds()))},
		} {
			m.Add(kv[0], kv[1])
		}
		if aid != "" {
			m.Add("ActionID", aid)
		}
		out = append(out, m)
	}
	out = append(out, listComplete("StatusComplete", aid, len(chans), "Items", strconv.Itoa(len(chans))))
	return out
}

// command answers the few CLI commands the simulator knows, in the Asterisk 14+ format: one
// Output header per line.
func (s *Sim) command(cmdline, aid string) *ami.Message {
	words := strings.Fields(cmdline)
	norm := strings.ToLower(strings.Join(words, " "))
	var lines []string
	switch norm {
	case "core show version":
		lines = []string{fmt.Sprintf("Asterisk %s built by odoopbx-sim @ sim on a x86_64 running Linux on %s",
			AsteriskVersion, s.started.UTC().Format("2006-01-02 15:04:05 UTC"))}
	case "core show uptime":
		up := uptimeText(s.clock.Now().Sub(s.started))
		lines = []string{"System uptime: " + up, "Last reload: " + up}
	case "core show uptime seconds":
		up := strconv.Itoa(int(s.clock.Now().Sub(s.started).Seconds()))
		lines = []string{"System uptime: " + up, "Last reload: " + up}
	case "core show channels":
		lines = s.showChannels()
	default:
		best := words
		if len(best) > 2 {
			best = best[:2]
		}
		m := response(aid, "Error", "Message", "Command output follows")
		m.Add("Output", fmt.Sprintf("No such command '%s' (type 'core show help %s' for other possible commands)",
			strings.Join(words, " "), strings.Join(best, " ")))
		return m
	}
	m := response(aid, "Success", "Message", "Command output follows")
	for _, l := range lines {
		m.Add("Output", l)
	}
	return m
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// uptimeText formats like Asterisk's CLI: "1 hour, 2 minutes, 5 seconds".
func uptimeText(d time.Duration) string {
	sec := int(d.Seconds())
	var parts []string
	if days := sec / 86400; days > 0 {
		parts = append(parts, plural(days, "day", "days"))
	}
	if h := sec / 3600 % 24; h > 0 {
		parts = append(parts, plural(h, "hour", "hours"))
	}
	if m := sec / 60 % 60; m > 0 {
		parts = append(parts, plural(m, "minute", "minutes"))
	}
	if s := sec % 60; s > 0 || len(parts) == 0 {
		parts = append(parts, plural(s, "second", "seconds"))
	}
	return strings.Join(parts, ", ")
}

func (s *Sim) showChannels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	const format = "%-64.64s %-32.32s %-7.7s %-30.30s"
	lines := []string{fmt.Sprintf(format, "Channel", "Location", "State", "Application(Data)")}
	for _, ch := range s.sortedChannels() {
		loc := fmt.Sprintf("%s@%s:%d", ch.exten, ch.context, ch.priority)
		app := "(None)"
		if ch.app != "" {
			app = fmt.Sprintf("%s(%s)", ch.app, ch.appData)
		}
		lines = append(lines, fmt.Sprintf(format, ch.name, loc, stateDesc(ch.state), app))
	}
	return append(lines,
		plural(len(s.channels), "active channel", "active channels"),
		plural(len(s.calls), "active call", "active calls"),
		plural(s.processed, "call processed", "calls processed"))
}

func (s *Sim) dbAction(name string, msg *ami.Message, aid string) []*ami.Message {
	family, key, val := msg.Get("Family"), msg.Get("Key"), msg.Get("Val")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch name {
	case "dbput":
		if family == "" {
			return []*ami.Message{errorResponse(aid, "No family specified")}
		}
		if key == "" {
			return []*ami.Message{errorResponse(aid, "No key specified")}
		}
		s.db[family+"/"+key] = val
		return []*ami.Message{response(aid, "Success", "Message", "Updated database successfully")}
	case "dbget":
		if family == "" {
			return []*ami.Message{errorResponse(aid, "No family specified.")}
		}
		if key == "" {
			return []*ami.Message{errorResponse(aid, "No key specified.")}
		}
		v, ok := s.db[family+"/"+key]
		if !ok {
			return []*ami.Message{errorResponse(aid, "Database entry not found")}
		}
		item := ami.NewMessage("Event", "DBGetResponse", "Family", family, "Key", key, "Val", v)
		if aid != "" {
			item.Add("ActionID", aid)
		}
		return []*ami.Message{
			response(aid, "Success", "EventList", "start", "Message", "Result will follow"),
			item, listComplete("DBGetComplete", aid, 1),
		}
	case "dbgettree":
		prefix := strings.Trim(family+"/"+key, "/")
		keys := s.dbKeys(prefix)
		if len(keys) == 0 {
			return []*ami.Message{errorResponse(aid, "Database entry not found")}
		}
		out := []*ami.Message{response(aid, "Success", "EventList", "start", "Message", "Result will follow")}
		for _, k := range keys {
			item := ami.NewMessage("Event", "DBGetTreeResponse", "Key", "/"+k, "Val", s.db[k])
			if aid != "" {
				item.Add("ActionID", aid)
			}
			out = append(out, item)
		}
		return append(out, listComplete("DBGetTreeComplete", aid, len(keys)))
	case "dbdel":
		if family == "" {
			return []*ami.Message{errorResponse(aid, "No family specified.")}
		}
		if key == "" {
			return []*ami.Message{errorResponse(aid, "No key specified.")}
		}
		if _, ok := s.db[family+"/"+key]; !ok {
			return []*ami.Message{errorResponse(aid, "Database entry could not be deleted")}
		}
		delete(s.db, family+"/"+key)
		return []*ami.Message{response(aid, "Success", "Message", "Key deleted successfully")}
	default: // dbdeltree
		if family == "" {
			return []*ami.Message{errorResponse(aid, "No family specified.")}
		}
		keys := s.dbKeys(strings.Trim(family+"/"+key, "/"))
		if len(keys) == 0 {
			return []*ami.Message{errorResponse(aid, "Database entry not found")}
		}
		for _, k := range keys {
			delete(s.db, k)
		}
		return []*ami.Message{response(aid, "Success", "Message", "Key tree deleted successfully")}
	}
}

func (s *Sim) dbKeys(prefix string) []string {
	var keys []string
	for k := range s.db {
		if prefix == "" || k == prefix || strings.HasPrefix(k, prefix+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
