package eventmap

import (
	"errors"
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// MaxConditionSteps bounds one condition evaluation (contract §3.3): enough for any sensible
// header test, small enough that a runaway comprehension stops at once.
const MaxConditionSteps = 10_000

// conditionFileOptions is the dialect conditions are compiled with: plain Starlark, plus the set
// built-in that recent Starlark includes in its universe. No while, no recursion, no top-level
// statements: a condition is one expression.
var conditionFileOptions = syntax.FileOptions{Set: true}

// Condition is one compiled condition: a frozen Starlark function of `event`. It is safe for
// concurrent use.
type Condition struct {
	src string
	fn  *starlark.Function // nil for the empty condition (always true)
}

// CompileCondition compiles src, a single Starlark expression whose only free name is `event`.
// An empty (or blank) src is the always-true condition. The error says what is wrong, for the
// disabled-rows list.
func CompileCondition(name, src string) (*Condition, error) {
	if strings.TrimSpace(src) == "" {
		return &Condition{src: src}, nil
	}
	// Parse the text on its own first: this proves it is exactly one expression, so wrapping it
	// in a lambda below cannot change its meaning (a condition such as "1), (2" fails here).
	if _, err := conditionFileOptions.ParseExpr(name, src, 0); err != nil {
		return nil, fmt.Errorf("eventmap: condition syntax: %w", err)
	}
	// The condition becomes the body of `lambda event: ...`, compiled once per map load. Only
	// the universe is predeclared, so any other free name fails to resolve here, and `load` is
	// impossible in an expression.
	wrapped := "lambda event: (\n" + src + "\n)"
	thread := &starlark.Thread{Name: "compile " + name}
	thread.SetMaxExecutionSteps(MaxConditionSteps)
	v, err := starlark.EvalOptions(&conditionFileOptions, thread, name, wrapped, nil)
	if err != nil {
		return nil, fmt.Errorf("eventmap: condition: %w", err)
	}
	fn, ok := v.(*starlark.Function)
	if !ok {
		return nil, fmt.Errorf("eventmap: condition: not a single expression")
	}
	fn.Freeze()
	return &Condition{src: src, fn: fn}, nil
}

// Source is the condition's text.
func (c *Condition) Source() string { return c.src }

// Empty reports whether the condition is always true.
func (c *Condition) Empty() bool { return c == nil || c.fn == nil }

// ErrStepLimit reports a condition that ran past MaxConditionSteps.
var ErrStepLimit = errors.New("eventmap: condition exceeded the step limit")

// Eval evaluates the condition against ev for truthiness. print goes to printFn (may be nil).
// A runtime error (a missing key, a bad int(), the step limit) is returned, and the caller skips
// the handler.
func (c *Condition) Eval(ev *Event, printFn func(msg string)) (bool, error) {
	if c.Empty() {
		return true, nil
	}
	return c.eval(&eventDict{ev: ev}, printFn)
}

// eval runs the condition on a view shared by all the rows of one event.
func (c *Condition) eval(d *eventDict, printFn func(msg string)) (bool, error) {
	if c.Empty() {
		return true, nil
	}
	thread := &starlark.Thread{Name: "condition"}
	thread.SetMaxExecutionSteps(MaxConditionSteps)
	if printFn != nil {
		thread.Print = func(_ *starlark.Thread, msg string) { printFn(msg) }
	} else {
		thread.Print = func(*starlark.Thread, string) {}
	}
	v, err := starlark.Call(thread, c.fn, starlark.Tuple{d}, nil)
	if err != nil {
		if thread.ExecutionSteps() >= MaxConditionSteps {
			return false, fmt.Errorf("%w: %v", ErrStepLimit, err)
		}
		var evalErr *starlark.EvalError
		if errors.As(err, &evalErr) {
			return false, fmt.Errorf("eventmap: condition: %s", evalErr.Msg)
		}
		return false, fmt.Errorf("eventmap: condition: %w", err)
	}
	return bool(v.Truth()), nil
}

// eventDict is the read-only Starlark view of an Event: it behaves like a frozen dict of header →
// string (or list of strings, or float for EventTime/GapSeconds).
//
// Key lookups (event['X'], event.get('X'), 'X' in event) are case-insensitive. AMI header names
// are case-insensitive and Asterisk is inconsistent about them (Uniqueid/Linkedid in channel
// events, UniqueID/LinkedID in CEL and Cdr), so a condition written as event['Linkedid'] must
// keep working on a CEL event. Iteration, keys() and items() give the names spelled as Asterisk
// sent them, which is also the spelling handlers receive.
type eventDict struct {
	ev     *Event
	getter *starlark.Builtin // event.get, bound once per event
}

var (
	_ starlark.IterableMapping = (*eventDict)(nil)
	_ starlark.Sequence        = (*eventDict)(nil)
	_ starlark.HasAttrs        = (*eventDict)(nil)
)

func (d *eventDict) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range d.ev.fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(starlark.String(d.ev.fields[i].name).String())
		b.WriteString(": ")
		b.WriteString(toStarlark(&d.ev.fields[i]).String())
	}
	b.WriteByte('}')
	return b.String()
}

