package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFileThenEnvironment(t *testing.T) {
	path := writeFile(t, `
system_name: pbx1
ami:
  host: 10.0.0.5
  port: 5039
  user: agent
  secret: s3cret
  tls: 1
  single_session: "off"
  ping_interval: 15
odoo:
  url: https://odoo.example.com
  db: prod
  timeout: 1m
api:
  allow_from: [192.0.2.0/24]
security_enabled: "yes"
security_maxretry: 7
fagi_port: 44575
`)
	cfg, err := Load(path, []string{"ODOOPBX_AMI_HOST=127.0.0.1", "ODOOPBX_ODOO_PASSWORD=pw", "ODOOPBX_SECURITY_FINDTIME=300", "PATH=/bin", "ODOOPBX_API_ALLOW_FROM=198.51.100.0/24, 203.0.113.9"})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]any{
		"system_name":       {cfg.SystemName, "pbx1"},
		"env over file":     {cfg.AMI.Host, "127.0.0.1"},
		"port":              {cfg.AMI.Port, 5039},
		"yes as bool":       {cfg.AMI.TLS, true},
		"seconds":           {cfg.AMI.PingInterval.D(), 15 * time.Second},
		"go duration":       {cfg.Odoo.Timeout.D(), time.Minute},
		"default kept":      {cfg.AMI.PingTimeout.D(), 5 * time.Second},
		"secret":            {cfg.AMI.Secret.Reveal(), "s3cret"},
		"env secret":        {cfg.Odoo.Password.Reveal(), "pw"},
		"option from file":  {cfg.Options["security_enabled"], "yes"},
		"number option":     {cfg.Options["security_maxretry"], "7"},
		"fagi option":       {cfg.Options["fagi_port"], "44575"},
		"option from env":   {cfg.Options["security_findtime"], "300"},
		"list from env":     {strings.Join(cfg.API.AllowFrom, "|"), "198.51.100.0/24|203.0.113.9"},
		"source":            {cfg.Source, path},
		"default spool dir": {cfg.Spool.Dir, "/var/lib/odoopbx-agent/spool"},
	}
	for name, c := range checks {
		if fmt.Sprint(c[0]) != fmt.Sprint(c[1]) {
			t.Errorf("%s: got %v, want %v", name, c[0], c[1])
		}
	}
}

func TestNoFileEnvironmentOnly(t *testing.T) {
	cfg, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), []string{"ODOOPBX_AMI_SECRET=x", "ODOOPBX_STATE_DIR=/tmp/s", "ODOOPBX_SECURITY_ENABLED=on"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AMI.Secret.Reveal() != "x" || cfg.StateDir != "/tmp/s" || cfg.Options["security_enabled"] != "on" {
		t.Errorf("%+v", cfg)
	}
	if !strings.Contains(cfg.Source, "environment") {
		t.Errorf("source %q", cfg.Source)
	}
	if err := cfg.RequireAMI(); err != nil {
		t.Error(err)
	}
	if err := cfg.RequireOdoo(); err == nil || !strings.Contains(err.Error(), "ODOOPBX_ODOO_URL") {
		t.Errorf("RequireOdoo: %v", err)
	}
}

