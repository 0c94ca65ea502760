package ami_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	return amitest.ReadFixture(t, name)
}

// replay starts a fake Asterisk replaying fixture NAME.txt against NAME.sent.txt.
func replay(t *testing.T, name string) *amitest.Server {
	t.Helper()
	srv, err := amitest.Replay(fixture(t, name+".txt"), fixture(t, name+".sent.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func testConfig(addr string) ami.ClientConfig {
	return ami.ClientConfig{
		Address:      addr,
		Username:     "odoo",
		Secret:       "odoo-secret",
		PingInterval: time.Hour,
		ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 50 * time.Millisecond,
		AuthRetryMin: 10 * time.Millisecond,
		AuthRetryMax: 50 * time.Millisecond,
	}
}

// start runs a client until the test ends and waits until it is connected.
func start(t *testing.T, cfg ami.ClientConfig) *ami.Client {
	t.Helper()
	c := ami.NewClient(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitState(t, c, ami.StateConnected)
	return c
}

func waitState(t *testing.T, c *ami.Client, want ami.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for st := range c.Watch(ctx) {
		if st == want {
			return
		}
	}
	t.Fatalf("state never became %v (now %v)", want, c.State())
}

func do(t *testing.T, c *ami.Client, pairs ...string) []*ami.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := c.Do(ctx, ami.NewMessage(pairs...))
	if err != nil {
		t.Fatalf("Do %v: %v", pairs[:2], err)
	}
	return msgs
}

// collect reads events until one named name arrives or the deadline passes.
func collect(t *testing.T, c *ami.Client, until string) []*ami.Message {
	t.Helper()
	var got []*ami.Message
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-c.Events():
			got = append(got, m)
			if m.Event() == until {
				return got
			}
		case <-deadline:
			t.Fatalf("no %s event among %d events", until, len(got))
		}
	}
}

// drain reads events until none arrives for quiet.
func drain(c *ami.Client, quiet time.Duration) []*ami.Message {
	var got []*ami.Message
	for {
		select {
		case m := <-c.Events():
			got = append(got, m)
		case <-time.After(quiet):
			return got
		}
	}
}

func TestLoginMD5AndPlainWithTwoSessions(t *testing.T) {
	for _, auth := range []string{"md5", "plain"} {
		t.Run(auth, func(t *testing.T) {
			srv := replay(t, "01-login-fullybooted")
			cfg := testConfig(srv.Addr())
			cfg.Auth = auth
			c := start(t, cfg)
			if c.Version() != "11.0.0" {
				t.Errorf("version %q", c.Version())
			}
			if srv.Logins() != 2 {
				t.Errorf("%d logins, want an events and an actions session", srv.Logins())
			}
			var sawKey, sawSecret, eventsOff bool
			for _, a := range srv.Received() {
				if a.Get("Action") == "Login" {
					sawKey = sawKey || a.Has("Key")
					sawSecret = sawSecret || a.Has("Secret")
					eventsOff = eventsOff || a.Get("Events") == "off"
				}
			}
			if auth == "md5" && (!sawKey || sawSecret) || auth == "plain" && (sawKey || !sawSecret) {
				t.Errorf("auth %s: key=%v secret=%v", auth, sawKey, sawSecret)
			}
			if !eventsOff {
				t.Error("the actions session did not log in with Events: off")
			}
			got := collect(t, c, "SuccessfulAuth")
			if got[0].Event() != "FullyBooted" {
				t.Errorf("first event %q, want FullyBooted before SuccessfulAuth", got[0].Event())
			}
		})
	}
}

