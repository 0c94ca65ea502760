package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Limits of asterisk.manager_action (contract §4.6, §4.7).
const (
	managerActionDefaultTimeout = 10 * time.Second
	managerActionMaxTimeout     = 120 * time.Second
	// Originate waits for its OriginateResponse for Timeout/1000 + 15 s, never more than 180 s.
	originateWaitSlack = 15 * time.Second
	originateWaitMax   = 180 * time.Second
	originateDefaultMs = 30000 // Asterisk's own default Originate Timeout
)

// ParseAction turns the action dict Odoo sends into an AMI message (contract §2.10) with
// ami.ActionFromJSON (order kept, numbers as written, booleans true/false, lists as repeated
// headers, objects and nulls refused), then puts Action first and ActionID second. Header names,
// CR/LF and line limits are checked again by the AMI client before sending.
func ParseAction(raw json.RawMessage) (*ami.Message, error) {
	m, err := ami.ActionFromJSON(raw)
	if err != nil {
		return nil, err
	}
	if len(m.Values("Action")) != 1 || strings.TrimSpace(m.Get("Action")) == "" {
		return nil, &ami.InvalidActionError{Reason: "the action needs exactly one Action header"}
	}
	if len(m.Values("ActionID")) > 1 {
		return nil, &ami.InvalidActionError{Reason: "the action has more than one ActionID"}
	}
	out := &ami.Message{Headers: make([]ami.Header, 0, len(m.Headers))}
	out.Add("Action", m.Get("Action"))
	if id := m.ActionID(); id != "" {
		out.Add("ActionID", id)
	}
	for _, h := range m.Headers {
		if !strings.EqualFold(h.Name, "Action") && !strings.EqualFold(h.Name, "ActionID") {
			out.Headers = append(out.Headers, h)
		}
	}
	return out, nil
}

// amiFailure is a manager_action failure in the AMI shape existing callbacks expect (§4.4).
func amiFailure(code, message string, asList bool) *ResultError {
	reply := ami.NewMessage("Response", "Error", "Message", message)
	var result any = reply
	if asList {
		result = []*ami.Message{reply}
	}
	return &ResultError{Code: code, Message: message, Result: result}
}

func (b *builtins) managerAction(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
	asList, err := kwBool(kwargs, "as_list", false)
	if err != nil {
		return nil, amiFailure(CodeInvalidArgs, err.(*Error).Message, false)
	}
	timeoutSec, err := kwNumber(kwargs, "timeout", managerActionDefaultTimeout.Seconds(), 0.001, math.MaxFloat64)
	if err != nil {
		return nil, amiFailure(CodeInvalidArgs, err.(*Error).Message, asList)
	}
	timeout := min(time.Duration(timeoutSec*float64(time.Second)), managerActionMaxTimeout)
	if len(args) == 0 || isNull(args[0]) {
		return nil, amiFailure(CodeInvalidArgs, "missing the action dict", asList)
	}
	action, err := ParseAction(args[0])
	if err != nil {
		var invalid *ami.InvalidActionError
		if errors.As(err, &invalid) {
			return nil, amiFailure(CodeInvalidArgs, "Invalid action: "+invalid.Reason, asList)
		}
		return nil, amiFailure(CodeInvalidArgs, "Invalid action: "+err.Error(), asList)
	}

	name := action.Get("Action")
	if strings.EqualFold(name, "ReloadEvents") {
		return b.reloadEvents(ctx, asList)
	}
	if !action.Has("ActionID") {
		// Our own ActionID, so the Originate lane hook and the logs have one to name.
		action.Headers = append([]ami.Header{action.Headers[0], {Name: "ActionID", Value: b.deps.NewActionID()}}, action.Headers[1:]...)
	}
	wait := timeout
	if strings.EqualFold(name, "Originate") {
		// The client waits for the OriginateResponse after the immediate response; the deadline
		// covers that wait too, so it never expires while the result is on its way.
		wait += originateWait(action.Get("Timeout"))
		if ch := action.Get("ChannelId"); ch != "" && b.deps.OnOriginate != nil {
			b.deps.OnOriginate(action.ActionID(), ch)
		}
	}
	doCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	replies, err := b.deps.AMI.Do(doCtx, action)
	if err != nil {
		return nil, doFailure(err, asList)
	}
	if len(replies) == 0 {
		return nil, amiFailure(CodeAMIError, "no reply from Asterisk", asList)
	}
	result := shapeReplies(replies, asList)
	if code, msg, failed := replyFailure(replies); failed {
		return nil, &ResultError{Code: code, Message: msg, Result: result}
	}
	return result, nil
}

