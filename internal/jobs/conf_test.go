package jobs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odoopbx/odoopbx/internal/config"
)

type confEnv struct {
	etc, outside string
	cfg          config.Config
	reg          *Registry
}

func newConfEnv(t *testing.T, read, write bool) *confEnv {
	t.Helper()
	base := t.TempDir()
	e := &confEnv{etc: filepath.Join(base, "asterisk"), outside: filepath.Join(base, "other")}
	os.MkdirAll(filepath.Join(e.etc, "manager.conf.d"), 0o755)
	os.MkdirAll(e.outside, 0o755)
	writeMode(t, filepath.Join(e.etc, "extensions.conf"), "[default]\n", 0o640)
	writeMode(t, filepath.Join(e.etc, "pjsip.conf"), "[transport-udp]\n", 0o644)
	writeMode(t, filepath.Join(e.etc, "manager.conf"), "[odoopbx_agent]\nsecret=s\n", 0o640)
	writeMode(t, filepath.Join(e.etc, "manager.conf.d", "odoo.conf"), "[odoo]\n", 0o640)
	writeMode(t, filepath.Join(e.etc, "notes.txt"), "not a conf\n", 0o640)
	writeMode(t, filepath.Join(e.outside, "evil.conf"), "[evil]\n", 0o640)
	cfg := config.Default()
	cfg.AsteriskEtcDir = e.etc
	cfg.Conf.ReadEnabled, cfg.Conf.WriteEnabled = read, write
	e.cfg = cfg
	e.reg = mustRegistry(t, Deps{Config: func() config.Config { return e.cfg }})
	return e
}