func TestFailedLoginBacksOffAsAuthFailure(t *testing.T) {
	srv := replay(t, "01-login-fullybooted")
	cfg := testConfig(srv.Addr())
	cfg.Secret = "wrong"
	c := ami.NewClient(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitState(t, c, ami.StateAuthFailed)
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().AuthFailures < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.Stats().AuthFailures; n < 3 {
		t.Errorf("auth failures %d: the client should keep retrying with backoff", n)
	}
	if srv.Logins() != 0 {
		t.Error("a wrong secret logged in")
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.Do(short, ami.NewMessage("Action", "Ping")); !errors.Is(err, ami.ErrNotConnected) {
		t.Errorf("Do while refused: %v, want ErrNotConnected", err)
	}
}

func TestOriginateCorrelatedWithItsOriginateResponse(t *testing.T) {
	srv := replay(t, "02-originate-local-call")
	c := start(t, testConfig(srv.Addr()))
	msgs := do(t, c, "Action", "Originate", "ActionID", "odoo-42", "Channel", "Local/200@test",
		"Context", "test", "Exten", "100", "Priority", "1", "CallerID", `"Odoo Click2Call" <5551000>`,
		"Variable", "ODOO_CALL_ID=abc-123")
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want response + OriginateResponse", len(msgs))
	}
	if msgs[0].Get("Message") != "Originate successfully queued" || msgs[1].Event() != "OriginateResponse" || msgs[1].Get("Reason") != "4" {
		t.Errorf("reply:\n%s\n%s", msgs[0], msgs[1])
	}
	for _, m := range msgs {
		if m.ActionID() != "odoo-42" {
			t.Errorf("ActionID %q not restored", m.ActionID())
		}
	}
	var sent *ami.Message
	for _, a := range srv.Received() {
		if a.Get("Action") == "Originate" {
			sent = a
		}
	}
	if sent.Get("Async") != "true" {
		t.Error("Async: true was not added")
	}
	if sent.ActionID() == "odoo-42" || sent.Headers[1].Name != "ActionID" {
		t.Errorf("ActionID not replaced or not second: %s", sent)
	}
	// The OriginateResponse is also an event for the map, and the call's events all arrive.
	events := drain(c, 300*time.Millisecond)
	names := map[string]int{}
	for _, e := range events {
		names[e.Event()]++
	}
	for _, want := range []string{"Newchannel", "Newstate", "DialBegin", "OriginateResponse", "Hangup"} {
		if names[want] == 0 {
			t.Errorf("no %s event forwarded", want)
		}
	}
	for _, e := range events {
		if e.Event() == "OriginateResponse" && e.ActionID() != "odoo-42" {
			t.Errorf("the forwarded OriginateResponse carries ActionID %q, want the caller's odoo-42", e.ActionID())
		}
	}
}

func TestForwardedOriginateResponseCarriesTheChannelId(t *testing.T) {
	srv := replay(t, "04d-action-originate-variants")
	c := start(t, testConfig(srv.Addr()))
	do(t, c, "Action", "Originate", "Channel", "Local/700@test", "Application", "Wait", "Data", "1", "ChannelId", "odoo-11111111-aaaa", "OtherChannelId", "odoo-11111111-bbbb")
	fail := do(t, c, "Action", "Originate", "ActionID", "job-7", "Channel", "Local/999@test", "Context", "test", "Exten", "100", "Priority", "1", "ChannelId", "call-uuid-7")
	if fail[1].Get("Uniqueid") != "<unknown>" {
		t.Fatalf("want the failed variant: %s", fail[1])
	}
	var forwarded []*ami.Message
	for _, e := range drain(c, 300*time.Millisecond) {
		if e.Event() == "OriginateResponse" {
			forwarded = append(forwarded, e)
		}
	}
	if len(forwarded) < 2 {
		t.Fatalf("%d OriginateResponse events forwarded", len(forwarded))
	}
	if forwarded[0].Get("ChannelId") != "odoo-11111111-aaaa" {
		t.Errorf("first: ChannelId %q", forwarded[0].Get("ChannelId"))
	}
	if forwarded[1].Get("ChannelId") != "call-uuid-7" || forwarded[1].ActionID() != "job-7" {
		t.Errorf("failed originate forwarded as %s", forwarded[1])
	}
}

func TestOriginateVariants(t *testing.T) {
	srv := replay(t, "04d-action-originate-variants")
	c := start(t, testConfig(srv.Addr()))
	orig := func(pairs ...string) []*ami.Message {
		return do(t, c, append([]string{"Action", "Originate"}, pairs...)...)
	}
	ok := orig("Channel", "Local/700@test", "Application", "Wait", "Data", "1", "ChannelId", "odoo-11111111-aaaa", "OtherChannelId", "odoo-11111111-bbbb")
	if ok[1].Get("Uniqueid") != "odoo-11111111-aaaa" {
		t.Errorf("ChannelId not echoed: %s", ok[1])
	}
	fail := orig("Channel", "Local/999@test", "Context", "test", "Exten", "100", "Priority", "1")
	if fail[1].Get("Response") != "Failure" || fail[1].Get("Reason") != "0" || fail[1].Get("Uniqueid") != "<unknown>" {
		t.Errorf("failure: %s", fail[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var ie *ami.InvalidActionError
	if _, err := c.Do(ctx, ami.NewMessage("Action", "Originate", "Channel", "Local/999@test", "Async", "false")); !errors.As(err, &ie) {
		t.Errorf("sync Originate: %v, want InvalidActionError", err)
	}
}

func TestOriginateResponseTimeoutIsReported(t *testing.T) {
	server := "Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: o-1\r\nMessage: Originate successfully queued\r\n\r\n"
	sent := "Action: Originate\r\nActionID: o-1\r\n\r\n"
	srv, err := amitest.Replay([]byte(server), []byte(sent))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := testConfig(srv.Addr())
	cfg.OriginateGrace = 50 * time.Millisecond
	c := start(t, cfg)
	msgs := do(t, c, "Action", "Originate", "Channel", "PJSIP/102", "Timeout", "0", "Application", "Wait")
	if len(msgs) != 2 || msgs[1].Get("Message") != "OriginateResponse timeout" || !msgs[1].IsError() {
		t.Fatalf("reply %v", msgs)
	}
}

func TestEventListsAreAggregated(t *testing.T) {
	srv := replay(t, "04c-action-coreshowchannels-status")
	c := start(t, testConfig(srv.Addr()))
	for _, tc := range []struct {
		action, complete string
		items            int
	}{{"CoreShowChannels", "CoreShowChannelsComplete", 2}, {"Status", "StatusComplete", 2}} {
		msgs := do(t, c, "Action", tc.action)
		if len(msgs) != tc.items+2 {
			t.Fatalf("%s: %d messages", tc.action, len(msgs))
		}
		last := msgs[len(msgs)-1]
		if msgs[0].Get("EventList") != "start" || last.Event() != tc.complete || last.Get("ListItems") != "2" {
			t.Errorf("%s: first %s last %s", tc.action, msgs[0], last)
		}
	}
	select {
	case e := <-c.Events():
		if strings.HasPrefix(e.Event(), "CoreShowChannel") || e.Event() == "Status" {
			t.Errorf("a list item leaked into the events queue: %s", e.Event())
		}
	default:
	}
}

func TestDBAndPJSIPListsAndErrors(t *testing.T) {
	srv := replay(t, "04f-action-db")
	c := start(t, testConfig(srv.Addr()))
	do(t, c, "Action", "DBPut", "Family", "odoopbx", "Key", "k", "Val", "v")
	got := do(t, c, "Action", "DBGet", "Family", "odoopbx", "Key", "k")
	if len(got) != 3 || got[1].Event() != "DBGetResponse" || got[2].Event() != "DBGetComplete" {
		t.Errorf("DBGet: %v", got)
	}
	missing := do(t, c, "Action", "DBGet", "Family", "odoopbx", "Key", "missing")
	if len(missing) != 1 || !missing[0].IsError() || missing[0].Get("Message") != "Database entry not found" {
		t.Errorf("DBGet missing: %v", missing)
	}

	srv2 := replay(t, "04g-action-pjsip-show")
	c2 := start(t, testConfig(srv2.Addr()))
	eps := do(t, c2, "Action", "PJSIPShowEndpoints")
	if eps[len(eps)-1].Event() != "EndpointListComplete" {
		t.Errorf("endpoints: %v", eps)
	}
	ep := do(t, c2, "Action", "PJSIPShowEndpoint", "Endpoint", "101")
	if ep[len(ep)-1].Event() != "EndpointDetailComplete" {
		t.Errorf("endpoint: last %s", ep[len(ep)-1])
	}
	bad := do(t, c2, "Action", "PJSIPShowEndpoint", "Endpoint", "999")
	if bad[0].Get("Message") != "Unable to retrieve endpoint 999" {
		t.Errorf("stray LF not absorbed: %q", bad[0].Get("Message"))
	}
}

func TestCommandOutputNormalised(t *testing.T) {
	srv := replay(t, "04b-action-command")
	c := start(t, testConfig(srv.Addr()))
	v := do(t, c, "Action", "Command", "Command", "core show version")
	if !strings.HasPrefix(v[0].Get("content"), "Asterisk 22.10.1") || len(v[0].Values("Output")) != 1 {
		t.Errorf("version: %s", v[0])
	}
	if l, ok := v[0].Map()["Output"].([]string); !ok || len(l) != 1 {
		t.Errorf("a single Output line must still be a list in JSON: %#v", v[0].Map()["Output"])
	}
	do(t, c, "Action", "Command", "Command", "core show uptime")
	eps := do(t, c, "Action", "Command", "Command", "pjsip show endpoints")
	if lines := eps[0].Values("Output"); len(lines) < 5 || eps[0].Get("content") != strings.Join(lines, "\n") {
		t.Errorf("endpoints table: %d lines", len(lines))
	}
	bad := do(t, c, "Action", "Command", "Command", "no such thing")
	if !bad[0].IsError() || !strings.HasPrefix(bad[0].Get("content"), "No such command") {
		t.Errorf("unknown command: %s", bad[0])
	}
}

func TestPermissionDeniedKeepsTheSession(t *testing.T) {
	srv := replay(t, "03e-restricted-user-permission-denied.client")
	cfg := testConfig(srv.Addr())
	c := start(t, cfg)
	denied := do(t, c, "Action", "Originate", "Channel", "Local/100@test", "Application", "Wait", "Data", "1")
	if len(denied) != 1 || denied[0].Get("Message") != "Permission denied" {
		t.Fatalf("Originate: %v", denied)
	}
	if c.State() != ami.StateConnected {
		t.Error("session dropped after Permission denied")
	}
}

func TestInjectionRefusedBeforeSending(t *testing.T) {
	srv := replay(t, "01-login-fullybooted")
	c := start(t, testConfig(srv.Addr()))
	before := len(srv.Received())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, a := range []*ami.Message{
		ami.NewMessage("Action", "Ping", "X", "1\r\nAction: Command"),
		ami.NewMessage("Action", "Logoff"),
		ami.NewMessage("Channel", "x"),
	} {
		var ie *ami.InvalidActionError
		if _, err := c.Do(ctx, a); !errors.As(err, &ie) {
			t.Errorf("%s: want InvalidActionError, got %v", a, err)
		}
	}
	if len(srv.Received()) != before {
		t.Error("a refused action reached the wire")
	}
}

func TestReconnectResubscribesAndReportsTheGap(t *testing.T) {
	srv := replay(t, "01-login-fullybooted")
	cfg := testConfig(srv.Addr())
	cfg.Events = "call,system"
	var connects atomic.Int32
	var lastGap atomic.Int64
	cfg.OnEventsConnected = func(ctx context.Context, gap time.Duration) {
		connects.Add(1)
		lastGap.Store(int64(gap))
	}
	c := start(t, cfg)
	srv.DropConnections()
	deadline := time.Now().Add(5 * time.Second)
	for connects.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if connects.Load() < 2 {
		t.Fatal("the events session did not reconnect")
	}
	if lastGap.Load() <= 0 {
		t.Error("the gap after a reconnect should be positive")
	}
	waitState(t, c, ami.StateConnected)
	do(t, c, "Action", "Ping")
	masks := 0
	for _, a := range srv.Received() {
		if a.Get("Action") == "Login" && a.Get("Events") == "call,system" {
			masks++
		}
	}
	if masks < 2 {
		t.Errorf("the Events mask was sent on %d logins, want every events login", masks)
	}
	if c.Stats().Reconnects == 0 {
		t.Error("reconnects not counted")
	}
}

func TestPingWatchdogDropsAHungSession(t *testing.T) {
	srv := replay(t, "01-login-fullybooted")
	srv.IgnorePing = true
	cfg := testConfig(srv.Addr())
	cfg.PingInterval = 20 * time.Millisecond
	cfg.PingTimeout = 20 * time.Millisecond
	c := start(t, cfg)
	deadline := time.Now().Add(5 * time.Second)
	for srv.Logins() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if srv.Logins() < 4 {
		t.Fatalf("%d logins: sessions that never answer Ping must be dropped and redone", srv.Logins())
	}
	_ = c
}

func TestFullEventsQueueDropsAndCountsWithoutStalling(t *testing.T) {
	srv := replay(t, "02-originate-local-call")
	cfg := testConfig(srv.Addr())
	cfg.QueueSize = 4
	c := start(t, cfg)
	do(t, c, "Action", "Originate", "Channel", "Local/200@test", "Context", "test", "Exten", "100", "Priority", "1")
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().EventsDropped == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := c.Stats()
	if st.EventsDropped == 0 || st.QueueDepth != 4 {
		t.Fatalf("stats %+v: a full queue must drop and count", st)
	}
	if st.EventsReceived != st.EventsDropped+4 {
		t.Errorf("received %d = dropped %d + queued 4 does not hold", st.EventsReceived, st.EventsDropped)
	}
	do(t, c, "Action", "Ping") // the reader is not stalled by the full queue
}

func TestSessionLossFailsPendingActions(t *testing.T) {
	// The transcript never answers the Hangup, so the action waits until the session dies.
	server := "Asterisk Call Manager/11.0.0\r\n"
	sent := "Action: Hangup\r\nActionID: h-1\r\n\r\n"
	srv, err := amitest.Replay([]byte(server), []byte(sent))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := start(t, testConfig(srv.Addr()))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), ami.NewMessage("Action", "Hangup", "Channel", "PJSIP/101-1"))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	srv.DropConnections()
	select {
	case err := <-errc:
		if !errors.Is(err, ami.ErrNotConnected) {
			t.Errorf("got %v, want ErrNotConnected", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pending action was not failed when its session died")
	}
}

func TestSingleSessionCarriesActionsAndEvents(t *testing.T) {
	srv := replay(t, "02-originate-local-call")
	cfg := testConfig(srv.Addr())
	cfg.SingleSession = true
	c := start(t, cfg)
	if srv.Logins() != 1 {
		t.Errorf("%d logins in single-session mode", srv.Logins())
	}
	msgs := do(t, c, "Action", "Originate", "Channel", "Local/200@test", "Context", "test", "Exten", "100", "Priority", "1")
	if len(msgs) != 2 || msgs[1].Event() != "OriginateResponse" {
		t.Errorf("reply %v", msgs)
	}
	collect(t, c, "Hangup")
}

// TestLiveAsterisk runs against a real Asterisk when ODOOPBX_TEST_AMI=host:port is set (user and
// secret from ODOOPBX_TEST_AMI_USER / ODOOPBX_TEST_AMI_SECRET).
func TestLiveAsterisk(t *testing.T) {
	addr := os.Getenv("ODOOPBX_TEST_AMI")
	if addr == "" {
		t.Skip("live Asterisk test skipped: ODOOPBX_TEST_AMI not set")
	}
	cfg := testConfig(addr)
	cfg.Username = os.Getenv("ODOOPBX_TEST_AMI_USER")
	cfg.Secret = os.Getenv("ODOOPBX_TEST_AMI_SECRET")
	cfg.ReconnectMin, cfg.ReconnectMax = time.Second, time.Second
	c := start(t, cfg)
	pong := do(t, c, "Action", "Ping")
	if pong[0].Get("Ping") != "Pong" {
		t.Errorf("ping: %s", pong[0])
	}
	chans := do(t, c, "Action", "CoreShowChannels")
	if chans[len(chans)-1].Get("EventList") != "Complete" {
		t.Errorf("CoreShowChannels: %v", chans)
	}
	v := do(t, c, "Action", "Command", "Command", "core show version")
	if !strings.HasPrefix(v[0].Get("content"), "Asterisk") {
		t.Errorf("version: %s", v[0])
	}
	orig := do(t, c, "Action", "Originate", "Channel", "Local/s@odoopbx-test-none", "Application", "Wait", "Data", "1", "Timeout", "3000")
	if len(orig) != 2 || orig[1].Event() != "OriginateResponse" {
		t.Errorf("originate: %v", orig)
	}
}
