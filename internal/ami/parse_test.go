package ami

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestEveryFixtureParses(t *testing.T) {
	for _, path := range fixturePaths(t, "*.txt") {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data := readFixture(t, name)
			if strings.HasSuffix(name, ".sent.txt") {
				for _, m := range parseSent(t, data) {
					if m.Get("Action") == "" && !strings.HasPrefix(name, "04a") {
						t.Errorf("sent message without Action: %s", m)
					}
				}
				return
			}
			banner, msgs := parseStream(t, data)
			if BannerVersion(banner) != "11.0.0" {
				t.Errorf("banner %q", banner)
			}
			if len(msgs) == 0 {
				t.Fatal("no messages")
			}
			for i, m := range msgs {
				if m.Kind() == KindInvalid {
					t.Errorf("message %d is neither event nor response: %s", i, m)
				}
				for _, h := range m.Headers {
					if h.Name == rawKey {
						t.Errorf("message %d has a line without a colon: %q", i, h.Value)
					}
					if strings.ContainsAny(h.Name+h.Value, "\r\n") {
						t.Errorf("message %d header %q kept a CR or LF: %q", i, h.Name, h.Value)
					}
				}
			}
		})
	}
}

func TestFixtureFacts(t *testing.T) {
	find := func(msgs []*Message, pred func(*Message) bool) *Message {
		for _, m := range msgs {
			if pred(m) {
				return m
			}
		}
		t.Fatal("no message matches")
		return nil
	}

	t.Run("stray bare LF is absorbed", func(t *testing.T) {
		_, msgs := parseStream(t, readFixture(t, "04g-action-pjsip-show.txt"))
		m := find(msgs, func(m *Message) bool { return strings.HasPrefix(m.Get("Message"), "Unable to retrieve endpoint") })
		if got := m.Get("Message"); got != "Unable to retrieve endpoint 999" {
			t.Errorf("Message = %q", got)
		}
		if !m.IsError() {
			t.Error("not an error response")
		}
	})
	t.Run("split at the first colon-space only", func(t *testing.T) {
		_, msgs := parseStream(t, readFixture(t, "03-security-events-privileged.txt"))
		m := find(msgs, func(m *Message) bool { return m.Event() == "RequestNotAllowed" })
		if got := m.Get("RequestType"); got != "Action: Ping" {
			t.Errorf("RequestType = %q", got)
		}
		if got, ok := m.Lookup("AccountID"); !ok || got != "" {
			t.Errorf("AccountID = %q, %v: want present and empty", got, ok)
		}
	})
	t.Run("Command output lines kept in order with empty ones", func(t *testing.T) {
		_, msgs := parseStream(t, readFixture(t, "04b-action-command.txt"))
		var endpoints *Message
		for _, m := range msgs {
			if strings.Contains(strings.Join(m.Values("Output"), "\n"), "Endpoint:") {
				endpoints = m
				break
			}
		}
		if endpoints == nil {
			t.Fatal("no pjsip show endpoints output")
		}
		out := endpoints.Values("Output")
		if len(out) < 5 {
			t.Fatalf("only %d Output lines", len(out))
		}
		empty := 0
		for _, l := range out {
			if l == "" {
				empty++
			}
		}
		if empty == 0 {
			t.Error("the blank lines of the table were lost")
		}
		unknown := find(msgs, func(m *Message) bool { return m.IsError() })
		if got := unknown.Values("Output"); len(got) != 1 || !strings.HasPrefix(got[0], "No such command") {
			t.Errorf("unknown command output %q", got)
		}
	})
	t.Run("OriginateResponse is an event with a Response header", func(t *testing.T) {
		_, msgs := parseStream(t, readFixture(t, "04d-action-originate-variants.txt"))
		m := find(msgs, func(m *Message) bool { return m.Event() == "OriginateResponse" && m.Get("Response") == "Failure" })
		if m.Kind() != KindEvent {
			t.Errorf("kind %v", m.Kind())
		}
		if m.Get("Uniqueid") != "<unknown>" || m.Get("Reason") != "0" {
			t.Errorf("failure shape: %s", m)
		}
	})
	t.Run("header names are case-insensitive", func(t *testing.T) {
		_, msgs := parseStream(t, readFixture(t, "02-originate-local-call.txt"))
		cel := find(msgs, func(m *Message) bool { return m.Event() == "CEL" })
		if cel.Get("uniqueid") == "" || cel.Get("LINKEDID") == "" {
			t.Errorf("CEL ids not found case-insensitively: %s", cel)
		}
		if !cel.Has("UniqueID") {
			t.Error("CEL spelling not kept")
		}
	})
	t.Run("ActionID found wherever it sits", func(t *testing.T) {
		_, msgs := parseStream(t, readFixture(t, "04h-action-misc-getvar-queue-listcommands.txt"))
		m := find(msgs, func(m *Message) bool { return m.Event() == "QueueMember" })
		if m.Headers[len(m.Headers)-1].Name != "ActionID" || m.ActionID() == "" {
			t.Errorf("QueueMember ActionID: %s", m)
		}
	})
	t.Run("repeated headers become lists in JSON", func(t *testing.T) {
		m := NewMessage("Action", "Originate", "Variable", "A=1", "Variable", "B=2", "variable", "C=3")
		got := m.Map()["Variable"]
		if l, ok := got.([]string); !ok || strings.Join(l, ",") != "A=1,B=2,C=3" {
			t.Errorf("Variable = %#v", got)
		}
		b, _ := m.MarshalJSON()
		if string(b) != `{"Action":"Originate","Variable":["A=1","B=2","C=3"]}` {
			t.Errorf("JSON %s", b)
		}
	})
}

