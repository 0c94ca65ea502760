package jobs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// confined is a path that passed confinement: the resolved root that holds it and the path
// relative to that root, for opening through os.Root (which also refuses a symlink swapped in
// after the check).
type confined struct {
	Root string // resolved root directory
	Rel  string // path inside Root, resolved
	Path string // the absolute path as asked (before resolving symlinks), for results
}

// confine checks a path argument against the allowed roots (contract §4.5 path rules). A relative
// path is joined to base. Any ".." element is refused outright, then the path must lie inside a
// root both as written and after resolving symlinks. A path outside the roots is refused with
// path_not_allowed whether or not it exists, so jobs cannot probe the filesystem; a missing path
// inside them is not_found.
func confine(p, base string, roots []string) (confined, error) {
	if p == "" || strings.ContainsRune(p, 0) {
		return confined{}, Errorf(CodeInvalidArgs, "bad path %q", p)
	}
	if slices.Contains(strings.Split(filepath.ToSlash(p), "/"), "..") {
		return confined{}, Errorf(CodePathNotAllowed, "path %q contains ..", p)
	}
	if !filepath.IsAbs(p) {
		if base == "" || !filepath.IsAbs(base) {
			return confined{}, Errorf(CodePathNotAllowed, "relative path %q and no absolute base directory", p)
		}
		p = filepath.Join(base, p)
	}
	p = filepath.Clean(p)

	type root struct{ written, resolved string }
	var usable []root
	for _, r := range roots {
		if r == "" || !filepath.IsAbs(r) {
			continue
		}
		resolved, err := filepath.EvalSymlinks(r)
		if err != nil {
			continue // a root that does not exist holds nothing
		}
		usable = append(usable, root{filepath.Clean(r), resolved})
	}
	lexicallyInside := slices.ContainsFunc(usable, func(r root) bool {
		return within(r.written, p) || within(r.resolved, p)
	})
	if !lexicallyInside {
		return confined{}, Errorf(CodePathNotAllowed, "path %q is outside the allowed directories", p)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return confined{}, Errorf(CodeNotFound, "%s does not exist", p)
		}
		return confined{}, Errorf(CodeIOError, "%s: %v", p, errors.Unwrap(err))
	}
	for _, r := range usable {
		if within(r.resolved, resolved) {
			rel, err := filepath.Rel(r.resolved, resolved)
			if err != nil {
				break
			}
			return confined{Root: r.resolved, Rel: rel, Path: p}, nil
		}
	}
	return confined{}, Errorf(CodePathNotAllowed, "path %q leads outside the allowed directories", p)
}

// within reports whether p is root or lies under it; both are clean absolute paths.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// ioError turns a filesystem error into the contract's code.
func ioError(what string, err error) *Error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Errorf(CodeNotFound, "%s does not exist", what)
	case errors.Is(err, fs.ErrPermission):
		return Errorf(CodeIOError, "%s: permission denied", what)
	case strings.Contains(err.Error(), "path escapes from parent"):
		return Errorf(CodePathNotAllowed, "%s leads outside the allowed directories", what)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return Errorf(CodeIOError, "%s: %v", what, pe.Err)
	}
	return Errorf(CodeIOError, "%s: %v", what, err)
}

// openRoot opens a resolved root directory.
func openRoot(dir string) (*os.Root, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, ioError(dir, err)
	}
	return r, nil
}
