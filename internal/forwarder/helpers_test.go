package forwarder

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/eventmap"
)

// staticOdoo answers agent_get_config with a fixed body.
type staticOdoo struct{ body string }

func (s staticOdoo) ExecuteKw(ctx context.Context, model, method string, args []any, kwargs map[string]any) (json.RawMessage, error) {
	return json.RawMessage(s.body), nil
}

// loadMap returns a Map loaded with the given events_map rows (a JSON array).
func loadMap(t testing.TB, rows string) *eventmap.Map {
	t.Helper()
	m, err := eventmap.New(eventmap.Config{Odoo: staticOdoo{body: `{"api_version": 1, "events_map": ` + rows + `}`}, RefreshEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 0 {
		t.Fatalf("map errors: %v", res.Errors)
	}
	return m
}

// defaultRows is the default map of contract §3.7 (AMI rows).
const defaultRows = `[
 {"id": 1, "name": "Newchannel", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_new_channel", "condition": "not event['Channel'].startswith('Local/')"},
 {"id": 2, "name": "Newstate", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_update_channel_state", "condition": "event['ChannelStateDesc'] == 'Up' and not event['Channel'].startswith('Local/')"},
 {"id": 3, "name": "Hangup", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_hangup", "condition": "not event['Channel'].startswith('Local/')"},
 {"id": 4, "name": "OriginateResponse", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_originate_response_failure", "condition": "event['Response'] == 'Failure'"},
 {"id": 5, "name": "VarSet", "source": "AMI", "model": "asterisk_plus.channel", "method": "update_recording_filename", "condition": "event.get('Variable') == 'MIXMONITOR_FILENAME'"},
 {"id": 6, "name": "VarSet", "source": "AMI", "model": "asterisk_plus.recording", "method": "update_mvm_filename", "condition": "event.get('Variable') == 'MVM_FILENAME'"},
 {"id": 7, "name": "VarSet", "source": "AMI", "model": "asterisk_plus.recording", "method": "update_mvm_duration", "condition": "event.get('Variable') == 'MVM_DURATION'"},
 {"id": 8, "name": "UserEvent", "source": "AMI", "model": "asterisk_plus.call", "method": "on_user_event_set_answered", "condition": "event.get('UserEvent') == 'CallAnswered'"},
 {"id": 9, "name": "UserEvent", "source": "AMI", "model": "asterisk_plus.call", "method": "on_user_event_set_transfer", "condition": "event.get('UserEvent') == 'SetTransfer'"},
 {"id": 10, "name": "FullyBooted", "source": "AMI", "model": "asterisk_plus.server", "method": "on_fully_booted", "condition": false},
 {"id": 11, "name": "AgentChannelsSnapshot", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_agent_channels_snapshot", "condition": false}
]`

// recordingEnqueuer keeps every item and every call; err makes it refuse.
type recordingEnqueuer struct {
	mu    sync.Mutex
	items []delivery.Item
	calls int
	err   error
}

func (r *recordingEnqueuer) Enqueue(ctx context.Context, items ...delivery.Item) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return r.err
	}
	r.items = append(r.items, items...)
	return nil
}

func (r *recordingEnqueuer) snapshot() ([]delivery.Item, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery.Item(nil), r.items...), r.calls
}

// fakeAMI answers Do from a function.
type fakeAMI struct {
	do func(ctx context.Context, action *ami.Message) ([]*ami.Message, error)
}

func (f fakeAMI) Do(ctx context.Context, action *ami.Message) ([]*ami.Message, error) {
	return f.do(ctx, action)
}

// fixedClock is a settable clock.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fixedClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var epoch = time.Unix(1795627163, 500_000_000)

func newTestForwarder(t testing.TB, m *eventmap.Map, enq delivery.Enqueuer, clock *fixedClock) *Forwarder {
	t.Helper()
	f, err := New(Config{Map: m, Enqueuer: enq, SystemName: "pbx1", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// argsEvent decodes an item's Args, a JSON array of one event object.
func argsEvent(t testing.TB, item delivery.Item) map[string]any {
	t.Helper()
	var args []map[string]any
	if err := json.Unmarshal(item.Args, &args); err != nil {
		t.Fatalf("args %s: %v", item.Args, err)
	}
	if len(args) != 1 {
		t.Fatalf("args has %d elements", len(args))
	}
	return args[0]
}
