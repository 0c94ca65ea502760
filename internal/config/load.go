package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable of the config.
const EnvPrefix = "ODOOPBX_"

// optionPrefixes are the keys that Odoo may also send as agent_options; they are kept as raw
// strings in Config.Options and parsed by the part that uses them.
var optionPrefixes = []string{"security_", "fagi_"}

func isOption(key string) bool {
	for _, p := range optionPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// Load reads path (a missing file is fine: the environment may give everything), applies the
// environment (KEY=VALUE strings, as os.Environ gives them) over it, and validates the result.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	cfg.Source = "defaults"
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cfg.Source = "environment (no file at " + path + ")"
		case err != nil:
			return cfg, fmt.Errorf("config: %w", err)
		default:
			if err := decodeYAML(data, &cfg); err != nil {
				return cfg, fmt.Errorf("config: %s: %w", path, err)
			}
			cfg.Source = path
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// decodeYAML fills cfg from a YAML document, refusing unknown keys (with a hint for typos) and
// moving security_*/fagi_* keys into Options.
func decodeYAML(data []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return errors.New("the file must be a mapping of keys to values")
	}
	kept := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if isOption(k.Value) {
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: %s must be a single value", k.Line, k.Value)
			}
			cfg.Options[k.Value] = v.Value
			continue
		}
		kept.Content = append(kept.Content, k, v)
	}
	if err := normaliseBools(kept, "", boolKeys()); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(kept); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return explainYAMLError(err)
	}
	return nil
}

// boolKeys are the dotted keys of boolean fields.
func boolKeys() map[string]bool {
	cfg := Default()
	out := map[string]bool{}
	for _, f := range fields(&cfg) {
		if f.v.Kind() == reflect.Bool {
			out[f.key] = true
		}
	}
	return out
}

// normaliseBools rewrites the values of boolean keys with ParseBool, so the file accepts what the
// environment does (yes/no, on/off, 1/0) and a bad value is reported with its key and the fix.
func normaliseBools(n *yaml.Node, prefix string, keys map[string]bool) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := prefix + k.Value
		switch {
		case v.Kind == yaml.MappingNode:
			if err := normaliseBools(v, key+".", keys); err != nil {
				return err
			}
		case keys[key] && v.Kind == yaml.ScalarNode:
			b, err := ParseBool(v.Value)
			if err != nil {
				return fmt.Errorf("line %d: %s (%s): %v", v.Line, key, EnvName(key), err)
			}
			v.Tag, v.Value, v.Style = "!!bool", strconv.FormatBool(b), 0
		}
	}
	return nil
}

// explainYAMLError adds "did you mean" hints to yaml's unknown-field errors.
func explainYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	keys := Keys()
	var out []string
	for _, e := range te.Errors {
		msg := e
		if i := strings.Index(e, "field "); i >= 0 && strings.Contains(e, "not found") {
			name := strings.Fields(e[i+len("field "):])[0]
			if best := closest(name, keys); best != "" {
				msg += " (did you mean " + best + "?)"
			}
		}
		out = append(out, msg)
	}
	return errors.New(strings.Join(out, "; "))
}

// closest returns the key whose last part is nearest to name by edit distance, if near enough.
func closest(name string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		last := k[strings.LastIndex(k, ".")+1:]
		if d := editDistance(name, last); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// field is one configuration key found by walking Config's yaml tags.
type field struct {
	key string // dotted: ami.host
	v   reflect.Value
}

func fields(cfg *Config) []field {
	var out []field
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(Duration(0)) {
				walk(prefix+tag+".", fv)
				continue
			}
			out = append(out, field{key: prefix + tag, v: fv})
		}
	}
	walk("", reflect.ValueOf(cfg).Elem())
	return out
}

// Keys lists every configuration key in dotted form, for docs and hints.
func Keys() []string {
	cfg := Default()
	var keys []string
	for _, f := range fields(&cfg) {
		keys = append(keys, f.key)
	}
	return keys
}

// EnvName is the environment variable of a dotted key: ami.host → ODOOPBX_AMI_HOST.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv sets every key whose environment variable is present; ODOOPBX_SECURITY_* and
// ODOOPBX_FAGI_* become Options.
func applyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	var errs []error
	used := map[string]bool{}
	for _, f := range fields(cfg) {
		name := EnvName(f.key)
		val, ok := env[name]
		if !ok {
			continue
		}
		used[name] = true
		if err := setValue(f.v, val); err != nil {
			errs = append(errs, fmt.Errorf("config: %s (%s): %v", name, f.key, err))
		}
	}
	for name, val := range env {
		key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		if used[name] {
			continue
		}
		if isOption(key) {
			cfg.Options[key] = val
			continue
		}
		if strings.HasPrefix(name, "ODOOPBX_TEST_") {
			continue // test switches, not configuration
		}
		hint := ""
		if best := closest(key, envKeys()); best != "" {
			hint = " (did you mean " + EnvName(best) + "?)"
		}
		errs = append(errs, fmt.Errorf("config: unknown environment variable %s%s", name, hint))
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return errors.Join(errs...)
	}
	if cfg.Source == "defaults" {
		cfg.Source = "environment"
	}
	return nil
}

// envKeys are the keys in the underscore form used for env-name hints.
func envKeys() []string {
	var out []string
	for _, k := range Keys() {
		out = append(out, strings.ReplaceAll(k, ".", "_"))
	}
	return out
}

func setValue(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case Duration:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(d))
		return nil
	case []string:
		var list []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		v.Set(reflect.ValueOf(list))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(n)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// Validate checks values that every command relies on; the errors name the key, its environment
