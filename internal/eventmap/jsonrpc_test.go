package eventmap

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
)

// The map through the real JSON-RPC client and the fake Odoo server: agent_get_config, the
// fallback when the addon lacks it (an AttributeError naming the method), an outage that keeps
// the map, and the login hook kicking a reload after the outage.
func TestMapOverJSONRPC(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	var config map[string]any
	if err := json.Unmarshal([]byte(defaultMapJSON), &config); err != nil {
		t.Fatal(err)
	}
	srv.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		return odootest.Response{Result: config}
	})

	var m *Map
	client, err := odoo.NewJSONRPC(odoo.Options{URL: srv.URL(), DB: srv.DB(), User: srv.User(), Password: srv.Password(),
		Timeout: 5 * time.Second, OnLogin: func() {
			if m != nil {
				m.Kick()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), StateFileName)
	m, err = New(Config{Odoo: client, StatePath: path, RefreshEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := m.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 12 || res.Options != 3 {
		t.Fatalf("result %+v", res)
	}
	calls := srv.CallsTo("asterisk_plus.server", "agent_get_config")
	if len(calls) != 1 || string(calls[0].RawArgs) != "[]" {
		t.Fatalf("agent_get_config calls %+v", calls)
	}

	// An older addon: the method does not exist.
	srv.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		return odootest.Response{ErrorName: odootest.ErrAttributeError, ErrorMessage: "type object 'asterisk_plus.server' has no attribute 'agent_get_config'"}
	})
	srv.Handle("asterisk_plus.event", "search_read", func(odootest.Call) odootest.Response {
		return odootest.Response{Result: []map[string]any{
			{"id": 1, "name": "Newchannel", "source": "AMI", "model": "asterisk_plus.channel", "method": "on_ami_new_channel", "delay": false, "condition": false},
		}}
	})
	res, err = m.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 1 || !m.Current().Fallback {
		t.Fatalf("fallback result %+v", res)
	}
	sr := srv.CallsTo("asterisk_plus.event", "search_read")
	if len(sr) != 1 || string(sr[0].RawArgs) != `[[["is_enabled","=",true],["source","in",["AMI","FAGI"]]],["id","name","source","model","method","delay","condition"]]` {
		t.Fatalf("search_read calls %+v", sr)
	}

	// An AttributeError raised inside the method is a handler bug, not a missing method.
	srv.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		return odootest.Response{ErrorName: odootest.ErrAttributeError, ErrorMessage: "'NoneType' object has no attribute 'name'"}
	})
	if _, err := m.Reload(ctx); err == nil || odoo.KindOf(err) != odoo.KindHandler {
		t.Fatalf("err %v, want a handler error", err)
	}
	if len(srv.CallsTo("asterisk_plus.event", "search_read")) != 1 {
		t.Fatal("fell back on a handler error")
	}

	// Outage: the map in use stays; after the restart the login hook kicks a reload.
	srv.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		return odootest.Response{Result: config}
	})
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	waitFor(t, func() bool { return m.Current().RowCount() == 12 })
	srv.Stop()
	if _, err := m.Reload(ctx); err == nil {
		t.Fatal("reload succeeded while Odoo is down")
	}
	if m.Current().RowCount() != 12 {
		t.Fatal("the outage changed the map")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	srv.ExpireSession() // Odoo restarted: the client must log in again, which kicks a reload
	before := len(srv.CallsTo("asterisk_plus.server", "agent_get_config"))
	waitFor(t, func() bool {
		// Any call makes the client notice the expired session; the reload it kicks follows.
		_, _ = client.ExecuteKw(ctx, "res.users", "read", []any{}, nil)
		return len(srv.CallsTo("asterisk_plus.server", "agent_get_config")) > before
	})
	if !reflect.DeepEqual(m.Current().Options["security_ban_time"], 3600.0) {
		t.Fatalf("options %v", m.Current().Options)
	}
}