func (b *builtins) reloadEvents(ctx context.Context, asList bool) (any, error) {
	if b.deps.Reload == nil {
		return nil, amiFailure(CodeUnsupported, "ReloadEvents is not available", asList)
	}
	if _, err := b.deps.Reload(ctx); err != nil {
		return nil, amiFailure(CodeInternal, "ReloadEvents failed: "+err.Error(), asList)
	}
	ok := ami.NewMessage("Response", "Success")
	if asList {
		return []*ami.Message{ok}, nil
	}
	return ok, nil
}

// originateWait is how long Do may wait for the OriginateResponse after the immediate response.
func originateWait(timeoutHeader string) time.Duration {
	ms, err := strconv.ParseFloat(strings.TrimSpace(timeoutHeader), 64)
	if err != nil || ms < 0 || math.IsNaN(ms) || math.IsInf(ms, 0) {
		ms = originateDefaultMs
	}
	return min(time.Duration(ms*float64(time.Millisecond))+originateWaitSlack, originateWaitMax)
}

// doFailure maps an error of AMIDoer.Do to the AMI-style answer of contract §4.6.
func doFailure(err error, asList bool) *ResultError {
	var invalid *ami.InvalidActionError
	switch {
	case errors.As(err, &invalid):
		return amiFailure(CodeInvalidArgs, "Invalid action: "+invalid.Reason, asList)
	case errors.Is(err, ami.ErrNotConnected):
		return amiFailure(CodeAMINotConnected, "AMI not connected", asList)
	case errors.Is(err, ami.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return amiFailure(CodeAMITimeout, "Action Timeout", asList)
	case errors.Is(err, context.Canceled):
		return amiFailure(CodeInternal, "Action cancelled: the agent is stopping", asList)
	}
	return amiFailure(CodeAMIError, err.Error(), asList)
}

// replyFailure says whether a reply stands for a failed job: an error response (Permission denied
// is its own code, §2.6), an OriginateResponse Failure or the appended timeout. The result is
// still delivered as Asterisk sent it; the code feeds the notification and the metrics.
func replyFailure(replies []*ami.Message) (code, message string, failed bool) {
	for _, m := range replies {
		resp := m.Get("Response")
		switch {
		case m.Kind() == ami.KindResponse && strings.EqualFold(resp, "Error"):
			msg := strings.TrimSpace(m.Get("Message"))
			if strings.EqualFold(msg, "Permission denied") {
				return CodePermissionDenied, msg, true
			}
			if msg == "" {
				msg = "Asterisk answered Error"
			}
			return CodeAMIError, msg, true
		case m.Kind() == ami.KindEvent && strings.EqualFold(m.Event(), "OriginateResponse") && strings.EqualFold(resp, "Failure"):
			return CodeAMIError, "Originate failed (Reason " + m.Get("Reason") + ")", true
		}
	}
	return "", "", false
}

// shapeReplies applies §4.6 step 6: as_list always gives a list, otherwise one message gives a dict
// and several give a list. Command output gets Output as an array and content (§2.5).
func shapeReplies(replies []*ami.Message, asList bool) any {
	out := make([]json.Marshaler, len(replies))
	for i, m := range replies {
		if m.Has("Output") || strings.EqualFold(m.Get("Message"), "Command output follows") {
			out[i] = commandReply{m}
		} else {
			out[i] = m
		}
	}
	if len(out) == 1 && !asList {
		return out[0]
	}
	return out
}

// commandReply is a Command response: Output always a list of lines, content the lines joined.
type commandReply struct{ m *ami.Message }

func (c commandReply) MarshalJSON() ([]byte, error) {
	lines := c.m.Values("Output")
	if lines == nil {
		lines = []string{}
	}
	base := c.m.Clone()
	base.Del("Output")
	hasContent := base.Has("content")
	head, err := base.MarshalJSON()
	if err != nil {
		return nil, err
	}
	extra := map[string]any{"Output": lines}
	keys := []string{"Output"}
	if !hasContent {
		extra["content"] = strings.Join(lines, "\n")
		keys = append(keys, "content")
	}
	buf := bytes.NewBuffer(head[:len(head)-1]) // drop the closing brace
	for _, k := range keys {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		v, err := json.Marshal(extra[k])
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(buf, "%q:%s", k, v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// newActionID is an ActionID for an action Odoo sent without one.
func newActionID() string { return "odoopbx-job-" + strings.ToLower(rand.Text()) }
