package initcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
	"github.com/odoopbx/odoopbx/internal/tlsutil"
	"github.com/odoopbx/odoopbx/internal/version"
)

// fakeOdoo serves the handshake itself and passes /jsonrpc to an odootest fake, so init talks to
// one URL exactly as it does with a real Odoo.
type fakeOdoo struct {
	srv  *httptest.Server
	rpc  *odootest.Server
	mu   sync.Mutex
	reqs []*http.Request
	// answer is the handshake's status, body and headers; nil means 200 with odootest's credentials.
	answer func() (int, string, http.Header)
	tokens int
}

func startFakeOdoo(t *testing.T, useTLS bool) *fakeOdoo {
	t.Helper()
	f := &fakeOdoo{rpc: odootest.Start(t, odootest.Options{DB: "prod", User: "agent_7", Password: "pw-from-odoo"})}
	f.rpc.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		return odootest.Response{Result: map[string]any{
			"api_version": 1, "server_id": 7, "system_name": "pbx-1",
			"events_map": []any{map[string]any{"id": 1}, map[string]any{"id": 2}},
			"options":    map[string]any{"fagi_enabled": "yes"},
		}}
	})
	rpcURL, _ := url.Parse(f.rpc.URL())
	proxy := httputil.NewSingleHostReverseProxy(rpcURL)
	mux := http.NewServeMux()
	mux.Handle("/jsonrpc", proxy)
	mux.HandleFunc("/asterisk_plus/agent", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Clone(context.Background()))
		answer := f.answer
		f.tokens++
		token := fmt.Sprintf("%064x", 0xabc000+f.tokens)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if answer != nil {
			status, body, hdr := answer()
			for k, v := range hdr {
				w.Header()[k] = v
			}
			w.WriteHeader(status)
			w.Write([]byte(body))
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]any{
			"agent_token": token, "odoo_user": "agent_7", "odoo_password": "pw-from-odoo", "odoo_db": "prod", "server_id": 7,
		})
	})
	f.srv = httptest.NewUnstartedServer(mux)
	// The untrusted-certificate test makes the server log a handshake error; keep test output clean.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOdoo) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...)
}

// pbxTree is a temporary /etc/asterisk, /etc/odoopbx and a fake asterisk binary.
type pbxTree struct {
	root, etc, bin, log, config, tlsDir string
}

const managerWithInclude = `[general]
enabled = yes
port = 5038
bindaddr = 127.0.0.1
timestampevents = yes

#tryinclude manager.conf.d/*.conf
`

const managerWithoutInclude = `[general]
enabled = yes
bindaddr = 0.0.0.0
`

// fakeAsterisk imitates `asterisk -rx`: it logs its arguments, and "manager show user NAME" finds
// the user only when a file in manager.conf.d defines it, as a reload of the real Asterisk would.
const fakeAsterisk = `#!/bin/sh
echo "$*" >> "$FAKE_LOG"
[ "$1" = "-rx" ] || { echo "usage" ; exit 2; }
case "$2" in
"manager reload")
	[ -n "$FAKE_DOWN" ] && { echo "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)"; exit 1; }
	exit 0 ;;
"manager show user "*)
	user="${2#manager show user }"
	if grep -qs "^\[$user\]" "$FAKE_ETC"/manager.conf.d/*.conf; then
		printf '\n          username: %s\n            secret: <Set>\n               ACL: yes\n' "$user"
	else
		printf 'There is no manager called %s\n' "$user"
	fi ;;
*) echo "No such command '$2'"; exit 1 ;;
esac
`

