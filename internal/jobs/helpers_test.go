package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami/amitest"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/jobs/jobstest"
)

// fixtureDir is the recorded Asterisk 22.10.1 traffic shipped beside the repository.
var fixtureDir = mustFixtureDir()

func mustFixtureDir() string {
	dir, err := amitest.FixtureDir()
	if err != nil {
		panic(err)
	}
	return dir
}

// fixtureAction returns the Odoo-side action dict for a recorded action: its headers in order,
// ActionID left out (Odoo rarely sends one), repeated headers as a list.
func fixtureAction(t *testing.T, fixture, actionID string) json.RawMessage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, fixture+".sent.txt"))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := jobstest.Transcript(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.ActionID() != actionID {
			continue
		}
		var buf bytes.Buffer
		buf.WriteByte('{')
		done := map[string]bool{}
		for _, h := range m.Headers {
			if strings.EqualFold(h.Name, "ActionID") || done[h.Name] {
				continue
			}
			done[h.Name] = true
			if buf.Len() > 1 {
				buf.WriteByte(',')
			}
			k, _ := json.Marshal(h.Name)
			var v []byte
			if vals := m.Values(h.Name); len(vals) > 1 {
				v, _ = json.Marshal(vals)
			} else {
				v, _ = json.Marshal(h.Value)
			}
			buf.Write(k)
			buf.WriteByte(':')
			buf.Write(v)
		}
		buf.WriteByte('}')
		return buf.Bytes()
	}
	t.Fatalf("no action %s in %s", actionID, fixture)
	return nil
}

func newFake(t *testing.T, fixtures ...string) *jobstest.FakeAMI {
	t.Helper()
	f, err := jobstest.NewFakeAMI(fixtureDir, fixtures...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// call runs a registered function by name with JSON args and kwargs.
func call(t *testing.T, r *Registry, name string, args []any, kwargs map[string]any) (any, error) {
	t.Helper()
	f, _, ok := r.Lookup(name)
	if !ok {
		t.Fatalf("%s is not registered", name)
	}
	var rawArgs []json.RawMessage
	for _, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		rawArgs = append(rawArgs, b)
	}
	rawKw := map[string]json.RawMessage{}
	for k, v := range kwargs {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rawKw[k] = b
	}
	return f(context.Background(), rawArgs, rawKw)
}

// asJSON turns a result into plain JSON values (map[string]any, []any...).
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("result does not marshal: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustRegistry(t *testing.T, d Deps) *Registry {
	t.Helper()
	r, err := Builtins(d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fixedConfig returns a Deps.Config func for cfg.
func fixedConfig(cfg config.Config) func() config.Config {
	return func() config.Config { return cfg }
}

func errCode(t *testing.T, err error) string {
	t.Helper()
	switch e := err.(type) {
	case *Error:
		return e.Code
	case *ResultError:
		return e.Code
	case nil:
		t.Fatal("expected an error, got none")
	}
	t.Fatalf("error %T %v is not a job error", err, err)
	return ""
}

// msgField reads a header from a result message in JSON form.
func msgField(t *testing.T, v any, key string) any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not a message: %#v", v)
	}
	return m[key]
}

var _ AMIDoer = (*jobstest.FakeAMI)(nil)
var _ = ami.ErrTimeout