func TestParseLine(t *testing.T) {
	cases := []struct{ in, name, value string }{
		{"Event: Newchannel", "Event", "Newchannel"},
		{"AccountCode: ", "AccountCode", ""},
		{"AccountCode:", "AccountCode", ""},
		{"RequestType: Action: Ping", "RequestType", "Action: Ping"},
		{"Value: a:b", "Value", "a:b"},
		{"no colon here", rawKey, "no colon here"},
		{"Key:value", rawKey, "Key:value"},
	}
	for _, c := range cases {
		h := ParseLine(c.in)
		if h.Name != c.name || h.Value != c.value {
			t.Errorf("ParseLine(%q) = %q, %q; want %q, %q", c.in, h.Name, h.Value, c.name, c.value)
		}
	}
}

func TestLegacyCommandFormat(t *testing.T) {
	// Asterisk 13: Response: Follows, raw text that may hold colons and blank lines, then the marker.
	stream := "Response: Follows\r\nPrivilege: Command\r\nActionID: a-1\r\n" +
		"Name/username             Host: port\n\nsip/101   (Unspecified): 0\n--END COMMAND--\r\n\r\n" +
		"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n"
	r := NewReader(strings.NewReader(stream))
	m, err := r.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if m.ActionID() != "a-1" || m.Get("Privilege") != "Command" {
		t.Errorf("headers: %s", m)
	}
	want := []string{"Name/username             Host: port", "", "sip/101   (Unspecified): 0"}
	if got := m.Values("Output"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Output = %q, want %q", got, want)
	}
	next, err := r.ReadMessage()
	if err != nil || next.Event() != "FullyBooted" {
		t.Fatalf("next message: %v %v", next, err)
	}
	// The marker glued to the last output line, as very old versions wrote it.
	m, err = ParseMessage([]byte("Response: Follows\r\nPrivilege: Command\r\nline one\nlast--END COMMAND--\r\n\r\n"))
	if err != nil || strings.Join(m.Values("Output"), "|") != "line one|last" {
		t.Errorf("glued marker: %v %v", m, err)
	}
}

