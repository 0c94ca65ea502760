// Package initcmd is `odoopbx-agent init` (contract §5): it checks Asterisk's manager.conf, writes
// the agent's AMI user, makes the agent's TLS certificate, performs the one-time handshake with Odoo
// and writes /etc/odoopbx/agent.yaml. Each step prints "OK <step>: ..." or "FAIL <step>: <reason and
// the fix>"; the first failure stops init.
package initcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/tlsutil"
	"github.com/odoopbx/odoopbx/internal/version"
)

// Defaults of the command line.
const (
	DefaultAMIUser        = "odoopbx_agent"
	DefaultAsteriskBinary = "/usr/sbin/asterisk"
	DefaultAsteriskEtc    = "/etc/asterisk"
	DefaultConfigPath     = "/etc/odoopbx/agent.yaml"
	DefaultTLSDir         = "/etc/odoopbx/tls"
	DefaultFileOwner      = "asterisk"
)

// Options are init's command line.
type Options struct {
	OdooURL    string
	DB         string
	ServerID   int
	SystemName string
	AgentURL   string

	AMIUser        string
	SkipAMISetup   bool
	AsteriskBinary string
	AsteriskEtcDir string
	ConfigPath     string
	TLSDir         string
	TLSSANs        []string
	CAFile         string
	Insecure       bool

	AMIWriteCommand bool
	EnableConsole   bool
	EnableConfSync  bool
	Force           bool
	DryRun          bool

	// FileOwner owns the files the agent (which runs as this user) and Asterisk must read:
	// the AMI user file, the TLS pair and the config. "" leaves them owned by root; a user that does
	// not exist is reported and skipped.
	FileOwner string
	// SkipRootCheck lets tests run init as an ordinary user.
	SkipRootCheck bool
}

// Defaults fills the empty options with the command line's defaults.
func (o Options) withDefaults() Options {
	if o.AMIUser == "" {
		o.AMIUser = DefaultAMIUser
	}
	if o.AsteriskBinary == "" {
		o.AsteriskBinary = DefaultAsteriskBinary
	}
	if o.AsteriskEtcDir == "" {
		o.AsteriskEtcDir = DefaultAsteriskEtc
	}
	if o.ConfigPath == "" {
		o.ConfigPath = DefaultConfigPath
	}
	if o.TLSDir == "" {
		o.TLSDir = DefaultTLSDir
	}
	return o
}

// AMILoginFunc logs in to AMI once with user and secret and logs off; nil error means Asterisk
// accepted the login. The lead wires it to the ami package's client.
type AMILoginFunc func(ctx context.Context, addr, user, secret string) error

// OdooConn is what a JSON-RPC client needs to log in as the agent user.
type OdooConn struct {
	URL                string
	DB                 string
	User               string
	Password           string
	CAFile             string
	InsecureSkipVerify bool
}

// OdooClientFunc returns an Odoo client logged in (or logging in on first call) with conn.
type OdooClientFunc func(ctx context.Context, conn OdooConn) (odoo.Client, error)

// Deps are init's links to the outside world; tests give fakes.
type Deps struct {
	Out io.Writer
	// AMILogin tests the new AMI user; nil skips that step with a note.
	AMILogin AMILoginFunc
	// NewOdooClient verifies the new Odoo credentials; nil skips that step with a note.
	NewOdooClient OdooClientFunc
	// Geteuid is os.Geteuid unless a test replaces it.
	Geteuid func() int
}

// ErrStopped is returned (wrapped) when a step failed; its FAIL line has been printed already.
var ErrStopped = errors.New("init: stopped")

// stepError names the failed step; the FAIL line is printed before it is returned.
type stepError struct{ step string }

func (e *stepError) Error() string { return "init: stopped at step " + e.step }
func (e *stepError) Is(target error) bool {
	return target == ErrStopped
}

type runner struct {
	opts Options
	deps Deps
	out  io.Writer
	// owner is the uid/gid of opts.FileOwner, or -1 when files stay root's.
	uid, gid int
}

