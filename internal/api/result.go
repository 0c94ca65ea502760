package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"time"
	"unicode/utf8"

	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/jobs"
)

// notifyModel receives user notifications (contract §4.4).
const notifyModel = "asterisk_plus.settings"

// maxNotifyChars is how long a notification message may be before HTML escaping.
const maxNotifyChars = 1000

// outcome is a finished job: its JSON result and, on failure, the error code and message.
type outcome struct {
	result  json.RawMessage
	code    string // "" on success
	message string
}

func (o outcome) failed() bool { return o.code != "" }

// errorResult is the result of a failed function other than manager_action (contract §4.4).
func errorResult(code, message string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"error": message, "error_code": code})
	return b
}

// runFunc runs the function once, turns panics and errors into the contract's result shapes.
func runFunc(ctx context.Context, j *job) (o outcome) {
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprintf("%s panicked: %v", j.canonical, p)
			o = outcome{result: errorResult(jobs.CodeInternal, msg), code: jobs.CodeInternal, message: msg}
		}
	}()
	v, err := j.f(ctx, j.env.Args, j.env.Kwargs)
	if err == nil {
		b, merr := json.Marshal(v)
		if merr != nil {
			msg := "the result cannot be encoded as JSON: " + merr.Error()
			return outcome{result: errorResult(jobs.CodeInternal, msg), code: jobs.CodeInternal, message: msg}
		}
		return outcome{result: b}
	}
	var re *jobs.ResultError
	if errors.As(err, &re) {
		b, merr := json.Marshal(re.Result)
		if merr != nil {
			b = errorResult(re.Code, re.Message)
		}
		return outcome{result: b, code: re.Code, message: re.Message}
	}
	var je *jobs.Error
	if errors.As(err, &je) {
		return outcome{result: errorResult(je.Code, je.Message), code: je.Code, message: je.Message}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg := fmt.Sprintf("the job did not finish within %s", j.timeout)
		return outcome{result: errorResult(jobs.CodeTimeout, msg), code: jobs.CodeTimeout, message: msg}
	}
	return outcome{result: errorResult(jobs.CodeInternal, err.Error()), code: jobs.CodeInternal, message: err.Error()}
}

// resultItems are the Odoo calls that deliver a job's outcome, in lane job:<id>: the callback
// execute_kw(res_model, res_method, [result], pass_back), then the notification.
func resultItems(env envelope, o outcome, notifyMethod string, now time.Time) []delivery.Item {
	lane := "job:" + env.JobID
	var items []delivery.Item
	if env.ResModel != "" {
		items = append(items, delivery.Item{
			Lane:    lane,
			Model:   env.ResModel,
			Method:  env.ResMethod,
			Args:    json.RawMessage("[" + string(o.result) + "]"),
			Kwargs:  env.PassBack,
			Created: now,
			Origin:  lane,
		})
	}
	if env.NotifyUID != 0 {
		kwargs, _ := json.Marshal(map[string]any{"title": env.NotifyTitle, "notify_uid": env.NotifyUID, "warning": o.failed()})
		args, _ := json.Marshal([]string{notifyMessage(env.Fun, o)})
		items = append(items, delivery.Item{
			Lane:    lane,
			Model:   notifyModel,
			Method:  notifyMethod,
			Args:    args,
			Kwargs:  kwargs,
			Created: now,
			Origin:  lane,
		})
	}
	return items
}

// notifyMessage is "<fun>: OK", "<fun>: <result summary>" or "<fun> failed: <message>", cut to
// 1,000 characters and HTML-escaped (Odoo shows it as markup).
func notifyMessage(fun string, o outcome) string {
	var msg string
	switch r := string(o.result); {
	case o.failed():
		msg = fun + " failed: " + o.message
	case r == "true" || r == "null" || r == "{}" || r == "[]" || r == `""`:
		msg = fun + ": OK"
	default:
		msg = fun + ": " + r
	}
	if utf8.RuneCountInString(msg) > maxNotifyChars {
		runes := []rune(msg)
		msg = string(runes[:maxNotifyChars-1]) + "…"
	}
	return html.EscapeString(msg)
}
