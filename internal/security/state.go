package security

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// StateFile is the bans file's name inside the state dir (contract §6.3).
const StateFile = "security.json"

const stateVersion = 1

// State is what security.json holds: running bans with absolute expiry, a 7-day ban history for
// escalation and the last access lists from Odoo. Failure counters are not saved.
type State struct {
	Version int                    `json:"version"`
	SavedAt time.Time              `json:"saved_at"`
	Bans    []StateBan             `json:"bans"`
	History map[string][]BanRecord `json:"history,omitempty"`
	Allow   []StateRule            `json:"allow"`
	Deny    []StateRule            `json:"deny"`
}

// StateBan is one ban in the file.
type StateBan struct {
	Address   string    `json:"address"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires_at"`
	Reason    string    `json:"reason"`
	Service   string    `json:"service,omitempty"`
	AccountID string    `json:"account_id,omitempty"`
	Offences  int       `json:"offences"`
	Manual    bool      `json:"manual,omitempty"`
}

// StateRule is one access-list entry in the file.
type StateRule struct {
	Address string `json:"address"`
	Comment string `json:"comment,omitempty"`
}

func banToState(b Ban) StateBan {
	return StateBan{Address: FormatPrefix(b.Prefix), Created: b.Created, Expires: b.Expires, Reason: b.Reason,
		Service: b.Service, AccountID: b.AccountID, Offences: b.Offences, Manual: b.Manual}
}

func banFromState(s StateBan) (Ban, error) {
	p, err := ParsePrefix(s.Address)
	if err != nil {
		return Ban{}, err
	}
	return Ban{Prefix: p, Created: s.Created, Expires: s.Expires, Reason: s.Reason, Service: s.Service,
		AccountID: s.AccountID, Offences: s.Offences, Manual: s.Manual}, nil
}

func rulesToState(rules []AccessRule) []StateRule {
	out := make([]StateRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, StateRule{Address: FormatPrefix(r.Prefix), Comment: r.Comment})
	}
	return out
}

func rulesFromState(rules []StateRule) ([]AccessRule, []error) {
	var out []AccessRule
	var errs []error
	for _, r := range rules {
		p, err := ParsePrefix(r.Address)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, AccessRule{Prefix: p, Comment: r.Comment})
	}
	return out, errs
}

// Decode turns the file's bans, history and lists into policy values; entries that do not parse are
// reported and skipped, so one bad line loses nothing else.
func (s *State) Decode() (bans []Ban, history map[netip.Prefix][]BanRecord, allow, deny []AccessRule, errs []error) {
	for _, sb := range s.Bans {
		b, err := banFromState(sb)
		if err != nil {
			errs = append(errs, fmt.Errorf("security: state: ban %q: %w", sb.Address, err))
			continue
		}
		bans = append(bans, b)
	}
	history = make(map[netip.Prefix][]BanRecord, len(s.History))
	for k, v := range s.History {
		p, err := ParsePrefix(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("security: state: history %q: %w", k, err))
			continue
		}
		history[p] = v
	}
	allow, e1 := rulesFromState(s.Allow)
	deny, e2 := rulesFromState(s.Deny)
	errs = append(append(errs, e1...), e2...)
	return bans, history, allow, deny, errs
}

// Snapshot builds the file's content from a policy.
func Snapshot(p *Policy, now time.Time) *State {
	return p.Export(now).State(now)
}

// Export is a copy of what the state file holds, taken quickly (under the engine's lock) and
// formatted later by State (outside it).
type Export struct {
	Bans    []Ban
	History map[netip.Prefix][]BanRecord
	Allow   []AccessRule
	Deny    []AccessRule
}

// Export copies the running bans (unsorted), the history and the lists.
func (p *Policy) Export(now time.Time) Export {
	x := Export{Bans: make([]Ban, 0, len(p.bans)), History: p.History()}
	for _, b := range p.bans {
		if now.Before(b.Expires) {
			x.Bans = append(x.Bans, *b)
		}
	}
	x.Allow, x.Deny = p.AccessLists()
	return x
}

// State formats an export for the file, bans in address order.
func (x Export) State(now time.Time) *State {
	sort.Slice(x.Bans, func(i, j int) bool { return comparePrefix(x.Bans[i].Prefix, x.Bans[j].Prefix) < 0 })
	s := &State{Version: stateVersion, SavedAt: now.UTC(), History: make(map[string][]BanRecord, len(x.History)),
		Bans: make([]StateBan, 0, len(x.Bans))}
	for _, b := range x.Bans {
		s.Bans = append(s.Bans, banToState(b))
	}
	for k, v := range x.History {
		s.History[FormatPrefix(k)] = v
	}
	s.Allow, s.Deny = rulesToState(x.Allow), rulesToState(x.Deny)
	return s
}

// LoadState reads the file; a missing file is an empty state.
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: stateVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("security: %s is not valid JSON: %w", path, err)
	}
	if s.Version > stateVersion {
		return nil, fmt.Errorf("security: %s has version %d, newer than this agent understands (%d)", path, s.Version, stateVersion)
	}
	return &s, nil
}

// SaveState writes the file atomically: a temporary file in the same directory, synced, then
// renamed over the old one, so a crash leaves either the old or the new file.
func SaveState(path string, s *State) error {
	// Indented for people reading a normal file; compact when an attack has made it large.
	var data []byte
	var err error
	if len(s.Bans) < 1000 {
		data, err = json.MarshalIndent(s, "", "  ")
	} else {
		data, err = json.Marshal(s)
	}
	if err != nil {
		return fmt.Errorf("security: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("security: %w", err)
	}
	f, err := os.CreateTemp(dir, ".security-*.json")
	if err != nil {
		return fmt.Errorf("security: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("security: write %s: %w", tmp, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("security: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("security: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("security: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("security: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