// Run executes init. It returns nil on success, an error wrapping ErrStopped after a FAIL line.
func Run(ctx context.Context, opts Options, deps Deps) error {
	opts = opts.withDefaults()
	if deps.Out == nil {
		deps.Out = io.Discard
	}
	if deps.Geteuid == nil {
		deps.Geteuid = os.Geteuid
	}
	r := &runner{opts: opts, deps: deps, out: deps.Out, uid: -1, gid: -1}
	return r.run(ctx)
}

func (r *runner) ok(step, format string, args ...any) {
	fmt.Fprintf(r.out, "OK %s: %s\n", step, fmt.Sprintf(format, args...))
}

func (r *runner) skip(step, format string, args ...any) {
	fmt.Fprintf(r.out, "SKIP %s: %s\n", step, fmt.Sprintf(format, args...))
}

func (r *runner) fail(step, format string, args ...any) error {
	fmt.Fprintf(r.out, "FAIL %s: %s\n", step, fmt.Sprintf(format, args...))
	return &stepError{step: step}
}

// would prints what a dry run would do.
func (r *runner) would(format string, args ...any) {
	fmt.Fprintf(r.out, "  would %s\n", fmt.Sprintf(format, args...))
}

// amiState carries what the AMI steps produce into the config.
type amiState struct {
	host   string
	port   int
	user   string
	secret string
}

func (r *runner) run(ctx context.Context) error {
	o := r.opts
	if o.DryRun {
		fmt.Fprintln(r.out, "Dry run: nothing is written, no command is run and Odoo is not contacted.")
	}
	if err := r.checkRoot(); err != nil {
		return err
	}
	odooURL, err := parseOdooURL(o.OdooURL)
	if err != nil {
		return r.fail("arguments", "%v", err)
	}
	if odooURL.Scheme == "http" && !isLoopbackHost(odooURL.Hostname()) {
		if !o.Insecure {
			return r.fail("arguments", "%s is plain HTTP: the handshake would send the agent's credentials in clear text. Use https://, or add --insecure if you really mean it", o.OdooURL)
		}
	}
	r.resolveOwner()

	// Read and merge the existing config before anything changes, so a broken file stops init
	// before the one-time handshake, not after it.
	existingConfig, err := readOptional(o.ConfigPath)
	if err != nil {
		return r.fail("config-check", "cannot read %s: %v", o.ConfigPath, err)
	}
	placeholderAMI := amiState{host: "127.0.0.1", port: 5038, user: o.AMIUser, secret: "x"}
	placeholderOdoo := HandshakeResult{AgentToken: "x", OdooUser: "x", OdooPassword: "x", OdooDB: "x"}
	if _, err := MergeConfig(existingConfig, r.settings(placeholderAMI, placeholderOdoo, "x", "x"), true); err != nil {
		return r.fail("config-check", "%s: %v. Fix the file (or move it away) and re-run init", o.ConfigPath, err)
	}
	r.ok("config-check", "%s %s", o.ConfigPath, map[bool]string{true: "exists and will be merged", false: "will be created"}[existingConfig != nil])

	var ami amiState
	if o.SkipAMISetup {
		r.skip("manager.conf", "--skip-ami-setup: the AMI user and manager.conf are left alone; set ami.* in %s yourself", o.ConfigPath)
	} else {
		ami, err = r.setupAMI(ctx)
		if err != nil {
			return err
		}
	}

	certFile, keyFile := filepath.Join(o.TLSDir, "agent.crt"), filepath.Join(o.TLSDir, "agent.key")
	fingerprint, err := r.setupTLS(certFile, keyFile)
	if err != nil {
		return err
	}

	hsReq := HandshakeRequest{
		OdooURL: odooURL.String(), DB: o.DB, ServerID: o.ServerID, SystemName: o.SystemName,
		AgentURL: o.AgentURL, CertSHA256: fingerprint,
	}
	// Built before the dry-run branch so a bad --ca-file shows in a dry run too.
	client, err := odooHTTPClient(o.CAFile, o.Insecure)
	if err != nil {
		return r.fail("handshake", "%v", err)
	}
	if o.DryRun {
		target, err := HandshakeURL(hsReq)
		if err != nil {
			return r.fail("handshake", "%v", err)
		}
		r.skip("handshake", "dry run")
		r.would("GET %s (User-Agent %s, TLS %s)", target, version.UserAgent(), r.tlsVerifyNote())
		content, err := MergeConfig(existingConfig, r.settings(ami, HandshakeResult{
			AgentToken: "<from Odoo>", OdooUser: "<from Odoo>", OdooPassword: "<from Odoo>", OdooDB: "<from Odoo>",
		}, certFile, keyFile), true)
		if err != nil {
			return r.fail("config", "%v", err)
		}
		r.skip("config", "dry run")
		r.would("write %s (mode 0600%s, dir 0750):\n%s", o.ConfigPath, r.ownerNote(), indent(string(content)))
		r.skip("odoo-verify", "dry run")
		fmt.Fprintln(r.out, "Dry run complete: run the same command without --dry-run to apply.")
		return nil
	}

	// The config's directory is made before the one-time handshake, so the write after it has
	// as little left to fail as possible.
	if err := r.makeDirs(filepath.Dir(o.ConfigPath)); err != nil {
		return r.fail("config-check", "creating the directory of %s: %v", o.ConfigPath, err)
	}
	if o.Insecure {
		fmt.Fprintln(r.out, "WARN: --insecure: Odoo's TLS certificate is not verified.")
	}
	result, err := Handshake(ctx, client, hsReq)
	if err != nil {
		return r.fail("handshake", "%v", err)
	}
	if o.ServerID > 0 && result.ServerID != 0 && result.ServerID != o.ServerID {
		fmt.Fprintf(r.out, "WARN: asked for server %d, Odoo initialized server %d\n", o.ServerID, result.ServerID)
	}
	r.ok("handshake", "Odoo %s accepted the agent: server %d, user %s, database %s", odooURL.Host, result.ServerID, result.OdooUser, result.OdooDB)

	content, err := MergeConfig(existingConfig, r.settings(ami, result, certFile, keyFile), false)
	if err != nil {
		return r.fail("config", "%v", err)
	}
	if err := r.writeConfig(content); err != nil {
		return r.fail("config", "writing %s: %v. The handshake is done and one-time: fix this, then in Odoo click \"Reset agent\" on the server and re-run init", o.ConfigPath, err)
	}
	r.ok("config", "wrote %s (0600%s)", o.ConfigPath, r.ownerNote())

	if err := r.verifyOdoo(ctx, odooURL.String(), result); err != nil {
		return err
	}
	r.summary(ami, result, fingerprint)
	return nil
}

