package jobs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/odoopbx/odoopbx/internal/config"
)

// confName is the only shape of filename the conf functions accept: directly inside
// asterisk_etc_dir (contract §4.5).
var confName = regexp.MustCompile(`^[A-Za-z0-9_.-]+\.conf$`)

// backupSuffix is appended to a config file's name for the copy kept before it is replaced.
const backupSuffix = ".odoopbx.bak"

// isManagerConf reports manager.conf and anything under manager.conf.d, which jobs may never
// read or write: Odoo must not be able to raise its own AMI privileges.
func isManagerConf(rel string) bool {
	rel = strings.ToLower(filepath.ToSlash(rel))
	return rel == "manager.conf" || rel == "manager.conf.d" || strings.HasPrefix(rel, "manager.conf.d/")
}

// etcRoot is asterisk_etc_dir with its symlinks resolved.
type etcRoot struct {
	dir  string
	root *os.Root
}

func openEtc(cfg config.Config) (*etcRoot, error) {
	if cfg.AsteriskEtcDir == "" || !filepath.IsAbs(cfg.AsteriskEtcDir) {
		return nil, Errorf(CodeInternal, "asterisk_etc_dir %q is not an absolute path", cfg.AsteriskEtcDir)
	}
	dir, err := filepath.EvalSymlinks(cfg.AsteriskEtcDir)
	if err != nil {
		return nil, ioError(cfg.AsteriskEtcDir, err)
	}
	root, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	return &etcRoot{dir: dir, root: root}, nil
}

func (e *etcRoot) Close() { e.root.Close() }

// resolve checks a conf filename and returns the path, relative to the etc root, that it stands
// for once symlinks are followed: a symlink out of the directory, or to manager.conf, is refused.
// exists is false when there is no such file yet (put_config may create it).
func (e *etcRoot) resolve(name string) (rel string, exists bool, err error) {
	if !confName.MatchString(name) {
		return "", false, Errorf(CodePathNotAllowed, "%q is not a config file name (letters, digits, _ . - ending in .conf)", name)
	}
	if isManagerConf(name) {
		return "", false, Errorf(CodePathNotAllowed, "%s is never readable or writable by jobs", name)
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(e.dir, name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Either no file, or a dangling symlink: only the former may be created.
			if _, lerr := e.root.Lstat(name); lerr == nil {
				return "", false, Errorf(CodePathNotAllowed, "%s is a symlink to a missing file", name)
			}
			return name, false, nil
		}
		return "", false, ioError(name, err)
	}
	if !within(e.dir, resolved) {
		return "", false, Errorf(CodePathNotAllowed, "%s leads outside %s", name, e.dir)
	}
	rel, err = filepath.Rel(e.dir, resolved)
	if err != nil {
		return "", false, Errorf(CodePathNotAllowed, "%s: %v", name, err)
	}
	if isManagerConf(rel) {
		return "", false, Errorf(CodePathNotAllowed, "%s leads to %s, which is never readable or writable by jobs", name, rel)
	}
	return rel, true, nil
}

// read returns a regular file's content, capped at limit bytes.
func (e *etcRoot) read(name, rel string, limit int64) ([]byte, os.FileInfo, error) {
	data, err := readConfined(confined{Root: e.dir, Rel: rel, Path: name}, limit)
	if err != nil {
		return nil, nil, err
	}
	st, err := e.root.Stat(rel)
	if err != nil {
		return nil, nil, ioError(name, err)
	}
	return data, st, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func confReadEnabled(cfg config.Config) error {
	if !cfg.Conf.ReadEnabled {
		return Errorf(CodeDisabled, "reading Asterisk configs is off (set conf.read_enabled: yes in the agent's local config)")
	}
	return nil
}

func confWriteEnabled(cfg config.Config) error {
	if !cfg.Conf.WriteEnabled {
		return Errorf(CodeDisabled, "writing Asterisk configs is off (set conf.write_enabled: yes in the agent's local config)")
	}
	return nil
}

// confDir checks the local flag (conf.write_enabled for writes, else conf.read_enabled) and opens
// asterisk_etc_dir; the caller closes it.
func (b *builtins) confDir(write bool) (config.Config, *etcRoot, error) {
	cfg := b.deps.Config()
	check := confReadEnabled
	if write {
		check = confWriteEnabled
	}
	if err := check(cfg); err != nil {
		return cfg, nil, err
	}
	etc, err := openEtc(cfg)
	return cfg, etc, err
}

// resolveArg resolves the filename argument inside the etc dir.
func (e *etcRoot) resolveArg(args []json.RawMessage) (name, rel string, exists bool, err error) {
	if name, err = argString(args, 0, "filename"); err != nil {
		return "", "", false, err
	}
	rel, exists, err = e.resolve(name)
	return name, rel, exists, err
}

// getConfig implements asterisk.get_config.
func (b *builtins) getConfig(_ context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	cfg, etc, err := b.confDir(false)
	if err != nil {
		return nil, err
	}
	defer etc.Close()
	name, rel, exists, err := etc.resolveArg(args)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, Errorf(CodeNotFound, "%s does not exist", name)
	}
	data, st, err := etc.read(name, rel, maxFileBytes(cfg))
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"filename":  name,
		"file_data": base64.StdEncoding.EncodeToString(data),
		"sha256":    sha256Hex(data),
		"mtime":     float64(st.ModTime().UnixNano()) / 1e9,
	}, nil
}

