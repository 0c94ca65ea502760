package forwarder

import (
	"strings"
	"sync"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Lane-table lifetimes.
const (
	// hangupLinger keeps a channel's Uniqueid → Linkedid entry after its Hangup, for the Cdr and
	// CEL events that follow it (contract §3.4).
	hangupLinger = 60 * time.Second
	// channelMaxIdle drops an entry whose channel has been silent this long: its Hangup was lost.
	channelMaxIdle = 24 * time.Hour
	// originateNoteTTL drops an Originate note whose OriginateResponse never came (the correlator
	// gives up after at most 180 s).
	originateNoteTTL = 10 * time.Minute
)

// usable reports a lane value: not empty and not Asterisk's placeholder.
func usable(v string) bool { return v != "" && v != "<unknown>" }

type channelEntry struct {
	linkedid string
	lastSeen time.Time
	expires  time.Time // zero while the channel lives
}

type originateNote struct {
	channelID string
	noted     time.Time
}

// laneTable computes the delivery lane of events (contract §3.4) and remembers what it needs for
// that: each channel's Linkedid, from Newchannel and every event that carries both ids, and the
// ChannelId of each Originate the agent sent. The consumer goroutine, the reconnect hook and job
// goroutines (NoteOriginate) use it, hence the mutex.
type laneTable struct {
	mu         sync.Mutex
	channels   map[string]*channelEntry
	originates map[string]originateNote
}

func newLaneTable() *laneTable {
	return &laneTable{channels: map[string]*channelEntry{}, originates: map[string]originateNote{}}
}

// laneOf records what msg teaches about channels and returns its lane: (1) Linkedid, (2)
// DestLinkedid, (3) Uniqueid then DestUniqueid mapped to their Linkedid (or as they are), (4) for
// OriginateResponse the ChannelId noted for its ActionID, (5) event:<Name>. Header lookups are
// case-insensitive (CEL and Cdr spell UniqueID/LinkedID).
func (t *laneTable) laneOf(msg *ami.Message, name string, now time.Time) string {
	uid, lid := msg.Get("Uniqueid"), msg.Get("Linkedid")
	destUID, destLID := msg.Get("DestUniqueid"), msg.Get("DestLinkedid")
	isOriginateResponse := strings.EqualFold(name, "OriginateResponse")
	var actionID string
	if isOriginateResponse {
		actionID = msg.ActionID()
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if usable(uid) && usable(lid) {
		t.learn(uid, lid, now)
	}
	if usable(destUID) && usable(destLID) {
		t.learn(destUID, destLID, now)
	}
	if strings.EqualFold(name, "Hangup") && usable(uid) {
		e := t.channels[uid]
		if e == nil {
			linked := lid
			if !usable(linked) {
				linked = uid
			}
			e = &channelEntry{linkedid: strings.Clone(linked)}
			t.channels[strings.Clone(uid)] = e
		}
		e.lastSeen = now
		e.expires = now.Add(hangupLinger)
	}
	var note originateNote
	var noted bool
	if isOriginateResponse && actionID != "" {
		note, noted = t.originates[actionID]
		delete(t.originates, actionID)
	}

	switch {
	case usable(lid):
		return lid
	case usable(destLID):
		return destLID
	case usable(uid):
		return t.resolve(uid)
	case usable(destUID):
		return t.resolve(destUID)
	case noted && usable(note.channelID):
		return t.resolve(note.channelID)
	}
	return "event:" + name
}

// learn records uid → lid. The strings are cloned: they may point into a whole message's buffer,
// which the table must not keep alive.
func (t *laneTable) learn(uid, lid string, now time.Time) {
	if e := t.channels[uid]; e != nil {
		if e.linkedid != lid {
			e.linkedid = strings.Clone(lid)
		}
		e.lastSeen = now
		return
	}
	t.channels[strings.Clone(uid)] = &channelEntry{linkedid: strings.Clone(lid), lastSeen: now}
}

// resolve maps a channel id to its call's Linkedid when known.
func (t *laneTable) resolve(uid string) string {
	if e := t.channels[uid]; e != nil {
		return e.linkedid
	}
	return uid
}

// noteOriginate remembers the ChannelId of an Originate sent with actionID.
func (t *laneTable) noteOriginate(actionID, channelID string, now time.Time) {
	if actionID == "" || !usable(channelID) {
		return
	}
	t.mu.Lock()
	t.originates[strings.Clone(actionID)] = originateNote{channelID: strings.Clone(channelID), noted: now}
	t.mu.Unlock()
}

// sweep drops expired entries.
func (t *laneTable) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for uid, e := range t.channels {
		if (!e.expires.IsZero() && now.After(e.expires)) || now.Sub(e.lastSeen) > channelMaxIdle {
			delete(t.channels, uid)
		}
	}
	for id, n := range t.originates {
		if now.Sub(n.noted) > originateNoteTTL {
			delete(t.originates, id)
		}
	}
}

// keepOnly starts the hangup linger of every channel not in live: after a reconnect, channels
// Asterisk no longer lists have ended while the session was down.
func (t *laneTable) keepOnly(live map[string]bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for uid, e := range t.channels {
		if !live[uid] && e.expires.IsZero() {
			e.expires = now.Add(hangupLinger)
		}
	}
}

func (t *laneTable) size() (channels, originates int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.channels), len(t.originates)
}