func writeMode(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func shaOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestConfDisabled(t *testing.T) {
	e := newConfEnv(t, false, false)
	for _, tc := range []struct {
		fun  string
		args []any
	}{
		{"asterisk.get_config", []any{"pjsip.conf"}},
		{"asterisk.get_all_configs", nil},
		{"asterisk.put_config", []any{"pjsip.conf", b64("x")}},
		{"asterisk.put_all_configs", []any{map[string]string{"pjsip.conf": b64("x")}}},
		{"asterisk.delete_config", []any{"pjsip.conf"}},
	} {
		if _, err := call(t, e.reg, tc.fun, tc.args, nil); errCode(t, err) != CodeDisabled {
			t.Errorf("%s: %v", tc.fun, err)
		}
	}
	// Read on, write off.
	e.cfg.Conf.ReadEnabled = true
	if _, err := call(t, e.reg, "asterisk.get_config", []any{"pjsip.conf"}, nil); err != nil {
		t.Errorf("read enabled: %v", err)
	}
	if _, err := call(t, e.reg, "asterisk.put_config", []any{"pjsip.conf", b64("x")}, nil); errCode(t, err) != CodeDisabled {
		t.Errorf("write while disabled: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(e.etc, "pjsip.conf"))
	if string(got) != "[transport-udp]\n" {
		t.Fatalf("file changed while writing was off: %q", got)
	}
}

func TestGetConfig(t *testing.T) {
	e := newConfEnv(t, true, false)
	res, err := call(t, e.reg, "asterisk.get_config", []any{"extensions.conf"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := res.(map[string]any)
	if m["filename"] != "extensions.conf" || m["file_data"] != b64("[default]\n") || m["sha256"] != shaOf("[default]\n") || m["mtime"].(float64) <= 0 {
		t.Fatalf("get = %v", m)
	}
	all, err := call(t, e.reg, "asterisk.get_all_configs", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	am := all.(map[string]any)
	if len(am) != 2 || am["pjsip.conf"] == nil || am["extensions.conf"] == nil {
		t.Fatalf("get_all = %v (manager.conf and non-.conf files must be left out)", am)
	}
	if _, err := call(t, e.reg, "asterisk.get_config", []any{"missing.conf"}, nil); errCode(t, err) != CodeNotFound {
		t.Errorf("missing: %v", err)
	}
}

func TestConfPathRules(t *testing.T) {
	e := newConfEnv(t, true, true)
	symlink(t, filepath.Join(e.outside, "evil.conf"), filepath.Join(e.etc, "evil.conf"))
	symlink(t, filepath.Join(e.etc, "manager.conf"), filepath.Join(e.etc, "alias.conf"))
	symlink(t, filepath.Join(e.etc, "manager.conf.d", "odoo.conf"), filepath.Join(e.etc, "alias2.conf"))
	names := []string{
		"manager.conf", "Manager.conf", "MANAGER.CONF",
		"manager.conf.d/odoo.conf", "../other/evil.conf", filepath.Join(e.outside, "evil.conf"),
		"evil.conf", "alias.conf", "alias2.conf", "notes.txt", "sub/x.conf", ".conf", "",
	}
	for _, name := range names {
		for _, fun := range []string{"asterisk.get_config", "asterisk.put_config", "asterisk.delete_config"} {
			args := []any{name}
			if fun == "asterisk.put_config" {
				args = append(args, b64("[hacked]\n"))
			}
			_, err := call(t, e.reg, fun, args, nil)
			code := errCode(t, err)
			if code != CodePathNotAllowed && !(name == "" && code == CodeInvalidArgs) {
				t.Errorf("%s(%q): %v", fun, name, err)
			}
		}
		if _, err := call(t, e.reg, "asterisk.put_all_configs", []any{map[string]string{"pjsip.conf": b64("ok"), name: b64("[hacked]\n")}}, nil); err == nil {
			t.Errorf("put_all_configs with %q accepted", name)
		}
	}
	for path, want := range map[string]string{
		filepath.Join(e.etc, "manager.conf"):                "[odoopbx_agent]\nsecret=s\n",
		filepath.Join(e.etc, "manager.conf.d", "odoo.conf"): "[odoo]\n",
		filepath.Join(e.outside, "evil.conf"):               "[evil]\n",
		filepath.Join(e.etc, "pjsip.conf"):                  "[transport-udp]\n", // put_all checks every name first
	} {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s changed to %q", path, got)
		}
	}
	// get_all_configs skips the links that lead out or to manager.conf.
	all, err := call(t, e.reg, "asterisk.get_all_configs", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name := range all.(map[string]any) {
		if name != "pjsip.conf" && name != "extensions.conf" {
			t.Errorf("get_all_configs returned %s", name)
		}
	}
}

func TestPutConfig(t *testing.T) {
	e := newConfEnv(t, true, true)
	path := filepath.Join(e.etc, "pjsip.conf")
	res, err := call(t, e.reg, "asterisk.put_config", []any{"pjsip.conf", b64("[new]\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := res.(map[string]any); m["filename"] != "pjsip.conf" || m["sha256"] != shaOf("[new]\n") {
		t.Fatalf("put = %v", m)
	}
	got, _ := os.ReadFile(path)
	bak, _ := os.ReadFile(path + ".odoopbx.bak")
	if string(got) != "[new]\n" || string(bak) != "[transport-udp]\n" {
		t.Fatalf("file %q, backup %q", got, bak)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want the old 0644 kept", st.Mode().Perm())
	}
	// expected_sha256: a stale hash is a conflict and changes nothing; the right one writes.
	if _, err := call(t, e.reg, "asterisk.put_config", []any{"pjsip.conf", b64("[stale]\n")}, map[string]any{"expected_sha256": shaOf("[transport-udp]\n")}); errCode(t, err) != CodeConflict {
		t.Fatalf("stale: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "[new]\n" {
		t.Fatalf("conflict wrote %q", got)
	}
	if _, err := call(t, e.reg, "asterisk.put_config", []any{"pjsip.conf", b64("[v3]\n")}, map[string]any{"expected_sha256": strings.ToUpper(shaOf("[new]\n"))}); err != nil {
		t.Fatalf("matching hash: %v", err)
	}
	// A new file; Python's encodebytes line breaks are tolerated.
	if _, err := call(t, e.reg, "asterisk.put_config", []any{"new.conf", b64("[a]\n") + "\n"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.etc, "new.conf.odoopbx.bak")); !os.IsNotExist(err) {
		t.Error("backup made for a new file")
	}
	// No temp files left behind.
	entries, _ := os.ReadDir(e.etc)
	for _, ent := range entries {
		if strings.Contains(ent.Name(), "odoopbx-tmp") {
			t.Errorf("temp file left: %s", ent.Name())
		}
	}
	for _, bad := range []any{"not base64!", 42} {
		if _, err := call(t, e.reg, "asterisk.put_config", []any{"x.conf", bad}, nil); errCode(t, err) != CodeInvalidArgs {
			t.Errorf("file_data %v: %v", bad, err)
		}
	}
	e.cfg.Files.MaxBytes = 4
	if _, err := call(t, e.reg, "asterisk.put_config", []any{"x.conf", b64("12345")}, nil); errCode(t, err) != CodeTooLarge {
		t.Errorf("too large: %v", err)
	}
}

func TestPutAllAndDeleteConfig(t *testing.T) {
	e := newConfEnv(t, true, true)
	res, err := call(t, e.reg, "asterisk.put_all_configs", []any{map[string]string{"b.conf": b64("B"), "a.conf": b64("A")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := asJSON(t, res).(map[string]any)["written"].([]any); len(w) != 2 || w[0] != "a.conf" || w[1] != "b.conf" {
		t.Fatalf("written = %v", w)
	}
	if got, _ := os.ReadFile(filepath.Join(e.etc, "b.conf")); string(got) != "B" {
		t.Fatalf("b.conf = %q", got)
	}
	res, err = call(t, e.reg, "asterisk.delete_config", []any{"a.conf"}, nil)
	if err != nil || res != true {
		t.Fatalf("delete = %v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(e.etc, "a.conf")); !os.IsNotExist(err) {
		t.Fatal("a.conf still there")
	}
	if got, _ := os.ReadFile(filepath.Join(e.etc, "a.conf.odoopbx.bak")); string(got) != "A" {
		t.Fatalf("backup = %q", got)
	}
	res, err = call(t, e.reg, "asterisk.delete_config", []any{"a.conf"}, nil)
	if err != nil || res != false {
		t.Fatalf("second delete = %v, %v", res, err)
	}
}
