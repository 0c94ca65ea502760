package initcmd

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

const sampleManager = `;
; AMI - The Asterisk Manager Interface
;
[general]
enabled = yes   ; turn it on
;webenabled = yes
port => 5039
bindaddr = 0.0.0.0
timestampevents=yes
;-- a block comment
enabled = no
--;
displayconnects = yes ; trailing ;-- not a block

[admin-tpl](!)
read = all
write = all

[admin](admin-tpl)
secret = pa\;ss   ; literal semicolon
deny=0.0.0.0/0.0.0.0
permit=127.0.0.1/255.255.255.255

#include "manager_custom.conf"
#tryinclude manager.conf.d/*.conf
#exec /bin/true
`

func TestParseAstConfig(t *testing.T) {
	cfg, err := ParseAstConfig([]byte(strings.ReplaceAll(sampleManager, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sections) != 3 {
		t.Fatalf("%d sections", len(cfg.Sections))
	}
	checks := []struct{ section, key, want string }{
		{"general", "enabled", "yes"}, // the "no" is inside a block comment
		{"general", "PORT", "5039"},   // "=>" and case-insensitive key
		{"general", "timestampevents", "yes"},
		{"general", "displayconnects", "yes"},
		{"admin", "secret", "pa;ss"},
		{"admin", "permit", "127.0.0.1/255.255.255.255"},
	}
	for _, c := range checks {
		got, ok := cfg.Get(c.section, c.key)
		if !ok || got != c.want {
			t.Errorf("[%s] %s = %q (%v), want %q", c.section, c.key, got, ok, c.want)
		}
	}
	if _, ok := cfg.Get("admin-tpl", "read"); ok {
		t.Error("Get read a template section")
	}
	tpl := cfg.Sections[1]
	if !tpl.Template || tpl.Name != "admin-tpl" {
		t.Errorf("template section %+v", tpl)
	}
	admin := cfg.Section("admin")
	if admin == nil || len(admin.Inherits) != 1 || admin.Inherits[0] != "admin-tpl" {
		t.Errorf("admin section %+v", admin)
	}
	port := cfg.Sections[0].Entries[1]
	if !port.Object || port.Line != 7 {
		t.Errorf("port entry %+v, want Object and line 7", port)
	}
	if len(cfg.Includes) != 2 {
		t.Fatalf("includes %+v", cfg.Includes)
	}
	if inc := cfg.Includes[0]; inc.Path != "manager_custom.conf" || inc.Try || inc.Section != "admin" {
		t.Errorf("include 0 %+v", inc)
	}
	if inc := cfg.Includes[1]; inc.Path != "manager.conf.d/*.conf" || !inc.Try || inc.Line != 25 {
		t.Errorf("include 1 %+v", inc)
	}
}

func TestParseAstConfigTemplateOptions(t *testing.T) {
	cfg, err := ParseAstConfig([]byte("[a](!,base , other)\nx=1\n[b](+)\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Sections[0]
	if !a.Template || strings.Join(a.Inherits, "|") != "base|other" {
		t.Fatalf("%+v", a)
	}
	if b := cfg.Sections[1]; b.Template || strings.Join(b.Inherits, "|") != "+" {
		t.Fatalf("%+v", b)
	}
}

func TestParseAstConfigErrors(t *testing.T) {
	cases := map[string]string{
		"key outside section":  "enabled = yes\n[general]\n",
		"no closing bracket":   "[general\n",
		"empty section":        "[]\n",
		"junk after header":    "[general] junk\n",
		"line without =":       "[general]\nenabled\n",
		"unclosed block":       "[general]\n;-- open\nenabled = yes\n",
		"include without file": "#include\n",
		"empty key":            "[general]\n = yes\n",
	}
	for name, input := range cases {
		if _, err := ParseAstConfig([]byte(input)); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: err = %v, want an error naming the line", name, err)
		}
	}
}

func TestParseAstConfigEmptyAndComments(t *testing.T) {
	cfg, err := ParseAstConfig([]byte("; only a comment\n\n   \n;-- block\n--;\n"))
	if err != nil || len(cfg.Sections) != 0 {
		t.Fatalf("cfg %+v err %v", cfg, err)
	}
}

// memFS is a tiny in-memory tree for InspectManager.
type memFS map[string]string

func (m memFS) read(p string) ([]byte, error) {
	if s, ok := m[p]; ok {
		return []byte(s), nil
	}
	return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

func (m memFS) glob(pattern string) ([]string, error) {
	var out []string
	for p := range m {
		if ok, _ := filepath.Match(pattern, p); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func TestInspectManager(t *testing.T) {
	tree := memFS{
		"/etc/asterisk/manager.conf":        sampleManager,
		"/etc/asterisk/manager_custom.conf": "[x]\nsecret=1\n",
	}
	info, err := InspectManager("/etc/asterisk", tree.read, tree.glob)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Enabled || info.Port != 5039 || info.BindAddr != "0.0.0.0" || !info.TimestampEvents {
		t.Fatalf("%+v", info)
	}
	if info.IncludedBy != "/etc/asterisk/manager.conf:25" {
		t.Fatalf("IncludedBy %q", info.IncludedBy)
	}
	if info.AMIHost() != "127.0.0.1" {
		t.Fatalf("AMIHost %q", info.AMIHost())
	}
}

func TestInspectManagerDefaultsAndIncludeForms(t *testing.T) {
	cases := []struct {
		name, include, where string
	}{
		{"no include", "", ""},
		{"plain include of the file", "#include manager.conf.d/odoopbx_agent.conf", "/e/manager.conf:3"},
		{"absolute glob", `#include "/e/manager.conf.d/*"`, "/e/manager.conf:3"},
		{"other dir", "#include manager.d/*.conf", ""},
		{"commented out", ";#tryinclude manager.conf.d/*.conf", ""},
	}
	for _, c := range cases {
		tree := memFS{"/e/manager.conf": "[general]\nenabled = on\n" + c.include + "\n"}
		info, err := InspectManager("/e", tree.read, tree.glob)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if info.IncludedBy != c.where {
			t.Errorf("%s: IncludedBy %q, want %q", c.name, info.IncludedBy, c.where)
		}
		if !info.Enabled || info.Port != 5038 || info.BindAddr != "" || info.TimestampEvents {
			t.Errorf("%s: defaults %+v", c.name, info)
		}
	}
}

func TestInspectManagerFollowsIncludes(t *testing.T) {
	// FreePBX style: manager.conf includes manager_custom.conf, which includes manager.conf.d.
	tree := memFS{
		"/e/manager.conf":        "[general]\nenabled=yes\n#include manager_custom.conf\n#include manager_loop.conf\n",
		"/e/manager_loop.conf":   "#include manager.conf\n",
		"/e/manager_custom.conf": "; custom\n#tryinclude manager.conf.d/*.conf\n",
	}
	info, err := InspectManager("/e", tree.read, tree.glob)
	if err != nil {
		t.Fatal(err)
	}
	if info.IncludedBy != "/e/manager_custom.conf:2" {
		t.Fatalf("IncludedBy %q", info.IncludedBy)
	}
	// An include loop without the include ends, and finds nothing.
	tree["/e/manager_custom.conf"] = "#include manager_loop.conf\n"
	info, err = InspectManager("/e", tree.read, tree.glob)
	if err != nil || info.IncludedBy != "" {
		t.Fatalf("loop: %+v %v", info, err)
	}
}

func TestInspectManagerErrors(t *testing.T) {
	if _, err := InspectManager("/none", memFS{}.read, memFS{}.glob); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	for _, body := range []string{"[general]\nport = http\n", "[general]\nbindaddr = somewhere\n", "port=1\n"} {
		tree := memFS{"/e/manager.conf": body}
		if _, err := InspectManager("/e", tree.read, tree.glob); err == nil || !strings.Contains(err.Error(), "/e/manager.conf") {
			t.Errorf("%q: err %v", body, err)
		}
	}
}

func TestAMIHost(t *testing.T) {
	for bind, want := range map[string]string{"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::": "::1", "[::1]": "::1", "10.1.2.3": "10.1.2.3", "2001:db8::1": "2001:db8::1"} {
		if got := (ManagerInfo{BindAddr: bind}).AMIHost(); got != want {
			t.Errorf("bindaddr %q: host %q, want %q", bind, got, want)
		}
	}
}

func TestAMIUserRenderParsesBack(t *testing.T) {
	spec := AMIUserSpec{User: "odoopbx_agent", Secret: "abc123", ExtraPermit: "10.1.2.3", WriteCommand: true}
	data := spec.Render("line one\nline two", "")
	cfg, err := ParseAstConfig(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	want := map[string]string{
		"secret": "abc123", "deny": "0.0.0.0/0.0.0.0", "read": "system,call,dialplan,user,security",
		"write": "originate,call,system,reporting,command", "writetimeout": "5000",
		"allowmultiplelogin": "yes", "displayconnects": "no",
	}
	for k, v := range want {
		if got, _ := cfg.Get("odoopbx_agent", k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	var permits []string
	for _, e := range cfg.Section("odoopbx_agent").Entries {
		if e.Key == "permit" {
			permits = append(permits, e.Value)
		}
	}
	if got := strings.Join(permits, " "); got != "127.0.0.1/255.255.255.255 ::1/128 10.1.2.3/255.255.255.255" {
		t.Errorf("permits %s", got)
	}
	plain := AMIUserSpec{User: "u", Secret: "s"}.Render("h", "***")
	if !strings.Contains(string(plain), "secret = ***\n") || strings.Contains(string(plain), "command") {
		t.Errorf("masked render without command:\n%s", plain)
	}
	if secret, err := ExistingSecret(data, "odoopbx_agent"); err != nil || secret != "abc123" {
		t.Errorf("ExistingSecret = %q, %v", secret, err)
	}
	if _, err := ExistingSecret(data, "other"); err == nil || !strings.Contains(err.Error(), "[odoopbx_agent]") {
		t.Errorf("ExistingSecret(other) err %v", err)
	}
	if _, err := ExistingSecret([]byte("[u]\nread=all\n"), "u"); err == nil {
		t.Error("a section without secret gave no error")
	}
}
