// Package config holds the agent's local configuration (contract Appendix A): a YAML file, every key
// overridable by an ODOOPBX_* environment variable, defaults, and validation whose errors name the
// key and the fix.
package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where the agent looks for its config file when --config is not given.
const DefaultPath = "/etc/odoopbx/agent.yaml"

// Config is the whole local configuration. The yaml tags are the contract's key names; the
// environment variable of a key is ODOOPBX_ + the dotted key in upper snake case.
type Config struct {
	SystemName string `yaml:"system_name"`
	StateDir   string `yaml:"state_dir"`
	// AsteriskEtcDir is where Asterisk's configuration lives (conf jobs and init).
	AsteriskEtcDir string `yaml:"asterisk_etc_dir"`
	// AsteriskMonitorDir is where recordings are; relative recording paths are joined to it.
	AsteriskMonitorDir string `yaml:"asterisk_monitor_dir"`
	// AsteriskSoundsDir holds prompts.
	AsteriskSoundsDir string `yaml:"asterisk_sounds_dir"`
	// AsteriskVoicemailDir holds voicemail (MiniVM) files.
	AsteriskVoicemailDir string `yaml:"asterisk_voicemail_dir"`

	AMI      AMI      `yaml:"ami"`
	Odoo     Odoo     `yaml:"odoo"`
	API      API      `yaml:"api"`
	TLS      TLS      `yaml:"tls"`
	Delivery Delivery `yaml:"delivery"`
	Spool    Spool    `yaml:"spool"`
	Jobs     Jobs     `yaml:"jobs"`
	Files    Files    `yaml:"files"`
	Conf     Conf     `yaml:"conf"`
	Console  Console  `yaml:"console"`
	FastAGI  FastAGI  `yaml:"fastagi"`
	Metrics  Metrics  `yaml:"metrics"`

	// Options are the security_*, fagi_* options set locally, as raw strings. They override what
	// Odoo sends in agent_options; each part parses them with ParseBool and friends (contract §6.5),
	// so a bad value is reported by the part that uses it and that feature stays off.
	Options map[string]string `yaml:"-"`

	// Source says where the config came from (a path, or "environment"), for check and logs.
	Source string `yaml:"-"`
}

// AMI is the Asterisk Manager connection (links L1/L2).
type AMI struct {
	Host          string   `yaml:"host"`
	Port          int      `yaml:"port"`
	User          string   `yaml:"user"`
	Secret        Secret   `yaml:"secret"`
	Auth          string   `yaml:"auth"`
	TLS           bool     `yaml:"tls"`
	SingleSession bool     `yaml:"single_session"`
	PingInterval  Duration `yaml:"ping_interval"`
	PingTimeout   Duration `yaml:"ping_timeout"`
	// Events is the Events: mask of the events session; empty means derived from the events map.
	Events string `yaml:"events"`
}

// Address is host:port.
func (a AMI) Address() string {
	return joinHostPort(a.Host, a.Port)
}