// variable and the fix. Credentials are checked by RequireAMI and RequireOdoo, because commands
// like version or sim do not need them.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config: %s (%s): %s", key, EnvName(key), fmt.Sprintf(format, a...)))
	}
	if strings.TrimSpace(c.SystemName) == "" {
		bad("system_name", "must not be empty; set a name for this PBX")
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty; the default is /var/lib/odoopbx-agent")
	}
	if c.AMI.Host == "" {
		bad("ami.host", "must not be empty; Asterisk's AMI usually listens on 127.0.0.1")
	}
	if c.AMI.Port < 1 || c.AMI.Port > 65535 {
		bad("ami.port", "%d is not a TCP port; AMI's default is 5038", c.AMI.Port)
	}
	if a := strings.ToLower(c.AMI.Auth); a != "md5" && a != "plain" {
		bad("ami.auth", "%q: use md5 or plain", c.AMI.Auth)
	}
	if c.AMI.PingInterval.D() <= 0 || c.AMI.PingTimeout.D() <= 0 {
		bad("ami.ping_interval", "ping_interval and ping_timeout must be positive (defaults 10s and 5s)")
	}
	if c.Odoo.URL != "" {
		u, err := url.Parse(c.Odoo.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("odoo.url", "%q: write the Odoo address like https://odoo.example.com", c.Odoo.URL)
		}
	}
	if c.Odoo.Timeout.D() <= 0 || c.Odoo.ConnectTimeout.D() <= 0 {
		bad("odoo.timeout", "timeout and connect_timeout must be positive (defaults 30s and 5s)")
	}
	if c.Odoo.NotifyMethod == "" || strings.HasPrefix(c.Odoo.NotifyMethod, "_") {
		bad("odoo.notify_method", "%q must be a public method name (default asterisk_plus_notify)", c.Odoo.NotifyMethod)
	}
	if err := checkListen(c.API.Listen); err != nil {
		bad("api.listen", "%v", err)
	} else if !c.API.TLS && !IsLoopbackListen(c.API.Listen) {
		bad("api.tls", "plain HTTP is allowed only on a loopback address; turn api.tls on or listen on 127.0.0.1")
	}
	for _, cidr := range c.API.AllowFrom {
		if _, err := ParsePrefix(cidr); err != nil {
			bad("api.allow_from", "%q is not an address or CIDR", cidr)
		}
	}
	for _, cidr := range c.FastAGI.AllowFrom {
		if _, err := ParsePrefix(cidr); err != nil {
			bad("fastagi.allow_from", "%q is not an address or CIDR", cidr)
		}
	}
	if c.API.MaxBodyBytes < 1024 {
		bad("api.max_body_bytes", "%d is too small; the default is 4194304 (4 MiB)", c.API.MaxBodyBytes)
	}
	if c.Delivery.MaxParallel < 1 {
		bad("delivery.max_parallel", "must be at least 1 (default 8, at most your Odoo workers)")
	}
	if c.Spool.Dir == "" {
		bad("spool.dir", "must not be empty")
	}
	if c.Spool.MaxBytes < 1<<20 {
		bad("spool.max_bytes", "%d is too small; the default is 536870912 (512 MiB)", c.Spool.MaxBytes)
	}
	if c.Spool.MaxAge.D() <= 0 {
		bad("spool.max_age", "must be positive (default 24h)")
	}
	if c.Jobs.Workers < 1 || c.Jobs.Queue < 1 {
		bad("jobs.workers", "jobs.workers and jobs.queue must be at least 1 (defaults 16 and 1000)")
	}
	if c.Files.MaxBytes < 1 {
		bad("files.max_bytes", "must be positive (default 64 MiB)")
	}
	if c.Console.Enabled {
		if err := checkListen(c.Console.Listen); err != nil {
			bad("console.listen", "%v", err)
		}
	}
	if c.Metrics.Listen != "" {
		if err := checkListen(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%v", err)
		} else if !IsLoopbackListen(c.Metrics.Listen) && c.Metrics.Token == "" {
			bad("metrics.token", "is required when metrics.listen is not a loopback address")
		}
	}
	return errors.Join(errs...)
}

// RequireAMI reports the AMI keys a command that talks to Asterisk needs.
func (c *Config) RequireAMI() error {
	if c.AMI.User == "" || c.AMI.Secret == "" {
		return fmt.Errorf("config: ami.user and ami.secret (%s, %s) are required to reach Asterisk; `odoopbx-agent init` writes them", EnvName("ami.user"), EnvName("ami.secret"))
	}
	return nil
}

// RequireOdoo reports the Odoo keys a command that talks to Odoo needs.
func (c *Config) RequireOdoo() error {
	var missing []string
	for key, v := range map[string]string{"odoo.url": c.Odoo.URL, "odoo.db": c.Odoo.DB, "odoo.user": c.Odoo.User, "odoo.password": string(c.Odoo.Password)} {
		if v == "" {
			missing = append(missing, key+" ("+EnvName(key)+")")
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("config: %s required to reach Odoo; `odoopbx-agent init <odoo-url>` writes them", strings.Join(missing, ", "))
	}
	return nil
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. [::]:48000 or 127.0.0.1:48002)", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: the host must be an IP address", addr)
		}
	}
	return nil
}

// IsLoopbackListen reports whether a listen address binds only to loopback.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ParsePrefix parses an address or a CIDR ("192.0.2.7" is 192.0.2.7/32).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
