package admin

import (
	_ "embed"
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("admin").Funcs(template.FuncMap{
	"dur":    formatDuration,
	"clock":  func(t time.Time) string { return t.Local().Format("15:04:05") },
	"date":   formatDate,
	"since":  func(now, t time.Time) string { return formatDuration(now.Sub(t)) },
	"ago":    func(now, t time.Time) string { return coarseDuration(now.Sub(t)) },
	"tone":   tone,
	"bytes":  FormatBytes,
	"detail": formatDetail,
	"host":   displayURL,
	"or": func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	},
}).Parse(pageHTML))

// pageData is what the templates see.
type pageData struct {
	snapshot
	Nonce          string
	RefreshSeconds int
}

// AllOK reports whether every part is healthy.
func (p pageData) AllOK() bool { return p.Health.Status == "ok" }

// formatDuration prints "2h 03m", "4m 05s" or "12s".
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	sec := int64(d / time.Second)
	switch {
	case sec >= 86400:
		return fmt.Sprintf("%dd %02dh", sec/86400, sec/3600%24)
	case sec >= 3600:
		return fmt.Sprintf("%dh %02dm", sec/3600, sec/60%60)
	case sec >= 60:
		return fmt.Sprintf("%dm %02ds", sec/60, sec%60)
	default:
		return fmt.Sprintf("%ds", sec)
	}
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// FormatBytes writes a size in binary units (1.5 MiB); the CLI uses it too.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// tone maps a state word to a status colour class: good, warn, bad or idle.
func tone(state string) string {
	switch strings.ToLower(state) {
	case "connected", "ok", "running", "up", "answered", "enabled", "ready", "serving":
		return "good"
	case "connecting", "reconnecting", "degraded", "ringing", "ring", "starting", "dialing", "busy", "backoff":
		return "warn"
	case "disconnected", "auth_failed", "unreachable", "error", "failed", "down", "stopped", "dead":
		return "bad"
	default:
		return "idle"
	}
}

// formatDetail prints a part's detail map as sorted "key value" pairs.
func formatDetail(d map[string]any) []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s %v", strings.ReplaceAll(k, "_", " "), d[k]))
	}
	return out
}

// displayURL drops the scheme and a trailing slash, so the card shows "erp.example.com".
func displayURL(u string) string {
	u = strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://")
	return strings.TrimSuffix(u, "/")
}

// coarseDuration keeps the largest unit only ("20m", "3h", "2d"), for ages and expiries.
func coarseDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()+0.5))
	default:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
}
