package eventmap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Sources of map rows the agent loads (contract §3.1). ARI is reserved.
const (
	SourceAMI  = "AMI"
	SourceFAGI = "FAGI"
)

// DefaultSequence is the sequence of a row that has none (the search_read fallback does not read it).
const DefaultSequence = 10

// MaxDelay is the longest delay a row may ask for (contract §3.4).
const MaxDelay = 30 * time.Second

// Row is one asterisk_plus.event record: for events named Name from Source, call
// Model.Method(event) when Condition holds, no sooner than Delay seconds after receipt.
type Row struct {
	ID        int64   `json:"id"`
	Name      string  `json:"name"`
	Source    string  `json:"source"`
	Model     string  `json:"model"`
	Method    string  `json:"method"`
	Condition string  `json:"condition"`
	Delay     float64 `json:"delay"`
	Sequence  int     `json:"sequence"`
	// Disabled is set when Odoo sent is_enabled false; such rows are dropped at load. Odoo only
	// sends enabled rows, so this is a guard, not a feature.
	Disabled bool `json:"-"`
}

// DelayDuration is the row's delay, with negative values as 0 and values above MaxDelay clamped.
func (r Row) DelayDuration() time.Duration {
	if !(r.Delay > 0) { // also NaN
		return 0
	}
	d := time.Duration(r.Delay * float64(time.Second))
	if r.Delay > MaxDelay.Seconds() || d > MaxDelay {
		return MaxDelay
	}
	return d
}

// UnmarshalJSON reads a row as Odoo sends it: false for an empty Char/Text/Float field, null for a
// missing one, numbers where strings are expected and the other way round.
func (r *Row) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("eventmap: row: %w", err)
	}
	var err error
	field := func(name string, decode func(json.RawMessage) error) {
		if err != nil {
			return
		}
		if v, ok := raw[name]; ok {
			if e := decode(v); e != nil {
				err = fmt.Errorf("eventmap: row field %s: %w", name, e)
			}
		}
	}
	*r = Row{Sequence: DefaultSequence}
	field("id", func(v json.RawMessage) (e error) { r.ID, e = odooInt(v); return })
	field("name", func(v json.RawMessage) (e error) { r.Name, e = odooString(v); return })
	field("source", func(v json.RawMessage) (e error) { r.Source, e = odooString(v); return })
	field("model", func(v json.RawMessage) (e error) { r.Model, e = odooString(v); return })
	field("method", func(v json.RawMessage) (e error) { r.Method, e = odooString(v); return })
	field("condition", func(v json.RawMessage) (e error) { r.Condition, e = odooString(v); return })
	field("delay", func(v json.RawMessage) (e error) { r.Delay, e = odooFloat(v); return })
	field("is_enabled", func(v json.RawMessage) error {
		r.Disabled = bytes.Equal(bytes.TrimSpace(v), []byte("false"))
		return nil
	})
	field("sequence", func(v json.RawMessage) error {
		if isFalsy(v) {
			return nil // keep the default
		}
		n, e := odooInt(v)
		r.Sequence = int(n)
		return e
	})
	return err
}

// isFalsy is JSON null or false: Odoo's way to say "no value".
func isFalsy(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || bytes.Equal(v, []byte("null")) || bytes.Equal(v, []byte("false"))
}

func odooString(v json.RawMessage) (string, error) {
	if isFalsy(v) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(v, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("want a string, got %s", abbreviate(v))
}

func odooFloat(v json.RawMessage) (float64, error) {
	if isFalsy(v) {
		return 0, nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err == nil {
		return f, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		s = strings.TrimSpace(s)
		if s == "" {
			return 0, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("want a number, got %q", s)
		}
		return f, nil
	}
	return 0, fmt.Errorf("want a number, got %s", abbreviate(v))
}

func odooInt(v json.RawMessage) (int64, error) {
	f, err := odooFloat(v)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("want an integer, got %v", f)
	}
	return int64(f), nil
}

func abbreviate(v json.RawMessage) string {
	const max = 40
	if len(v) > max {
		return string(v[:max]) + "..."
	}
	return string(v)
}

// validate reports why a row cannot be used, or nil.
func (r Row) validate() error {
	switch {
	case strings.TrimSpace(r.Name) == "":
		return fmt.Errorf("no event name")
	case strings.TrimSpace(r.Model) == "":
		return fmt.Errorf("no model")
	case strings.TrimSpace(r.Method) == "":
		return fmt.Errorf("no method")
	case strings.HasPrefix(strings.TrimSpace(r.Method), "_"):
		return fmt.Errorf("method %q is private (starts with _)", r.Method)
	}
	return nil
}

// rowLess orders handlers of one event: (sequence, id), contract §3.4.
func rowLess(a, b Row) bool {
	if a.Sequence != b.Sequence {
		return a.Sequence < b.Sequence
	}
	return a.ID < b.ID
}
