package ami

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Asterisk's own input limits (contract §2.10): the agent checks them before sending, so an action
// is refused with a clear reason instead of being cut or mangled by Asterisk.
const (
	maxActionLine    = 1024
	maxActionHeaders = 128
)

// AppendWire appends the message as AMI wire bytes: "Name: Value\r\n" lines and a blank line. It
// does not validate; use ValidateAction for anything that came from outside.
func (m *Message) AppendWire(b []byte) []byte {
	for _, h := range m.Headers {
		b = append(b, h.Name...)
		b = append(b, ':', ' ')
		b = append(b, h.Value...)
		b = append(b, '\r', '\n')
	}
	return append(b, '\r', '\n')
}

// WriteTo writes the message as AMI wire bytes.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(m.AppendWire(nil))
	return int64(n), err
}

// String is the wire form with CRLF shown as line breaks, for logs and test failures.
func (m *Message) String() string {
	return strings.ReplaceAll(string(m.AppendWire(nil)), "\r\n", "\n")
}

// ValidateAction checks an action against the contract's encoding rules: an Action header, header
// names of [A-Za-z0-9_-], no CR or LF in any value (header and action injection), lines of at most
// 1024 bytes and at most 128 headers.
func ValidateAction(m *Message) error {
	if m.Get("Action") == "" {
		return &InvalidActionError{Reason: "the Action header is missing"}
	}
	if len(m.Headers) > maxActionHeaders {
		return &InvalidActionError{Reason: fmt.Sprintf("%d headers, Asterisk accepts at most %d", len(m.Headers), maxActionHeaders)}
	}
	for _, h := range m.Headers {
		if !validName(h.Name) {
			return &InvalidActionError{Reason: fmt.Sprintf("header name %q: use only letters, digits, '_' and '-'", truncate(h.Name, 40))}
		}
		if strings.ContainsAny(h.Value, "\r\n") {
			return &InvalidActionError{Reason: fmt.Sprintf("header %s: the value contains CR or LF", h.Name)}
		}
		if n := len(h.Name) + 2 + len(h.Value); n > maxActionLine-2 {
			return &InvalidActionError{Reason: fmt.Sprintf("header %s: the line is %d bytes, Asterisk accepts at most %d", h.Name, n, maxActionLine-2)}
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ActionFromJSON decodes a JSON object into an action, keeping the keys' order (the contract says
// headers go out in the order given). Strings stay as they are, numbers keep their JSON spelling,
// booleans become true/false, a list becomes repeated headers; objects and nulls are refused.
func ActionFromJSON(data []byte) (*Message, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, &InvalidActionError{Reason: "not JSON: " + err.Error()}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &InvalidActionError{Reason: "the action must be a JSON object"}
	}
	m := &Message{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &InvalidActionError{Reason: "bad JSON: " + err.Error()}
		}
		key := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &InvalidActionError{Reason: "bad JSON: " + err.Error()}
		}
		values, err := headerValues(raw)
		if err != nil {
			return nil, &InvalidActionError{Reason: fmt.Sprintf("header %s: %v", key, err)}
		}
		for _, v := range values {
			m.Add(key, v)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, &InvalidActionError{Reason: "bad JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &InvalidActionError{Reason: "trailing data after the JSON object"}
	}
	return m, nil
}

func headerValues(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			v, err := scalarValue(it)
			if err != nil {
				return nil, fmt.Errorf("list item: %w", err)
			}
			out = append(out, v)
		}
		return out, nil
	}
	v, err := scalarValue(raw)
	if err != nil {
		return nil, err
	}
	return []string{v}, nil
}

func scalarValue(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", fmt.Errorf("empty value")
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", err
		}
		return strconv.FormatBool(b), nil
	case 'n':
		return "", fmt.Errorf("null is not a value (leave the header out)")
	case '{':
		return "", fmt.Errorf("objects are not allowed")
	case '[':
		return "", fmt.Errorf("nested lists are not allowed")
	default:
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", err
		}
		return n.String(), nil
	}
}