func newPBXTree(t *testing.T, manager string) pbxTree {
	t.Helper()
	root := t.TempDir()
	tr := pbxTree{
		root:   root,
		etc:    filepath.Join(root, "etc", "asterisk"),
		bin:    filepath.Join(root, "bin", "asterisk"),
		log:    filepath.Join(root, "asterisk.log"),
		config: filepath.Join(root, "etc", "odoopbx", "agent.yaml"),
		tlsDir: filepath.Join(root, "etc", "odoopbx", "tls"),
	}
	must(t, os.MkdirAll(tr.etc, 0o755))
	must(t, os.MkdirAll(filepath.Dir(tr.bin), 0o755))
	must(t, os.WriteFile(filepath.Join(tr.etc, "manager.conf"), []byte(manager), 0o644))
	must(t, os.WriteFile(tr.bin, []byte(fakeAsterisk), 0o755))
	t.Setenv("FAKE_LOG", tr.log)
	t.Setenv("FAKE_ETC", tr.etc)
	return tr
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (tr pbxTree) options(odooURL string) Options {
	return Options{
		OdooURL:        odooURL,
		DB:             "prod",
		ServerID:       7,
		SystemName:     "pbx-1",
		AgentURL:       "https://pbx.example.com:48000",
		AsteriskBinary: tr.bin,
		AsteriskEtcDir: tr.etc,
		ConfigPath:     tr.config,
		TLSDir:         tr.tlsDir,
		TLSSANs:        []string{"pbx.example.com"},
		SkipRootCheck:  true,
	}
}

// loginRecorder is a fake AMILoginFunc.
type loginRecorder struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (l *loginRecorder) login(_ context.Context, addr, user, secret string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, addr+" "+user+" "+secret)
	return l.err
}

func runInit(t *testing.T, opts Options, login *loginRecorder) (string, error) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deps := Deps{Out: &out, NewOdooClient: JSONRPCClient}
	if login != nil {
		deps.AMILogin = login.login
	}
	err := Run(ctx, opts, deps)
	return out.String(), err
}

