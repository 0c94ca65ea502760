// Package ami speaks the Asterisk Manager Interface: framing and parsing (pure functions), action
// encoding, and a client that keeps an events session and an actions session alive, correlates
// replies by ActionID and never stalls the socket reader.
package ami

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Header is one "Name: Value" line of an AMI message, with the name spelled as Asterisk sent it.
type Header struct {
	Name  string
	Value string
}

// Message is one AMI message: an event, a response or an action. Headers keep their order and every
// repetition (Output, Variable, ChanVariable), because Asterisk gives order meaning.
type Message struct {
	Headers []Header
	// Received is when the client read the message off the socket (zero for messages built
	// locally); it is the event's receive time for EventTime and delays.
	Received time.Time
}

// Kind tells events, responses and protocol errors apart (contract §2.2).
type Kind int

const (
	// KindInvalid is a message with neither Event nor Response.
	KindInvalid Kind = iota
	// KindEvent has an Event header, even when it also has Response (OriginateResponse).
	KindEvent
	// KindResponse has Response and no Event.
	KindResponse
)

func (k Kind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindResponse:
		return "response"
	default:
		return "invalid"
	}
}

// NewMessage builds a message from alternating name, value pairs.
func NewMessage(pairs ...string) *Message {
	m := &Message{Headers: make([]Header, 0, len(pairs)/2)}
	for i := 0; i+1 < len(pairs); i += 2 {
		m.Add(pairs[i], pairs[i+1])
	}
	return m
}

// Get returns the first value of the header, compared case-insensitively, or "".
func (m *Message) Get(name string) string {
	v, _ := m.Lookup(name)
	return v
}

// Lookup returns the first value of the header and whether it is present.
func (m *Message) Lookup(name string) (string, bool) {
	if m == nil {
		return "", false
	}
	for i := range m.Headers {
		if strings.EqualFold(m.Headers[i].Name, name) {
			return m.Headers[i].Value, true
		}
	}
	return "", false
}

// Values returns every value of the header in order.
func (m *Message) Values(name string) []string {
	if m == nil {
		return nil
	}
	var out []string
	for i := range m.Headers {
		if strings.EqualFold(m.Headers[i].Name, name) {
			out = append(out, m.Headers[i].Value)
		}
	}
	return out
}

// Has reports whether the header is present.
func (m *Message) Has(name string) bool {
	_, ok := m.Lookup(name)
	return ok
}

// Add appends a header, keeping any earlier one of the same name.
func (m *Message) Add(name, value string) {
	m.Headers = append(m.Headers, Header{Name: name, Value: value})
}

// Set replaces the value of the first header of that name (keeping its spelling and place) and
// removes any repetition; it appends the header when absent.
func (m *Message) Set(name, value string) {
	for i := range m.Headers {
		if strings.EqualFold(m.Headers[i].Name, name) {
			m.Headers[i].Value = value
			m.deleteFrom(name, i+1)
			return
		}
	}
	m.Add(name, value)
}

// Del removes every header of that name.
func (m *Message) Del(name string) {
	m.deleteFrom(name, 0)
}

func (m *Message) deleteFrom(name string, start int) {
	kept := m.Headers[:start]
	for _, h := range m.Headers[start:] {
		if !strings.EqualFold(h.Name, name) {
			kept = append(kept, h)
		}
	}
	m.Headers = kept
}

// Kind classifies the message: Event wins over Response (contract §2.2).
func (m *Message) Kind() Kind {
	if m.Has("Event") {
		return KindEvent
	}
	if m.Has("Response") {
		return KindResponse
	}
	return KindInvalid
}

// envelope reads, in one pass, what routing needs: the kind, the Event name and the ActionID.
func (m *Message) envelope() (kind Kind, event, actionID string) {
	hasEvent, hasResponse, hasID := false, false, false
	for i := range m.Headers {
		h := &m.Headers[i]
		switch len(h.Name) {
		case 5:
			if !hasEvent && strings.EqualFold(h.Name, "Event") {
				hasEvent, event = true, h.Value
			}
		case 8:
			if !hasResponse && strings.EqualFold(h.Name, "Response") {
				hasResponse = true
			} else if !hasID && strings.EqualFold(h.Name, "ActionID") {
				hasID, actionID = true, h.Value
			}
		}
	}
	switch {
	case hasEvent:
		kind = KindEvent
	case hasResponse:
		kind = KindResponse
	}
	return kind, event, actionID
}

// Event is the value of the Event header.
func (m *Message) Event() string { return m.Get("Event") }

// ActionID is the value of the ActionID header, wherever it sits.
func (m *Message) ActionID() string { return m.Get("ActionID") }

// IsError reports a "Response: Error" response.
func (m *Message) IsError() bool {
	return m.Kind() == KindResponse && strings.EqualFold(m.Get("Response"), "Error")
}

// Clone returns a deep copy, so a caller may edit it without touching a shared message.
func (m *Message) Clone() *Message {
	if m == nil {
		return nil
	}
	return &Message{Headers: append([]Header(nil), m.Headers...), Received: m.Received}
}

// Map turns the message into the JSON shape given to Odoo and to conditions (contract §2.1): a
// header seen once is a string, a header seen more than once is a list of strings. Command
// output is the exception: Output is always a list (§2.5). The names keep the spelling of their
// first occurrence; later occurrences spelled differently join that entry.
func (m *Message) Map() map[string]any {
	out := make(map[string]any, len(m.Headers))
	canon := make(map[string]string, len(m.Headers))
	for _, h := range m.Headers {
		key := strings.ToLower(h.Name)
		name, seen := canon[key]
		if !seen {
			canon[key] = h.Name
			if key == "output" {
				out[h.Name] = []string{h.Value}
			} else {
				out[h.Name] = h.Value
			}
			continue
		}
		switch v := out[name].(type) {
		case string:
			out[name] = []string{v, h.Value}
		case []string:
			out[name] = append(v, h.Value)
		}
	}
	return out
}

// MarshalJSON writes the Map shape with the keys in the order Asterisk sent them.
func (m *Message) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	values := m.Map()
	written := make(map[string]bool, len(values))
	for _, h := range m.Headers {
		name := h.Name
		if _, ok := values[name]; !ok || written[name] {
			continue
		}
		written[name] = true
		if len(written) > 1 {
			buf.WriteByte(',')
		}
		k, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(values[name])
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
