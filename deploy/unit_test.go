package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goreleaser/nfpm/v2"

	"github.com/odoopbx/odoopbx/internal/config"
)

// unitDirectives reads a systemd unit into section.key → values (a key may repeat).
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a directive: %q", path, line)
			}
			out[section+"."+strings.TrimSpace(k)] = append(out[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnitMatchesConfigDefaults keeps the systemd sandbox in step with the paths the agent uses by
// default: a new default directory that the agent writes must be made writable in the unit.
func TestUnitMatchesConfigDefaults(t *testing.T) {
	u := unitDirectives(t, "systemd/odoopbx-agent.service")
	def := config.Default()
	one := func(key string) string {
		t.Helper()
		v := u[key]
		if len(v) != 1 {
			t.Fatalf("unit: %s set %d times, want once: %v", key, len(v), v)
		}
		return v[0]
	}

	exec := strings.Fields(one("Service.ExecStart"))
	if len(exec) < 2 || exec[0] != "/usr/bin/odoopbx-agent" || exec[1] != "run" {
		t.Errorf("ExecStart = %v, want /usr/bin/odoopbx-agent run …", exec)
	}
	if i := slices.Index(exec, "--config"); i < 0 || i+1 >= len(exec) || exec[i+1] != config.DefaultPath {
		t.Errorf("ExecStart = %v, want --config %s", exec, config.DefaultPath)
	}
	if got := one("Unit.ConditionPathExists"); got != config.DefaultPath {
		t.Errorf("ConditionPathExists = %s, want %s (the service waits for init)", got, config.DefaultPath)
	}
	if got := one("Service.User"); got != "asterisk" {
		t.Errorf("User = %s, want asterisk (contract §1.3)", got)
	}

	// Only CAP_NET_ADMIN, in both sets.
	for _, k := range []string{"Service.AmbientCapabilities", "Service.CapabilityBoundingSet"} {
		if got := one(k); got != "CAP_NET_ADMIN" {
			t.Errorf("%s = %q, want only CAP_NET_ADMIN", k, got)
		}
	}
	for k, want := range map[string]string{
		"Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict", "Service.ProtectHome": "yes",
		"Service.PrivateTmp": "yes", "Service.Restart": "on-failure", "Service.ExecReload": "/bin/kill -HUP $MAINPID",
	} {
		if got := one(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// ProtectSystem=strict: everything the agent writes by default must be listed. A leading "-"
	// means "ignore if missing" (a PBX without a monitor dir yet).
	writable := map[string]bool{}
	for _, v := range u["Service.ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			writable[strings.TrimPrefix(p, "-")] = true
		}
	}
	stateDir := "/var/lib/" + one("Service.StateDirectory")
	if stateDir != def.StateDir {
		t.Errorf("StateDirectory gives %s, but state_dir defaults to %s", stateDir, def.StateDir)
	}
	writable[stateDir] = true // systemd makes StateDirectory writable by itself
	needs := append([]string{def.StateDir, def.Spool.Dir, def.AsteriskMonitorDir}, def.Files.DeleteRoots...)
	slices.Sort(needs)
	needs = slices.Compact(needs)
	for _, p := range needs {
		if !coveredBy(p, writable) {
			t.Errorf("the agent writes %s by default, but the unit does not make it writable (ReadWritePaths)", p)
		}
	}
	if got := "/etc/" + one("Service.ConfigurationDirectory"); got != filepath.Dir(config.DefaultPath) {
		t.Errorf("ConfigurationDirectory gives %s, but the config is %s", got, config.DefaultPath)
	}
	for _, p := range []string{def.TLS.Cert, def.TLS.Key} {
		if !strings.HasPrefix(p, filepath.Dir(config.DefaultPath)+"/") {
			t.Errorf("default TLS file %s is outside %s, which postinst prepares for the asterisk user", p, filepath.Dir(config.DefaultPath))
		}
	}
	// AF_NETLINK for nftables, AF_UNIX for the console and the control socket.
	fams := strings.Fields(one("Service.RestrictAddressFamilies"))
	for _, f := range []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} {
		if !slices.Contains(fams, f) {
			t.Errorf("RestrictAddressFamilies lacks %s", f)
		}
	}
}

func coveredBy(path string, dirs map[string]bool) bool {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if dirs[p] {
			return true
		}
		if p == "/" || p == "." {
			return false
		}
	}
}

// TestNfpmConfigMatchesDefaults checks the package ships the directories the defaults point at, and
// the unit where systemd looks for it.
func TestNfpmConfigMatchesDefaults(t *testing.T) {
	cfg, err := nfpm.ParseFileWithEnvMapping("nfpm.yaml", func(name string) string {
		return map[string]string{"VERSION": "1.0.0", "ARCH": "amd64", "BINARY": "/bin/true"}[name]
	})
	if err != nil {
		t.Fatal(err)
	}
	dst := map[string]string{} // destination → type
	for _, c := range cfg.Contents {
		dst[c.Destination] = c.Type
		if c.Source != "" && c.Type != "symlink" && !strings.HasPrefix(c.Source, "/") {
			if _, err := os.Stat(c.Source); err != nil {
				t.Errorf("nfpm.yaml: source of %s: %v", c.Destination, err)
			}
		}
	}
	def := config.Default()
	for _, d := range []string{def.StateDir, filepath.Dir(config.DefaultPath), filepath.Dir(def.TLS.Key)} {
		if dst[d] != "dir" {
			t.Errorf("nfpm.yaml does not ship directory %s", d)
		}
	}
	if _, ok := dst[config.DefaultPath]; ok {
		t.Errorf("nfpm.yaml ships %s; only init may write it", config.DefaultPath)
	}
	if dst[config.DefaultPath+".example"] != "config|noreplace" {
		t.Errorf("%s.example should be a config|noreplace conffile, is %q", config.DefaultPath, dst[config.DefaultPath+".example"])
	}
	for _, s := range []string{cfg.Scripts.PostInstall, cfg.Scripts.PreRemove, cfg.Scripts.PostRemove} {
		if s == "" {
			t.Error("nfpm.yaml lacks a postinst, prerm or postrm script")
		} else if st, err := os.Stat(s); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("script %s is missing or not executable: %v", s, err)
		}
	}
}