func TestLimitsSkipOneMessageAndKeepGoing(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	stream := "Event: Before\r\n\r\n" +
		"Event: Huge\r\nValue: " + huge + "\r\nOther: 1\r\n\r\n" +
		"Event: After\r\n\r\n"
	r := NewReaderLimits(strings.NewReader(stream), Limits{MaxLineBytes: 4096})
	m, err := r.ReadMessage()
	if err != nil || m.Event() != "Before" {
		t.Fatalf("first: %v %v", m, err)
	}
	_, err = r.ReadMessage()
	var fe *FrameError
	if !errors.As(err, &fe) || fe.Event != "Huge" || !strings.Contains(fe.Error(), "longer than 4096") {
		t.Fatalf("huge line: %v", err)
	}
	m, err = r.ReadMessage()
	if err != nil || m.Event() != "After" {
		t.Fatalf("after: %v %v", m, err)
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}

	many := "Event: Many\r\n" + strings.Repeat("H: v\r\n", 50) + "\r\nEvent: Next\r\n\r\n"
	r = NewReaderLimits(strings.NewReader(many), Limits{MaxHeaders: 10})
	if _, err := r.ReadMessage(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "headers") {
		t.Fatalf("too many headers: %v", err)
	}
	if m, err := r.ReadMessage(); err != nil || m.Event() != "Next" {
		t.Fatalf("after too many: %v %v", m, err)
	}

	big := "Event: Big\r\n" + strings.Repeat("H: "+strings.Repeat("v", 100)+"\r\n", 100) + "\r\nEvent: Next\r\n\r\n"
	r = NewReaderLimits(strings.NewReader(big), Limits{MaxMessageBytes: 2000})
	if _, err := r.ReadMessage(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("message too large: %v", err)
	}
	if m, err := r.ReadMessage(); err != nil || m.Event() != "Next" {
		t.Fatalf("after too large: %v %v", m, err)
	}
}

func TestLastMessageWithoutBlankLineAtEOF(t *testing.T) {
	r := NewReader(strings.NewReader("Response: Goodbye\r\nActionID: x\r\n"))
	m, err := r.ReadMessage()
	if err != nil || m.Get("Response") != "Goodbye" || m.ActionID() != "x" {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestBanner(t *testing.T) {
	r := NewReader(strings.NewReader("HTTP/1.1 400 Bad Request\r\n"))
	if _, err := r.ReadBanner(); err == nil || !strings.Contains(err.Error(), "AMI port") {
		t.Errorf("want a clear banner error, got %v", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, m := range parseSent(t, readFixture(t, "04d-action-originate-variants.sent.txt")) {
		wire := m.AppendWire(nil)
		back, err := ParseMessage(wire)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.AppendWire(nil), wire) {
			t.Errorf("round trip changed %s", m)
		}
	}
}

func TestValidateAction(t *testing.T) {
	ok := NewMessage("Action", "Originate", "Channel", "PJSIP/101", "Variable", "A=1")
	if err := ValidateAction(ok); err != nil {
		t.Fatal(err)
	}
	bad := map[string]*Message{
		"no action":   NewMessage("Channel", "x"),
		"CR in value": NewMessage("Action", "Ping", "X", "a\r\nAction: Command"),
		"LF in value": NewMessage("Action", "Ping", "X", "a\nb"),
		"bad name":    NewMessage("Action", "Ping", "X Y", "1"),
		"colon name":  NewMessage("Action", "Ping", "X:", "1"),
		"long line":   NewMessage("Action", "Ping", "X", strings.Repeat("a", 1100)),
	}
	many := NewMessage("Action", "Ping")
	for i := 0; i < 130; i++ {
		many.Add("Variable", "a=b")
	}
	bad["too many headers"] = many
	for name, m := range bad {
		var ie *InvalidActionError
		if err := ValidateAction(m); !errors.As(err, &ie) {
			t.Errorf("%s: want InvalidActionError, got %v", name, err)
		}
	}
}

func TestActionFromJSON(t *testing.T) {
	m, err := ActionFromJSON([]byte(`{"Action":"Originate","Channel":"PJSIP/101","Timeout":30000,"Async":true,"Variable":["A=1","B=2"],"Exten":"100"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "Action: Originate\nChannel: PJSIP/101\nTimeout: 30000\nAsync: true\nVariable: A=1\nVariable: B=2\nExten: 100\n\n"
	if m.String() != want {
		t.Errorf("got\n%s\nwant\n%s", m, want)
	}
	for _, bad := range []string{`[]`, `{"Action":{"x":1}}`, `{"Action":null}`, `{"Action":[["x"]]}`, `{"Action":"Ping"} {}`, `{`} {
		var ie *InvalidActionError
		if _, err := ActionFromJSON([]byte(bad)); !errors.As(err, &ie) {
			t.Errorf("%s: want InvalidActionError, got %v", bad, err)
		}
	}
}