func readConfig(t *testing.T, path string) config.Config {
	t.Helper()
	// config.Load is what the agent runs with: strict about unknown keys, and validating.
	cfg, err := config.Load(path, nil)
	if err != nil {
		data, _ := os.ReadFile(path)
		t.Fatalf("config.Load: %v\n%s", err, data)
	}
	return cfg
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	must(t, err)
	return st.Mode().Perm()
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestInitFullRunPlainHTTP(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	login := &loginRecorder{}
	opts := tr.options(odooSrv.srv.URL + "/")
	opts.EnableConsole = true
	opts.AMIWriteCommand = true
	me, err := user.Current()
	must(t, err)
	opts.FileOwner = me.Username
	out, err := runInit(t, opts, login)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, step := range []string{"config-check", "config", "manager.conf", "ami-user", "ami-reload", "ami-show-user", "ami-login", "tls", "handshake", "odoo-verify"} {
		if !strings.Contains(out, "OK "+step+": ") {
			t.Errorf("no OK line for %s:\n%s", step, out)
		}
	}
	if strings.Contains(out, "FAIL") || !strings.Contains(out, "systemctl enable --now odoopbx-agent") {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.Contains(out, "timestampevents on") || !strings.Contains(out, "events map rows") {
		t.Errorf("output lacks the manager.conf report or the verify summary:\n%s", out)
	}

	// The AMI user file.
	userFile := filepath.Join(tr.etc, "manager.conf.d", UserFileName)
	if m := mode(t, userFile); m != 0o640 {
		t.Errorf("AMI user file mode %v", m)
	}
	data, err := os.ReadFile(userFile)
	must(t, err)
	secret, err := ExistingSecret(data, DefaultAMIUser)
	if err != nil || !hex64.MatchString(secret) {
		t.Fatalf("secret %q (%v)\n%s", secret, err, data)
	}
	if !strings.Contains(string(data), "write = originate,call,system,reporting,command\n") {
		t.Errorf("--ami-write-command not applied:\n%s", data)
	}

	// The asterisk commands and the test login.
	log, err := os.ReadFile(tr.log)
	must(t, err)
	if got := string(log); got != "-rx manager reload\n-rx manager show user odoopbx_agent\n" {
		t.Errorf("asterisk ran %q", got)
	}
	if len(login.calls) != 1 || login.calls[0] != "127.0.0.1:5038 odoopbx_agent "+secret {
		t.Errorf("AMI login calls %v", login.calls)
	}

	// The TLS pair and the handshake.
	_, fp, err := tlsutil.Load(filepath.Join(tr.tlsDir, "agent.crt"), filepath.Join(tr.tlsDir, "agent.key"))
	must(t, err)
	if m := mode(t, filepath.Join(tr.tlsDir, "agent.key")); m != 0o600 {
		t.Errorf("key mode %v", m)
	}
	reqs := odooSrv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d handshake requests", len(reqs))
	}
	q := reqs[0].URL.Query()
	want := map[string]string{"db": "prod", "server_id": "7", "system_name": "pbx-1", "agent_url": "https://pbx.example.com:48000", "cert_sha256": fp, "version": version.Version}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("query %s = %q, want %q", k, q.Get(k), v)
		}
	}
	if ua := reqs[0].Header.Get("User-Agent"); ua != "odoopbx-agent/"+version.Version {
		t.Errorf("User-Agent %q", ua)
	}
	if reqs[0].Method != http.MethodGet || reqs[0].URL.Path != "/asterisk_plus/agent" {
		t.Errorf("request %s %s", reqs[0].Method, reqs[0].URL.Path)
	}

	// The config file.
	if m := mode(t, tr.config); m != 0o600 {
		t.Errorf("config mode %v", m)
	}
	if m := mode(t, filepath.Dir(tr.config)); m != 0o750 {
		t.Errorf("config dir mode %v", m)
	}
	for _, p := range []string{tr.config, userFile, filepath.Join(tr.tlsDir, "agent.key")} {
		st, err := os.Stat(p)
		must(t, err)
		if uid := st.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != me.Uid {
			t.Errorf("%s owned by uid %d, want %s", p, uid, me.Uid)
		}
	}
	if !strings.Contains(out, "owner "+me.Username) {
		t.Errorf("output does not name the owner:\n%s", out)
	}
	cfg := readConfig(t, tr.config)
	if cfg.AMI.Host != "127.0.0.1" || cfg.AMI.Port != 5038 || cfg.AMI.User != DefaultAMIUser || cfg.AMI.Secret.Reveal() != secret {
		t.Errorf("ami %#v", cfg.AMI)
	}
	if cfg.Odoo.URL != odooSrv.srv.URL || cfg.Odoo.DB != "prod" || cfg.Odoo.User != "agent_7" || cfg.Odoo.Password.Reveal() != "pw-from-odoo" || cfg.Odoo.InsecureSkipVerify {
		t.Errorf("odoo %#v", cfg.Odoo)
	}
	if err := cfg.RequireAMI(); err != nil {
		t.Error(err)
	}
	if err := cfg.RequireOdoo(); err != nil {
		t.Error(err)
	}
	if !hex64.MatchString(cfg.API.Token.Reveal()) {
		t.Errorf("api.token %q", cfg.API.Token.Reveal())
	}
	if cfg.TLS.Cert != filepath.Join(tr.tlsDir, "agent.crt") || cfg.TLS.Key != filepath.Join(tr.tlsDir, "agent.key") {
		t.Errorf("tls %#v", cfg.TLS)
	}
	if !cfg.Console.Enabled || cfg.Conf.ReadEnabled || cfg.Conf.WriteEnabled || cfg.SystemName != "pbx-1" || cfg.AsteriskEtcDir != tr.etc ||
		cfg.Console.AsteriskBinary != tr.bin {
		t.Errorf("flags and dirs %#v", cfg)
	}
	if calls := odooSrv.rpc.CallsTo("asterisk_plus.server", "agent_get_config"); len(calls) != 1 {
		t.Errorf("agent_get_config called %d times", len(calls))
	}
}

