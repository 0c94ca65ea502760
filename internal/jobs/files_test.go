package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/config"
)

// fileEnv is a temporary PBX layout: monitor and voicemail dirs, a secret file outside them.
type fileEnv struct {
	base, monitor, voicemail, outside string
	cfg                               config.Config
	reg                               *Registry
}

func newFileEnv(t *testing.T) *fileEnv {
	t.Helper()
	base := t.TempDir()
	e := &fileEnv{
		base:      base,
		monitor:   filepath.Join(base, "monitor"),
		voicemail: filepath.Join(base, "voicemail"),
		outside:   filepath.Join(base, "secret"),
	}
	for _, d := range []string{e.monitor, e.voicemail, e.outside, filepath.Join(e.monitor, "2026")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(e.outside, "key.wav"), "SECRET")
	write(t, filepath.Join(e.monitor, "2026", "call.wav"), "RIFFwavdata")
	write(t, filepath.Join(e.voicemail, "msg.wav"), "RIFFvoicemail")
	cfg := config.Default()
	cfg.AsteriskMonitorDir = e.monitor
	cfg.AsteriskVoicemailDir = e.voicemail
	cfg.Files.ReadRoots = nil // the defaults: monitor + voicemail
	cfg.Files.DeleteRoots = nil
	cfg.Files.MaxBytes = 1024
	cfg.Files.MP3Encoder = "odoopbx-no-such-encoder"
	e.cfg = cfg
	e.reg = mustRegistry(t, Deps{Config: func() config.Config { return e.cfg }})
	return e
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestRecordingGetFileLocal(t *testing.T) {
	e := newFileEnv(t)
	for _, p := range []string{"2026/call.wav", filepath.Join(e.monitor, "2026", "call.wav")} {
		res, err := call(t, e.reg, "recording.get_file", []any{p}, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		m := res.(map[string]any)
		data, _ := base64.StdEncoding.DecodeString(m["file_data"].(string))
		if string(data) != "RIFFwavdata" || m["file_name"] != "call.wav" || m["file_path"] != filepath.Join(e.monitor, "2026", "call.wav") {
			t.Fatalf("%s: result = %v", p, m)
		}
	}
	// Voicemail is a read root by default.
	if _, err := call(t, e.reg, "recording.get_file", []any{filepath.Join(e.voicemail, "msg.wav")}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRecordingGetFileConfinement(t *testing.T) {
	e := newFileEnv(t)
	symlink(t, filepath.Join(e.outside, "key.wav"), filepath.Join(e.monitor, "link-out.wav"))
	symlink(t, e.outside, filepath.Join(e.monitor, "dir-out"))
	symlink(t, filepath.Join(e.monitor, "2026", "call.wav"), filepath.Join(e.monitor, "link-in.wav"))
	for _, tc := range []struct {
		path, code string
	}{
		{"../secret/key.wav", CodePathNotAllowed},
		{"2026/../../secret/key.wav", CodePathNotAllowed},
		{filepath.Join(e.monitor, "..", "secret", "key.wav"), CodePathNotAllowed},
		{filepath.Join(e.outside, "key.wav"), CodePathNotAllowed},
		{"/etc/passwd", CodePathNotAllowed},
		{filepath.Join(e.outside, "missing.wav"), CodePathNotAllowed}, // outside: no existence probe
		{"link-out.wav", CodePathNotAllowed},
		{"dir-out/key.wav", CodePathNotAllowed},
		{"missing.wav", CodeNotFound},
		{"2026", CodeInvalidArgs},
		{"a\x00b", CodeInvalidArgs},
	} {
		_, err := call(t, e.reg, "recording.get_file", []any{tc.path}, nil)
		if got := errCode(t, err); got != tc.code {
			t.Errorf("%q: code %s (%v), want %s", tc.path, got, err, tc.code)
		}
	}
	// A symlink that stays inside the roots is fine.
	if _, err := call(t, e.reg, "recording.get_file", []any{"link-in.wav"}, nil); err != nil {
		t.Errorf("link inside: %v", err)
	}
}

func TestRecordingGetFileLimitsAndModes(t *testing.T) {
	e := newFileEnv(t)
	write(t, filepath.Join(e.monitor, "big.wav"), strings.Repeat("x", 1025))
	if _, err := call(t, e.reg, "recording.get_file", []any{"big.wav"}, nil); errCode(t, err) != CodeTooLarge {
		t.Fatalf("big: %v", err)
	}
	res, err := call(t, e.reg, "recording.get_file", []any{"2026/call.wav"}, map[string]any{"recordings_access": "remote", "recordings_access_url": "https://pbx/rec/"})
	if err != nil {
		t.Fatal(err)
	}
	m := res.(map[string]any)
	if m["file_path"] != filepath.Join(e.monitor, "2026/call.wav") || m["recording_access"] != "remote" || m["recording_access_url"] != "https://pbx/rec/" || m["file_data"] != nil {
		t.Fatalf("remote = %v", m)
	}
	for kw, code := range map[string]string{"s3": CodeUnsupported, "ftp": CodeInvalidArgs} {
		if _, err := call(t, e.reg, "recording.get_file", []any{"2026/call.wav"}, map[string]any{"recordings_access": kw}); errCode(t, err) != code {
			t.Errorf("%s: %v", kw, err)
		}
	}
	for _, kw := range []map[string]any{{"file_format": "ogg"}, {"file_format": "mp3", "mp3_bitrate": 300}, {"file_format": "mp3", "mp3_quality": 1}, {"mp3_bitrate": 96.5}} {
		if _, err := call(t, e.reg, "recording.get_file", []any{"2026/call.wav"}, kw); errCode(t, err) != CodeInvalidArgs {
			t.Errorf("%v: %v", kw, err)
		}
	}
	if _, err := call(t, e.reg, "recording.get_file", nil, nil); errCode(t, err) != CodeInvalidArgs {
		t.Errorf("no args: %v", err)
	}
}

func TestRecordingGetFileMP3(t *testing.T) {
	e := newFileEnv(t)
	// Missing encoder: WAV with a warning.
	res, err := call(t, e.reg, "recording.get_file", []any{"2026/call.wav"}, map[string]any{"file_format": "mp3"})
	if err != nil {
		t.Fatal(err)
	}
	m := res.(map[string]any)
	if m["file_name"] != "call.wav" || !strings.Contains(m["warning"].(string), "not installed") {
		t.Fatalf("missing encoder: %v", m)
	}

	// A stand-in encoder with lame's command line: it records its arguments.
	bin := t.TempDir()
	argsFile := filepath.Join(bin, "args")
	script := "#!/bin/sh\necho \"$@\" > " + argsFile + "\ncat >/dev/null\nprintf 'ID3mp3:'\n"
	write(t, filepath.Join(bin, "fake-lame"), script)
	if err := os.Chmod(filepath.Join(bin, "fake-lame"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.cfg.Files.MP3Encoder = filepath.Join(bin, "fake-lame")
	res, err = call(t, e.reg, "recording.get_file", []any{"2026/call.wav"}, map[string]any{"file_format": "mp3", "mp3_bitrate": 64, "mp3_quality": 2})
	if err != nil {
		t.Fatal(err)
	}
	m = res.(map[string]any)
	data, _ := base64.StdEncoding.DecodeString(m["file_data"].(string))
	if string(data) != "ID3mp3:" || m["file_name"] != "call.mp3" || m["warning"] != nil {
		t.Fatalf("mp3 = %v (data %q)", m, data)
	}
	got, _ := os.ReadFile(argsFile)
	if !strings.HasPrefix(string(got), "--quiet -b 64 -q 2 - -") {
		t.Errorf("encoder args = %q", got)
	}

	// A failing encoder: WAV with a warning that says why.
	write(t, filepath.Join(bin, "bad-lame"), "#!/bin/sh\necho 'lame: bad input' >&2\nexit 3\n")
	os.Chmod(filepath.Join(bin, "bad-lame"), 0o755)
	e.cfg.Files.MP3Encoder = filepath.Join(bin, "bad-lame")
	res, err = call(t, e.reg, "recording.get_file", []any{"2026/call.wav"}, map[string]any{"file_format": "mp3"})
	if err != nil {
		t.Fatal(err)
	}
	m = res.(map[string]any)
	data, _ = base64.StdEncoding.DecodeString(m["file_data"].(string))
	if string(data) != "RIFFwavdata" || !strings.Contains(m["warning"].(string), "bad input") {
		t.Fatalf("failing encoder: %v", m)
	}
}

func TestFileDelete(t *testing.T) {
	e := newFileEnv(t)
	symlink(t, filepath.Join(e.outside, "key.wav"), filepath.Join(e.monitor, "link-out.wav"))
	// Voicemail is readable but not deletable by default.
	for _, tc := range []struct {
		path, code string
	}{
		{filepath.Join(e.voicemail, "msg.wav"), CodePathNotAllowed},
		{"../secret/key.wav", CodePathNotAllowed},
		{filepath.Join(e.outside, "key.wav"), CodePathNotAllowed},
		{"link-out.wav", CodePathNotAllowed},
		{"2026", CodeInvalidArgs},
	} {
		if _, err := call(t, e.reg, "file.delete", []any{tc.path}, nil); errCode(t, err) != tc.code {
			t.Errorf("%q: %v, want %s", tc.path, err, tc.code)
		}
	}
	if _, err := os.Stat(filepath.Join(e.outside, "key.wav")); err != nil {
		t.Fatalf("the outside file was touched: %v", err)
	}
	res, err := call(t, e.reg, "file.delete", []any{"2026/call.wav"}, nil)
	if err != nil || res != true {
		t.Fatalf("delete = %v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(e.monitor, "2026", "call.wav")); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
	res, err = call(t, e.reg, "file.delete", []any{"2026/call.wav"}, nil)
	if err != nil || res != false {
		t.Fatalf("second delete = %v, %v", res, err)
	}
}

func TestConfineRootBehindSymlink(t *testing.T) {
	// /var/spool/asterisk may itself be a symlink to another disk: paths written either way work.
	base := t.TempDir()
	real := filepath.Join(base, "data", "monitor")
	os.MkdirAll(real, 0o755)
	symlink(t, real, filepath.Join(base, "monitor"))
	write(t, filepath.Join(real, "a.wav"), "x")
	for _, p := range []string{filepath.Join(base, "monitor", "a.wav"), filepath.Join(real, "a.wav"), "a.wav"} {
		c, err := confine(p, filepath.Join(base, "monitor"), []string{filepath.Join(base, "monitor")})
		if err != nil || c.Rel != "a.wav" {
			t.Errorf("%s: %+v, %v", p, c, err)
		}
	}
}

func TestTestPingAndRegistry(t *testing.T) {
	status := func(context.Context) (any, error) { return map[string]any{"version": "x"}, nil }
	reload := func(context.Context) (any, error) {
		return map[string]any{"events": 1, "options": 2, "errors": []string{}}, nil
	}
	r := mustRegistry(t, Deps{Status: status, Reload: reload})
	if res, err := call(t, r, "test.ping", nil, nil); err != nil || res != true {
		t.Fatalf("ping = %v, %v", res, err)
	}
	if _, canonical, ok := r.Lookup("agent_reload_config"); !ok || canonical != "agent.reload_config" {
		t.Fatalf("alias lookup = %q, %v", canonical, ok)
	}
	if res, err := call(t, r, "agent.status", nil, nil); err != nil || asJSON(t, res).(map[string]any)["version"] != "x" {
		t.Fatalf("status = %v, %v", res, err)
	}
	// No AMI given: manager_action is left out rather than failing at run time.
	if _, _, ok := r.Lookup("asterisk.manager_action"); ok {
		t.Error("manager_action registered without an AMI client")
	}
	for _, name := range []string{"sip.get_peers", "download_prompt", "delete_prompt", "asterisk.tts_create_sound", "no.such"} {
		if _, _, ok := r.Lookup(name); ok {
			t.Errorf("%s found", name)
		}
	}
	noop := func(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) { return nil, nil }
	if err := r.Register("sip.get_peers", noop); err == nil {
		t.Error("reserved name registered")
	}
	if err := r.Register("test.ping", noop); err == nil {
		t.Error("duplicate name registered")
	}
	if err := r.Register("security.list_bans", noop, "agent_reload_config"); err == nil {
		t.Error("duplicate alias registered")
	}
	if err := r.Register("security.list_bans", noop, "asterisk.get_banned"); err != nil {
		t.Fatal(err)
	}
	if f, canonical, ok := r.Lookup("asterisk.get_banned"); !ok || f == nil || canonical != "security.list_bans" {
		t.Error("merged alias not found")
	}
	if r.Timeout("recording.get_file") != RecordingTimeout || r.Timeout("test.ping") != DefaultTimeout {
		t.Error("timeouts")
	}
}

func TestRecordingReadsAreBounded(t *testing.T) {
	e := newFileEnv(t)
	b := &builtins{deps: Deps{Config: func() config.Config { return e.cfg }}, recordings: make(chan struct{}, 1)}
	// Hold the only slot, as a long read would: a second job waits, then times out cleanly.
	b.recordings <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	arg, _ := json.Marshal("2026/call.wav")
	if _, err := b.recordingGetFile(ctx, []json.RawMessage{arg}, nil); errCode(t, err) != CodeTimeout {
		t.Fatalf("err = %v", err)
	}
	<-b.recordings
	if _, err := b.recordingGetFile(context.Background(), []json.RawMessage{arg}, nil); err != nil {
		t.Fatal(err)
	}
	if len(b.recordings) != 0 {
		t.Fatal("the slot was not given back")
	}
}
