package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

// runCLI runs the command tree with args and returns stdout, stderr and the exit code main would use.
func runCLI(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := newApp(&out, &errOut).run(ctx, args)
	code := 0
	if err != nil {
		code = exitCode(err)
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}

// replayEnv starts a fake Asterisk replaying fixture name and points the config at it. With
// eventsOff the client logs in with Events: off (ami action) and the replay does not wait for it.
func replayEnv(t *testing.T, name string, eventsOff bool) {
	t.Helper()
	read := func(f string) []byte { return amitest.ReadFixture(t, f) }
	srv, err := amitest.Replay(read(name+".txt"), read(name+".sent.txt"))
	if err != nil {
		t.Fatal(err)
	}
	srv.NoEventSession = eventsOff
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	host, port, _ := strings.Cut(srv.Addr(), ":")
	t.Setenv("ODOOPBX_AMI_HOST", host)
	t.Setenv("ODOOPBX_AMI_PORT", port)
	t.Setenv("ODOOPBX_AMI_USER", "odoo")
	t.Setenv("ODOOPBX_AMI_SECRET", "odoo-secret")
	t.Setenv("ODOOPBX_STATE_DIR", t.TempDir())
}

func noConfigFile(t *testing.T) string {
	return "--config=" + filepath.Join(t.TempDir(), "absent.yaml")
}

func TestVersionAndHelp(t *testing.T) {
	out, _, code := runCLI(t, context.Background(), "version")
	if code != 0 || !strings.HasPrefix(out, "odoopbx-agent ") {
		t.Errorf("version: %d %q", code, out)
	}
	_, help, code := runCLI(t, context.Background(), "--help")
	if code != 0 {
		t.Errorf("--help exit %d", code)
	}
	for _, cmd := range []string{"run", "init", "check", "ami", "queue", "bans", "security", "sim", "demo", "version"} {
		if !strings.Contains(help, "  "+cmd) {
			t.Errorf("--help does not list %s:\n%s", cmd, help)
		}
	}
	_, _, code = runCLI(t, context.Background(), "nonsense")
	if code != 2 {
		t.Errorf("unknown command exit %d, want 2", code)
	}
}

func TestAMIActionPrintsEveryMessageAsJSON(t *testing.T) {
	replayEnv(t, "04c-action-coreshowchannels-status", true)
	out, errOut, code := runCLI(t, context.Background(), noConfigFile(t), "ami", "action", `{"Action":"CoreShowChannels"}`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want response, 2 items, Complete:\n%s", len(lines), out)
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[3]), &last); err != nil || last["Event"] != "CoreShowChannelsComplete" {
		t.Errorf("last line %s (%v)", lines[3], err)
	}
}

func TestAMIActionErrorExitsNonZero(t *testing.T) {
	replayEnv(t, "04a-actions-ping-coresettings-corestatus", true)
	ctx := context.Background()
	for _, a := range []string{`{"Action":"Ping"}`, `{"Action":"CoreSettings"}`, `{"Action":"CoreStatus"}`, `{"Action":"Events","EventMask":"off"}`} {
		if _, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "action", a); code != 0 {
			t.Fatalf("%s: exit %d %s", a, code, errOut)
		}
	}
	out, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "action", `{"Action":"NoSuchAction"}`)
	if code != 1 || !strings.Contains(errOut, "Invalid/unknown command: NoSuchAction") || !strings.Contains(out, `"Response":"Error"`) {
		t.Errorf("exit %d, out %q, err %q", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "action", `{"Action":"Ping","X":"a\r\nAction: Command"}`); code == 0 || !strings.Contains(errOut, "CR or LF") {
		t.Errorf("injection: exit %d %s", code, errOut)
	}
}

func TestAMITailJSON(t *testing.T) {
	replayEnv(t, "05c-sip-call-101-to-ext-100", false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "tail", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	names := map[string]int{}
	var hangup map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		names[m["Event"].(string)]++
		if m["Event"] == "Hangup" {
			hangup = m
		}
	}
	for _, want := range []string{"Newchannel", "Newstate", "Hangup", "Cdr"} {
		if names[want] == 0 {
			t.Errorf("no %s line in ami tail --json:\n%s", want, out)
		}
	}
	if hangup["Channel"] != "PJSIP/101-00000000" || hangup["Cause-txt"] != "Normal Clearing" {
		t.Errorf("Hangup as JSON: %v", hangup)
	}
}

func TestCheckSaysWhatFails(t *testing.T) {
	t.Setenv("ODOOPBX_AMI_HOST", "127.0.0.1")
	t.Setenv("ODOOPBX_AMI_PORT", "1") // nothing listens there
	t.Setenv("ODOOPBX_AMI_SECRET", "x")
	t.Setenv("ODOOPBX_STATE_DIR", t.TempDir())
	out, _, code := runCLI(t, context.Background(), noConfigFile(t), "check")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"OK   config", "OK   state_dir", "FAIL ami", "FAIL odoo", "ODOOPBX_ODOO_URL"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	t.Setenv("ODOOPBX_AMI_PORT", "not-a-port")
	out, _, code = runCLI(t, context.Background(), noConfigFile(t), "check")
	if code != 1 || !strings.Contains(out, "FAIL config") || !strings.Contains(out, "ODOOPBX_AMI_PORT") {
		t.Errorf("bad config: exit %d\n%s", code, out)
	}
}

func TestAMIActionFailuresExitNonZeroWithTheReason(t *testing.T) {
	replayEnv(t, "04d-action-originate-variants", false)
	ctx := context.Background()
	// The transcript's first Originate succeeds; the second (no such extension) fails with Reason 0.
	if _, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "action", `{"Action":"Originate","Channel":"Local/700@test","Application":"Wait","Data":"1"}`); code != 0 {
		t.Fatalf("answered originate: exit %d %s", code, errOut)
	}
	out, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "action", `{"Action":"Originate","Channel":"Local/999@test","Context":"test","Exten":"100","Priority":"1"}`)
	if code != 1 || !strings.Contains(errOut, "Reason 0") || !strings.Contains(out, `"Response":"Failure"`) {
		t.Errorf("failed originate: exit %d, out %q, err %q", code, out, errOut)
	}
}

func TestAMIActionFailedCLICommandShowsItsOutput(t *testing.T) {
	replayEnv(t, "04b-action-command", true)
	ctx := context.Background()
	for _, cmd := range []string{"core show version", "core show uptime", "pjsip show endpoints"} {
		if _, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "action", `{"Action":"Command","Command":"`+cmd+`"}`); code != 0 {
			t.Fatalf("%s: exit %d %s", cmd, code, errOut)
		}
	}
	_, errOut, code := runCLI(t, ctx, noConfigFile(t), "ami", "action", `{"Action":"Command","Command":"no such thing"}`)
	if code != 1 || !strings.Contains(errOut, "No such command") {
		t.Errorf("exit %d, err %q", code, errOut)
	}
}

func TestAMIActionStopsAtARefusedLogin(t *testing.T) {
	replayEnv(t, "01-login-fullybooted", true)
	t.Setenv("ODOOPBX_AMI_SECRET", "wrong")
	start := time.Now()
	_, errOut, code := runCLI(t, context.Background(), noConfigFile(t), "ami", "action", "--timeout=20s", `{"Action":"Ping"}`)
	if code != 1 || !strings.Contains(errOut, "refused the login") {
		t.Errorf("exit %d, err %q", code, errOut)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s: a refused login must end the command, not retry until --timeout", time.Since(start))
	}
}
