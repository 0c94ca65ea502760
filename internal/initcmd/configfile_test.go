package initcmd

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/odoopbx/odoopbx/internal/config"
)

// trickySecret would turn into another type, a comment or YAML syntax if written unquoted.
const trickySecret = `*a: "b" #c 'd' \e yes`

func initSettings() []setting {
	return []setting{
		{Key: "system_name", Value: "pbx-1"},
		{Key: "ami.host", Value: "127.0.0.1"},
		{Key: "ami.port", Value: 5039},
		{Key: "ami.user", Value: "odoopbx_agent"},
		{Key: "ami.secret", Value: "0123456789", Secret: true},
		{Key: "odoo.url", Value: "https://odoo.example.com"},
		{Key: "odoo.db", Value: "prod"},
		{Key: "odoo.user", Value: "agent_1"},
		{Key: "odoo.password", Value: trickySecret, Secret: true},
		{Key: "odoo.insecure_skip_verify", Value: false},
		{Key: "api.token", Value: "yes", Secret: true},
		{Key: "tls.cert", Value: "/etc/odoopbx/tls/agent.crt"},
		{Key: "tls.key", Value: "/etc/odoopbx/tls/agent.key"},
		flagSetting("console.enabled", true),
		flagSetting("conf.read_enabled", false),
	}
}

func TestMergeConfigRoundTripsIntoConfig(t *testing.T) {
	out, err := MergeConfig(nil, initSettings(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "# odoopbx-agent configuration") {
		t.Errorf("new file has no header:\n%s", out)
	}
	var cfg config.Config
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if cfg.SystemName != "pbx-1" || cfg.AMI.Host != "127.0.0.1" || cfg.AMI.Port != 5039 || cfg.AMI.User != "odoopbx_agent" ||
		cfg.AMI.Secret.Reveal() != "0123456789" || cfg.Odoo.URL != "https://odoo.example.com" || cfg.Odoo.DB != "prod" ||
		cfg.Odoo.User != "agent_1" || cfg.Odoo.Password.Reveal() != trickySecret || cfg.Odoo.InsecureSkipVerify ||
		cfg.API.Token.Reveal() != "yes" || cfg.TLS.Cert != "/etc/odoopbx/tls/agent.crt" || cfg.TLS.Key != "/etc/odoopbx/tls/agent.key" ||
		!cfg.Console.Enabled || cfg.Conf.ReadEnabled {
		t.Fatalf("round trip lost values: %#v\n%s", cfg, out)
	}
	if strings.Contains(string(out), "***") {
		t.Fatalf("secrets masked in a real write:\n%s", out)
	}
}

func TestMergeConfigKeepsUnmanagedKeysAndComments(t *testing.T) {
	existing := `# my notes
state_dir: /srv/odoopbx   # moved
ami:
  secret: old
  ping_interval: 20s
odoo:
  timeout: 45s
console:
  enabled: true
conf:
security_enabled: "yes"
`
	settings := []setting{
		{Key: "ami.secret", Value: "new", Secret: true},
		{Key: "odoo.url", Value: "https://o"},
		flagSetting("console.enabled", false), // not given this time: keep true
		flagSetting("conf.write_enabled", false),
		{Key: "tls.cert", Value: "/c"},
	}
	out, err := MergeConfig([]byte(existing), settings, false)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{"# my notes", "# moved", "state_dir: /srv/odoopbx", "ping_interval: 20s", "timeout: 45s", `security_enabled: "yes"`} {
		if !strings.Contains(text, want) {
			t.Errorf("lost %q:\n%s", want, text)
		}
	}
	var cfg config.Config
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.AMI.Secret.Reveal() != "new" || cfg.AMI.PingInterval.D().Seconds() != 20 || cfg.Odoo.URL != "https://o" ||
		!cfg.Console.Enabled || cfg.Conf.WriteEnabled || cfg.TLS.Cert != "/c" || cfg.StateDir != "/srv/odoopbx" {
		t.Fatalf("merged config %#v\n%s", cfg, text)
	}
	// Merging the same settings again changes nothing.
	again, err := MergeConfig(out, settings, false)
	if err != nil || string(again) != text {
		t.Fatalf("second merge differs (%v):\n%s\n---\n%s", err, text, again)
	}
}

func TestMergeConfigMasksSecrets(t *testing.T) {
	out, err := MergeConfig(nil, initSettings(), true)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	if strings.Contains(text, "0123456789") || strings.Contains(text, "*a:") {
		t.Fatalf("secret shown:\n%s", text)
	}
	if strings.Count(text, `"***"`) != 3 {
		t.Fatalf("want 3 masked secrets:\n%s", text)
	}
}

func TestMergeConfigRejectsBadFiles(t *testing.T) {
	cases := map[string]string{
		"not yaml":           "ami: [unclosed\n",
		"list at top":        "- a\n- b\n",
		"scalar parent":      "ami: 5\n",
		"list parent":        "odoo:\n  - x\n",
		"scalar at top-only": "just a string\n",
	}
	for name, body := range cases {
		if _, err := MergeConfig([]byte(body), initSettings(), false); err == nil {
			t.Errorf("%s: merged without error", name)
		}
	}
}

func TestMergeConfigCommentOnlyAndNullParents(t *testing.T) {
	out, err := MergeConfig([]byte("# only a comment\n"), []setting{{Key: "ami.user", Value: "u"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "# only a comment") || !strings.Contains(string(out), `user: "u"`) {
		t.Fatalf("%s", out)
	}
	out, err = MergeConfig([]byte("ami:\n"), []setting{{Key: "ami.user", Value: "u"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	if err := yaml.Unmarshal(out, &cfg); err != nil || cfg.AMI.User != "u" {
		t.Fatalf("%v %s", err, out)
	}
}