func (r *runner) checkRoot() error {
	if r.opts.SkipRootCheck {
		return nil
	}
	if euid := r.deps.Geteuid(); euid != 0 {
		if r.opts.DryRun {
			fmt.Fprintf(r.out, "WARN: running as uid %d; the real init must run as root\n", euid)
			return nil
		}
		return r.fail("root", "init runs as root: it writes %s and /etc/odoopbx and runs asterisk -rx. Run it again with sudo", r.opts.AsteriskEtcDir)
	}
	r.ok("root", "running as root")
	return nil
}

func (r *runner) resolveOwner() {
	name := r.opts.FileOwner
	if name == "" {
		return
	}
	u, err := user.Lookup(name)
	if err != nil {
		fmt.Fprintf(r.out, "WARN: user %s not found; files stay owned by the current user. Make sure the agent's service user can read %s\n", name, r.opts.ConfigPath)
		return
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return
	}
	r.uid, r.gid = uid, gid
}

func (r *runner) ownerNote() string {
	if r.uid < 0 {
		return ""
	}
	return ", owner " + r.opts.FileOwner
}

// chown hands path to the file owner; dirs get only the group, so root keeps ownership of /etc/odoopbx.
func (r *runner) chown(path string, dirGroupOnly bool) error {
	if r.uid < 0 {
		return nil
	}
	uid := r.uid
	if dirGroupOnly {
		uid = -1
	}
	if err := os.Chown(path, uid, r.gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// setupAMI is contract §5 steps 1 and 2.
func (r *runner) setupAMI(ctx context.Context) (amiState, error) {
	o := r.opts
	managerPath := filepath.Join(o.AsteriskEtcDir, "manager.conf")
	info, err := InspectManager(o.AsteriskEtcDir, os.ReadFile, filepath.Glob)
	if errors.Is(err, fs.ErrNotExist) {
		return amiState{}, r.fail("manager.conf", "%s does not exist. Is Asterisk installed? Give its config dir with --asterisk-etc", managerPath)
	}
	if err != nil {
		return amiState{}, r.fail("manager.conf", "%v. Fix the file and re-run init", err)
	}
	if !info.Enabled {
		return amiState{}, r.fail("manager.conf", "AMI is off: set \"enabled = yes\" in the [general] section of %s, run asterisk -rx \"manager reload\", then re-run init", managerPath)
	}
	if info.IncludedBy == "" {
		return amiState{}, r.fail("manager.conf", "%s does not include manager.conf.d, so Asterisk would never read the agent's user. Add this line at the end of %s, then re-run init:\n%s", managerPath, managerPath, IncludeLine)
	}
	ts := "off"
	if info.TimestampEvents {
		ts = "on"
	}
	bind := info.BindAddr
	if bind == "" {
		bind = "0.0.0.0"
	}
	r.ok("manager.conf", "enabled, listening on %s port %d, timestampevents %s, manager.conf.d included at %s", bind, info.Port, ts, info.IncludedBy)

	st := amiState{host: info.AMIHost(), port: info.Port, user: o.AMIUser}
	extraPermit := ""
	if ip := net.ParseIP(st.host); ip != nil && !ip.IsLoopback() {
		extraPermit = st.host
	}
	dir := filepath.Join(o.AsteriskEtcDir, "manager.conf.d")
	userPath := filepath.Join(dir, UserFileName)
	existing, err := readOptional(userPath)
	if err != nil {
		return amiState{}, r.fail("ami-user", "cannot read %s: %v", userPath, err)
	}
	var oldSecret string
	if existing != nil {
		oldSecret, err = ExistingSecret(existing, o.AMIUser)
		if err != nil && !o.Force {
			return amiState{}, r.fail("ami-user", "%s exists but %v. Pass --ami-user with the name it holds, or --force to rewrite it", userPath, err)
		}
	}
	write := existing == nil || o.Force
	switch {
	case !write:
		st.secret = oldSecret
		r.ok("ami-user", "%s exists; kept it and its secret (--force rewrites it)", userPath)
	default:
		st.secret = oldSecret
		if st.secret == "" {
			if st.secret, err = newSecret(); err != nil {
				return amiState{}, r.fail("ami-user", "%v", err)
			}
		}
		spec := AMIUserSpec{User: o.AMIUser, Secret: st.secret, ExtraPermit: extraPermit, WriteCommand: o.AMIWriteCommand}
		header := "AMI user of odoopbx-agent, written by `odoopbx-agent init` (contract §5.2).\nRe-run init with --force to rewrite it."
		if o.DryRun {
			r.skip("ami-user", "dry run")
			r.would("write %s (mode 0640%s):\n%s", userPath, r.ownerNote(), indent(string(spec.Render(header, "***"))))
		} else {
			if err := r.writeAMIUser(dir, userPath, spec.Render(header, "")); err != nil {
				return amiState{}, r.fail("ami-user", "%v", err)
			}
			action := "wrote"
			if existing != nil {
				action = "rewrote (--force)"
				if oldSecret != "" {
					action += ", same secret"
				}
			}
			r.ok("ami-user", "%s %s (0640%s)", action, userPath, r.ownerNote())
		}
	}

	if o.DryRun {
		r.skip("ami-reload", "dry run")
		r.would("run %s -rx \"manager reload\"", o.AsteriskBinary)
		r.would("run %s -rx \"manager show user %s\"", o.AsteriskBinary, o.AMIUser)
		r.would("log in to AMI at %s as %s", net.JoinHostPort(st.host, strconv.Itoa(st.port)), o.AMIUser)
		return st, nil
	}
	if out, err := r.asterisk(ctx, "manager reload"); err != nil {
		return amiState{}, r.fail("ami-reload", "%s -rx \"manager reload\": %v%s. Is Asterisk running? Start it, then re-run init", o.AsteriskBinary, err, outputNote(out))
	}
	r.ok("ami-reload", "manager reloaded")
	out, err := r.asterisk(ctx, "manager show user "+o.AMIUser)
	if err != nil {
		return amiState{}, r.fail("ami-show-user", "%s -rx \"manager show user %s\": %v%s", o.AsteriskBinary, o.AMIUser, err, outputNote(out))
	}
	if !showsUser(out, o.AMIUser) {
		return amiState{}, r.fail("ami-show-user", "Asterisk did not load user %s after the reload%s. Check that the include in manager.conf is active and look at Asterisk's log", o.AMIUser, outputNote(out))
	}
	r.ok("ami-show-user", "Asterisk knows user %s", o.AMIUser)

	addr := net.JoinHostPort(st.host, strconv.Itoa(st.port))
	if r.deps.AMILogin == nil {
		r.skip("ami-login", "no AMI client in this build; `odoopbx-agent check` tests the login")
		return st, nil
	}
	loginCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := r.deps.AMILogin(loginCtx, addr, o.AMIUser, st.secret); err != nil {
		return amiState{}, r.fail("ami-login", "logging in to %s as %s: %v. Check \"manager show user %s\" (secret, permit lines) and Asterisk's log", addr, o.AMIUser, err, o.AMIUser)
	}
	r.ok("ami-login", "logged in to %s as %s", addr, o.AMIUser)
	return st, nil
}

func (r *runner) writeAMIUser(dir, path string, content []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := tlsutil.WriteFileAtomic(path, content, 0o640); err != nil {
		return err
	}
	return r.chown(path, false)
}

// asterisk runs `asterisk -rx <command>`, which talks to the running Asterisk over its control socket.
func (r *runner) asterisk(ctx context.Context, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.opts.AsteriskBinary, "-rx", command).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		return text, err
	}
	// asterisk -rx prints this and may still exit 0 on some versions when no Asterisk runs.
	if strings.Contains(text, "Unable to connect to remote asterisk") {
		return text, errors.New("Asterisk is not running or its control socket is not reachable")
	}
	return text, nil
}