// Odoo is the JSON-RPC link to Odoo (L3).
type Odoo struct {
	URL                string   `yaml:"url"`
	DB                 string   `yaml:"db"`
	User               string   `yaml:"user"`
	Password           Secret   `yaml:"password"`
	CAFile             string   `yaml:"ca_file"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	NotifyMethod       string   `yaml:"notify_method"`
	ConnectTimeout     Duration `yaml:"connect_timeout"`
	Timeout            Duration `yaml:"timeout"`
}

// API is the HTTPS job API (L4).
type API struct {
	Listen       string   `yaml:"listen"`
	TLS          bool     `yaml:"tls"`
	Token        Secret   `yaml:"token"`
	TokenNext    Secret   `yaml:"token_next"`
	AllowFrom    []string `yaml:"allow_from"`
	MaxBodyBytes int64    `yaml:"max_body_bytes"`
}

// TLS is the certificate served by the API and the console.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Delivery bounds the parallel delivery lanes.
type Delivery struct {
	MaxParallel int `yaml:"max_parallel"`
}

// Spool is the durable delivery spool.
type Spool struct {
	Dir      string   `yaml:"dir"`
	MaxBytes int64    `yaml:"max_bytes"`
	MaxAge   Duration `yaml:"max_age"`
}

// Jobs bounds the job pool.
type Jobs struct {
	Workers int `yaml:"workers"`
	Queue   int `yaml:"queue"`
}

// Files confines the file jobs.
type Files struct {
	ReadRoots   []string `yaml:"read_roots"`
	DeleteRoots []string `yaml:"delete_roots"`
	MaxBytes    int64    `yaml:"max_bytes"`
	MP3Encoder  string   `yaml:"mp3_encoder"`
}

// Conf enables the asterisk.*_config jobs (local only).
type Conf struct {
	ReadEnabled  bool `yaml:"read_enabled"`
	WriteEnabled bool `yaml:"write_enabled"`
}

// Console is the web CLI (L5).
type Console struct {
	Enabled        bool     `yaml:"enabled"`
	Listen         string   `yaml:"listen"`
	AllowedOrigins []string `yaml:"allowed_origins"`
	ShellEnabled   bool     `yaml:"shell_enabled"`
	AsteriskBinary string   `yaml:"asterisk_binary"`
}

// FastAGI is the FastAGI server's source allow-list (L6); its other options are fagi_* Options.
type FastAGI struct {
	AllowFrom []string `yaml:"allow_from"`
}

// Metrics is the local admin listener (L12): /healthz, /metrics and the status page.
type Metrics struct {
	Listen string `yaml:"listen"`
	Token  Secret `yaml:"token"`
}

// Default returns the built-in defaults of Appendix A.
func Default() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "asterisk"
	}
	const stateDir = "/var/lib/odoopbx-agent"
	const monitorDir = "/var/spool/asterisk/monitor"
	return Config{
		SystemName:           host,
		StateDir:             stateDir,
		AsteriskEtcDir:       "/etc/asterisk",
		AsteriskMonitorDir:   monitorDir,
		AsteriskSoundsDir:    "/var/lib/asterisk/sounds",
		AsteriskVoicemailDir: "/var/spool/asterisk/voicemail",
		AMI: AMI{
			Host:         "127.0.0.1",
			Port:         5038,
			User:         "odoopbx_agent",
			Auth:         "md5",
			PingInterval: Duration(10 * time.Second),
			PingTimeout:  Duration(5 * time.Second),
		},
		Odoo: Odoo{
			NotifyMethod:   "asterisk_plus_notify",
			ConnectTimeout: Duration(5 * time.Second),
			Timeout:        Duration(30 * time.Second),
		},
		API: API{
			Listen:       "[::]:48000",
			TLS:          true,
			MaxBodyBytes: 4 << 20,
		},
		TLS: TLS{
			Cert: "/etc/odoopbx/tls/agent.crt",
			Key:  "/etc/odoopbx/tls/agent.key",
		},
		Delivery: Delivery{MaxParallel: 8},
		Spool: Spool{
			Dir:      stateDir + "/spool",
			MaxBytes: 512 << 20,
			MaxAge:   Duration(24 * time.Hour),
		},
		Jobs: Jobs{Workers: 16, Queue: 1000},
		Files: Files{
			ReadRoots:   []string{monitorDir, "/var/spool/asterisk/voicemail"},
			DeleteRoots: []string{monitorDir},
			MaxBytes:    64 << 20,
			MP3Encoder:  "lame",
		},
		Console: Console{
			Listen:         "[::]:48001",
			AsteriskBinary: "/usr/sbin/asterisk",
		},
		Options: map[string]string{},
	}
}

// Secret is a string that never prints: logs, errors and %v show "***" (or "" when unset).
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "***"
}

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return s.String() }

// Reveal returns the real value, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// MarshalText hides the value from encoders (slog, JSON).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Duration is a time.Duration written in YAML or the environment either as a Go duration ("10s",
// "1m30s") or as a plain number of seconds ("10", "0.5").
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses a Go duration or a number of seconds.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write 10s, 5m or a number of seconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return Duration(d), nil
}

// UnmarshalText lets YAML and the environment use ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText writes the Go form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// ParseBool parses a boolean option the way the contract wants (§6.5): yes/true/on/1 and
// no/false/off/0/"" in any case, trimmed; anything else is an error, so the feature stays off.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "true", "on", "1":
		return true, nil
	case "no", "false", "off", "0", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (use yes or no)", s)
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}
