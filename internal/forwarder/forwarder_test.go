package forwarder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/eventmap"
)

// catchAllRows returns one always-true row per distinct event name of msgs, so every event
// produces exactly one item and its lane can be checked.
func catchAllRows(msgs []*ami.Message) string {
	seen := map[string]bool{}
	var rows []string
	for _, m := range msgs {
		if name := m.Event(); name != "" && !seen[name] {
			seen[name] = true
			rows = append(rows, fmt.Sprintf(`{"id": %d, "name": %q, "source": "AMI", "model": "m", "method": "on_%s", "condition": false}`, len(rows)+1, name, strings.ToLower(name)))
		}
	}
	return "[" + strings.Join(rows, ",") + "]"
}

// carriesChannel reports an event that belongs to a call: it names a channel id.
func carriesChannel(m *ami.Message) bool {
	for _, h := range []string{"Uniqueid", "Linkedid", "DestUniqueid", "DestLinkedid"} {
		if usable(m.Get(h)) {
			return true
		}
	}
	return false
}

// Every event of one recorded call lands in the call's lane, whatever its family spells
// (Uniqueid/Linkedid, UniqueID/LinkedID in CEL, UniqueID alone in Cdr, Dest* alone in the
// originate's DialBegin); the events about no channel get event:<Name>.
func TestEveryEventOfACallSharesItsLane(t *testing.T) {
	cases := []struct {
		fixture, linkedid string
	}{
		{"02-", "1795627163.0"},
		{"05c-", "1795627331.19"},
		{"05d-", "1795627340.20"},
		{"07-", "1795627399.27"},
		{"08-", "1795627406.31"},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			events := amitest.FixtureEvents(t, c.fixture)
			enq := &recordingEnqueuer{}
			f := newTestForwarder(t, loadMap(t, catchAllRows(events)), enq, &fixedClock{now: epoch})
			f.HandleBatch(context.Background(), events)
			items, _ := enq.snapshot()
			if len(items) != len(events) {
				t.Fatalf("%d items for %d events", len(items), len(events))
			}
			inCall := 0
			for i, m := range events {
				want := "event:" + m.Event()
				if carriesChannel(m) {
					want = c.linkedid
					inCall++
				}
				if items[i].Lane != want {
					t.Errorf("event %d %s (Uniqueid %q): lane %q, want %q", i, m.Event(), m.Get("Uniqueid"), items[i].Lane, want)
				}
				if items[i].Origin != "event:"+m.Event() || items[i].Method != "on_"+strings.ToLower(m.Event()) {
					t.Errorf("item %d: %+v", i, items[i])
				}
			}
			if inCall < 10 {
				t.Fatalf("only %d call events in %s", inCall, c.fixture)
			}
		})
	}
}

// A Cdr carries only UniqueID: it reaches the call's lane through the Newchannel table.
func TestCdrOfSecondaryChannelMapsThroughTheTable(t *testing.T) {
	clock := &fixedClock{now: epoch}
	enq := &recordingEnqueuer{}
	f := newTestForwarder(t, loadMap(t, catchAllRows([]*ami.Message{ami.NewMessage("Event", "Cdr")})), enq, clock)
	ctx := context.Background()
	f.HandleBatch(ctx, []*ami.Message{
		ami.NewMessage("Event", "Newchannel", "Channel", "PJSIP/102-1", "Uniqueid", "1.2", "Linkedid", "1.1"),
		ami.NewMessage("Event", "Hangup", "Channel", "PJSIP/102-1", "Uniqueid", "1.2", "Linkedid", "1.1"),
	})
	f.HandleBatch(ctx, []*ami.Message{ami.NewMessage("Event", "Cdr", "UniqueID", "1.2")})
	clock.Advance(59 * time.Second)
	f.lanes.sweep(clock.Now())
	f.HandleBatch(ctx, []*ami.Message{ami.NewMessage("Event", "Cdr", "UniqueID", "1.2")})
	// Sixty seconds after the Hangup the entry expires: the id is used as it is.
	clock.Advance(2 * time.Second)
	f.lanes.sweep(clock.Now())
	f.HandleBatch(ctx, []*ami.Message{ami.NewMessage("Event", "Cdr", "UniqueID", "1.2")})
	items, _ := enq.snapshot()
	var lanes []string
	for _, it := range items {
		lanes = append(lanes, it.Lane)
	}
	if want := []string{"1.1", "1.1", "1.2"}; !reflect.DeepEqual(lanes, want) {
		t.Fatalf("lanes %v, want %v", lanes, want)
	}
	if n, _ := f.lanes.size(); n != 0 {
		t.Fatalf("%d channels left in the table", n)
	}
}

