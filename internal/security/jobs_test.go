package security

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/jobs"
)

func raw(t *testing.T, vs ...any) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	for _, v := range vs {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func call(t *testing.T, e *Engine, fun string, args []json.RawMessage, kwargs map[string]any) (any, error) {
	t.Helper()
	f, ok := e.JobFuncs()[fun]
	if !ok {
		t.Fatalf("no job function %s", fun)
	}
	kw := map[string]json.RawMessage{}
	for k, v := range kwargs {
		b, _ := json.Marshal(v)
		kw[k] = b
	}
	return f(context.Background(), args, kw)
}

func codeOf(err error) string {
	var je *jobs.Error
	if errors.As(err, &je) {
		return je.Code
	}
	return ""
}

func TestJobsDisabled(t *testing.T) {
	h := newHarness(t, nil, "")
	for name := range h.e.JobFuncs() {
		_, err := call(t, h.e, name, nil, nil)
		if codeOf(err) != jobs.CodeDisabled {
			t.Errorf("%s while off: %v", name, err)
		}
	}
	want := []string{"security.list_bans", "security.ban", "security.unban", "security.set_access_lists", "security.status",
		"asterisk.get_banned", "asterisk.remove_banned_addresses", "asterisk.update_access_rules"}
	if len(h.e.JobFuncs()) != len(want) {
		t.Errorf("job functions: %d, want %d", len(h.e.JobFuncs()), len(want))
	}
}

func TestJobsBanListUnban(t *testing.T) {
	h := newHarness(t, on, "")
	res, err := call(t, h.e, "security.ban", raw(t, "198.51.100.61"), map[string]any{"timeout": 600, "comment": "scanner"})
	if err != nil {
		t.Fatal(err)
	}
	if m := res.(map[string]any); m["banned"] != "198.51.100.61" || m["expires_in"] != int64(600) {
		t.Fatalf("ban result %+v", res)
	}
	if ttl, ok := h.fw.banned("198.51.100.61/32"); !ok || ttl != 10*time.Minute {
		t.Fatalf("firewall: %v %v", ttl, ok)
	}
	if _, err := call(t, h.e, "security.ban", raw(t, "2001:db8::61"), map[string]any{"timeout": "2h"}); err != nil {
		t.Fatal(err)
	}
	for _, fun := range []string{"security.list_bans", "asterisk.get_banned"} {
		res, err = call(t, h.e, fun, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(res)
		var list []map[string]any
		_ = json.Unmarshal(b, &list)
		if len(list) != 2 || list[0]["address"] != "198.51.100.61" || list[0]["family"] != "ipv4" ||
			list[0]["reason"] != "manual: scanner" || list[0]["expires_in"] != float64(600) || list[1]["family"] != "ipv6" {
			t.Fatalf("%s: %s", fun, b)
		}
		for _, k := range []string{"address", "family", "expires_in", "reason", "offences", "created"} {
			if _, ok := list[0][k]; !ok {
				t.Errorf("%s: entry lacks %q", fun, k)
			}
		}
	}
	res, err = call(t, h.e, "security.unban", raw(t, []string{"198.51.100.61", "203.0.113.1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	if string(b) != `{"not_found":["203.0.113.1"],"removed":["198.51.100.61"]}` {
		t.Fatalf("unban: %s", b)
	}
	if _, ok := h.fw.banned("198.51.100.61/32"); ok {
		t.Fatal("still in the firewall")
	}
	if _, err := call(t, h.e, "asterisk.remove_banned_addresses", raw(t, []string{"2001:db8::61"}), nil); err != nil {
		t.Fatal(err)
	}
	u := h.q.updates(t)
	if len(u) != 4 || u[2].Action != "unban" || u[3].Address != "2001:db8::61" {
		t.Fatalf("odoo updates %+v", u)
	}
}

func TestJobsInvalidArgs(t *testing.T) {
	h := newHarness(t, on, "")
	cases := []struct {
		fun    string
		args   []json.RawMessage
		kwargs map[string]any
	}{
		{"security.ban", nil, nil},
		{"security.ban", raw(t, "not-an-ip"), nil},
		{"security.ban", raw(t, 42), nil},
		{"security.ban", raw(t, "127.0.0.1"), nil},
		{"security.ban", raw(t, "192.0.2.250"), nil}, // exempt (the AMI host in this harness)
		{"security.ban", raw(t, "203.0.113.0/24"), nil},
		{"security.ban", raw(t, "203.0.113.1"), map[string]any{"timeout": "soon"}},
		{"security.ban", raw(t, "203.0.113.1"), map[string]any{"timeout": -5}},
		{"security.unban", nil, nil},
		{"security.unban", raw(t, []string{"nope"}), nil},
		{"security.set_access_lists", raw(t, []map[string]any{{"address": "203.0.113.1", "access_type": "maybe"}}), nil},
		{"security.set_access_lists", raw(t, []map[string]any{{"address": "bad", "access_type": "allow"}}), nil},
		{"security.set_access_lists", raw(t, []map[string]any{{"address": "203.0.113.0", "netmask": "255.0.255.0", "address_type": "deny"}}), nil},
	}
	for _, c := range cases {
		_, err := call(t, h.e, c.fun, c.args, c.kwargs)
		if codeOf(err) != jobs.CodeInvalidArgs {
			t.Errorf("%s %s %v: %v", c.fun, c.args, c.kwargs, err)
		}
	}
	if n := h.e.Status().Bans; n != 0 {
		t.Errorf("%d bans after invalid calls", n)
	}
}

func TestJobsSetAccessLists(t *testing.T) {
	h := newHarness(t, on, "")
	res, err := call(t, h.e, "security.set_access_lists", raw(t, []map[string]any{
		{"address": "198.51.100.0/24", "access_type": "allow", "comment": "office"},
		{"address": "2001:db8:1::", "netmask": 48, "address_type": "allow", "comment": false},
		{"address": "203.0.113.0", "netmask": "255.255.255.0", "address_type": "deny"},
		{"address": "203.0.114.9", "access_type": "deny", "comment": "x"},
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(res); string(b) != `{"allow":2,"deny":2}` {
		t.Fatalf("%s", b)
	}
	h.fw.mu.Lock()
	allow, deny := h.fw.allow, h.fw.deny
	h.fw.mu.Unlock()
	if len(allow) != 2 || allow[1] != netip.MustParsePrefix("2001:db8:1::/48") || deny[0] != netip.MustParsePrefix("203.0.113.0/24") {
		t.Fatalf("firewall lists %v %v", allow, deny)
	}
	// Allow-listed sources are no longer counted.
	for i := 0; i < 10; i++ {
		h.e.HandleEvent(sipFailure("198.51.100.7"))
	}
	eventually(t, "events", func() bool { return h.e.Status().Counters.Failures == 10 })
	if h.e.Status().Bans != 0 {
		t.Error("allow-listed source banned")
	}
	st, _ := call(t, h.e, "security.status", nil, nil)
	s := st.(Status)
	if !s.Enabled || !s.Available || s.Allow != 2 || s.Deny != 2 || len(s.Ports.TCP) != 8 {
		t.Errorf("status %+v", s)
	}
}

func TestControlRoutes(t *testing.T) {
	h := newHarness(t, on, "")
	srv := httptest.NewServer(h.e.ControlHandler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+RouteBans, "application/json", strings.NewReader(`{"address":"203.0.113.31","for":"90m"}`))
	if err != nil {
		t.Fatal(err)
	}
	var v BanView
	_ = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if resp.StatusCode != 200 || v.Address != "203.0.113.31" || v.ExpiresIn != 5400 || v.Reason != "manual (cli)" {
		t.Fatalf("%d %+v", resp.StatusCode, v)
	}
	resp, _ = http.Post(srv.URL+RouteBans, "application/json", strings.NewReader(`{"address":"127.0.0.1"}`))
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("loopback ban: %d", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + RouteBans)
	var list BanList
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if !list.Enabled || len(list.Bans) != 1 {
		t.Fatalf("%+v", list)
	}
	req, _ := http.NewRequest("DELETE", srv.URL+RouteBans+"?address=203.0.113.31&address=203.0.113.32", nil)
	resp, _ = http.DefaultClient.Do(req)
	var ur UnbanResult
	_ = json.NewDecoder(resp.Body).Decode(&ur)
	resp.Body.Close()
	if len(ur.Removed) != 1 || len(ur.NotFound) != 1 {
		t.Fatalf("%+v", ur)
	}
}

func TestOffline(t *testing.T) {
	state := t.TempDir() + "/" + StateFile
	fw := newFakeBackend()
	clk := &clock{t: t0}
	o := Offline{StatePath: state, Options: DefaultOptions(), Backend: fw, Now: clk.Now}
	v, err := o.Ban(context.Background(), netip.MustParsePrefix("203.0.113.12/32"), 0, "manual (cli)")
	if err != nil || v.ExpiresIn != 3600 {
		t.Fatalf("%+v %v", v, err)
	}
	if _, ok := fw.banned("203.0.113.12/32"); !ok {
		t.Fatal("not in the firewall")
	}
	clk.Add(10 * time.Minute)
	list, err := o.List()
	if err != nil || len(list) != 1 || list[0].ExpiresIn != 3000 {
		t.Fatalf("%+v %v", list, err)
	}
	found, err := o.Unban(context.Background(), netip.MustParsePrefix("203.0.113.12/32"))
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if list, _ := o.List(); len(list) != 0 {
		t.Fatalf("%+v", list)
	}
	if _, ok := fw.banned("203.0.113.12/32"); ok {
		t.Fatal("still in the firewall")
	}
}
