package initcmd

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// IncludeLine is the line init asks the admin to add to manager.conf so Asterisk loads the agent's
// AMI user file.
const IncludeLine = "#tryinclude manager.conf.d/*.conf"

// UserFileName is the agent's AMI user file inside manager.conf.d (contract §5.2).
const UserFileName = "odoopbx_agent.conf"

// ManagerInfo is what preflight learns from manager.conf and the files it includes.
type ManagerInfo struct {
	Enabled         bool
	Port            int
	BindAddr        string
	TimestampEvents bool
	// IncludedBy is "file:line" of the directive that loads the agent's user file, "" when none does.
	IncludedBy string
}

// AMIHost is the address the agent dials: loopback when Asterisk listens on every address or on
// loopback, else the one address it listens on.
func (m ManagerInfo) AMIHost() string {
	switch m.BindAddr {
	case "", "0.0.0.0", "127.0.0.1":
		return "127.0.0.1"
	case "::", "[::]", "::1", "[::1]":
		return "::1"
	}
	return strings.Trim(m.BindAddr, "[]")
}

// maxIncludeDepth bounds how deep preflight follows #include, as a guard against include loops.
const maxIncludeDepth = 8

// InspectManager reads manager.conf from etcDir through read (a path → contents function, so tests
// and dry runs stay pure) and glob (a pattern → paths function), follows its includes to find the
// one that loads manager.conf.d/odoopbx_agent.conf, and reads [general]'s enabled, port, bindaddr
// and timestampevents from manager.conf itself.
func InspectManager(etcDir string, read func(string) ([]byte, error), glob func(string) ([]string, error)) (ManagerInfo, error) {
	mainPath := filepath.Join(etcDir, "manager.conf")
	data, err := read(mainPath)
	if err != nil {
		return ManagerInfo{}, err
	}
	cfg, err := ParseAstConfig(data)
	if err != nil {
		return ManagerInfo{}, fmt.Errorf("%s: %w", mainPath, err)
	}
	info := ManagerInfo{Port: 5038}
	if v, ok := cfg.Get("general", "enabled"); ok {
		info.Enabled = astTrue(v)
	}
	if v, ok := cfg.Get("general", "port"); ok {
		port, err := strconv.Atoi(v)
		if err != nil || port < 1 || port > 65535 {
			return ManagerInfo{}, fmt.Errorf("%s: [general] port = %q is not a TCP port", mainPath, v)
		}
		info.Port = port
	}
	if v, ok := cfg.Get("general", "bindaddr"); ok {
		if net.ParseIP(strings.Trim(v, "[]")) == nil {
			return ManagerInfo{}, fmt.Errorf("%s: [general] bindaddr = %q is not an IP address", mainPath, v)
		}
		info.BindAddr = v
	}
	if v, ok := cfg.Get("general", "timestampevents"); ok {
		info.TimestampEvents = astTrue(v)
	}
	userFile := filepath.Join(etcDir, "manager.conf.d", UserFileName)
	seen := map[string]bool{mainPath: true}
	info.IncludedBy = findInclude(etcDir, mainPath, cfg, userFile, read, glob, seen, 0)
	return info, nil
}

// findInclude returns "file:line" of the first include, in file or in what it includes, whose
// pattern matches target. Unreadable or unparsable included files are skipped: Asterisk itself
// would complain about them, and they cannot hold the include we look for in a usable way.
func findInclude(etcDir, file string, cfg *AstConfig, target string, read func(string) ([]byte, error), glob func(string) ([]string, error), seen map[string]bool, depth int) string {
	for _, inc := range cfg.Includes {
		pattern := inc.Path
		if !filepath.IsAbs(pattern) {
			// Asterisk resolves includes against its config dir, not the including file.
			pattern = filepath.Join(etcDir, pattern)
		}
		pattern = filepath.Clean(pattern)
		if ok, _ := filepath.Match(pattern, target); ok {
			return fmt.Sprintf("%s:%d", file, inc.Line)
		}
	}
	if depth >= maxIncludeDepth {
		return ""
	}
	for _, inc := range cfg.Includes {
		pattern := inc.Path
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(etcDir, pattern)
		}
		paths, err := glob(filepath.Clean(pattern))
		if err != nil {
			continue
		}
		for _, p := range paths {
			if seen[p] {
				continue
			}
			seen[p] = true
			data, err := read(p)
			if err != nil {
				continue
			}
			sub, err := ParseAstConfig(data)
			if err != nil {
				continue
			}
			if where := findInclude(etcDir, p, sub, target, read, glob, seen, depth+1); where != "" {
				return where
			}
		}
	}
	return ""
}

// AMIUserSpec is what the agent's AMI user file holds.
type AMIUserSpec struct {
	User   string
	Secret string
	// ExtraPermit is one more address allowed to log in (manager.conf's bindaddr when it is not
	// loopback or a wildcard, since the agent then connects from it).
	ExtraPermit  string
	WriteCommand bool
}

// Render returns the file (contract §5.2). secretShown replaces the secret in the output when not
// empty, for dry runs.
func (s AMIUserSpec) Render(header string, secretShown string) []byte {
	secret := s.Secret
	if secretShown != "" {
		secret = secretShown
	}
	write := "originate,call,system,reporting"
	if s.WriteCommand {
		write += ",command"
	}
	var b strings.Builder
	for _, line := range strings.Split(header, "\n") {
		fmt.Fprintf(&b, "; %s\n", line)
	}
	fmt.Fprintf(&b, "[%s]\n", s.User)
	fmt.Fprintf(&b, "secret = %s\n", secret)
	b.WriteString("deny = 0.0.0.0/0.0.0.0\n")
	b.WriteString("permit = 127.0.0.1/255.255.255.255\n")
	b.WriteString("permit = ::1/128\n")
	if s.ExtraPermit != "" {
		if ip := net.ParseIP(s.ExtraPermit); ip != nil && ip.To4() != nil {
			fmt.Fprintf(&b, "permit = %s/255.255.255.255\n", ip)
		} else if ip != nil {
			fmt.Fprintf(&b, "permit = %s/128\n", ip)
		}
	}
	b.WriteString("read = system,call,dialplan,user,security\n")
	fmt.Fprintf(&b, "write = %s\n", write)
	b.WriteString("writetimeout = 5000\n")
	b.WriteString("allowmultiplelogin = yes\n")
	b.WriteString("displayconnects = no\n")
	return []byte(b.String())
}

// ExistingSecret reads the secret of user from an AMI user file.
func ExistingSecret(data []byte, user string) (string, error) {
	cfg, err := ParseAstConfig(data)
	if err != nil {
		return "", err
	}
	var names []string
	for _, s := range cfg.Sections {
		if s.Template {
			continue
		}
		names = append(names, s.Name)
	}
	if cfg.Section(user) == nil {
		return "", fmt.Errorf("it has no [%s] section (it has %s)", user, strings.Join(quoteAll(names), ", "))
	}
	secret, ok := cfg.Get(user, "secret")
	if !ok || secret == "" {
		return "", fmt.Errorf("[%s] has no secret", user)
	}
	return secret, nil
}

func quoteAll(names []string) []string {
	if len(names) == 0 {
		return []string{"no section"}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "[" + n + "]"
	}
	return out
}

// newSecret is 32 random bytes as hex (contract §5.2, and the form Odoo uses for tokens).
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("init: random secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