// showsUser recognises the output of "manager show user NAME": a "username: NAME" line.
func showsUser(out, name string) bool {
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "username" && strings.TrimSpace(v) == name {
			return true
		}
	}
	return false
}

func outputNote(out string) string {
	if out == "" {
		return ""
	}
	return " (output: " + snippet([]byte(out)) + ")"
}

// setupTLS is contract §5 step 3.
func (r *runner) setupTLS(certFile, keyFile string) (string, error) {
	certExists, _ := fileExists(certFile)
	keyExists, _ := fileExists(keyFile)
	if r.opts.DryRun {
		if certExists && keyExists {
			_, fp, err := tlsutil.Load(certFile, keyFile)
			if err != nil {
				return "", r.fail("tls", "%v", err)
			}
			r.ok("tls", "%s exists, SHA-256 %s", certFile, fp)
			return fp, nil
		}
		r.skip("tls", "dry run")
		dns, ips := tlsutil.HostSANs(r.opts.TLSSANs)
		r.would("generate an ECDSA P-256 key %s (0600) and a self-signed certificate %s, SANs %s", keyFile, certFile, sanList(dns, ips))
		return "", nil
	}
	for _, dir := range []string{filepath.Dir(certFile), filepath.Dir(keyFile)} {
		if err := r.makeDirs(dir); err != nil {
			return "", r.fail("tls", "%v", err)
		}
	}
	_, fp, err := tlsutil.LoadOrCreate(certFile, keyFile, r.opts.TLSSANs)
	if err != nil {
		return "", r.fail("tls", "%v", err)
	}
	if err := r.chown(keyFile, false); err != nil {
		return "", r.fail("tls", "%v", err)
	}
	if err := r.chown(certFile, false); err != nil {
		return "", r.fail("tls", "%v", err)
	}
	r.warnUnreadable(keyFile)
	if certExists && keyExists {
		r.ok("tls", "kept %s, SHA-256 %s", certFile, fp)
	} else {
		r.ok("tls", "generated %s, SHA-256 %s", certFile, fp)
	}
	return fp, nil
}