// getAllConfigs implements asterisk.get_all_configs: every readable *.conf in asterisk_etc_dir
// except manager.conf; symlinks that lead out are skipped. The total is capped at files.max_bytes.
func (b *builtins) getAllConfigs(_ context.Context, _ []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	cfg, etc, err := b.confDir(false)
	if err != nil {
		return nil, err
	}
	defer etc.Close()
	entries, err := os.ReadDir(etc.dir)
	if err != nil {
		return nil, ioError(etc.dir, err)
	}
	budget := maxFileBytes(cfg)
	out := map[string]any{}
	for _, ent := range entries {
		name := ent.Name()
		rel, exists, err := etc.resolve(name)
		if err != nil || !exists {
			continue
		}
		data, st, err := etc.read(name, rel, budget)
		if err != nil {
			var je *Error
			if errors.As(err, &je) && je.Code == CodeTooLarge {
				return nil, Errorf(CodeTooLarge, "the configs together are over files.max_bytes (%d bytes)", maxFileBytes(cfg))
			}
			continue
		}
		if !st.Mode().IsRegular() {
			continue
		}
		budget -= int64(len(data))
		out[name] = map[string]any{"file_data": base64.StdEncoding.EncodeToString(data), "sha256": sha256Hex(data)}
	}
	return out, nil
}

// putConfig implements asterisk.put_config.
func (b *builtins) putConfig(_ context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
	cfg := b.deps.Config()
	if err := confWriteEnabled(cfg); err != nil {
		return nil, err
	}
	name, err := argString(args, 0, "filename")
	if err != nil {
		return nil, err
	}
	if len(args) < 2 || isNull(args[1]) {
		return nil, Errorf(CodeInvalidArgs, "missing argument 2 (file_data)")
	}
	var encoded string
	if err := json.Unmarshal(args[1], &encoded); err != nil {
		return nil, Errorf(CodeInvalidArgs, "argument 2 (file_data) must be a base64 string")
	}
	data, err := decodeBase64(encoded, maxFileBytes(cfg))
	if err != nil {
		return nil, err
	}
	expected, err := kwString(kwargs, "expected_sha256", "")
	if err != nil {
		return nil, err
	}
	etc, err := openEtc(cfg)
	if err != nil {
		return nil, err
	}
	defer etc.Close()
	if err := etc.write(name, data, strings.ToLower(expected), maxFileBytes(cfg)); err != nil {
		return nil, err
	}
	return map[string]any{"filename": name, "sha256": sha256Hex(data)}, nil
}

