package eventmap

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/odoopbx/odoopbx/internal/odoo"
)

// fakeOdoo answers execute_kw from a table of model.method → reply and records each call.
type fakeOdoo struct {
	mu      sync.Mutex
	replies map[string]func(args []any) (json.RawMessage, error)
	calls   []fakeCall
}

type fakeCall struct {
	Model, Method string
	Args          []any
}

func newFakeOdoo() *fakeOdoo {
	return &fakeOdoo{replies: map[string]func([]any) (json.RawMessage, error){}}
}

func (f *fakeOdoo) set(modelMethod string, reply func(args []any) (json.RawMessage, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[modelMethod] = reply
}

func (f *fakeOdoo) setJSON(modelMethod, body string) {
	f.set(modelMethod, func([]any) (json.RawMessage, error) { return json.RawMessage(body), nil })
}

func (f *fakeOdoo) setErr(modelMethod string, err error) {
	f.set(modelMethod, func([]any) (json.RawMessage, error) { return nil, err })
}

func (f *fakeOdoo) ExecuteKw(ctx context.Context, model, method string, args []any, kwargs map[string]any) (json.RawMessage, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{Model: model, Method: method, Args: args})
	reply := f.replies[model+"."+method]
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if reply == nil {
		return nil, &odoo.Error{Kind: odoo.KindHandler, Name: "builtins.AttributeError", Message: "no fake reply for " + model + "." + method}
	}
	return reply(args)
}

func (f *fakeOdoo) callCount(modelMethod string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Model+"."+c.Method == modelMethod {
			n++
		}
	}
	return n
}

// defaultMapJSON is the default events map of contract §3.7 as agent_get_config sends it, with
// Odoo's false for the empty conditions.
const defaultMapJSON = `{
 "api_version": 1, "server_id": 1, "system_name": "pbx1", "notify_method": "asterisk_plus_notify",
 "options": {"security_enabled": true, "security_ban_time": 3600, "fagi_timeout": "3"},
 "access_lists": [{"address": "10.0.0.0/8", "access_type": "allow", "comment": "lan"}],
 "events_map": [
  {"id": 1, "name": "Newchannel", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_new_channel", "condition": "not event['Channel'].startswith('Local/')", "delay": 0, "sequence": 10},
  {"id": 2, "name": "Newstate", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_update_channel_state", "condition": "event['ChannelStateDesc'] == 'Up' and not event['Channel'].startswith('Local/')", "delay": 0, "sequence": 10},
  {"id": 3, "name": "Hangup", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_hangup", "condition": "not event['Channel'].startswith('Local/')", "delay": 0, "sequence": 10},
  {"id": 4, "name": "OriginateResponse", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_originate_response_failure", "condition": "event['Response'] == 'Failure'", "delay": 0, "sequence": 10},
  {"id": 5, "name": "VarSet", "source": "AMI", "model": "asterisk_plus.channel", "method": "update_recording_filename", "condition": "event.get('Variable') == 'MIXMONITOR_FILENAME'", "delay": 0, "sequence": 10},
  {"id": 6, "name": "VarSet", "source": "AMI", "model": "asterisk_plus.recording", "method": "update_mvm_filename", "condition": "event.get('Variable') == 'MVM_FILENAME'", "delay": 0, "sequence": 10},
  {"id": 7, "name": "VarSet", "source": "AMI", "model": "asterisk_plus.recording", "method": "update_mvm_duration", "condition": "event.get('Variable') == 'MVM_DURATION'", "delay": 0, "sequence": 10},
  {"id": 8, "name": "UserEvent", "source": "AMI", "model": "asterisk_plus.call", "method": "on_user_event_set_answered", "condition": "event.get('UserEvent') == 'CallAnswered'", "delay": 0, "sequence": 10},
  {"id": 9, "name": "UserEvent", "source": "AMI", "model": "asterisk_plus.call", "method": "on_user_event_set_transfer", "condition": "event.get('UserEvent') == 'SetTransfer'", "delay": 0, "sequence": 10},
  {"id": 10, "name": "FullyBooted", "source": "AMI", "model": "asterisk_plus.server", "method": "on_fully_booted", "condition": false, "delay": false, "sequence": 10},
  {"id": 11, "name": "AgentChannelsSnapshot", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_agent_channels_snapshot", "condition": false, "delay": 0, "sequence": 10},
  {"id": 12, "name": "route_did", "source": "FAGI", "model": "asterisk_plus.user", "method": "fagi_request", "condition": null, "delay": 0, "sequence": 10}
 ]
}`

// newTestMap returns a Map fed by odooClient, saving to a temporary file.
func newTestMap(t testing.TB, odooClient odoo.Client) (*Map, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), StateFileName)
	m, err := New(Config{Odoo: odooClient, StatePath: path, RefreshEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	return m, path
}

// countingHandler counts the condition-failure warnings.
type countingHandler struct{ n *atomic.Int32 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "condition failed") {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func newCountingLogger(n *atomic.Int32) *slog.Logger { return slog.New(countingHandler{n: n}) }