func sanList(dns []string, ips []net.IP) string {
	names := append([]string(nil), dns...)
	for _, ip := range ips {
		names = append(names, ip.String())
	}
	return strings.Join(names, ", ")
}

// settings are the keys init manages in agent.yaml.
func (r *runner) settings(ami amiState, res HandshakeResult, certFile, keyFile string) []setting {
	o := r.opts
	var s []setting
	if o.SystemName != "" {
		s = append(s, setting{Key: "system_name", Value: o.SystemName})
	}
	s = append(s, setting{Key: "asterisk_etc_dir", Value: o.AsteriskEtcDir})
	if ami.user != "" {
		s = append(s,
			setting{Key: "ami.host", Value: ami.host},
			setting{Key: "ami.port", Value: ami.port},
			setting{Key: "ami.user", Value: ami.user},
			setting{Key: "ami.secret", Value: ami.secret, Secret: true},
		)
	}
	odooURL := strings.TrimSuffix(strings.TrimSpace(o.OdooURL), "/")
	s = append(s,
		setting{Key: "odoo.url", Value: odooURL},
		setting{Key: "odoo.db", Value: res.OdooDB},
		setting{Key: "odoo.user", Value: res.OdooUser},
		setting{Key: "odoo.password", Value: res.OdooPassword, Secret: true},
		setting{Key: "odoo.insecure_skip_verify", Value: o.Insecure},
	)
	if o.CAFile != "" {
		caFile := o.CAFile
		if abs, err := filepath.Abs(caFile); err == nil {
			caFile = abs
		}
		s = append(s, setting{Key: "odoo.ca_file", Value: caFile})
	}
	s = append(s, setting{Key: "api.token", Value: res.AgentToken, Secret: true})
	if certFile != "" {
		s = append(s, setting{Key: "tls.cert", Value: certFile}, setting{Key: "tls.key", Value: keyFile})
	}
	if o.AsteriskBinary != DefaultAsteriskBinary {
		s = append(s, setting{Key: "console.asterisk_binary", Value: o.AsteriskBinary})
	}
	s = append(s, flagSetting("console.enabled", o.EnableConsole))
	s = append(s, flagSetting("conf.read_enabled", o.EnableConfSync))
	s = append(s, flagSetting("conf.write_enabled", o.EnableConfSync))
	return s
}

