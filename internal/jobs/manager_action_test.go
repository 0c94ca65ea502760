package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

func TestManagerActionOriginateCorrelated(t *testing.T) {
	fake := newFake(t, "04d-action-originate-variants")
	var mu sync.Mutex
	var originated [][2]string
	r := mustRegistry(t, Deps{AMI: fake, OnOriginate: func(actionID, channelID string) {
		mu.Lock()
		originated = append(originated, [2]string{actionID, channelID})
		mu.Unlock()
	}})
	// Odoo's dict: numbers as numbers, an ActionID of its own that must come back.
	action := json.RawMessage(`{"Action":"Originate","ActionID":"odoo-7","Channel":"Local/100@test","Application":"Wait","Data":1,"ChannelId":"odoo-11111111-aaaa","OtherChannelId":"odoo-11111111-bbbb"}`)
	res, err := call(t, r, "asterisk.manager_action", []any{action}, nil)
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	list, ok := asJSON(t, res).([]any)
	if !ok || len(list) != 2 {
		t.Fatalf("want [response, OriginateResponse], got %#v", asJSON(t, res))
	}
	if msgField(t, list[0], "Message") != "Originate successfully queued" || msgField(t, list[0], "ActionID") != "odoo-7" {
		t.Errorf("response = %#v", list[0])
	}
	if msgField(t, list[1], "Event") != "OriginateResponse" || msgField(t, list[1], "Reason") != "4" ||
		msgField(t, list[1], "Uniqueid") != "odoo-11111111-aaaa" || msgField(t, list[1], "ActionID") != "odoo-7" {
		t.Errorf("OriginateResponse = %#v", list[1])
	}
	sent := fake.Sent()
	if len(sent) != 1 {
		t.Fatalf("sent %d actions", len(sent))
	}
	names := []string{}
	for _, h := range sent[0].Headers {
		names = append(names, h.Name)
	}
	if !slices.Equal(names, []string{"Action", "ActionID", "Channel", "Application", "Data", "ChannelId", "OtherChannelId", "Async"}) {
		t.Errorf("header order on the wire = %v", names)
	}
	if sent[0].Get("Data") != "1" || sent[0].Get("Async") != "true" {
		t.Errorf("sent = %s", sent[0])
	}
	if len(originated) != 1 || originated[0] != [2]string{"odoo-7", "odoo-11111111-aaaa"} {
		t.Errorf("OnOriginate calls = %v", originated)
	}
}

func TestManagerActionOriginateFailures(t *testing.T) {
	fake := newFake(t, "04d-action-originate-variants")
	r := mustRegistry(t, Deps{AMI: fake})
	for _, tc := range []struct{ id, reason string }{
		{"orig-fail-async", "0"}, // no such extension
		{"orig-busy", "5"},
		{"orig-noanswer", "3"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			res, err := call(t, r, "asterisk.manager_action", []any{fixtureAction(t, "04d-action-originate-variants", tc.id)}, nil)
			if errCode(t, err) != CodeAMIError || res != nil {
				t.Fatalf("res, err = %v, %v", res, err)
			}
			var re *ResultError
			errors.As(err, &re)
			list := asJSON(t, re.Result).([]any)
			if len(list) != 2 || msgField(t, list[1], "Response") != "Failure" || msgField(t, list[1], "Reason") != tc.reason {
				t.Fatalf("result = %#v", list)
			}
			// No ActionID from Odoo: the agent's own is used and returned.
			if id, _ := msgField(t, list[0], "ActionID").(string); !strings.HasPrefix(id, "odoopbx-job-") {
				t.Errorf("ActionID = %q", id)
			}
			if !strings.Contains(re.Message, "Reason "+tc.reason) {
				t.Errorf("message = %q", re.Message)
			}
		})
	}
}

func TestManagerActionClickToCallPJSIP(t *testing.T) {
	fake := newFake(t, "05d-sip-click-to-call-originate-pjsip-102")
	r := mustRegistry(t, Deps{AMI: fake})
	res, err := call(t, r, "asterisk.manager_action", []any{fixtureAction(t, "05d-sip-click-to-call-originate-pjsip-102", "c2c-1")}, map[string]any{"as_list": true})
	if err != nil {
		t.Fatal(err)
	}
	list := asJSON(t, res).([]any)
	if len(list) != 2 || msgField(t, list[1], "Response") != "Success" || msgField(t, list[1], "Reason") != "4" {
		t.Fatalf("result = %#v", list)
	}
	if got := fake.Sent()[0].Get("Variable"); got != "ODOO_CALL_ID=c2c-42" {
		t.Errorf("Variable = %q", got)
	}
}