func TestInitRerunKeepsSecretCertAndUnmanagedKeys(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	opts := tr.options(odooSrv.srv.URL)
	if out, err := runInit(t, opts, &loginRecorder{}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	userFile := filepath.Join(tr.etc, "manager.conf.d", UserFileName)
	userBefore, _ := os.ReadFile(userFile)
	certBefore, _ := os.ReadFile(filepath.Join(tr.tlsDir, "agent.crt"))
	first := readConfig(t, tr.config)
	// The admin adds keys init does not manage and turns conf sync on by hand.
	f, err := os.OpenFile(tr.config, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	f.WriteString("state_dir: /srv/odoopbx # mine\nsecurity_enabled: \"yes\"\n")
	f.Close()
	data, _ := os.ReadFile(tr.config)
	must(t, os.WriteFile(tr.config, bytes.Replace(data, []byte("read_enabled: false"), []byte("read_enabled: true"), 1), 0o600))

	login := &loginRecorder{}
	out, err := runInit(t, opts, login)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "exists; kept it and its secret") || !strings.Contains(out, "OK tls: kept") {
		t.Errorf("re-run output:\n%s", out)
	}
	userAfter, _ := os.ReadFile(userFile)
	certAfter, _ := os.ReadFile(filepath.Join(tr.tlsDir, "agent.crt"))
	if !bytes.Equal(userBefore, userAfter) || !bytes.Equal(certBefore, certAfter) {
		t.Fatal("re-run rewrote the AMI user file or the certificate")
	}
	second := readConfig(t, tr.config)
	if second.AMI.Secret != first.AMI.Secret || len(login.calls) != 1 || !strings.HasSuffix(login.calls[0], first.AMI.Secret.Reveal()) {
		t.Errorf("AMI secret changed or not used: %v", login.calls)
	}
	if second.API.Token == first.API.Token {
		t.Error("api.token not updated from the new handshake")
	}
	if second.StateDir != "/srv/odoopbx" || !second.Conf.ReadEnabled {
		t.Errorf("unmanaged key or hand-set flag lost: %#v", second)
	}
	text, _ := os.ReadFile(tr.config)
	if !strings.Contains(string(text), "# mine") || !strings.Contains(string(text), `security_enabled: "yes"`) {
		t.Errorf("comment or option lost:\n%s", text)
	}
}

func TestInitForceRewritesUserFileKeepingSecret(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	userFile := filepath.Join(tr.etc, "manager.conf.d", UserFileName)
	must(t, os.MkdirAll(filepath.Dir(userFile), 0o755))
	must(t, os.WriteFile(userFile, []byte("[odoopbx_agent]\nsecret = handmade\nread = all\nwrite = all\n"), 0o644))

	opts := tr.options(odooSrv.srv.URL)
	login := &loginRecorder{}
	out, err := runInit(t, opts, login)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	data, _ := os.ReadFile(userFile)
	if !strings.Contains(string(data), "write = all") {
		t.Fatalf("without --force the file changed:\n%s", data)
	}
	if login.calls[0] != "127.0.0.1:5038 odoopbx_agent handmade" {
		t.Errorf("login %v", login.calls)
	}

	odooSrv.answer = nil
	opts.Force = true
	out, err = runInit(t, opts, &loginRecorder{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	data, _ = os.ReadFile(userFile)
	if strings.Contains(string(data), "write = all") || !strings.Contains(string(data), "secret = handmade\n") ||
		!strings.Contains(string(data), "writetimeout = 5000") {
		t.Fatalf("--force result:\n%s", data)
	}
	if m := mode(t, userFile); m != 0o640 {
		t.Errorf("mode %v", m)
	}
	if !strings.Contains(out, "rewrote (--force), same secret") {
		t.Errorf("output:\n%s", out)
	}
	if cfg := readConfig(t, tr.config); cfg.AMI.Secret.Reveal() != "handmade" {
		t.Errorf("config secret %q", cfg.AMI.Secret.Reveal())
	}
}

func TestInitExistingFileForOtherUserStops(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	userFile := filepath.Join(tr.etc, "manager.conf.d", UserFileName)
	must(t, os.MkdirAll(filepath.Dir(userFile), 0o755))
	must(t, os.WriteFile(userFile, []byte("[someone]\nsecret = x\n"), 0o640))
	out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL ami-user:") || !strings.Contains(out, "[someone]") {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(odooSrv.requests()) != 0 {
		t.Fatal("handshake done after a failed step")
	}
}

// snapshot lists every file under root with its mode and content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		content := ""
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			content = string(b)
		}
		files[p] = info.Mode().String() + " " + content
		return nil
	})
	must(t, err)
	return files
}

func sameFiles(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s was created or changed", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s was removed", p)
		}
	}
}

func TestInitWithoutIncludeStopsAndPrintsTheLine(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithoutInclude)
	before := snapshot(t, tr.root)
	out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("err %v\n%s", err, out)
	}
	if !strings.Contains(out, "FAIL manager.conf:") || !strings.Contains(out, "\n"+IncludeLine+"\n") {
		t.Fatalf("output does not give the line to add:\n%s", out)
	}
	sameFiles(t, before, snapshot(t, tr.root))
	if len(odooSrv.requests()) != 0 {
		t.Fatal("handshake done")
	}
}

