package deploy

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDebianVersion(t *testing.T) {
	cases := []struct{ describe, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"v1.2.3-dirty", "1.2.3+0.dirty"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-rc.1-2-g0123abcd", "1.2.3~rc.1+2.g0123abcd"},
		{"v2.0.0-beta-2", "2.0.0~beta.2"},
		{"0.0.0-dev", "0.0.0~dev"},
		{"b20a9ae", "0.0.0~git.b20a9ae"},
		{"b20a9ae-dirty", "0.0.0~git.b20a9ae.dirty"},
		{" v1.0.0\n", "1.0.0"},
	}
	for _, c := range cases {
		got, err := DebianVersion(c.describe)
		if err != nil || got != c.want {
			t.Errorf("DebianVersion(%q) = %q, %v; want %q", c.describe, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "release", "v1.2.3_final", "vx.y"} {
		if got, err := DebianVersion(bad); err == nil {
			t.Errorf("DebianVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// TestDebianVersionOrder checks with dpkg itself that the mapping sorts like the releases do.
func TestDebianVersionOrder(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg not installed")
	}
	ordered := []string{"0.0.0-dev", "v1.2.3-rc1", "v1.2.3-rc1-3-gabc1234", "v1.2.3", "v1.2.3-dirty", "v1.2.3-1-g1111111", "v1.2.3-4-gabc1234", "v1.2.3-4-gabc1234-dirty", "v1.2.3-10-gdef5678", "v1.3.0"}
	for i := 1; i < len(ordered); i++ {
		lo, err1 := DebianVersion(ordered[i-1])
		hi, err2 := DebianVersion(ordered[i])
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if err := exec.Command(dpkg, "--compare-versions", lo, "lt", hi).Run(); err != nil {
			t.Errorf("dpkg does not sort %s (%s) before %s (%s)", lo, ordered[i-1], hi, ordered[i])
		}
	}
}

func TestBuildDebRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "odoopbx-agent")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts DebOptions
		want string
	}{
		{"git describe form", DebOptions{Config: "nfpm.yaml", Version: "v1.2.3-4-gabc", Arch: "amd64", Binary: notExec, TargetDir: dir}, "not a Debian version"},
		{"missing binary", DebOptions{Config: "nfpm.yaml", Version: "1.2.3", Arch: "amd64", Binary: filepath.Join(dir, "nope"), TargetDir: dir}, "make build"},
		{"binary not executable", DebOptions{Config: "nfpm.yaml", Version: "1.2.3", Arch: "amd64", Binary: notExec, TargetDir: dir}, "not an executable"},
		{"no arch", DebOptions{Config: "nfpm.yaml", Version: "1.2.3", Binary: notExec, TargetDir: dir}, "architecture"},
	}
	for _, c := range cases {
		_, err := BuildDeb(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed build left files behind: %v", entries)
	}
}

// debEntry is one line of `dpkg-deb --contents`.
type debEntry struct {
	mode  string // drwxr-x---
	owner string // root/root
	size  string
}

// TestDebPackage builds the real package from nfpm.yaml with a freshly built agent and inspects it
// with dpkg-deb: control fields, file list with modes, conffiles, maintainer scripts, the unit, and
// that the packaged binary runs and carries the stamped version.
func TestDebPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and a .deb; skipped with -short")
	}
	dpkgDeb, err := exec.LookPath("dpkg-deb")
	if err != nil {
		t.Skip("dpkg-deb not installed (apt-get install dpkg)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	work := t.TempDir()
	const describe = "v1.2.3-4-gabc1234"
	binary := filepath.Join(work, "odoopbx-agent")
	build := exec.CommandContext(ctx, goTool, "build", "-trimpath",
		"-ldflags", "-X github.com/odoopbx/odoopbx/internal/version.Version="+describe,
		"-o", binary, "../cmd/odoopbx-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	version, err := DebianVersion(describe)
	if err != nil {
		t.Fatal(err)
	}
	debArch := map[string]string{"386": "i386", "arm": "armhf"}[runtime.GOARCH]
	if debArch == "" {
		debArch = runtime.GOARCH
	}
	arch := runtime.GOARCH
	if arch == "arm" {
		arch = "arm7"
	}
	dist := filepath.Join(work, "dist")
	path, err := BuildDeb(DebOptions{Config: "nfpm.yaml", Version: version, Arch: arch, Binary: binary, TargetDir: dist})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dist, "odoopbx-agent_1.2.3+4.gabc1234_"+debArch+".deb"); path != want {
		t.Errorf("package path %s, want %s", path, want)
	}

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// Control fields.
	fields := parseControl(run(dpkgDeb, "--field", path))
	wantFields := map[string]string{
		"Package":      "odoopbx-agent",
		"Version":      "1.2.3+4.gabc1234",
		"Architecture": debArch,
		"Section":      "net",
	}
	for k, v := range wantFields {
		if fields[k] != v {
			t.Errorf("control field %s = %q, want %q", k, fields[k], v)
		}
	}
	for field, want := range map[string][]string{
		"Depends":    {"ca-certificates", "adduser"},
		"Recommends": {"nftables", "lame"},
		"Suggests":   {"asterisk"},
	} {
		got := splitDeps(fields[field])
		for _, w := range want {
			if !got[w] {
				t.Errorf("%s = %q, missing %s", field, fields[field], w)
			}
		}
	}
	// A static binary: it must not depend on libc.
	if strings.Contains(fields["Depends"], "libc") {
		t.Errorf("Depends = %q: the binary is static and needs no libc", fields["Depends"])
	}
	if !strings.Contains(fields["Description"], "Asterisk") {
		t.Errorf("Description = %q", fields["Description"])
	}

	// Data: files, owners and modes.
	entries := parseContents(t, run(dpkgDeb, "--contents", path))
	want := map[string]string{
		"./usr/bin/odoopbx-agent":                        "-rwxr-xr-x",
		"./usr/lib/systemd/system/odoopbx-agent.service": "-rw-r--r--",
		"./etc/odoopbx/":                                 "drwxr-x---",
		"./etc/odoopbx/tls/":                             "drwxr-x---",
		"./etc/odoopbx/agent.yaml.example":               "-rw-------",
		"./var/lib/odoopbx-agent/":                       "drwxr-x---",
		"./usr/share/doc/odoopbx-agent/examples/manager.conf.d/odoopbx_agent.conf.sample": "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/examples/extensions_odoopbx.conf.sample":           "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/examples/agent.yaml.example":                       "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/install.md":                                        "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/configuration.md":                                  "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/security.md":                                       "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/troubleshooting.md":                                "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/asterisk-setup.md":                                 "-rw-r--r--",
		"./usr/share/doc/odoopbx-agent/odoo-setup.md":                                     "-rw-r--r--",
	}
	for name, mode := range want {
		e, ok := entries[name]
		if !ok {
			t.Errorf("package lacks %s", name)
			continue
		}
		if e.mode != mode {
			t.Errorf("%s has mode %s, want %s", name, e.mode, mode)
		}
		if e.owner != "root/root" {
			t.Errorf("%s is owned by %s, want root/root (postinst hands directories to asterisk)", name, e.owner)
		}
	}
	// The real config holds secrets and is written by init, never shipped.
	if _, ok := entries["./etc/odoopbx/agent.yaml"]; ok {
		t.Error("the package ships /etc/odoopbx/agent.yaml; only init may write it")
	}
	for name, e := range entries {
		if strings.HasPrefix(e.mode, "-") && e.mode[8] == 'w' {
			t.Errorf("%s is world-writable (%s)", name, e.mode)
		}
	}

	// Control archive: conffiles and the maintainer scripts.
	ctrl := filepath.Join(work, "control")
	run(dpkgDeb, "--control", path, ctrl)
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(conffiles)); got != "/etc/odoopbx/agent.yaml.example" {
		t.Errorf("conffiles = %q, want only /etc/odoopbx/agent.yaml.example", got)
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(ctrl, script)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("control archive lacks %s", script)
			continue
		}
		if st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable (%v)", script, st.Mode())
		}
		run("sh", "-n", p)
		src, _ := os.ReadFile(filepath.Join("scripts", script))
		if got, _ := os.ReadFile(p); !bytes.Equal(got, src) {
			t.Errorf("%s in the package differs from deploy/scripts/%s", script, script)
		}
	}
	postinst, _ := os.ReadFile(filepath.Join(ctrl, "postinst"))
	// The service must not start before init has written the config.
	// try-restart (restart only if running, after an upgrade) is fine; start, enable, restart are not.
	if m := regexp.MustCompile(`(?m)^[ \t]*(systemctl|deb-systemd-invoke|invoke-rc\.d)[ \t]+([^ \t\n]+[ \t]+)*(start|enable|restart)\b.*$`).Find(postinst); m != nil {
		t.Errorf("postinst runs %q: it must not start the agent before init", m)
	}

	// Data archive: the unit is the one in deploy/systemd, and the packaged binary runs.
	root := filepath.Join(work, "root")
	run(dpkgDeb, "--extract", path, root)
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/odoopbx-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	if src, _ := os.ReadFile("systemd/odoopbx-agent.service"); !bytes.Equal(unit, src) {
		t.Error("the packaged unit differs from deploy/systemd/odoopbx-agent.service")
	}
	if !bytes.Contains(unit, []byte("\nExecStart=/usr/bin/odoopbx-agent run")) {
		t.Error("the unit does not start /usr/bin/odoopbx-agent run, the path the package installs")
	}
	out := run(filepath.Join(root, "usr/bin/odoopbx-agent"), "version")
	if !strings.Contains(out, describe) {
		t.Errorf("packaged binary prints %q, want the stamped version %s", out, describe)
	}

	// systemd's own check of the unit, pointed at the extracted binary.
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		unitDir := filepath.Join(work, "unit")
		if err := os.MkdirAll(unitDir, 0o755); err != nil {
			t.Fatal(err)
		}
		local := bytes.ReplaceAll(unit, []byte("/usr/bin/odoopbx-agent"), []byte(filepath.Join(root, "usr/bin/odoopbx-agent")))
		unitPath := filepath.Join(unitDir, "odoopbx-agent.service")
		if err := os.WriteFile(unitPath, local, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, analyze, "verify", unitPath).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze not installed: unit not verified")
	}

	t.Run("install lifecycle", func(t *testing.T) { testInstallLifecycle(t, ctx, path) })
}