func TestErrorsNameTheKeyAndTheFix(t *testing.T) {
	cases := map[string]struct {
		file string
		env  []string
		want []string
	}{
		"typo in file":     {file: "ami:\n  hots: x\n", want: []string{"hots", "did you mean ami.host"}},
		"bad type":         {file: "ami:\n  port: many\n", want: []string{"many"}},
		"bad bool in file": {file: "ami:\n  tls: maybe\n", want: []string{"line 2", "ami.tls", "ODOOPBX_AMI_TLS", "yes or no"}},
		"bad port":         {file: "ami:\n  port: 70000\n", want: []string{"ami.port", "ODOOPBX_AMI_PORT", "5038"}},
		"bad auth":         {env: []string{"ODOOPBX_AMI_AUTH=sha1"}, want: []string{"ami.auth", "md5 or plain"}},
		"bad bool env":     {env: []string{"ODOOPBX_API_TLS=maybe"}, want: []string{"ODOOPBX_API_TLS", "yes or no"}},
		"bad duration":     {env: []string{"ODOOPBX_AMI_PING_TIMEOUT=soon"}, want: []string{"ODOOPBX_AMI_PING_TIMEOUT", "duration"}},
		"unknown env":      {env: []string{"ODOOPBX_AMI_HSOT=x"}, want: []string{"unknown environment variable ODOOPBX_AMI_HSOT", "ODOOPBX_AMI_HOST"}},
		"plain http api":   {env: []string{"ODOOPBX_API_TLS=no"}, want: []string{"api.tls", "loopback"}},
		"bad odoo url":     {env: []string{"ODOOPBX_ODOO_URL=odoo.example.com"}, want: []string{"odoo.url", "https://"}},
		"metrics no token": {env: []string{"ODOOPBX_METRICS_LISTEN=0.0.0.0:48002"}, want: []string{"metrics.token"}},
		"bad cidr":         {env: []string{"ODOOPBX_API_ALLOW_FROM=10.0.0.0/33"}, want: []string{"api.allow_from"}},
		"not a mapping":    {file: "- a\n- b\n", want: []string{"mapping"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = writeFile(t, c.file)
			}
			_, err := Load(path, c.env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoopbackPlainHTTPIsAllowed(t *testing.T) {
	if _, err := Load("", []string{"ODOOPBX_API_TLS=off", "ODOOPBX_API_LISTEN=127.0.0.1:48000"}); err != nil {
		t.Fatal(err)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	cfg, err := Load("", []string{"ODOOPBX_AMI_SECRET=topsecret", "ODOOPBX_ODOO_PASSWORD=topsecret", "ODOOPBX_API_TOKEN=topsecret"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg, "ami", cfg.AMI)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", cfg)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.AMI.Secret)
	if strings.Contains(out, "topsecret") {
		t.Fatalf("a secret leaked: %s", out)
	}
	if !strings.Contains(out, "***") {
		t.Error("secrets should show as ***")
	}
}

func TestEveryKeyHasAnEnvironmentVariable(t *testing.T) {
	keys := Keys()
	if len(keys) < 40 {
		t.Fatalf("only %d keys found", len(keys))
	}
	for _, k := range keys {
		cfg := Default()
		var v string
		switch {
		case strings.HasSuffix(k, "port") || strings.HasSuffix(k, "max_parallel") || strings.HasSuffix(k, "workers") || strings.HasSuffix(k, "queue"):
			v = "7"
		case strings.HasSuffix(k, "bytes"):
			v = "9999999"
		case strings.Contains(k, "timeout") || strings.Contains(k, "interval") || strings.HasSuffix(k, "max_age"):
			v = "3s"
		case k == "ami.tls" || k == "ami.single_session" || k == "odoo.insecure_skip_verify" || k == "api.tls" || strings.HasPrefix(k, "conf.") || k == "console.enabled" || k == "console.shell_enabled":
			v = "yes"
		default:
			v = "x"
		}
		if err := applyEnv(&cfg, []string{EnvName(k) + "=" + v}); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if EnvName("ami.host") != "ODOOPBX_AMI_HOST" || EnvName("state_dir") != "ODOOPBX_STATE_DIR" {
		t.Error("env names")
	}
}

func TestParseBool(t *testing.T) {
	for _, s := range []string{"yes", " TRUE ", "On", "1"} {
		if b, err := ParseBool(s); err != nil || !b {
			t.Errorf("%q: %v %v", s, b, err)
		}
	}
	for _, s := range []string{"no", "false", "OFF", "0", "", " "} {
		if b, err := ParseBool(s); err != nil || b {
			t.Errorf("%q: %v %v", s, b, err)
		}
	}
	for _, s := range []string{"y", "2", "enabled"} {
		if _, err := ParseBool(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
