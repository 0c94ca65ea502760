package jobs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Timeouts of contract §4.7: a job runs at most MaxTimeout; without an envelope timeout it gets its
// function's default, DefaultTimeout unless the function registered its own.
const (
	DefaultTimeout = 30 * time.Second
	MaxTimeout     = 600 * time.Second
)

// Reserved are names the contract keeps for later: they answer unknown_function and cannot be
// registered, so a future function does not collide with a site's own.
var reserved = []string{"sip.get_peers", "download_prompt", "delete_prompt", "asterisk.tts_create_sound"}

// IsReserved reports whether name is a reserved function name (contract §4.5).
func IsReserved(name string) bool { return slices.Contains(reserved, name) }

// Registry maps function names and aliases to Funcs. It is safe for concurrent use, so the lead
// may merge in more functions (security's) after the API has started.
type Registry struct {
	mu       sync.RWMutex
	funcs    map[string]Func          // canonical name → func
	aliases  map[string]string        // alias → canonical name
	timeouts map[string]time.Duration // canonical name → default timeout
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		funcs:    map[string]Func{},
		aliases:  map[string]string{},
		timeouts: map[string]time.Duration{},
	}
}

// Register adds f under name and its aliases. A name already taken, a reserved name, an empty
// name or a nil f is an error, so two parts never silently shadow each other.
func (r *Registry) Register(name string, f Func, aliases ...string) error {
	if f == nil {
		return fmt.Errorf("jobs: register %q: nil function", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range append([]string{name}, aliases...) {
		if strings.TrimSpace(n) == "" {
			return fmt.Errorf("jobs: register %q: empty name or alias", name)
		}
		if IsReserved(n) {
			return fmt.Errorf("jobs: register %q: %q is a reserved name", name, n)
		}
		if _, ok := r.funcs[n]; ok {
			return fmt.Errorf("jobs: register %q: %q is already registered", name, n)
		}
		if _, ok := r.aliases[n]; ok {
			return fmt.Errorf("jobs: register %q: %q is already an alias", name, n)
		}
	}
	r.funcs[name] = f
	for _, a := range aliases {
		r.aliases[a] = name
	}
	return nil
}

// SetTimeout sets the default timeout of a registered function (recording.get_file: 120 s).
func (r *Registry) SetTimeout(name string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeouts[name] = min(d, MaxTimeout)
}

// Lookup returns the function for name (or alias) and its canonical name. Reserved and unknown
// names are not found.
func (r *Registry) Lookup(name string) (f Func, canonical string, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	canonical = name
	if c, isAlias := r.aliases[name]; isAlias {
		canonical = c
	}
	f, ok = r.funcs[canonical]
	if !ok {
		return nil, "", false
	}
	return f, canonical, true
}

// Timeout is the default timeout of the function with this canonical name.
func (r *Registry) Timeout(canonical string) time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if d, ok := r.timeouts[canonical]; ok {
		return d
	}
	return DefaultTimeout
}

// Names lists the canonical names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.funcs))
}