// installScript installs, upgrades, removes and purges the package with the real dpkg, inside a
// private mount and network namespace whose / is an overlay over the host's /, so neither the host's
// files nor its nftables are ever changed.
// It prints "STAT <path> <owner>:<group> <mode>" and "MARK <step>" lines for the test to check.
const installScript = `set -eu
upper="$1"; deb="$2"
m="$upper/merged"
mkdir -p "$upper/u" "$upper/w" "$m"
mount -t overlay overlay -o "lowerdir=/,upperdir=$upper/u,workdir=$upper/w" "$m" || exit 99
mount --bind /dev "$m/dev"
mount -t proc proc "$m/proc"
cp "$deb" "$m/root/odoopbx-agent.deb"
chroot "$m" /bin/sh -eu -c '
st() { for p in "$@"; do if [ -e "$p" ]; then stat -c "STAT %n %U:%G %a" "$p"; else echo "STAT $p absent"; fi; done; }
dpkg -i /root/odoopbx-agent.deb
echo MARK installed
st /etc/odoopbx /etc/odoopbx/tls /etc/odoopbx/agent.yaml.example /var/lib/odoopbx-agent /usr/bin/odoopbx-agent
# A config copied by hand, with the wrong owner and mode: the upgrade repairs it.
echo "system_name: test" > /etc/odoopbx/agent.yaml
chmod 0644 /etc/odoopbx/agent.yaml
dpkg -i /root/odoopbx-agent.deb
echo MARK upgraded
st /etc/odoopbx/agent.yaml
su -s /bin/sh asterisk -c "cat /etc/odoopbx/agent.yaml >/dev/null && touch /var/lib/odoopbx-agent/probe" && echo MARK asterisk-can-use
dpkg -r odoopbx-agent
echo MARK removed
st /usr/bin/odoopbx-agent /etc/odoopbx/agent.yaml /var/lib/odoopbx-agent
dpkg -P odoopbx-agent
echo MARK purged
st /etc/odoopbx/agent.yaml /etc/odoopbx/tls /var/lib/odoopbx-agent
'
`

