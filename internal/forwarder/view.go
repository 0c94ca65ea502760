package forwarder

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Limits of the in-memory view for the status page.
const (
	DefaultRecentEvents = 100
	maxActiveCalls      = 10_000
	callMaxIdle         = 24 * time.Hour
)

// Outcomes of a received event, as the status page shows them.
const (
	OutcomeNoHandler = "no_handler" // no row matched (or none named the event)
	OutcomeEnqueued  = "enqueued"   // handlers matched and their items are spooled
	OutcomeRefused   = "refused"    // the spool refused the items: lost, counted, logged
)

// RecentEvent is one received event, for the status page.
type RecentEvent struct {
	Time time.Time `json:"time"`
	Name string    `json:"name"`
	Lane string    `json:"lane"`
	// AgentEventID is empty for an event that no map row names (it is never built).
	AgentEventID    string `json:"agent_event_id,omitempty"`
	Channel         string `json:"channel,omitempty"`
	Uniqueid        string `json:"uniqueid,omitempty"`
	Handlers        int    `json:"handlers"`
	ConditionErrors int    `json:"condition_errors,omitempty"`
	Outcome         string `json:"outcome"`
}

// ActiveCall is one call in progress as the events show it.
type ActiveCall struct {
	Linkedid   string    `json:"linkedid"`
	FirstEvent time.Time `json:"first_event"`
	LastEvent  time.Time `json:"last_event"`
	LastName   string    `json:"last_event_name"`
	CallerNum  string    `json:"caller_num,omitempty"`
	CallerName string    `json:"caller_name,omitempty"`
	// Exten is what the primary channel dialled; Direction is a guess from its dialplan context
	// and number (inbound, outbound, internal), for the status page only: Odoo decides for real.
	Exten     string `json:"exten,omitempty"`
	Direction string `json:"direction,omitempty"`
	// State is the ChannelStateDesc of the call's primary channel (Uniqueid == Linkedid).
	State    string `json:"state,omitempty"`
	Channels int    `json:"channels"`
}

type callState struct {
	ActiveCall
	live map[string]bool
}

// view keeps the last events and the calls in progress. It is small and bounded, and never on
// the delivery path's critical section for long.
type view struct {
	mu     sync.Mutex
	recent []RecentEvent // ring
	next   int
	filled bool
	calls  map[string]*callState
}

func newView(recent int) *view {
	if recent <= 0 {
		recent = DefaultRecentEvents
	}
	return &view{recent: make([]RecentEvent, recent), calls: map[string]*callState{}}
}

// record adds an event and returns its slot, so the outcome can be corrected after Enqueue.
func (v *view) record(e RecentEvent) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	slot := v.next
	v.recent[slot] = e
	v.next = (v.next + 1) % len(v.recent)
	if v.next == 0 {
		v.filled = true
	}
	return slot
}

// setOutcome corrects the outcome of the event in slot, if it is still the one with that id.
func (v *view) setOutcome(slot int, agentEventID, outcome string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.recent[slot].AgentEventID == agentEventID {
		v.recent[slot].Outcome = outcome
	}
}

// track updates the call of a channel event. lane is the call's Linkedid (the caller passes the
// lane only when it is one).
func (v *view) track(msg *ami.Message, name, lane string, now time.Time) {
	uid := msg.Get("Uniqueid")
	if !usable(uid) {
		uid = msg.Get("DestUniqueid")
	}
	if !usable(uid) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.calls[lane]
	hangup := strings.EqualFold(name, "Hangup")
	if c == nil {
		if hangup || strings.EqualFold(name, "Cdr") || strings.EqualFold(name, "CEL") {
			return // the end of a call we never saw begin, or its accounting afterwards
		}
		if len(v.calls) >= maxActiveCalls {
			v.evictOldest()
		}
		c = &callState{ActiveCall: ActiveCall{Linkedid: strings.Clone(lane), FirstEvent: now}, live: map[string]bool{}}
		v.calls[c.Linkedid] = c
	}
	c.LastEvent = now
	c.LastName = name
	if hangup {
		delete(c.live, uid)
		if len(c.live) == 0 {
			delete(v.calls, lane)
			return
		}
	} else if !c.live[uid] && !strings.EqualFold(name, "Cdr") && !strings.EqualFold(name, "CEL") {
		c.live[strings.Clone(uid)] = true
	}
	c.Channels = len(c.live)
	if uid == lane {
		if n := msg.Get("CallerIDNum"); usable(n) && n != c.CallerNum {
			c.CallerNum = strings.Clone(n)
		}
		if n := msg.Get("CallerIDName"); usable(n) && n != c.CallerName {
			c.CallerName = strings.Clone(n)
		}
		if s := msg.Get("ChannelStateDesc"); s != "" && s != c.State {
			c.State = strings.Clone(s)
		}
		if strings.EqualFold(name, "Newchannel") {
			c.Exten = strings.Clone(msg.Get("Exten"))
			c.Direction = direction(msg.Get("Context"), c.Exten)
		}
	}
}

// direction guesses a call's direction from the primary channel's context and dialled number.
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

func (v *view) evictOldest() {
	var oldest *callState
	for _, c := range v.calls {
		if oldest == nil || c.LastEvent.Before(oldest.LastEvent) {
			oldest = c
		}
	}
	if oldest != nil {
		delete(v.calls, oldest.Linkedid)
	}
}

// keepOnly ends the calls that have no channel in live (after a reconnect) and the idle ones.
func (v *view) keepOnly(live map[string]bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, c := range v.calls {
		for uid := range c.live {
			if !live[uid] {
				delete(c.live, uid)
			}
		}
		c.Channels = len(c.live)
		if len(c.live) == 0 {
			delete(v.calls, id)
		}
	}
}

func (v *view) sweep(now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, c := range v.calls {
		if now.Sub(c.LastEvent) > callMaxIdle {
			delete(v.calls, id)
		}
	}
}

func (v *view) recentEvents() []RecentEvent {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []RecentEvent
	if v.filled {
		out = append(out, v.recent[v.next:]...)
	}
	out = append(out, v.recent[:v.next]...)
	return out
}

func (v *view) activeCalls() []ActiveCall {
	v.mu.Lock()
	out := make([]ActiveCall, 0, len(v.calls))
	for _, c := range v.calls {
		out = append(out, c.ActiveCall)
	}
	v.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].FirstEvent.Before(out[j].FirstEvent) })
	return out
}

func (v *view) callCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.calls)
}
