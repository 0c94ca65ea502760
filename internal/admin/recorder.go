package admin

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Recorder turns the AMI event stream into what the status page shows: the last events and the
// calls in progress (channels grouped by Linkedid, from Newchannel to the last Hangup). Feed it
// every event with Observe; it is safe for concurrent use and bounded in memory.
type Recorder struct {
	mu       sync.Mutex
	events   []Event // ring, oldest overwritten
	next     int
	full     bool
	calls    map[string]*trackedCall
	maxCalls int
	now      func() time.Time
}

type trackedCall struct {
	call     Call
	channels map[string]int // uniqueid -> ChannelState
}

// NewRecorder keeps the last keepEvents events (default 50) and at most maxCalls calls (default
// 10000; the oldest is forgotten when a Hangup was missed).
func NewRecorder(keepEvents, maxCalls int) *Recorder {
	if keepEvents <= 0 {
		keepEvents = 50
	}
	if maxCalls <= 0 {
		maxCalls = 10000
	}
	return &Recorder{events: make([]Event, keepEvents), calls: map[string]*trackedCall{}, maxCalls: maxCalls, now: time.Now}
}

// Observe records one AMI event. Responses and list items (no Privilege) are ignored.
func (r *Recorder) Observe(m *ami.Message) {
	if m == nil || m.Kind() != ami.KindEvent || !m.Has("Privilege") {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[r.next] = Event{Time: now, Name: m.Event(), Summary: summarize(m), Uniqueid: m.Get("Uniqueid")}
	r.next = (r.next + 1) % len(r.events)
	if r.next == 0 {
		r.full = true
	}
	r.track(m, now)
}

// Events returns the recorded events, newest first.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.events)
	}
	out := make([]Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.events[(r.next-i+len(r.events))%len(r.events)])
	}
	return out
}

// Calls returns the calls in progress, oldest first.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Call, 0, len(r.calls))
	for _, tc := range r.calls {
		c := tc.call
		c.Channels = len(tc.channels)
		c.State = callState(tc.channels)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Linkedid < out[j].Linkedid
	})
	return out
}

func (r *Recorder) track(m *ami.Message, now time.Time) {
	uid, link := m.Get("Uniqueid"), m.Get("Linkedid")
	if uid == "" || link == "" {
		return
	}
	state, _ := strconv.Atoi(m.Get("ChannelState"))
	switch m.Event() {
	case "Newchannel":
		tc := r.calls[link]
		if tc == nil {
			if len(r.calls) >= r.maxCalls {
				r.forgetOldest()
			}
			tc = &trackedCall{channels: map[string]int{}, call: Call{
				Linkedid: link, Started: now, From: m.Get("CallerIDNum"), To: m.Get("Exten"),
				Direction: direction(m.Get("Context"), m.Get("Exten")),
			}}
			r.calls[link] = tc
		}
		tc.channels[uid] = state
	case "Newstate":
		if tc := r.calls[link]; tc != nil {
			if _, ok := tc.channels[uid]; ok {
				tc.channels[uid] = state
			}
		}
	case "Hangup":
		if tc := r.calls[link]; tc != nil {
			delete(tc.channels, uid)
			if len(tc.channels) == 0 {
				delete(r.calls, link)
			}
		}
	}
}

func (r *Recorder) forgetOldest() {
	var oldest *trackedCall
	for _, tc := range r.calls {
		if oldest == nil || tc.call.Started.Before(oldest.call.Started) {
			oldest = tc
		}
	}
	if oldest != nil {
		delete(r.calls, oldest.call.Linkedid)
	}
}

// callState is "up" once a channel is answered, "ringing" while one rings, else "dialing".
func callState(channels map[string]int) string {
	ringing := false
	for _, st := range channels {
		switch st {
		case 6:
			return "up"
		case 4, 5:
			ringing = true
		}
	}
	if ringing {
		return "ringing"
	}
	return "dialing"
}

// direction guesses from the first channel's dialplan position; the authoritative direction is
// decided in Odoo (contract §9.4), this is only for the page.
func direction(context, exten string) string {
	ctx := strings.ToLower(context)
	switch {
	case strings.Contains(ctx, "trunk") || strings.Contains(ctx, "pstn") || strings.Contains(ctx, "incoming") || strings.Contains(ctx, "from-external"):
		return "inbound"
	case strings.HasPrefix(exten, "+") || len(exten) > 5:
		return "outbound"
	default:
		return "internal"
	}
}

// summarize writes the one-line description of an event the page lists.
func summarize(m *ami.Message) string {
	ch := m.Get("Channel")
	switch m.Event() {
	case "Newchannel":
		return strings.TrimSpace(ch + " from " + m.Get("CallerIDNum") + " to " + m.Get("Exten"))
	case "Newstate":
		return ch + " " + m.Get("ChannelStateDesc")
	case "Hangup":
		return ch + " " + m.Get("Cause-txt") + " (" + m.Get("Cause") + ")"
	case "DialBegin":
		return strings.TrimSpace(ch+" → "+m.Get("DestChannel")) + " " + m.Get("DialString")
	case "DialEnd", "DialState":
		return m.Get("DestChannel") + " " + m.Get("DialStatus")
	case "OriginateResponse":
		return m.Get("Response") + " reason " + m.Get("Reason") + " " + m.Get("Channel")
	case "VarSet":
		return ch + " " + m.Get("Variable") + "=" + m.Get("Value")
	case "Newexten":
		return ch + " " + m.Get("Application") + "(" + m.Get("AppData") + ")"
	case "BridgeEnter", "BridgeLeave":
		return ch + " " + m.Get("BridgeUniqueid")
	case "Cdr":
		return m.Get("Source") + " → " + m.Get("Destination") + " " + m.Get("Disposition")
	case "CEL":
		return m.Get("EventName") + " " + m.Get("Channel")
	case "DeviceStateChange":
		return m.Get("Device") + " " + m.Get("State")
	}
	if m.Has("Service") { // security events
		return strings.TrimSpace(m.Get("Service") + " " + m.Get("AccountID") + " " + m.Get("RemoteAddress"))
	}
	return ch
}