func TestInitPreflightFailures(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	cases := map[string]struct{ manager, want string }{
		"disabled":  {"[general]\nenabled = no\n#include manager.conf.d/*.conf\n", `set "enabled = yes"`},
		"bad port":  {"[general]\nenabled = yes\nport = x\n", "is not a TCP port"},
		"bad parse": {"enabled = yes\n", "outside any [section]"},
	}
	for name, c := range cases {
		tr := newPBXTree(t, c.manager)
		out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
		if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL manager.conf:") || !strings.Contains(out, c.want) {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
	tr := newPBXTree(t, managerWithInclude)
	must(t, os.Remove(filepath.Join(tr.etc, "manager.conf")))
	out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "does not exist") || !strings.Contains(out, "--asterisk-etc") {
		t.Errorf("missing manager.conf: %v\n%s", err, out)
	}
	if len(odooSrv.requests()) != 0 {
		t.Fatal("handshake done")
	}
}

func TestInitAsteriskDownAndLoginRefused(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	t.Setenv("FAKE_DOWN", "1")
	out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL ami-reload:") || !strings.Contains(out, "Is Asterisk running?") {
		t.Fatalf("asterisk down: %v\n%s", err, out)
	}
	t.Setenv("FAKE_DOWN", "")
	out, err = runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{err: errors.New("Authentication failed")})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL ami-login:") || !strings.Contains(out, "Authentication failed") {
		t.Fatalf("login refused: %v\n%s", err, out)
	}
	if len(odooSrv.requests()) != 0 {
		t.Fatal("handshake done after a failed AMI step")
	}
	if _, err := os.Stat(tr.config); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("config written after a failed step")
	}
}