func TestOriginateResponseLanes(t *testing.T) {
	events := amitest.FixtureEvents(t, "04d-")
	enq := &recordingEnqueuer{}
	f := newTestForwarder(t, loadMap(t, `[{"id": 1, "name": "OriginateResponse", "source": "AMI", "model": "m", "method": "x", "condition": false}]`), enq, &fixedClock{now: epoch})
	// The job code notes the ChannelId it gave each Originate. orig-noanswer is not noted.
	f.NoteOriginate("orig-fail-async", "odoo-fail-1")
	f.NoteOriginate("orig-busy", "odoo-busy-1")
	// A channel the table knows maps to its call's Linkedid.
	f.HandleBatch(context.Background(), []*ami.Message{ami.NewMessage("Event", "Newchannel", "Uniqueid", "odoo-busy-1", "Linkedid", "call-7")})
	f.HandleBatch(context.Background(), events)
	items, _ := enq.snapshot()
	got := map[string]string{}
	for _, it := range items {
		got[argsEvent(t, it)["ActionID"].(string)] = it.Lane
	}
	want := map[string]string{
		"orig-app":        "odoo-11111111-aaaa", // Success: its Uniqueid, mapped to its Linkedid
		"orig-fail-async": "odoo-fail-1",        // Uniqueid <unknown>: the noted ChannelId
		"orig-busy":       "call-7",             // the noted ChannelId, through the table
		"orig-noanswer":   "event:OriginateResponse",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lanes %v, want %v", got, want)
	}
	// Notes are used once.
	if _, notes := f.lanes.size(); notes != 0 {
		t.Fatalf("%d originate notes left", notes)
	}
}

