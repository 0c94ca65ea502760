package ami_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

// TestEveryRecordedActionReply sends every action of every recorded transcript through Do and
// compares the reply with what Asterisk answered: the same messages, in order, with the same
// headers (the ActionID aside, which the client owns on the wire and restores).
func TestEveryRecordedActionReply(t *testing.T) {
	for _, sentFile := range amitest.FixtureNames(t, "*.sent.txt") {
		name := strings.TrimSuffix(sentFile, ".sent.txt")
		if strings.HasPrefix(name, "03") {
			continue // failed logins and actions before login: covered by the login tests
		}
		t.Run(name, func(t *testing.T) {
			sent := fixture(t, name+".sent.txt")
			recv := fixture(t, name+".txt")
			actions, err := amitest.Actions(sent)
			if err != nil {
				t.Fatal(err)
			}
			if len(actions) == 0 {
				t.Skip("no actions besides login in this transcript")
			}
			expected := expectedReplies(t, recv)
			srv := replay(t, name)
			c := start(t, testConfig(srv.Addr()))
			for _, a := range actions {
				want := expected[a.ActionID()]
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := c.Do(ctx, a)
				cancel()
				if a.Get("Action") == "" {
					var ie *ami.InvalidActionError
					if !errors.As(err, &ie) {
						t.Errorf("an action without Action: got %v, want InvalidActionError", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s (%s): %v", a.Get("Action"), a.ActionID(), err)
				}
				if len(got) != len(want) {
					t.Fatalf("%s (%s): %d messages, Asterisk sent %d", a.Get("Action"), a.ActionID(), len(got), len(want))
				}
				for i := range got {
					if got[i].ActionID() != a.ActionID() {
						t.Errorf("%s: ActionID %q not restored to %q", a.Get("Action"), got[i].ActionID(), a.ActionID())
					}
					g, w := withoutIDs(got[i]), withoutIDs(want[i])
					if g != w {
						t.Errorf("%s message %d differs:\n got %s\nwant %s", a.Get("Action"), i, g, w)
					}
				}
			}
		})
	}
}

// expectedReplies groups the recorded messages by ActionID: the response, list items, the
// Complete event and the OriginateResponse of each action.
func expectedReplies(t *testing.T, recv []byte) map[string][]*ami.Message {
	t.Helper()
	r := ami.NewReader(strings.NewReader(string(recv)))
	if _, err := r.ReadBanner(); err != nil {
		t.Fatal(err)
	}
	out := map[string][]*ami.Message{}
	for {
		m, err := r.ReadMessage()
		if err != nil {
			break
		}
		id := m.ActionID()
		if id == "" || strings.EqualFold(m.Event(), "UserEvent") {
			continue
		}
		out[id] = append(out[id], m)
	}
	for id, msgs := range out {
		// Do puts the OriginateResponse after the list items and the response, where the
		// recording may have it before a late response; keep the response first.
		for i, m := range msgs {
			if m.Kind() == ami.KindResponse && i > 0 {
				msgs = append([]*ami.Message{m}, append(msgs[:i:i], msgs[i+1:]...)...)
				break
			}
		}
		out[id] = msgs
	}
	return out
}

// withoutIDs is the message's wire form without its ActionID and the client-added content header.
func withoutIDs(m *ami.Message) string {
	c := m.Clone()
	c.Del("ActionID")
	c.Del("content")
	return c.String()
}

// TestLegacyCommandThroughTheClient serves the Asterisk 13 format raw (Response: Follows, free
// text, --END COMMAND--) from a bare TCP server, as no re-encoding replay can.
func TestLegacyCommandThroughTheClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte("Asterisk Call Manager/2.10.6\r\n"))
		r := ami.NewReader(conn)
		for {
			a, err := r.ReadMessage()
			if err != nil {
				return
			}
			id := a.ActionID()
			switch a.Get("Action") {
			case "Login":
				fmt.Fprintf(conn, "Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n", id)
			case "Command":
				fmt.Fprintf(conn, "Response: Follows\r\nPrivilege: Command\r\nActionID: %s\r\n"+
					"Asterisk 13.38.3 built by root\nwith a: colon\n\n--END COMMAND--\r\n\r\n", id)
			default:
				fmt.Fprintf(conn, "Response: Success\r\nActionID: %s\r\n\r\n", id)
			}
		}
	}()
	cfg := testConfig(ln.Addr().String())
	cfg.Auth = "plain"
	cfg.SingleSession = true
	c := start(t, cfg)
	msgs := do(t, c, "Action", "Command", "Command", "core show version")
	if c.Version() != "2.10.6" {
		t.Errorf("version %q", c.Version())
	}
	want := []string{"Asterisk 13.38.3 built by root", "with a: colon", ""}
	if got := msgs[0].Values("Output"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Output %q, want %q", got, want)
	}
	if msgs[0].Get("content") != strings.Join(want, "\n") {
		t.Errorf("content %q", msgs[0].Get("content"))
	}
}