func TestInitShowUserMissing(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	// An Asterisk that reloads but never loads the user (its include is broken some other way).
	tr := newPBXTree(t, managerWithInclude)
	opts := tr.options(odooSrv.srv.URL)
	opts.AMIUser = "agent_x"
	must(t, os.WriteFile(tr.bin, []byte("#!/bin/sh\necho \"$*\" >> \"$FAKE_LOG\"\n[ \"$2\" = \"manager reload\" ] && exit 0\necho 'There is no manager called agent_x'\n"), 0o755))
	out, err := runInit(t, opts, &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL ami-show-user:") || !strings.Contains(out, "There is no manager called agent_x") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestInitDryRunChangesNothing(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	// An existing AMI user file whose secret must not be printed.
	userFile := filepath.Join(tr.etc, "manager.conf.d", UserFileName)
	must(t, os.MkdirAll(filepath.Dir(userFile), 0o755))
	must(t, os.WriteFile(userFile, []byte("[odoopbx_agent]\nsecret = verysecretvalue\n"), 0o640))
	before := snapshot(t, tr.root)

	opts := tr.options(odooSrv.srv.URL)
	opts.DryRun = true
	opts.Force = true
	login := &loginRecorder{}
	out, err := runInit(t, opts, login)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sameFiles(t, before, snapshot(t, tr.root))
	if len(odooSrv.requests()) != 0 || len(login.calls) != 0 {
		t.Fatal("dry run contacted Odoo or AMI")
	}
	if strings.Contains(out, "verysecretvalue") {
		t.Fatalf("dry run printed the secret:\n%s", out)
	}
	for _, want := range []string{
		"would write " + userFile + " (mode 0640", "secret = ***",
		`would run ` + tr.bin + ` -rx "manager reload"`, `would run ` + tr.bin + ` -rx "manager show user odoopbx_agent"`,
		"would generate an ECDSA P-256 key", "would GET " + odooSrv.srv.URL + "/asterisk_plus/agent?",
		"would write " + tr.config + " (mode 0600", `secret: "***"`, `token: "***"`, `password: "***"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
}

func TestInitRootCheck(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	opts := tr.options(odooSrv.srv.URL)
	opts.SkipRootCheck = false
	var out bytes.Buffer
	err := Run(context.Background(), opts, Deps{Out: &out, Geteuid: func() int { return 1000 }})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out.String(), "FAIL root:") || !strings.Contains(out.String(), "sudo") {
		t.Fatalf("%v\n%s", err, out.String())
	}
	out.Reset()
	opts.DryRun = true
	if err := Run(context.Background(), opts, Deps{Out: &out, Geteuid: func() int { return 1000 }}); err != nil || !strings.Contains(out.String(), "WARN: running as uid 1000") {
		t.Fatalf("dry run as a user: %v\n%s", err, out.String())
	}
	out.Reset()
	opts.DryRun = false
	if err := Run(context.Background(), opts, Deps{Out: &out, Geteuid: func() int { return 0 }, AMILogin: (&loginRecorder{}).login}); err != nil || !strings.Contains(out.String(), "OK root:") {
		t.Fatalf("as root: %v\n%s", err, out.String())
	}
}

func TestInitRefusesPlainHTTPToRemoteOdoo(t *testing.T) {
	tr := newPBXTree(t, managerWithInclude)
	out, err := runInit(t, tr.options("http://odoo.example.com"), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL arguments:") || !strings.Contains(out, "https://") {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, bad := range []string{"odoo.example.com", "ftp://x", "https://", "https://u:p@odoo"} {
		out, err := runInit(t, tr.options(bad), &loginRecorder{})
		if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL arguments:") {
			t.Errorf("%q: %v\n%s", bad, err, out)
		}
	}
}

func TestInitHandshakeRefusalsWriteNoConfig(t *testing.T) {
	cases := []struct {
		status int
		body   string
		hdr    http.Header
		want   []string
	}{
		{403, `{"error": "not_permitted"}`, nil, []string{"not_permitted", `"Allow agent initialization"`, "1 hour"}},
		{403, `{"error": "already_initialized"}`, nil, []string{"already_initialized", `"Reset agent"`}},
		{404, `{"error": "unknown_db"}`, nil, []string{"404 (unknown_db)", "--db", "asterisk_plus"}},
		{404, `{"error": "server_id_required"}`, nil, []string{"server_id_required", "pass --server-id"}},
		{404, `{"error": "unknown_server"}`, nil, []string{"unknown_server", "check --server-id"}},
		{404, `<html>Not Found</html>`, nil, []string{"404", `"<html>Not Found</html>"`}},
		{429, `{"error": "busy"}`, http.Header{"Retry-After": {"30"}}, []string{"429", "busy", "Wait 30 seconds"}},
		{429, `{"error": "too_many_attempts"}`, nil, []string{"too_many_attempts", "Wait a minute"}},
		{500, `Internal Server Error`, nil, []string{"HTTP 500", "Odoo's log"}},
		{200, `<html>login</html>`, nil, []string{"not with JSON"}},
		{200, `{"agent_token": "t", "odoo_user": "u"}`, nil, []string{"lacks odoo_password, odoo_db"}},
	}
	for _, c := range cases {
		odooSrv := startFakeOdoo(t, false)
		odooSrv.answer = func() (int, string, http.Header) { return c.status, c.body, c.hdr }
		tr := newPBXTree(t, managerWithInclude)
		out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
		if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL handshake:") {
			t.Errorf("%d %s: %v\n%s", c.status, c.body, err, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%d %s: output lacks %q:\n%s", c.status, c.body, w, out)
			}
		}
		if _, err := os.Stat(tr.config); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%d: config written after a refused handshake", c.status)
		}
	}
}

func TestInitOverTLS(t *testing.T) {
	odooSrv := startFakeOdoo(t, true)
	tr := newPBXTree(t, managerWithInclude)

	// Odoo's certificate is not trusted: init stops before anything reaches Odoo.
	out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL handshake:") || !strings.Contains(out, "--ca-file") {
		t.Fatalf("untrusted: %v\n%s", err, out)
	}
	if len(odooSrv.requests()) != 0 {
		t.Fatal("request reached Odoo over an unverified connection")
	}

	// --ca-file trusts it. odootest's own CA signs the JSON-RPC side, but init's verify goes through
	// the same URL, so one CA file holding both is what the admin would give.
	caFile := filepath.Join(tr.root, "ca.pem")
	var pemData bytes.Buffer
	pemData.Write(pemCert(odooSrv.srv.Certificate().Raw))
	must(t, os.WriteFile(caFile, pemData.Bytes(), 0o644))
	opts := tr.options(odooSrv.srv.URL)
	opts.CAFile = caFile
	out, err = runInit(t, opts, &loginRecorder{})
	if err != nil {
		t.Fatalf("with --ca-file: %v\n%s", err, out)
	}
	cfg := readConfig(t, tr.config)
	if cfg.Odoo.CAFile != caFile || cfg.Odoo.InsecureSkipVerify {
		t.Errorf("odoo %#v", cfg.Odoo)
	}

	// --insecure skips the check and says so, in the output and in the config.
	tr2 := newPBXTree(t, managerWithInclude)
	opts = tr2.options(odooSrv.srv.URL)
	opts.Insecure = true
	out, err = runInit(t, opts, &loginRecorder{})
	if err != nil || !strings.Contains(out, "WARN: --insecure") {
		t.Fatalf("--insecure: %v\n%s", err, out)
	}
	if cfg := readConfig(t, tr2.config); !cfg.Odoo.InsecureSkipVerify {
		t.Error("insecure_skip_verify not written")
	}
}

func TestInitSkipAMISetup(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithoutInclude)
	opts := tr.options(odooSrv.srv.URL)
	opts.SkipAMISetup = true
	opts.EnableConfSync = true
	login := &loginRecorder{}
	out, err := runInit(t, opts, login)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "SKIP manager.conf:") || len(login.calls) != 0 {
		t.Fatalf("output:\n%s", out)
	}
	if _, err := os.Stat(tr.log); !errors.Is(err, fs.ErrNotExist) {
		t.Error("asterisk was run")
	}
	cfg := readConfig(t, tr.config)
	if text, _ := os.ReadFile(tr.config); strings.Contains(string(text), "ami:") {
		t.Errorf("ami keys written with --skip-ami-setup:\n%s", text)
	}
	if cfg.AMI.Secret != "" || !cfg.Conf.ReadEnabled || !cfg.Conf.WriteEnabled {
		t.Errorf("config %#v", cfg)
	}
}

func TestInitBrokenConfigStopsBeforeHandshake(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	must(t, os.MkdirAll(filepath.Dir(tr.config), 0o750))
	must(t, os.WriteFile(tr.config, []byte("ami: [broken\n"), 0o600))
	out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL config-check:") {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(odooSrv.requests()) != 0 {
		t.Fatal("handshake done with an unwritable config")
	}
	if data, _ := os.ReadFile(tr.config); string(data) != "ami: [broken\n" {
		t.Fatal("broken config overwritten")
	}
}

func TestInitVerifyFailures(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	odooSrv.rpc.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		return odootest.Response{ErrorName: odootest.ErrAttributeError, ErrorMessage: "type object 'asterisk_plus.server' has no attribute 'agent_get_config'"}
	})
	tr := newPBXTree(t, managerWithInclude)
	out, err := runInit(t, tr.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL odoo-verify:") || !strings.Contains(out, "upgrade it") {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(tr.config); err != nil {
		t.Fatal("config not kept after a failed verify")
	}

	// A wrong password from Odoo: the login itself is refused.
	odooSrv.rpc.SetPassword("something-else")
	tr2 := newPBXTree(t, managerWithInclude)
	out, err = runInit(t, tr2.options(odooSrv.srv.URL), &loginRecorder{})
	if !errors.Is(err, ErrStopped) || !strings.Contains(out, "FAIL odoo-verify:") || !strings.Contains(out, "logging in to Odoo as agent_7") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestInitWithoutOdooClientOrAMILogin(t *testing.T) {
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	var out bytes.Buffer
	if err := Run(context.Background(), tr.options(odooSrv.srv.URL), Deps{Out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "SKIP ami-login:") || !strings.Contains(out.String(), "SKIP odoo-verify:") {
		t.Fatalf("%s", out.String())
	}
}

// fakeOdooClient checks that verify parses what it is given.
type fakeOdooClient struct{ raw string }

func (f fakeOdooClient) ExecuteKw(context.Context, string, string, []any, map[string]any) (json.RawMessage, error) {
	return json.RawMessage(f.raw), nil
}

func TestVerifyRejectsUnexpectedAnswer(t *testing.T) {
	var out bytes.Buffer
	r := &runner{out: &out, deps: Deps{NewOdooClient: func(context.Context, OdooConn) (odoo.Client, error) {
		return fakeOdooClient{raw: `"not an object"`}, nil
	}}}
	if err := r.verifyOdoo(context.Background(), "http://127.0.0.1", HandshakeResult{OdooUser: "u"}); !errors.Is(err, ErrStopped) {
		t.Fatalf("%v %s", err, out.String())
	}
	if !strings.Contains(out.String(), "unexpected") {
		t.Fatal(out.String())
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestHandshakeURL(t *testing.T) {
	got, err := HandshakeURL(HandshakeRequest{OdooURL: "https://example.com/odoo/"})
	if err != nil {
		t.Fatal(err)
	}
	if got != "https://example.com/odoo/asterisk_plus/agent?version="+url.QueryEscape(version.Version) {
		t.Fatalf("%s", got)
	}
	got, err = HandshakeURL(HandshakeRequest{OdooURL: "https://example.com", DB: "a b&c", SystemName: "x=y"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(got)
	if u.Query().Get("db") != "a b&c" || u.Query().Get("system_name") != "x=y" || u.Query().Has("server_id") || u.Query().Has("cert_sha256") {
		t.Fatalf("%s", got)
	}
}

func TestHandshakeUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	client, err := odooHTTPClient("", false)
	must(t, err)
	_, err = Handshake(context.Background(), client, HandshakeRequest{OdooURL: addr})
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 0 || !strings.Contains(err.Error(), "could not reach Odoo") {
		t.Fatalf("%v", err)
	}
	if _, err := odooHTTPClient(filepath.Join(t.TempDir(), "none.pem"), false); err == nil {
		t.Fatal("missing CA file accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	must(t, os.WriteFile(bad, []byte("not pem"), 0o644))
	if _, err := odooHTTPClient(bad, false); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("bad CA file: %v", err)
	}
}

func TestInitFileOwnerAndDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown files to another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this system")
	}
	odooSrv := startFakeOdoo(t, false)
	tr := newPBXTree(t, managerWithInclude)
	// t.TempDir's parents are 0700; open them so only init's own directories matter.
	for d := tr.root; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		must(t, os.Chmod(d, 0o755))
	}
	must(t, os.Chmod(filepath.Join(tr.root, "etc"), 0o755))
	opts := tr.options(odooSrv.srv.URL)
	opts.FileOwner = "nobody"
	out, err := runInit(t, opts, &loginRecorder{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(out, "cannot enter") {
		t.Fatalf("unexpected warning:\n%s", out)
	}
	owner := func(p string) (uint32, uint32) {
		st, err := os.Stat(p)
		must(t, err)
		s := st.Sys().(*syscall.Stat_t)
		return s.Uid, s.Gid
	}
	for _, p := range []string{tr.config, filepath.Join(tr.tlsDir, "agent.key"), filepath.Join(tr.etc, "manager.conf.d", UserFileName)} {
		if uid, _ := owner(p); strconv.Itoa(int(uid)) != nobody.Uid {
			t.Errorf("%s owned by %d, want nobody", p, uid)
		}
	}
	for _, d := range []string{filepath.Dir(tr.config), tr.tlsDir} {
		uid, gid := owner(d)
		if uid != 0 || strconv.Itoa(int(gid)) != nobody.Gid || mode(t, d) != 0o750 {
			t.Errorf("%s: uid %d gid %d mode %v, want root, nobody's group, 0750", d, uid, gid, mode(t, d))
		}
	}

	// A config dir made by hand as root:root 0700 cannot be entered by the service user: init says so.
	tr2 := newPBXTree(t, managerWithInclude)
	must(t, os.MkdirAll(filepath.Dir(tr2.config), 0o700))
	opts = tr2.options(odooSrv.srv.URL)
	opts.FileOwner = "nobody"
	out, err = runInit(t, opts, &loginRecorder{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "WARN: user nobody cannot enter") || !strings.Contains(out, "chgrp nobody") {
		t.Fatalf("no warning:\n%s", out)
	}
}