// In 04d the success call (ChannelId odoo-11111111-aaaa) keeps one lane, OriginateResponse included.
func TestOriginateCallWithChannelIdSharesOneLane(t *testing.T) {
	events := amitest.FixtureEvents(t, "04d-")
	enq := &recordingEnqueuer{}
	f := newTestForwarder(t, loadMap(t, catchAllRows(events)), enq, &fixedClock{now: epoch})
	f.HandleBatch(context.Background(), events)
	items, _ := enq.snapshot()
	n := 0
	for i, m := range events {
		if m.Get("Linkedid") == "odoo-11111111-aaaa" || m.Get("DestLinkedid") == "odoo-11111111-aaaa" || m.ActionID() == "orig-app" {
			n++
			if items[i].Lane != "odoo-11111111-aaaa" {
				t.Errorf("%s: lane %q", m.Event(), items[i].Lane)
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d events of the call", n)
	}
}

func TestEnrichment(t *testing.T) {
	clock := &fixedClock{now: epoch}
	enq := &recordingEnqueuer{}
	m := loadMap(t, `[
	 {"id": 1, "name": "UserEvent", "source": "AMI", "model": "m", "method": "first", "condition": "event['SystemName'] == 'pbx1'", "sequence": 1},
	 {"id": 2, "name": "UserEvent", "source": "AMI", "model": "m", "method": "second", "condition": false, "sequence": 2},
	 {"id": 3, "name": "CEL", "source": "AMI", "model": "m", "method": "cel", "condition": "event['EventTime'] > 0 and event['AsteriskEventTime'] == '2026-11-25 17:19:23'"}
	]`)
	f := newTestForwarder(t, m, enq, clock)
	f.HandleBatch(context.Background(), []*ami.Message{
		// Asterisk's own SystemName differs: it is kept as AsteriskSystemName.
		ami.NewMessage("Event", "UserEvent", "Privilege", "user,all", "SystemName", "asterisk-a", "UserEvent", "X", "Timestamp", "1795627100.250000"),
		// A spoofed AgentEventId from the dialplan is kept aside, never used.
		ami.NewMessage("Event", "UserEvent", "UserEvent", "Y", "AgentEventId", "spoofed", "SystemName", "pbx1"),
		ami.NewMessage("Event", "CEL", "EventName", "CHAN_START", "EventTime", "2026-11-25 17:19:23", "UniqueID", "1.1", "LinkedID", "1.1"),
	})
	items, calls := enq.snapshot()
	if len(items) != 5 || calls != 1 {
		t.Fatalf("%d items in %d calls, want 5 in 1", len(items), calls)
	}
	e0, e1 := argsEvent(t, items[0]), argsEvent(t, items[1])
	if items[0].Method != "first" || items[1].Method != "second" || !reflect.DeepEqual(e0, e1) {
		t.Fatalf("the handlers of one event differ: %v / %v", e0, e1)
	}
	if e0["SystemName"] != "pbx1" || e0["AsteriskSystemName"] != "asterisk-a" || e0["EventTime"] != 1795627100.25 {
		t.Fatalf("event 0: %v", e0)
	}
	id, err := uuid.Parse(e0["AgentEventId"].(string))
	if err != nil || id.Version() != 7 {
		t.Fatalf("AgentEventId %v: %v, version %v", e0["AgentEventId"], err, id.Version())
	}
	e2 := argsEvent(t, items[2])
	if e2["AgentEventId"] == e0["AgentEventId"] || e2["AsteriskAgentEventId"] != "spoofed" || e2["AgentEventId"] == "spoofed" {
		t.Fatalf("event 1 ids: %v", e2)
	}
	if _, ok := e2["AsteriskSystemName"]; ok || e2["SystemName"] != "pbx1" {
		t.Fatalf("same SystemName must not be duplicated: %v", e2)
	}
	if want := float64(epoch.UnixMicro()) / 1e6; e2["EventTime"] != want {
		t.Fatalf("EventTime without Timestamp = %v, want the receive time %v", e2["EventTime"], want)
	}
	cel := argsEvent(t, items[4])
	if items[4].Method != "cel" || cel["AsteriskEventTime"] != "2026-11-25 17:19:23" {
		t.Fatalf("CEL: %v", cel)
	}
	// The keys keep Asterisk's order, then the enrichment.
	var keys []string
	dec := json.NewDecoder(strings.NewReader(string(items[4].Args[1 : len(items[4].Args)-1])))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if s, ok := tok.(string); ok && dec.More() {
			keys = append(keys, s)
			_, _ = dec.Token()
		}
	}
	if want := []string{"Event", "EventName", "AsteriskEventTime", "UniqueID", "LinkedID", "SystemName", "EventTime", "AgentEventId"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
}

func TestItemsCarryDelayAndOrder(t *testing.T) {
	clock := &fixedClock{now: epoch}
	enq := &recordingEnqueuer{}
	m := loadMap(t, `[
	 {"id": 4, "name": "Hangup", "source": "AMI", "model": "a", "method": "late", "condition": false, "delay": 99, "sequence": 20},
	 {"id": 3, "name": "Hangup", "source": "AMI", "model": "a", "method": "negative", "condition": false, "delay": -3, "sequence": 10},
	 {"id": 2, "name": "Hangup", "source": "AMI", "model": "a", "method": "half", "condition": false, "delay": 0.5, "sequence": 10}
	]`)
	f := newTestForwarder(t, m, enq, clock)
	f.HandleBatch(context.Background(), []*ami.Message{ami.NewMessage("Event", "Hangup", "Uniqueid", "1.1", "Linkedid", "1.1")})
	items, _ := enq.snapshot()
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%s+%s", it.Method, it.NotBefore.Sub(epoch)))
		if !it.Created.Equal(epoch) || it.Lane != "1.1" || it.Model != "a" {
			t.Errorf("item %+v", it)
		}
	}
	if want := []string{"half+500ms", "negative+0s", "late+30s"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("items %v, want %v", got, want)
	}
}

func TestRefusedItemsAreCountedAndNothingBlocks(t *testing.T) {
	enq := &recordingEnqueuer{err: errors.New("spool: full")}
	reg := prometheus.NewRegistry()
	f, err := New(Config{Map: loadMap(t, defaultRows), Enqueuer: enq, SystemName: "pbx1", Registerer: reg, Now: (&fixedClock{now: epoch}).Now})
	if err != nil {
		t.Fatal(err)
	}
	events := amitest.FixtureEvents(t, "05c-")
	f.HandleBatch(context.Background(), events)
	// 05c: FullyBooted, Newchannel, Newstate Up, Hangup of PJSIP/101.
	if got := f.refused.Load(); got != 4 {
		t.Fatalf("refused %d, want 4", got)
	}
	if got := metricValue(t, reg, "odoopbx_forwarder_items_refused_total"); got != 4 {
		t.Fatalf("metric %v", got)
	}
	refused := 0
	for _, e := range f.RecentEvents() {
		if e.Outcome == OutcomeRefused {
			refused++
		}
	}
	if refused != 4 {
		t.Fatalf("%d recent events marked refused", refused)
	}
	// Once the spool accepts again, delivery resumes.
	enq.mu.Lock()
	enq.err = nil
	enq.mu.Unlock()
	f.HandleBatch(context.Background(), events)
	if items, _ := enq.snapshot(); len(items) != 4 || f.enqueued.Load() != 4 {
		t.Fatalf("%d items after recovery", len(items))
	}
	if got := metricValue(t, reg, "odoopbx_forwarder_events_total"); got != float64(2*len(events)) {
		t.Fatalf("events metric %v, want %d", got, 2*len(events))
	}
	if got := metricValue(t, reg, "odoopbx_forwarder_events_matched_total"); got != 8 {
		t.Fatalf("matched metric %v", got)
	}
}

func TestConditionErrorsSkipOnlyTheirHandler(t *testing.T) {
	enq := &recordingEnqueuer{}
	m := loadMap(t, `[
	 {"id": 1, "name": "Newchannel", "source": "AMI", "model": "m", "method": "broken", "condition": "int(event['Channel']) == 1"},
	 {"id": 2, "name": "Newchannel", "source": "AMI", "model": "m", "method": "bomb", "condition": "[x for x in range(1000000)]"},
	 {"id": 3, "name": "Newchannel", "source": "AMI", "model": "m", "method": "fine", "condition": "event['Uniqueid'] == event['Linkedid']"}
	]`)
	f := newTestForwarder(t, m, enq, &fixedClock{now: epoch})
	f.HandleBatch(context.Background(), amitest.FixtureEvents(t, "05c-"))
	items, _ := enq.snapshot()
	if len(items) != 1 || items[0].Method != "fine" {
		t.Fatalf("items %+v", items)
	}
	if f.conditionErrors.Load() != 2 {
		t.Fatalf("condition errors %d", f.conditionErrors.Load())
	}
}

func TestRunConsumesTheQueueInBatches(t *testing.T) {
	events := amitest.FixtureEvents(t, "02-")
	queue := make(chan *ami.Message, len(events))
	for _, e := range events {
		queue <- e
	}
	enq := &recordingEnqueuer{}
	f, err := New(Config{Map: loadMap(t, catchAllRows(events)), Enqueuer: enq, Events: queue, SystemName: "pbx1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		items, _ := enq.snapshot()
		if len(items) == len(events) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d items after 10 s", len(items), len(events))
		}
		time.Sleep(time.Millisecond)
	}
	items, calls := enq.snapshot()
	// All queued at once: far fewer Enqueue calls than events, and receive order kept.
	if calls > len(events)/DefaultBatchMax+2 {
		t.Fatalf("%d Enqueue calls for %d queued events", calls, len(events))
	}
	for i, it := range items {
		if it.Origin != "event:"+events[i].Event() {
			t.Fatalf("item %d is %s, want %s", i, it.Origin, events[i].Event())
		}
	}
	if err := f.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := f.Health()
	if !h.OK || h.Detail["events"] != uint64(len(events)) || h.Detail["enqueued"] != uint64(len(events)) {
		t.Fatalf("health %+v", h)
	}
}

func TestStopDrainsWhatIsQueued(t *testing.T) {
	queue := make(chan *ami.Message, 8)
	enq := &recordingEnqueuer{}
	f, err := New(Config{Map: loadMap(t, defaultRows), Enqueuer: enq, Events: queue})
	if err != nil {
		t.Fatal(err)
	}
	// Events are queued and the context is already done when the consumer starts: whichever
	// way select goes, the queued events reach the spool before Stop returns.
	for i := 0; i < 3; i++ {
		queue <- ami.NewMessage("Event", "FullyBooted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if items, _ := enq.snapshot(); len(items) != 3 {
		t.Fatalf("%d items after stop, want the 3 queued", len(items))
	}
}

func TestNonEventsAreIgnored(t *testing.T) {
	enq := &recordingEnqueuer{}
	f := newTestForwarder(t, loadMap(t, defaultRows), enq, &fixedClock{now: epoch})
	f.HandleBatch(context.Background(), []*ami.Message{ami.NewMessage("Response", "Success", "ActionID", "1"), {}})
	if _, calls := enq.snapshot(); calls != 0 || f.eventsIn.Load() != 0 {
		t.Fatalf("calls %d events %d", calls, f.eventsIn.Load())
	}
}

func TestSnapshotEvent(t *testing.T) {
	listing := amitest.FixtureByPrefix(t, "04c-")
	var reply []*ami.Message
	for _, m := range listing {
		if m.ActionID() == "csc-1" {
			reply = append(reply, m)
		}
	}
	if len(reply) != 4 {
		t.Fatalf("CoreShowChannels reply has %d messages", len(reply))
	}
	clock := &fixedClock{now: epoch}
	enq := &recordingEnqueuer{}
	var sent []*ami.Message
	f, err := New(Config{Map: loadMap(t, defaultRows), Enqueuer: enq, SystemName: "pbx1", Now: clock.Now,
		AMI: fakeAMI{do: func(ctx context.Context, a *ami.Message) ([]*ami.Message, error) {
			sent = append(sent, a)
			clock.Advance(time.Second) // the reply takes a while
			return reply, nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	// A channel the table knows that is no longer live starts its hangup linger.
	f.HandleBatch(context.Background(), []*ami.Message{ami.NewMessage("Event", "Newchannel", "Channel", "PJSIP/1-1", "Uniqueid", "9.9", "Linkedid", "9.9")})
	f.OnEventsConnected(context.Background(), 42500*time.Millisecond)
	if len(sent) != 1 || sent[0].Get("Action") != "CoreShowChannels" {
		t.Fatalf("sent %v", sent)
	}
	items, _ := enq.snapshot()
	last := items[len(items)-1]
	ev := argsEvent(t, last)
	if last.Lane != "event:AgentChannelsSnapshot" || last.Method != "on_agent_channels_snapshot" {
		t.Fatalf("item %+v", last)
	}
	if !reflect.DeepEqual(ev["Uniqueids"], []any{"1795627198.5", "1795627198.4"}) || ev["GapSeconds"] != 42.5 || ev["Event"] != "AgentChannelsSnapshot" {
		t.Fatalf("event %v", ev)
	}
	if ev["EventTime"] != float64(epoch.UnixMicro())/1e6 || ev["SystemName"] != "pbx1" || ev["AgentEventId"] == "" {
		t.Fatalf("enrichment %v (EventTime must be when the listing was asked for)", ev)
	}
	if f.view.callCount() != 0 {
		t.Fatal("the call of channel 9.9 is still active after the snapshot")
	}
	clock.Advance(2 * time.Minute)
	f.lanes.sweep(clock.Now())
	if n, _ := f.lanes.size(); n != 0 {
		t.Fatalf("%d channels in the table", n)
	}

	// One live channel is still a list; no channel is an empty list.
	for _, n := range []int{1, 0} {
		r := append([]*ami.Message{reply[0]}, reply[1:1+n]...)
		f.cfg.AMI = fakeAMI{do: func(context.Context, *ami.Message) ([]*ami.Message, error) { return r, nil }}
		f.OnEventsConnected(context.Background(), 0)
		items, _ = enq.snapshot()
		got := argsEvent(t, items[len(items)-1])["Uniqueids"]
		if list, ok := got.([]any); !ok || len(list) != n {
			t.Fatalf("%d channels: Uniqueids %#v", n, got)
		}
	}
}

func TestSnapshotFailureSendsNothing(t *testing.T) {
	enq := &recordingEnqueuer{}
	reg := prometheus.NewRegistry()
	f, err := New(Config{Map: loadMap(t, defaultRows), Enqueuer: enq, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, do := range []func(context.Context, *ami.Message) ([]*ami.Message, error){
		func(context.Context, *ami.Message) ([]*ami.Message, error) { return nil, ami.ErrNotConnected },
		func(context.Context, *ami.Message) ([]*ami.Message, error) { return nil, ami.ErrTimeout },
		func(context.Context, *ami.Message) ([]*ami.Message, error) {
			return []*ami.Message{ami.NewMessage("Response", "Error", "Message", "Permission denied")}, nil
		},
		func(context.Context, *ami.Message) ([]*ami.Message, error) { return nil, nil },
	} {
		f.cfg.AMI = fakeAMI{do: do}
		f.OnEventsConnected(context.Background(), time.Second)
	}
	if _, calls := enq.snapshot(); calls != 0 {
		t.Fatalf("%d Enqueue calls: a failed listing must not close every call in Odoo", calls)
	}
	if got := metricValue(t, reg, "odoopbx_forwarder_snapshots_total"); got != 4 {
		t.Fatalf("failed snapshots %v", got)
	}
	// Without an AMI the hook does nothing.
	f.cfg.AMI = nil
	f.OnEventsConnected(context.Background(), 0)
}

func TestActiveCallsAndRecentEvents(t *testing.T) {
	events := amitest.FixtureEvents(t, "05c-")
	enq := &recordingEnqueuer{}
	f, err := New(Config{Map: loadMap(t, defaultRows), Enqueuer: enq, SystemName: "pbx1", RecentEvents: 5, Now: (&fixedClock{now: epoch}).Now})
	if err != nil {
		t.Fatal(err)
	}
	hangup := -1
	for i, m := range events {
		if m.Event() == "Hangup" {
			hangup = i
			break
		}
	}
	f.HandleBatch(context.Background(), events[:hangup])
	calls := f.ActiveCalls()
	if len(calls) != 1 {
		t.Fatalf("active calls %+v", calls)
	}
	c := calls[0]
	if c.Linkedid != "1795627331.19" || c.CallerNum != "101" || c.State != "Up" || c.Channels != 1 {
		t.Fatalf("call %+v", c)
	}
	if c.Exten != "100" || c.Direction != "internal" {
		t.Errorf("101 dialling 100 from from-internal: exten %q, direction %q", c.Exten, c.Direction)
	}
	f.HandleBatch(context.Background(), events[hangup:])
	if calls := f.ActiveCalls(); len(calls) != 0 {
		t.Fatalf("calls after the hangup: %+v", calls)
	}
	recent := f.RecentEvents()
	if len(recent) != 5 {
		t.Fatalf("%d recent events, want 5", len(recent))
	}
	if last := recent[4]; last.Name != events[len(events)-1].Event() || last.Outcome != OutcomeNoHandler || last.AgentEventID != "" {
		t.Fatalf("last recent %+v (no row names it: no id)", last)
	}
	for _, e := range recent {
		if e.Handlers > 0 && e.AgentEventID == "" {
			t.Fatalf("recent %+v: a handled event without its id", e)
		}
	}
	if f.matched.Load() != 4 {
		t.Fatalf("matched %d", f.matched.Load())
	}
}

func TestNewRejectsMissingParts(t *testing.T) {
	if _, err := New(Config{Enqueuer: &recordingEnqueuer{}}); err == nil {
		t.Fatal("no map accepted")
	}
	if _, err := New(Config{Map: loadMap(t, "[]")}); err == nil {
		t.Fatal("no enqueuer accepted")
	}
	f, err := New(Config{Map: loadMap(t, "[]"), Enqueuer: &recordingEnqueuer{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err == nil {
		t.Fatal("started without an events queue")
	}
	if f.cfg.SystemName == "" {
		t.Fatal("SystemName does not default to the hostname")
	}
}

var _ delivery.Enqueuer = (*recordingEnqueuer)(nil)

// metricValue sums the values of a counter family in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// Events read at different moments keep their own receive time even when handled in one batch.
func TestEventTimeIsTheMessagesReceiveTime(t *testing.T) {
	clock := &fixedClock{now: epoch}
	enq := &recordingEnqueuer{}
	f := newTestForwarder(t, loadMap(t, catchAllRows([]*ami.Message{ami.NewMessage("Event", "Newchannel")})), enq, clock)
	first := ami.NewMessage("Event", "Newchannel", "Channel", "PJSIP/101-1", "Uniqueid", "1.1", "Linkedid", "1.1")
	first.Received = epoch.Add(-1500 * time.Millisecond)
	second := ami.NewMessage("Event", "Newchannel", "Channel", "PJSIP/102-2", "Uniqueid", "2.1", "Linkedid", "2.1")
	second.Received = epoch.Add(-250 * time.Millisecond)
	f.HandleBatch(context.Background(), []*ami.Message{first, second})
	items, _ := enq.snapshot()
	if len(items) != 2 {
		t.Fatalf("%d items", len(items))
	}
	for i, want := range []time.Time{first.Received, second.Received} {
		got := argsEvent(t, items[i])["EventTime"].(float64)
		if d := got - float64(want.UnixNano())/1e9; d > 1e-6 || d < -1e-6 {
			t.Errorf("item %d: EventTime %f, want %f (the message's receive time, not the batch's)", i, got, float64(want.UnixNano())/1e9)
		}
	}
}

// On the very first start no map is known yet: events wait for it instead of finding no handler.
func TestEventsWaitForTheFirstMap(t *testing.T) {
	newchannel := ami.NewMessage("Event", "Newchannel", "Channel", "PJSIP/101-1", "Uniqueid", "1.1", "Linkedid", "1.1")
	m, err := eventmap.New(eventmap.Config{
		Odoo:         staticOdoo{body: `{"api_version": 1, "events_map": ` + catchAllRows([]*ami.Message{newchannel}) + `}`},
		RefreshEvery: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *ami.Message, 1)
	enq := &recordingEnqueuer{}
	f, err := New(Config{Map: m, Enqueuer: enq, SystemName: "pbx1", Events: events})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer f.Stop(context.Background())
	events <- newchannel
	time.Sleep(300 * time.Millisecond)
	if items, _ := enq.snapshot(); len(items) != 0 {
		t.Fatalf("%d items before any map was known", len(items))
	}
	if _, err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if items, _ := enq.snapshot(); len(items) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event that arrived before the map was never delivered")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDirectionGuess(t *testing.T) {
	for _, c := range []struct{ context, exten, want string }{
		{"from-trunk", "5551000", "inbound"},
		{"from-pstn", "s", "inbound"},
		{"from-internal", "+15551234567", "outbound"},
		{"from-internal", "0049301234567", "outbound"},
		{"from-internal", "102", "internal"},
	} {
		if got := direction(c.context, c.exten); got != c.want {
			t.Errorf("direction(%q, %q) = %q, want %q", c.context, c.exten, got, c.want)
		}
	}
}