func testInstallLifecycle(t *testing.T, ctx context.Context, deb string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespace, overlay, chroot)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed")
	}
	upper := t.TempDir()
	// A new network namespace too: prerm runs `odoopbx-agent security uninstall`, which must not
	// touch the host's nftables.
	cmd := exec.CommandContext(ctx, unshare, "--mount", "--net", "sh", "-c", installScript, "sh", upper, deb)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 99 {
		t.Skipf("overlay mounts are not available here:\n%s", out)
	}
	if err != nil {
		if bytes.Contains(out, []byte("unshare failed")) || bytes.Contains(out, []byte("Operation not permitted")) {
			t.Skipf("no mount namespaces here: %s", out)
		}
		t.Fatalf("install lifecycle: %v\n%s", err, out)
	}
	stats := map[string]map[string]string{} // step -> path -> "owner:group mode"
	step := "start"
	marks := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "MARK":
			step = f[1]
			marks[step] = true
		case len(f) >= 3 && f[0] == "STAT":
			if stats[step] == nil {
				stats[step] = map[string]string{}
			}
			stats[step][f[1]] = strings.Join(f[2:], " ")
		}
	}
	for _, m := range []string{"installed", "upgraded", "asterisk-can-use", "removed", "purged"} {
		if !marks[m] {
			t.Errorf("step %s did not complete", m)
		}
	}
	want := map[string]map[string]string{
		"installed": {
			"/etc/odoopbx":                    "root:asterisk 750",
			"/etc/odoopbx/tls":                "root:asterisk 750",
			"/etc/odoopbx/agent.yaml.example": "root:root 600",
			"/var/lib/odoopbx-agent":          "asterisk:asterisk 750",
			"/usr/bin/odoopbx-agent":          "root:root 755",
		},
		"upgraded": {"/etc/odoopbx/agent.yaml": "asterisk:asterisk 600"},
		// Removal keeps configuration and state; purge deletes both (the config holds credentials).
		"removed": {"/usr/bin/odoopbx-agent": "absent", "/etc/odoopbx/agent.yaml": "asterisk:asterisk 600", "/var/lib/odoopbx-agent": "asterisk:asterisk 750"},
		"purged":  {"/etc/odoopbx/agent.yaml": "absent", "/etc/odoopbx/tls": "absent", "/var/lib/odoopbx-agent": "absent"},
	}
	for step, paths := range want {
		for p, w := range paths {
			if got := stats[step][p]; got != w {
				t.Errorf("after %s: %s is %q, want %q", step, p, got, w)
			}
		}
	}
	if t.Failed() {
		t.Logf("dpkg output:\n%s", out)
	}
}

func parseControl(s string) map[string]string {
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " ") && last != "" {
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			last = k
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

func splitDeps(s string) map[string]bool {
	out := map[string]bool{}
	for _, d := range strings.Split(s, ",") {
		name, _, _ := strings.Cut(strings.TrimSpace(d), " ")
		if name != "" {
			out[name] = true
		}
	}
	return out
}

// parseContents reads dpkg-deb --contents (tar -tv): mode owner size date time path.
func parseContents(t *testing.T, s string) map[string]debEntry {
	t.Helper()
	out := map[string]debEntry{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb --contents line %q", line)
		}
		out[f[5]] = debEntry{mode: f[0], owner: f[1], size: f[2]}
	}
	return out
}
