package eventmap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Where a snapshot came from.
const (
	LoadSourceNone = "none" // nothing loaded yet: no saved map, Odoo not reached
	LoadSourceDisk = "disk" // the saved events_map.json, until Odoo answers
	LoadSourceOdoo = "odoo" // a fresh map from Odoo
)

// RemoteConfig is what Odoo's agent_get_config returns (contract §3.2), and what events_map.json
// holds.
type RemoteConfig struct {
	APIVersion   int             `json:"api_version"`
	ServerID     int64           `json:"server_id"`
	SystemName   string          `json:"system_name"`
	EventsMap    []Row           `json:"events_map"`
	Options      map[string]any  `json:"options"`
	AccessLists  json.RawMessage `json:"access_lists"`
	NotifyMethod string          `json:"notify_method"`
}

// UnmarshalJSON reads agent_get_config's answer, where Odoo writes false for empty fields.
func (c *RemoteConfig) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("eventmap: agent_get_config: want an object: %w", err)
	}
	*c = RemoteConfig{}
	if v, ok := raw["api_version"]; ok {
		n, err := odooInt(v)
		if err != nil {
			return fmt.Errorf("eventmap: agent_get_config api_version: %w", err)
		}
		c.APIVersion = int(n)
	}
	if v, ok := raw["server_id"]; ok && !isFalsy(v) {
		// A many2one may come as [id, name].
		var pair []json.RawMessage
		if json.Unmarshal(v, &pair) == nil && len(pair) > 0 {
			v = pair[0]
		}
		n, err := odooInt(v)
		if err != nil {
			return fmt.Errorf("eventmap: agent_get_config server_id: %w", err)
		}
		c.ServerID = n
	}
	var err error
	if c.SystemName, err = odooString(raw["system_name"]); err != nil {
		return fmt.Errorf("eventmap: agent_get_config system_name: %w", err)
	}
	if c.NotifyMethod, err = odooString(raw["notify_method"]); err != nil {
		return fmt.Errorf("eventmap: agent_get_config notify_method: %w", err)
	}
	if v, ok := raw["events_map"]; ok && !isFalsy(v) {
		if err := json.Unmarshal(v, &c.EventsMap); err != nil {
			return fmt.Errorf("eventmap: agent_get_config events_map: %w", err)
		}
	}
	if v, ok := raw["options"]; ok && !isFalsy(v) {
		if err := json.Unmarshal(v, &c.Options); err != nil {
			return fmt.Errorf("eventmap: agent_get_config options: want an object: %w", err)
		}
	}
	if v, ok := raw["access_lists"]; ok && !isFalsy(v) {
		var compact bytes.Buffer
		if err := json.Compact(&compact, v); err != nil {
			return fmt.Errorf("eventmap: agent_get_config access_lists: %w", err)
		}
		c.AccessLists = compact.Bytes()
	}
	return nil
}

// compiledRow is a usable row: its condition compiled, and the time its last runtime error was
// logged (unix nanoseconds), so a broken condition logs at most once a minute.
type compiledRow struct {
	Row
	cond       *Condition
	lastLogged atomic.Int64
}

// DisabledRow is a row the agent refused, and why (listed in agent.status and by check).
type DisabledRow struct {
	Row    Row    `json:"row"`
	Reason string `json:"reason"`
}

// Snapshot is one loaded map, never modified once published: readers take it with one atomic load.
type Snapshot struct {
	RemoteConfig
	// Rows are the usable rows in (sequence, id) order.
	rows []*compiledRow
	// byName indexes usable rows by source, then event name folded to lower case.
	byName map[string]map[string][]*compiledRow
	// Disabled rows failed validation or compilation.
	Disabled []DisabledRow
	// MapHash identifies the events map rows (shown in agent.status); configHash covers the whole
	// RemoteConfig and decides whether a refresh changed anything.
	MapHash    string
	configHash string
	LoadedAt   time.Time
	Source     string
	// Fallback is true when the map came from search_read because Odoo lacks agent_get_config;
	// options and access lists are then empty.
	Fallback bool
}

// RowCount is the number of usable rows.
func (s *Snapshot) RowCount() int { return len(s.rows) }

// Rows returns the usable rows in (sequence, id) order.
func (s *Snapshot) Rows() []Row {
	out := make([]Row, len(s.rows))
	for i, r := range s.rows {
		out[i] = r.Row
	}
	return out
}

