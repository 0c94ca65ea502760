package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/odoopbx/odoopbx/internal/jobs"
)

// MaxJSONDepth is the deepest nesting of objects and arrays a request body may have (§4.7).
const MaxJSONDepth = 32

// envelope is a validated job request (contract §4.2).
type envelope struct {
	Fun         string
	Args        []json.RawMessage
	Kwargs      map[string]json.RawMessage
	ResModel    string
	ResMethod   string
	PassBack    json.RawMessage // a JSON object
	NotifyUID   int64           // 0: no notification
	NotifyTitle string
	JobID       string // "" until the server generates one
	Timeout     time.Duration
	Sync        bool
}

var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)

// checkDepth refuses JSON nested deeper than max, without decoding it; it only tracks strings so
// that brackets inside them do not count.
func checkDepth(data []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return fmt.Errorf("JSON is nested deeper than %d levels", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// parseEnvelope validates a request body (contract §4.2). Unknown top-level keys are ignored.
// For compatibility with Odoo, where an unset field is False, null and false count as absent for
// the optional res_* keys.
func parseEnvelope(body []byte) (envelope, error) {
	var env envelope
	if err := checkDepth(body, MaxJSONDepth); err != nil {
		return env, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			return env, fmt.Errorf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)
		}
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
			return env, fmt.Errorf("malformed JSON: %v", err)
		}
		return env, errors.New("the body must be a JSON object")
	}
	if top == nil {
		return env, errors.New("the body must be a JSON object")
	}

	raw, ok := top["fun"]
	if !ok || absent(raw) {
		return env, errors.New("fun is required")
	}
	if err := json.Unmarshal(raw, &env.Fun); err != nil || env.Fun == "" {
		return env, errors.New("fun must be a non-empty string")
	}

	args, err := parseArgs(top["args"])
	if err != nil {
		return env, err
	}
	env.Args = args

	env.Kwargs = map[string]json.RawMessage{}
	if raw := top["kwargs"]; !isNull(raw) {
		if !isObject(raw) || json.Unmarshal(raw, &env.Kwargs) != nil {
			return env, errors.New("kwargs must be an object")
		}
	}

	if env.ResModel, err = optString(top, "res_model"); err != nil {
		return env, err
	}
	if env.ResMethod, err = optString(top, "res_method"); err != nil {
		return env, err
	}
	if (env.ResModel == "") != (env.ResMethod == "") {
		return env, errors.New("res_model and res_method go together: give both or neither")
	}

	env.PassBack = json.RawMessage("{}")
	if raw := top["pass_back"]; !absent(raw) {
		if !isObject(raw) {
			return env, errors.New("pass_back must be an object")
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			return env, errors.New("pass_back must be an object")
		}
		env.PassBack = compact.Bytes()
	}

	if raw := top["res_notify_uid"]; !absent(raw) {
		var uid float64
		if err := json.Unmarshal(raw, &uid); err != nil || uid != math.Trunc(uid) || uid <= 0 || uid > 1<<53 {
			return env, errors.New("res_notify_uid must be a positive integer (an Odoo user id)")
		}
		env.NotifyUID = int64(uid)
	}
	env.NotifyTitle = "PBX"
	if title, err := optString(top, "res_notify_title"); err != nil {
		return env, err
	} else if title != "" {
		env.NotifyTitle = title
	}

	if raw := top["job_id"]; !absent(raw) {
		if err := json.Unmarshal(raw, &env.JobID); err != nil || !jobIDPattern.MatchString(env.JobID) {
			return env, errors.New("job_id must be a string of 1 to 128 letters, digits or . _ : @ -")
		}
	}

	if raw := top["timeout"]; !isNull(raw) {
		var sec float64
		if err := json.Unmarshal(raw, &sec); err != nil || sec <= 0 || math.IsInf(sec, 0) {
			return env, errors.New("timeout must be a positive number of seconds")
		}
		if sec > jobs.MaxTimeout.Seconds() {
			return env, fmt.Errorf("timeout must be at most %d seconds", int(jobs.MaxTimeout.Seconds()))
		}
		env.Timeout = time.Duration(sec * float64(time.Second))
	}

	if raw := top["sync"]; !isNull(raw) {
		if err := json.Unmarshal(raw, &env.Sync); err != nil {
			return env, errors.New("sync must be true or false")
		}
	}
	return env, nil
}

// parseArgs normalises args: a non-list is wrapped in a list; null and [null] mean no args.
func parseArgs(raw json.RawMessage) ([]json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New("args must be a list or a single value")
		}
		if len(list) == 1 && isNull(list[0]) {
			return nil, nil
		}
		return list, nil
	}
	return []json.RawMessage{raw}, nil
}

// optString reads an optional string key; absent, null and false give "".
func optString(top map[string]json.RawMessage, key string) (string, error) {
	raw := top[key]
	if absent(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s must be a string", key)
	}
	return s, nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// absent is null, missing or false (Odoo's "unset").
func absent(raw json.RawMessage) bool {
	return isNull(raw) || bytes.Equal(bytes.TrimSpace(raw), []byte("false"))
}

func isObject(raw json.RawMessage) bool {
	return bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{"))
}