// flagSetting turns a feature on when its flag is given; without it an existing value is kept and a
// missing key is written as false, so the file shows the switch.
func flagSetting(key string, on bool) setting {
	return setting{Key: key, Value: on, KeepExisting: !on}
}

func (r *runner) writeConfig(content []byte) error {
	path := r.opts.ConfigPath
	if err := r.makeDirs(filepath.Dir(path)); err != nil {
		return err
	}
	if err := tlsutil.WriteFileAtomic(path, content, 0o600); err != nil {
		return err
	}
	if err := r.chown(path, false); err != nil {
		return err
	}
	r.warnUnreadable(path)
	return nil
}

// makeDirs creates the missing directories of dir, each 0750 with the file owner's group (root
// keeps ownership), like the package's /etc/odoopbx. Existing directories are left alone.
func (r *runner) makeDirs(dir string) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Mkdir honours the umask; the mode is meant exactly.
		if err := os.Chmod(d, 0o750); err != nil {
			return err
		}
		if err := r.chown(d, true); err != nil {
			return err
		}
	}
	return nil
}

// warnUnreadable tells the admin when the service user could not reach path through its parent
// directories (a /etc/odoopbx made by hand as root:root 0750, say), with the command that fixes it.
func (r *runner) warnUnreadable(path string) {
	if r.uid < 0 {
		return
	}
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if !traversable(d, r.uid, r.gid) {
			fmt.Fprintf(r.out, "WARN: user %s cannot enter %s, so the agent cannot read %s. Fix: chgrp %s %s && chmod g+rx %s\n",
				r.opts.FileOwner, d, path, r.opts.FileOwner, d, d)
			return
		}
		if filepath.Dir(d) == d {
			return
		}
	}
}