// putAllConfigs implements asterisk.put_all_configs: every name is checked before any file is
// written; each file is replaced atomically.
func (b *builtins) putAllConfigs(_ context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	cfg := b.deps.Config()
	if err := confWriteEnabled(cfg); err != nil {
		return nil, err
	}
	if len(args) == 0 || isNull(args[0]) {
		return nil, Errorf(CodeInvalidArgs, "missing argument 1 ({filename: base64})")
	}
	var files map[string]string
	if err := json.Unmarshal(args[0], &files); err != nil {
		return nil, Errorf(CodeInvalidArgs, "argument 1 must be an object of filename to base64 content")
	}
	etc, err := openEtc(cfg)
	if err != nil {
		return nil, err
	}
	defer etc.Close()
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	contents := make(map[string][]byte, len(files))
	var total int64
	for _, n := range names {
		if _, _, err := etc.resolve(n); err != nil {
			return nil, err
		}
		data, err := decodeBase64(files[n], maxFileBytes(cfg))
		if err != nil {
			var e *Error
			errors.As(err, &e)
			return nil, Errorf(e.Code, "%s: %s", n, e.Message)
		}
		total += int64(len(data))
		if total > maxFileBytes(cfg) {
			return nil, Errorf(CodeTooLarge, "the configs together are over files.max_bytes (%d bytes)", maxFileBytes(cfg))
		}
		contents[n] = data
	}
	written := []string{}
	for _, n := range names {
		if err := etc.write(n, contents[n], "", maxFileBytes(cfg)); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				e = Errorf(CodeIOError, "%v", err)
			}
			return nil, Errorf(e.Code, "%s (written before the failure: %s)", e.Message, strings.Join(written, ", "))
		}
		written = append(written, n)
	}
	return map[string]any{"written": written}, nil
}

// deleteConfig implements asterisk.delete_config: the file is renamed to its backup name, so the
// content is kept; false when there is no such file.
func (b *builtins) deleteConfig(_ context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	_, etc, err := b.confDir(true)
	if err != nil {
		return nil, err
	}
	defer etc.Close()
	name, rel, exists, err := etc.resolveArg(args)
	if err != nil {
		return nil, err
	}
	if !exists {
		return false, nil
	}
	st, err := etc.root.Lstat(name)
	if err != nil {
		return nil, ioError(name, err)
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		// Remove the link only, never the file it points to.
		rel = name
	} else if !st.Mode().IsRegular() {
		return nil, Errorf(CodeInvalidArgs, "%s is not a regular file", name)
	}
	if err := etc.root.Rename(rel, rel+backupSuffix); err != nil {
		return nil, ioError(name, err)
	}
	return true, nil
}

// write replaces a config file atomically: a temp file in the same directory, synced, then
// renamed over the old one, whose content is first copied to <name>.odoopbx.bak. With expected
// set, the current content must have that SHA-256 (a missing file has none), else conflict.
func (e *etcRoot) write(name string, data []byte, expected string, limit int64) error {
	rel, exists, err := e.resolve(name)
	if err != nil {
		return err
	}
	mode := fs.FileMode(0o640)
	var old []byte
	if exists {
		var st os.FileInfo
		old, st, err = e.read(name, rel, limit)
		if err != nil {
			return err
		}
		mode = st.Mode().Perm()
	}
	if expected != "" && (!exists || sha256Hex(old) != expected) {
		current := "no file"
		if exists {
			current = "sha256 " + sha256Hex(old)
		}
		return Errorf(CodeConflict, "%s changed on the PBX (expected sha256 %s, found %s)", name, expected, current)
	}
	dir := filepath.Dir(rel)
	tmp := filepath.Join(dir, "."+filepath.Base(rel)+".odoopbx-tmp-"+strings.ToLower(rand.Text()[:10]))
	f, err := e.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return ioError(name, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil && exists {
		werr = e.root.WriteFile(rel+backupSuffix, old, mode)
	}
	if werr == nil {
		werr = e.root.Rename(tmp, rel)
	}
	if werr != nil {
		_ = e.root.Remove(tmp)
		return ioError(name, werr)
	}
	if d, err := e.root.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; a failure here leaves a valid file either way
		d.Close()
	}
	return nil
}

// decodeBase64 decodes standard base64, tolerating the line breaks Python's encodebytes adds.
func decodeBase64(s string, limit int64) ([]byte, error) {
	s = strings.NewReplacer("\n", "", "\r", "").Replace(s)
	if int64(base64.StdEncoding.DecodedLen(len(s))) > limit+3 {
		return nil, Errorf(CodeTooLarge, "the file is over files.max_bytes (%d bytes)", limit)
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, Errorf(CodeInvalidArgs, "file_data is not valid base64: %v", err)
	}
	if int64(len(data)) > limit {
		return nil, Errorf(CodeTooLarge, "the file is over files.max_bytes (%d bytes)", limit)
	}
	return data, nil
}
