package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// ResultError is a failure whose result is not the usual {"error", "error_code"} object:
// asterisk.manager_action answers failures AMI-style ({"Response":"Error","Message":"…"}) so that
// existing Odoo callbacks keep working (contract §4.4). The API delivers Result as the job's result
// and still counts the job as failed with Code.
type ResultError struct {
	Code    string
	Message string
	Result  any
}

func (e *ResultError) Error() string { return e.Code + ": " + e.Message }

// isNull reports a missing or JSON null value.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// argString returns args[i] as a non-empty string.
func argString(args []json.RawMessage, i int, name string) (string, error) {
	if i >= len(args) || isNull(args[i]) {
		return "", Errorf(CodeInvalidArgs, "missing argument %d (%s)", i+1, name)
	}
	var s string
	if err := json.Unmarshal(args[i], &s); err != nil {
		return "", Errorf(CodeInvalidArgs, "argument %d (%s) must be a string", i+1, name)
	}
	if s == "" {
		return "", Errorf(CodeInvalidArgs, "argument %d (%s) is empty", i+1, name)
	}
	return s, nil
}

// kwString returns kwargs[name], or def when absent or null.
func kwString(kwargs map[string]json.RawMessage, name, def string) (string, error) {
	raw, ok := kwargs[name]
	if !ok || isNull(raw) {
		return def, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", Errorf(CodeInvalidArgs, "kwarg %s must be a string", name)
	}
	return s, nil
}

// kwBool returns kwargs[name] as a bool, or def when absent or null.
func kwBool(kwargs map[string]json.RawMessage, name string, def bool) (bool, error) {
	raw, ok := kwargs[name]
	if !ok || isNull(raw) {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, Errorf(CodeInvalidArgs, "kwarg %s must be true, false or null", name)
	}
	return b, nil
}

// kwNumber returns kwargs[name] as a finite number within [lo, hi], or def when absent or null.
func kwNumber(kwargs map[string]json.RawMessage, name string, def, lo, hi float64) (float64, error) {
	raw, ok := kwargs[name]
	if !ok || isNull(raw) {
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, Errorf(CodeInvalidArgs, "kwarg %s must be a number", name)
	}
	if f < lo || f > hi {
		return 0, Errorf(CodeInvalidArgs, "kwarg %s must be between %s and %s", name, fmtNum(lo), fmtNum(hi))
	}
	return f, nil
}

func fmtNum(f float64) string { return fmt.Sprintf("%g", f) }