// traversable says whether uid/gid may search dir by its mode bits (supplementary groups aside).
func traversable(dir string, uid, gid int) bool {
	st, err := os.Stat(dir)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || uid == 0 {
		return true
	}
	perm := st.Mode().Perm()
	switch {
	case int(sys.Uid) == uid:
		return perm&0o100 != 0
	case int(sys.Gid) == gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// verifyOdoo is contract §5 step 7: log in with the new credentials and call agent_get_config.
func (r *runner) verifyOdoo(ctx context.Context, odooURL string, res HandshakeResult) error {
	if r.deps.NewOdooClient == nil {
		r.skip("odoo-verify", "no Odoo client in this build; `odoopbx-agent check` tests the Odoo login")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client, err := r.deps.NewOdooClient(ctx, OdooConn{
		URL: odooURL, DB: res.OdooDB, User: res.OdooUser, Password: res.OdooPassword,
		CAFile: r.opts.CAFile, InsecureSkipVerify: r.opts.Insecure,
	})
	if err != nil {
		return r.fail("odoo-verify", "%v. The config is written; fix this and run `odoopbx-agent check`", err)
	}
	raw, err := client.ExecuteKw(ctx, "asterisk_plus.server", "agent_get_config", []any{}, nil)
	if err != nil {
		fix := "The config is written; fix this and run `odoopbx-agent check`"
		switch odoo.KindOf(err) {
		case odoo.KindAuth:
			fix = "Odoo refused the credentials it just issued: check that the agent user is active and in the PBX server group, then \"Reset agent\" and re-run init"
		case odoo.KindMissingMethod:
			fix = "The asterisk_plus addon is older than this agent: upgrade it in Odoo"
		}
		return r.fail("odoo-verify", "asterisk_plus.server.agent_get_config: %v. %s", err, fix)
	}
	var cfg struct {
		APIVersion int               `json:"api_version"`
		ServerID   int               `json:"server_id"`
		SystemName string            `json:"system_name"`
		EventsMap  []json.RawMessage `json:"events_map"`
		Options    map[string]any    `json:"options"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return r.fail("odoo-verify", "agent_get_config returned something unexpected (%s). Upgrade the asterisk_plus addon", snippet(raw))
	}
	r.ok("odoo-verify", "logged in as %s; server %d (%s), API version %d, %d events map rows, %d options",
		res.OdooUser, cfg.ServerID, cfg.SystemName, cfg.APIVersion, len(cfg.EventsMap), len(cfg.Options))
	return nil
}

func (r *runner) summary(ami amiState, res HandshakeResult, fingerprint string) {
	o := r.opts
	fmt.Fprintln(r.out, "")
	fmt.Fprintln(r.out, "Summary:")
	fmt.Fprintf(r.out, "  Odoo:       %s, database %s, user %s, server %d\n", strings.TrimSuffix(o.OdooURL, "/"), res.OdooDB, res.OdooUser, res.ServerID)
	if ami.user != "" {
		fmt.Fprintf(r.out, "  AMI:        %s as %s\n", net.JoinHostPort(ami.host, strconv.Itoa(ami.port)), ami.user)
	}
	fmt.Fprintf(r.out, "  TLS:        %s/agent.crt, SHA-256 %s (pinned in Odoo)\n", o.TLSDir, fingerprint)
	fmt.Fprintf(r.out, "  Config:     %s\n", o.ConfigPath)
	if o.AgentURL == "" {
		fmt.Fprintln(r.out, "  Agent URL:  not sent (--agent-url); set it on the server form in Odoo if Odoo cannot reach https://localhost:48000")
	} else {
		fmt.Fprintf(r.out, "  Agent URL:  %s\n", o.AgentURL)
	}
	fmt.Fprintln(r.out, "Start the agent with: systemctl enable --now odoopbx-agent")
}

func (r *runner) tlsVerifyNote() string {
	switch {
	case r.opts.Insecure:
		return "not verified (--insecure)"
	case r.opts.CAFile != "":
		return "verified against the system roots and " + r.opts.CAFile
	default:
		return "verified against the system roots"
	}
}

func readOptional(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}