func TestManagerActionShapes(t *testing.T) {
	fake := newFake(t, "04a-actions-ping-coresettings-corestatus", "04b-action-command", "04c-action-coreshowchannels-status")
	r := mustRegistry(t, Deps{AMI: fake})

	t.Run("single response is a dict", func(t *testing.T) {
		res, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping", "ActionID": "p1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if msgField(t, asJSON(t, res), "Ping") != "Pong" || msgField(t, asJSON(t, res), "ActionID") != "p1" {
			t.Fatalf("result = %#v", asJSON(t, res))
		}
	})
	t.Run("as_list wraps a single response", func(t *testing.T) {
		res, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping"}}, map[string]any{"as_list": true})
		if err != nil {
			t.Fatal(err)
		}
		if l, ok := asJSON(t, res).([]any); !ok || len(l) != 1 {
			t.Fatalf("result = %#v", asJSON(t, res))
		}
	})
	t.Run("as_list null is the default", func(t *testing.T) {
		res, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping"}}, map[string]any{"as_list": nil})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := asJSON(t, res).(map[string]any); !ok {
			t.Fatalf("result = %#v", asJSON(t, res))
		}
	})
	t.Run("list action", func(t *testing.T) {
		res, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "CoreShowChannels"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		l := asJSON(t, res).([]any)
		if len(l) != 4 || msgField(t, l[0], "EventList") != "start" || msgField(t, l[1], "Event") != "CoreShowChannel" ||
			msgField(t, l[3], "EventList") != "Complete" || msgField(t, l[3], "ListItems") != "2" {
			t.Fatalf("result = %#v", l)
		}
	})
	t.Run("command output", func(t *testing.T) {
		res, err := call(t, r, "asterisk.manager_action", []any{fixtureAction(t, "04b-action-command", "cmd-1")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, ok := msgField(t, asJSON(t, res), "Output").([]any)
		if !ok || len(out) != 1 || !strings.HasPrefix(out[0].(string), "Asterisk 22.10.1") {
			t.Fatalf("Output = %#v", msgField(t, asJSON(t, res), "Output"))
		}
		if c := msgField(t, asJSON(t, res), "content"); c != out[0] {
			t.Errorf("content = %#v", c)
		}
	})
	t.Run("multi-line command output", func(t *testing.T) {
		res, err := call(t, r, "asterisk.manager_action", []any{fixtureAction(t, "04b-action-command", "cmd-3")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := msgField(t, asJSON(t, res), "Output").([]any)
		lines := make([]string, len(out))
		for i, l := range out {
			lines[i] = l.(string)
		}
		if len(lines) < 3 || !slices.Contains(lines, "") || msgField(t, asJSON(t, res), "content") != strings.Join(lines, "\n") {
			t.Fatalf("Output = %q, content = %q", lines, msgField(t, asJSON(t, res), "content"))
		}
	})
	t.Run("unknown CLI command is an AMI error", func(t *testing.T) {
		res, err := call(t, r, "asterisk.manager_action", []any{fixtureAction(t, "04b-action-command", "cmd-4")}, nil)
		if errCode(t, err) != CodeAMIError || res != nil {
			t.Fatalf("res, err = %v, %v", res, err)
		}
		var re *ResultError
		errors.As(err, &re)
		j := asJSON(t, re.Result)
		if msgField(t, j, "Response") != "Error" {
			t.Fatalf("result = %#v", j)
		}
		if out, _ := msgField(t, j, "Output").([]any); len(out) != 1 || !strings.Contains(out[0].(string), "No such command") {
			t.Fatalf("Output = %#v", msgField(t, j, "Output"))
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		_, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "NoSuchAction"}}, nil)
		var re *ResultError
		if !errors.As(err, &re) || re.Code != CodeAMIError || !strings.HasPrefix(re.Message, "Invalid/unknown command: NoSuchAction") {
			t.Fatalf("err = %v", err)
		}
		if msgField(t, asJSON(t, re.Result), "Response") != "Error" {
			t.Fatalf("result = %#v", asJSON(t, re.Result))
		}
	})
}

func TestManagerActionPermissionDenied(t *testing.T) {
	fake := newFake(t, "03e-restricted-user-permission-denied.client")
	r := mustRegistry(t, Deps{AMI: fake})
	_, err := call(t, r, "asterisk.manager_action", []any{fixtureAction(t, "03e-restricted-user-permission-denied.client", "orig-ro")}, nil)
	var re *ResultError
	if !errors.As(err, &re) || re.Code != CodePermissionDenied {
		t.Fatalf("err = %v", err)
	}
	// The failed Originate is answered [response] at once, no OriginateResponse wait.
	if m := asJSON(t, re.Result); msgField(t, m, "Message") != "Permission denied" {
		t.Fatalf("result = %#v", m)
	}
}

func TestManagerActionErrors(t *testing.T) {
	reloads := 0
	fake := newFake(t, "04a-actions-ping-coresettings-corestatus")
	r := mustRegistry(t, Deps{AMI: fake, Reload: func(context.Context) (any, error) { reloads++; return map[string]any{"events": 3}, nil }})
	amiError := func(t *testing.T, err error, code, message string) {
		t.Helper()
		var re *ResultError
		if !errors.As(err, &re) || re.Code != code {
			t.Fatalf("err = %v, want code %s", err, code)
		}
		m := asJSON(t, re.Result)
		if msgField(t, m, "Response") != "Error" || !strings.Contains(msgField(t, m, "Message").(string), message) {
			t.Fatalf("result = %#v, want Message containing %q", m, message)
		}
	}
	t.Run("object value refused", func(t *testing.T) {
		_, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping", "X": map[string]any{"a": 1}}}, nil)
		amiError(t, err, CodeInvalidArgs, "objects are not allowed")
	})
	t.Run("CR LF injection refused", func(t *testing.T) {
		_, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping", "X": "a\r\nAction: Originate"}}, nil)
		amiError(t, err, CodeInvalidArgs, "CR or LF")
	})
	t.Run("sync originate refused", func(t *testing.T) {
		_, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Originate", "Channel": "Local/1@x", "Async": false}}, nil)
		amiError(t, err, CodeInvalidArgs, "asynchronous")
	})
	t.Run("missing action", func(t *testing.T) {
		_, err := call(t, r, "asterisk.manager_action", nil, nil)
		amiError(t, err, CodeInvalidArgs, "missing the action")
		_, err = call(t, r, "asterisk.manager_action", []any{map[string]any{"Channel": "x"}}, nil)
		amiError(t, err, CodeInvalidArgs, "Action")
	})
	t.Run("bad kwargs", func(t *testing.T) {
		_, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping"}}, map[string]any{"timeout": -1})
		amiError(t, err, CodeInvalidArgs, "timeout")
		_, err = call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping"}}, map[string]any{"as_list": "yes"})
		amiError(t, err, CodeInvalidArgs, "as_list")
	})
	t.Run("not connected", func(t *testing.T) {
		fake.Err = ami.ErrNotConnected
		defer func() { fake.Err = nil }()
		_, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping"}}, nil)
		amiError(t, err, CodeAMINotConnected, "AMI not connected")
	})
	t.Run("timeout", func(t *testing.T) {
		fake.Delay = time.Minute
		defer func() { fake.Delay = 0 }()
		_, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping"}}, map[string]any{"timeout": 0.05})
		amiError(t, err, CodeAMITimeout, "Action Timeout")
	})
	t.Run("ReloadEvents does not touch Asterisk", func(t *testing.T) {
		before := len(fake.Sent())
		res, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"action": "reloadevents"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m := asJSON(t, res); msgField(t, m, "Response") != "Success" || len(m.(map[string]any)) != 1 {
			t.Fatalf("result = %#v", m)
		}
		if reloads != 1 || len(fake.Sent()) != before {
			t.Fatalf("reloads = %d, sent %d new actions", reloads, len(fake.Sent())-before)
		}
	})
}

// deadlineAMI records the deadline each action got.
type deadlineAMI struct{ left []time.Duration }

func (d *deadlineAMI) Do(ctx context.Context, a *ami.Message) ([]*ami.Message, error) {
	dl, _ := ctx.Deadline()
	d.left = append(d.left, time.Until(dl))
	return []*ami.Message{ami.NewMessage("Response", "Success", "ActionID", a.ActionID())}, nil
}

func TestManagerActionTimeouts(t *testing.T) {
	d := &deadlineAMI{}
	r := mustRegistry(t, Deps{AMI: d})
	for _, kw := range []map[string]any{nil, {"timeout": 500}, {"timeout": 2}} {
		if _, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Ping"}}, kw); err != nil {
			t.Fatal(err)
		}
	}
	// An Originate's deadline also covers the OriginateResponse wait: Timeout/1000 + 15 s.
	if _, err := call(t, r, "asterisk.manager_action", []any{map[string]any{"Action": "Originate", "Timeout": 4000}}, nil); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{10 * time.Second, 120 * time.Second, 2 * time.Second, 29 * time.Second}
	for i, w := range want {
		// The deadline is set just before Do: it can only have shrunk a little since.
		if d.left[i] > w || d.left[i] < w-5*time.Second {
			t.Errorf("action %d: deadline in %v, want about %v", i, d.left[i], w)
		}
	}
}

func TestParseActionOrderAndLists(t *testing.T) {
	m, err := ParseAction(json.RawMessage(`{"Channel":"PJSIP/102","Variable":["A=1","B=2"],"ActionID":"x","Action":"Originate","Async":true,"Priority":1}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "Action: Originate\nActionID: x\nChannel: PJSIP/102\nVariable: A=1\nVariable: B=2\nAsync: true\nPriority: 1\n\n"
	if m.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", m.String(), want)
	}
	for _, bad := range []string{`[]`, `{"Action":["A","B"]}`, `{"Action":"Ping","V":[[1]]}`, `{"Action":"Ping","ActionID":["a","b"]}`, `{"Action":"Ping"} x`} {
		if _, err := ParseAction(json.RawMessage(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
