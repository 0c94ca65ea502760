// Package jobstest is test support for the job functions: an in-process fake of the AMI client
// that answers actions with the replies a real Asterisk sent to the same actions in the project's
// recorded fixtures.
package jobstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami/amitest"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Transcript parses a recorded AMI byte stream (a fixture's .txt or .sent.txt) with the agent's
// own reader.
func Transcript(data []byte) ([]*ami.Message, error) { return amitest.Transcript(data) }

type recorded struct {
	action  *ami.Message
	replies []*ami.Message
}

// FakeAMI implements jobs.AMIDoer the way ami.Client.Do behaves: it validates the action, makes
// Originate async, answers with the recorded reply (response, list items and Complete, or
// response and OriginateResponse), adds "content" to Command replies and puts the caller's
// ActionID back in every message.
type FakeAMI struct {
	mu       sync.Mutex
	recorded []recorded
	sent     []*ami.Message

	// Err, when set, is returned by Do instead of a reply (ami.ErrNotConnected...).
	Err error
	// Delay holds every reply back; past ctx's deadline Do returns ami.ErrTimeout, like the client.
	Delay time.Duration
	// Wire, when set, receives each action in AMI wire form before the reply (the benchmark's
	// "socket").
	Wire io.Writer
	// Extra maps an action name (lower case) to a reply used when no recorded action matches.
	Extra map[string][]*ami.Message
}

// NewFakeAMI loads the named fixtures (without extension, e.g. "04d-action-originate-variants")
// from dir.
func NewFakeAMI(dir string, names ...string) (*FakeAMI, error) {
	f := &FakeAMI{Extra: map[string][]*ami.Message{}}
	for _, name := range names {
		sentBytes, err := os.ReadFile(filepath.Join(dir, name+".sent.txt"))
		if err != nil {
			return nil, err
		}
		gotBytes, err := os.ReadFile(filepath.Join(dir, name+".txt"))
		if err != nil {
			return nil, err
		}
		sent, err := Transcript(sentBytes)
		if err != nil {
			return nil, fmt.Errorf("%s.sent.txt: %w", name, err)
		}
		got, err := Transcript(gotBytes)
		if err != nil {
			return nil, fmt.Errorf("%s.txt: %w", name, err)
		}
		for _, a := range sent {
			switch strings.ToLower(a.Get("Action")) {
			case "login", "logoff", "challenge", "":
				continue
			}
			id := a.ActionID()
			var replies []*ami.Message
			for _, m := range got {
				if m.ActionID() == id {
					replies = append(replies, m)
				}
			}
			f.recorded = append(f.recorded, recorded{action: a, replies: replies})
		}
	}
	return f, nil
}

// Sent returns copies of the actions Do received, as they would go on the wire (Async added).
func (f *FakeAMI) Sent() []*ami.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*ami.Message, len(f.sent))
	for i, m := range f.sent {
		out[i] = m.Clone()
	}
	return out
}

// Do implements jobs.AMIDoer.
func (f *FakeAMI) Do(ctx context.Context, action *ami.Message) ([]*ami.Message, error) {
	a := action.Clone()
	if strings.EqualFold(a.Get("Action"), "Originate") {
		if v, ok := a.Lookup("Async"); !ok {
			a.Add("Async", "true")
		} else if !strings.EqualFold(v, "true") && v != "1" && !strings.EqualFold(v, "yes") {
			return nil, &ami.InvalidActionError{Reason: "Originate must be asynchronous (Async: true)"}
		}
	}
	if err := ami.ValidateAction(a); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.sent = append(f.sent, a)
	wire, err, delay := f.Wire, f.Err, f.Delay
	f.mu.Unlock()
	if wire != nil {
		if _, werr := a.WriteTo(wire); werr != nil {
			return nil, ami.ErrNotConnected
		}
	}
	if err != nil {
		return nil, err
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, ctx.Err()
			}
			return nil, ami.ErrTimeout
		}
	}
	replies, ok := f.lookup(a)
	if !ok {
		return nil, fmt.Errorf("jobstest: no recorded reply for action %q", a.String())
	}
	out := make([]*ami.Message, len(replies))
	for i, m := range replies {
		out[i] = m.Clone()
		if id := a.ActionID(); id != "" {
			out[i].Set("ActionID", id)
		}
	}
	if strings.EqualFold(a.Get("Action"), "Command") && len(out) > 0 {
		out[0].Add("content", strings.Join(out[0].Values("Output"), "\n"))
	}
	return out, nil
}

// lookup finds the recorded action with the same headers (ActionID and Async aside, since the
// fixtures hold synchronous Originates too; names compared case-insensitively, order ignored).
func (f *FakeAMI) lookup(a *ami.Message) ([]*ami.Message, bool) {
	want := headerSet(a)
	for _, r := range f.recorded {
		if slices.Equal(headerSet(r.action), want) {
			return r.replies, true
		}
	}
	if extra, ok := f.Extra[strings.ToLower(a.Get("Action"))]; ok {
		return extra, true
	}
	return nil, false
}

func headerSet(m *ami.Message) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, "ActionID") || strings.EqualFold(h.Name, "Async") {
			continue
		}
		out = append(out, strings.ToLower(h.Name)+": "+h.Value)
	}
	slices.Sort(out)
	return out
}