// EventNames lists the distinct event names of the usable rows of a source.
func (s *Snapshot) EventNames(source string) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range s.rows {
		if !strings.EqualFold(r.Source, source) {
			continue
		}
		if k := strings.ToLower(r.Name); !seen[k] {
			seen[k] = true
			names = append(names, r.Name)
		}
	}
	return names
}

// compile validates and compiles every row of cfg. Nothing in it fails as a whole: a bad row is
// disabled and listed.
func compile(cfg RemoteConfig, source string, loadedAt time.Time) *Snapshot {
	s := &Snapshot{
		RemoteConfig: cfg,
		byName:       map[string]map[string][]*compiledRow{},
		LoadedAt:     loadedAt,
		Source:       source,
	}
	// Rows Odoo marked is_enabled false are dropped here, so they are neither used nor saved.
	rows := make([]Row, 0, len(cfg.EventsMap))
	for _, r := range cfg.EventsMap {
		if !r.Disabled {
			rows = append(rows, r)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rowLess(rows[i], rows[j]) })
	s.RemoteConfig.EventsMap = rows
	for _, r := range rows {
		r.Source = strings.ToUpper(strings.TrimSpace(r.Source))
		if r.Source == "" {
			r.Source = SourceAMI
		}
		r.Name = strings.TrimSpace(r.Name)
		r.Model = strings.TrimSpace(r.Model)
		r.Method = strings.TrimSpace(r.Method)
		if r.Source != SourceAMI && r.Source != SourceFAGI {
			s.Disabled = append(s.Disabled, DisabledRow{Row: r, Reason: fmt.Sprintf("source %q is not loaded by the agent", r.Source)})
			continue
		}
		if err := r.validate(); err != nil {
			s.Disabled = append(s.Disabled, DisabledRow{Row: r, Reason: err.Error()})
			continue
		}
		cond, err := CompileCondition(fmt.Sprintf("event row %d (%s)", r.ID, r.Name), r.Condition)
		if err != nil {
			s.Disabled = append(s.Disabled, DisabledRow{Row: r, Reason: err.Error()})
			continue
		}
		cr := &compiledRow{Row: r, cond: cond}
		s.rows = append(s.rows, cr)
		bySource := s.byName[r.Source]
		if bySource == nil {
			bySource = map[string][]*compiledRow{}
			s.byName[r.Source] = bySource
		}
		key := strings.ToLower(r.Name)
		bySource[key] = append(bySource[key], cr)
	}
	s.MapHash = hashJSON(rows)
	s.configHash = hashJSON(cfg.normalised(rows))
	return s
}

// normalisedConfig is a RemoteConfig as it is hashed: the rows in order, and the access lists
// decoded so that, like the options, their keys are sorted by json.Marshal. Equal configs hash
// equal however Odoo orders its JSON.
type normalisedConfig struct {
	RemoteConfig
	AccessLists any `json:"access_lists"`
}

func (c RemoteConfig) normalised(rows []Row) normalisedConfig {
	c.EventsMap = rows
	n := normalisedConfig{RemoteConfig: c}
	if len(c.AccessLists) > 0 && json.Unmarshal(c.AccessLists, &n.AccessLists) != nil {
		n.AccessLists = string(c.AccessLists)
	}
	return n
}

func hashJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		// Only NaN or Inf options could get here; hashing their text still detects changes.
		data = []byte(fmt.Sprintf("%#v", v))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// lookup returns the rows for an event name, which is compared case-insensitively: the
// documentation spells NewExten, Asterisk sends Newexten.
func (s *Snapshot) lookup(source, name string) []*compiledRow {
	bySource := s.byName[source]
	if bySource == nil {
		return nil
	}
	var buf [64]byte
	return bySource[string(appendLower(buf[:0], name))]
}

// appendLower lower-cases ASCII into b (event names are ASCII), so the map lookup needs no
// allocation.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// OptionStrings returns the options as strings, the shape local options have (config.Options):
// JSON strings as they are, numbers and booleans as their text, null as "". Odoo also writes false
// for an empty Char field; that reads "false" here, which every option parser treats as off.
func (c RemoteConfig) OptionStrings() map[string]string {
	out := make(map[string]string, len(c.Options))
	for k, v := range c.Options {
		switch v := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = v
		case bool:
			out[k] = strconv.FormatBool(v)
		case float64:
			out[k] = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			data, _ := json.Marshal(v)
			out[k] = string(data)
		}
	}
	return out
}
