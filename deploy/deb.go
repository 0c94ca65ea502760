// Package deploy builds the agent's Debian package from deploy/nfpm.yaml with nfpm used as a
// library (only its deb packager is linked, so the build needs none of nfpm's rpm/msix modules).
// `make deb` runs it through deploy/mkdeb; deb_test.go builds a package the same way and inspects it
// with dpkg-deb.
package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

// FallbackVersion is what the build uses when git cannot describe the tree (a tarball, no git).
const FallbackVersion = "0.0.0-dev"

// debianUpstreamVersion is Debian policy §5.6.12 for an upstream version without a revision and
// without an epoch: it starts with a digit and uses only alphanumerics and . + ~ (no hyphen, since a
// hyphen would start a Debian revision).
var debianUpstreamVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// describeSuffix matches the "-<commits>-g<hash>" that git describe appends after a tag.
var describeSuffix = regexp.MustCompile(`^(.*)-([0-9]+)-(g[0-9a-f]+)$`)

// hexHash matches the bare abbreviated hash that `git describe --always` prints without any tag.
var hexHash = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// DebianVersion turns the output of `git describe --tags --always --dirty` into a Debian version that
// sorts the way the releases do:
//
//	v1.2.3              → 1.2.3
//	v1.2.3-4-gabc1234   → 1.2.3+4.gabc1234        (commits after a tag sort after it)
//	v1.2.3-rc1          → 1.2.3~rc1               (a pre-release sorts before the release)
//	v1.2.3-dirty        → 1.2.3+0.dirty
//	abc1234-dirty       → 0.0.0~git.abc1234.dirty (no tag at all)
//	0.0.0-dev           → 0.0.0~dev               (the Makefile's fallback)
func DebianVersion(describe string) (string, error) {
	s := strings.TrimSpace(describe)
	if s == "" {
		return "", errors.New("deploy: empty version")
	}
	dirty := false
	if rest, ok := strings.CutSuffix(s, "-dirty"); ok {
		dirty, s = true, rest
	}
	var local []string // the "+…" part: commits since the tag, hash, dirty
	if m := describeSuffix.FindStringSubmatch(s); m != nil {
		s, local = m[1], []string{m[2], m[3]}
	}
	var out string
	switch {
	case hexHash.MatchString(s) && local == nil:
		out = "0.0.0~git." + s
		if dirty {
			out += ".dirty"
		}
		dirty = false
	default:
		s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
		// The first hyphen of a tag starts a pre-release (1.2.3-rc1, 0.0.0-dev); later hyphens
		// become dots because Debian reserves the hyphen for its revision.
		base, pre, hasPre := strings.Cut(s, "-")
		out = base
		if hasPre {
			out += "~" + strings.ReplaceAll(pre, "-", ".")
		}
	}
	if dirty {
		if local == nil {
			// A dirty tree on a tag sorts after the tag and before the next commit (+1.g…).
			local = []string{"0"}
		}
		local = append(local, "dirty")
	}
	if len(local) > 0 {
		out += "+" + strings.Join(local, ".")
	}
	if !debianUpstreamVersion.MatchString(out) {
		return "", fmt.Errorf("deploy: %q gives %q, which is not a valid Debian version (tags must look like v1.2.3)", describe, out)
	}
	return out, nil
}

// DebOptions says what to package and where to put it.
type DebOptions struct {
	// Config is the nfpm configuration, normally deploy/nfpm.yaml. Relative src paths and script
	// paths in it are relative to the file's own directory, so it works from any working directory.
	Config string
	// Version must already be a Debian version (see DebianVersion).
	Version string
	// Arch is a Go architecture (amd64, arm64, 386, arm7…); nfpm maps it to the Debian name.
	Arch string
	// Binary is the odoopbx-agent binary built for Arch.
	Binary string
	// TargetDir receives the package; it is created if missing.
	TargetDir string
}

// BuildDeb writes <TargetDir>/odoopbx-agent_<version>_<arch>.deb and returns its path.
func BuildDeb(opts DebOptions) (string, error) {
	if !debianUpstreamVersion.MatchString(opts.Version) {
		return "", fmt.Errorf("deploy: version %q is not a Debian version; pass it through DebianVersion first", opts.Version)
	}
	if opts.Arch == "" {
		return "", errors.New("deploy: no architecture given")
	}
	binary, err := filepath.Abs(opts.Binary)
	if err != nil {
		return "", fmt.Errorf("deploy: binary path: %w", err)
	}
	if st, err := os.Stat(binary); err != nil {
		return "", fmt.Errorf("deploy: binary: %w (run make build first)", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("deploy: binary %s is not an executable file", binary)
	}
	vars := map[string]string{"VERSION": opts.Version, "ARCH": opts.Arch, "BINARY": binary}
	cfg, err := nfpm.ParseFileWithEnvMapping(opts.Config, func(name string) string { return vars[name] })
	if err != nil {
		return "", fmt.Errorf("deploy: %s: %w", opts.Config, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", fmt.Errorf("deploy: %s: %w", opts.Config, err)
	}
	resolvePaths(info, filepath.Dir(opts.Config))
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("deploy: %s: %w", opts.Config, err)
	}
	if err := os.MkdirAll(opts.TargetDir, 0o755); err != nil {
		return "", fmt.Errorf("deploy: %w", err)
	}
	target := filepath.Join(opts.TargetDir, deb.Default.ConventionalFileName(info))
	// Write to a temporary name and rename, so an interrupted build never leaves a truncated .deb
	// that looks finished.
	tmp, err := os.CreateTemp(opts.TargetDir, ".odoopbx-agent-*.deb")
	if err != nil {
		return "", fmt.Errorf("deploy: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := deb.Default.Package(info, tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("deploy: packaging: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("deploy: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("deploy: %w", err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return "", fmt.Errorf("deploy: %w", err)
	}
	return target, nil
}

// resolvePaths makes the config's relative file references relative to the config's directory.
func resolvePaths(info *nfpm.Info, dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for _, c := range info.Contents {
		if c.Source != "" && c.Type != "symlink" {
			c.Source = abs(c.Source)
		}
	}
	info.Scripts.PreInstall = abs(info.Scripts.PreInstall)
	info.Scripts.PostInstall = abs(info.Scripts.PostInstall)
	info.Scripts.PreRemove = abs(info.Scripts.PreRemove)
	info.Scripts.PostRemove = abs(info.Scripts.PostRemove)
}