func (d *eventDict) Type() string          { return "dict" }
func (d *eventDict) Freeze()               {} // immutable already
func (d *eventDict) Truth() starlark.Bool  { return len(d.ev.fields) > 0 }
func (d *eventDict) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: dict") }
func (d *eventDict) Len() int              { return len(d.ev.fields) }

func (d *eventDict) Get(k starlark.Value) (starlark.Value, bool, error) {
	name, ok := starlark.AsString(k)
	if !ok {
		return nil, false, nil
	}
	i := d.ev.index(name)
	if i < 0 {
		return nil, false, nil
	}
	return toStarlark(&d.ev.fields[i]), true, nil
}

func (d *eventDict) keys() starlark.Tuple {
	keys := make(starlark.Tuple, len(d.ev.fields))
	for i := range d.ev.fields {
		keys[i] = starlark.String(d.ev.fields[i].name)
	}
	return keys
}

func (d *eventDict) Iterate() starlark.Iterator { return d.keys().Iterate() }

func (d *eventDict) Items() []starlark.Tuple {
	items := make([]starlark.Tuple, len(d.ev.fields))
	for i := range d.ev.fields {
		items[i] = starlark.Tuple{starlark.String(d.ev.fields[i].name), toStarlark(&d.ev.fields[i])}
	}
	return items
}

var eventDictMethods = []string{"get", "items", "keys", "values"}

func (d *eventDict) AttrNames() []string { return eventDictMethods }

func (d *eventDict) Attr(name string) (starlark.Value, error) {
	switch name {
	case "get":
		// Conditions are evaluated one at a time per event (Match), so this lazy cache is not
		// shared between goroutines.
		if d.getter == nil {
			d.getter = starlark.NewBuiltin("get", d.get).BindReceiver(d)
		}
		return d.getter, nil
	case "keys":
		return starlark.NewBuiltin("keys", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			return starlark.NewList(d.keys()), nil
		}).BindReceiver(d), nil
	case "values":
		return starlark.NewBuiltin("values", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			values := make([]starlark.Value, len(d.ev.fields))
			for i := range d.ev.fields {
				values[i] = toStarlark(&d.ev.fields[i])
			}
			return starlark.NewList(values), nil
		}).BindReceiver(d), nil
	case "items":
		return starlark.NewBuiltin("items", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			items := d.Items()
			values := make([]starlark.Value, len(items))
			for i, t := range items {
				values[i] = t
			}
			return starlark.NewList(values), nil
		}).BindReceiver(d), nil
	}
	return nil, nil
}

// get is dict.get(key, default=None), with the case-insensitive lookup.
func (d *eventDict) get(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var key, dflt starlark.Value = nil, starlark.None
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &key, &dflt); err != nil {
		return nil, err
	}
	if v, found, _ := d.Get(key); found {
		return v, nil
	}
	return dflt, nil
}

// toStarlark converts an Event field. Lists are frozen, so a condition cannot change what the
// handlers of the event will receive.
func toStarlark(f *field) starlark.Value {
	switch f.kind {
	case kindString:
		return starlark.String(f.str)
	case kindList:
		elems := make([]starlark.Value, len(f.list))
		for i, s := range f.list {
			elems[i] = starlark.String(s)
		}
		l := starlark.NewList(elems)
		l.Freeze()
		return l
	case kindFloat:
		return starlark.Float(f.num)
	case kindInt:
		return starlark.MakeInt64(int64(f.num))
	case kindBool:
		return starlark.Bool(f.num != 0)
	default:
		return starlark.None
	}
}
