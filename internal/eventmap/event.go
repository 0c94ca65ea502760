package eventmap

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Field is one entry of an Event: a header name as Asterisk spelled it (or an enrichment field's
// name) and its value, which is a string, a []string (a header seen more than once) or a float64
// (EventTime, GapSeconds).
type Field struct {
	Name  string
	Value any
}

// valueKind tells which member of a field holds its value.
type valueKind uint8

const (
	kindString valueKind = iota
	kindList
	kindFloat
	kindInt
	kindBool
	kindNull
)

// field stores a value unboxed: putting every header's string in an interface would cost one
// allocation per header on the AMI hot path.
type field struct {
	name string
	kind valueKind
	str  string
	list []string
	num  float64 // also ints and bools (1/0)
}

func (f *field) value() any {
	switch f.kind {
	case kindString:
		return f.str
	case kindList:
		return f.list
	case kindFloat:
		return f.num
	case kindInt:
		return int64(f.num)
	case kindBool:
		return f.num != 0
	default:
		return nil
	}
}

func (f *field) set(v any) {
	f.str, f.list, f.num = "", nil, 0
	switch v := v.(type) {
	case string:
		f.kind, f.str = kindString, v
	case []string:
		f.kind, f.list = kindList, v
	case float64:
		f.kind, f.num = kindFloat, v
	case int:
		f.kind, f.num = kindInt, float64(v)
	case int64:
		f.kind, f.num = kindInt, float64(v)
	case bool:
		f.kind = kindBool
		if v {
			f.num = 1
		}
	default:
		f.kind = kindNull
	}
}

// Event is what a handler receives and what a condition sees as `event`: the ami.Message.Map()
// shape with its keys kept in the order Asterisk sent them, plus the agent's enrichment fields.
// Lookups by name are case-insensitive, because AMI header names are (Uniqueid in channel events,
// UniqueID in CEL and Cdr). An Event is built by one goroutine and only read afterwards.
type Event struct {
	fields []field
}

// NewEvent returns an empty event with room for n fields.
func NewEvent(n int) *Event { return &Event{fields: make([]field, 0, n)} }

// EventFromMessage builds the Map() shape of m: a header seen once is a string, a header seen more
// than once (Variable, ChanVariable) is a list in order, spelled as its first occurrence; Output is
// always a list. Extra is room for the enrichment fields the caller adds.
func EventFromMessage(m *ami.Message, extra int) *Event {
	e := &Event{fields: make([]field, 0, len(m.Headers)+extra)}
	for _, h := range m.Headers {
		e.Add(h.Name, h.Value)
	}
	return e
}

// Len is the number of fields.
func (e *Event) Len() int { return len(e.fields) }

// Fields returns a copy of the fields in order.
func (e *Event) Fields() []Field {
	out := make([]Field, len(e.fields))
	for i := range e.fields {
		out[i] = Field{Name: e.fields[i].name, Value: e.fields[i].value()}
	}
	return out
}

// index returns the position of the field named name (case-insensitive), or -1. Events hold a few
// dozen fields, so a linear scan beats building a map for every event.
func (e *Event) index(name string) int {
	for i := range e.fields {
		// Header names are ASCII, so names that fold equal have equal lengths: the length test
		// skips most comparisons cheaply.
		if n := e.fields[i].name; len(n) == len(name) && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// Lookup returns the value of the field named name, compared case-insensitively.
func (e *Event) Lookup(name string) (any, bool) {
	if i := e.index(name); i >= 0 {
		return e.fields[i].value(), true
	}
	return nil, false
}

// Get returns the field's value when it is a single string, else "".
func (e *Event) Get(name string) string {
	if i := e.index(name); i >= 0 && e.fields[i].kind == kindString {
		return e.fields[i].str
	}
	return ""
}

// Add appends a header value: a repeated name turns the field into a list, as Map() does, and
// Output (Command output, contract §2.5) is a list even when seen once.
func (e *Event) Add(name, value string) {
	i := e.index(name)
	if i < 0 {
		if len(name) == len("Output") && strings.EqualFold(name, "Output") {
			e.fields = append(e.fields, field{name: name, kind: kindList, list: []string{value}})
			return
		}
		e.fields = append(e.fields, field{name: name, kind: kindString, str: value})
		return
	}
	f := &e.fields[i]
	switch f.kind {
	case kindString:
		f.kind, f.list, f.str = kindList, []string{f.str, value}, ""
	case kindList:
		f.list = append(f.list, value)
	default:
		f.set(value)
	}
}

// Set replaces the value of the field named name (keeping its place and spelling), or appends it.
// The value is a string, []string, float64, int, int64 or bool; anything else is null.
func (e *Event) Set(name string, value any) {
	if i := e.index(name); i >= 0 {
		e.fields[i].set(value)
		return
	}
	e.fields = append(e.fields, field{name: name})
	e.fields[len(e.fields)-1].set(value)
}

// SetString is Set for a string, without boxing it.
func (e *Event) SetString(name, value string) {
	if i := e.index(name); i >= 0 {
		e.fields[i] = field{name: e.fields[i].name, kind: kindString, str: value}
		return
	}
	e.fields = append(e.fields, field{name: name, kind: kindString, str: value})
}

// SetFloat is Set for a float64, without boxing it.
func (e *Event) SetFloat(name string, value float64) {
	if i := e.index(name); i >= 0 {
		e.fields[i] = field{name: e.fields[i].name, kind: kindFloat, num: value}
		return
	}
	e.fields = append(e.fields, field{name: name, kind: kindFloat, num: value})
}

// Rename changes the name of the field named from (case-insensitive) to to, keeping its place.
// It reports whether the field was there.
func (e *Event) Rename(from, to string) bool {
	i := e.index(from)
	if i < 0 {
		return false
	}
	e.fields[i].name = to
	return true
}

// Map returns the event as a plain map (for tests and the status page).
func (e *Event) Map() map[string]any {
	out := make(map[string]any, len(e.fields))
	for i := range e.fields {
		out[e.fields[i].name] = e.fields[i].value()
	}
	return out
}

// MarshalJSON writes the event as one JSON object with the keys in order.
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 64*len(e.fields))), nil
}

// AppendJSON appends the event's JSON object to b. It is hand-written because every event is
// encoded once per receipt on the AMI hot path, and the value types are known.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	for i := range e.fields {
		f := &e.fields[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.name)
		b = append(b, ':')
		switch f.kind {
		case kindString:
			b = appendJSONString(b, f.str)
		case kindList:
			b = append(b, '[')
			for j, s := range f.list {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, s)
			}
			b = append(b, ']')
		case kindFloat:
			b = strconv.AppendFloat(b, f.num, 'f', -1, 64)
		case kindInt:
			b = strconv.AppendInt(b, int64(f.num), 10)
		case kindBool:
			b = strconv.AppendBool(b, f.num != 0)
		default:
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does (without HTML escaping): invalid UTF-8 becomes
// U+FFFD, control characters and U+2028/U+2029 are escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
