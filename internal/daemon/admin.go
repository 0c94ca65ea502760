package daemon

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/admin"
	"github.com/odoopbx/odoopbx/internal/version"
)

// NewAdmin returns the local admin listener (status page, /healthz, /metrics) for metrics.listen,
// or nil when it is not configured.
func NewAdmin(a *Agent, log *slog.Logger) (*admin.Server, error) {
	cfg := a.Config()
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	return admin.New(admin.Config{
		Listen:   cfg.Metrics.Listen,
		Token:    cfg.Metrics.Token.Reveal(),
		Registry: a.reg,
		Health:   a.Health,
		Status:   admin.StatusFunc(a.AdminStatus),
		Logger:   log,
	})
}

// AdminStatus is what the status page shows, taken from the parts' own views.
func (a *Agent) AdminStatus(ctx context.Context) admin.Status {
	cfg := a.Config()
	st := a.AMI.Stats()
	q := a.Delivery.Status()
	s := admin.Status{
		Version:         version.Version,
		SystemName:      cfg.SystemName,
		AMI:             admin.AMIStatus{State: st.State, Address: cfg.AMI.Address(), AMIVersion: st.Version},
		Odoo:            admin.OdooStatus{State: q.Odoo, URL: cfg.Odoo.URL, DB: cfg.Odoo.DB},
		Queue:           admin.QueueStatus{Depth: q.Pending, InFlight: int(q.LanesBusy), Dead: q.Dead, Bytes: q.Bytes},
		SecurityEnabled: a.Security.Enabled(),
	}
	if !a.started.IsZero() {
		s.Uptime = time.Since(a.started)
	}
	s.Queue.Delivered = uint64(counterValue(a.reg, "odoopbx_delivery_items_out_total"))
	if q.Paused {
		s.Odoo.Detail = "deliveries paused until Odoo accepts the login again"
	}
	for _, c := range a.Forward.ActiveCalls() {
		state := strings.ToLower(c.State)
		if state == "" || state == "ring" || state == "ringing" || state == "down" {
			state = "ringing"
		}
		s.Calls = append(s.Calls, admin.Call{
			Linkedid: c.Linkedid, From: c.CallerNum, To: c.Exten, Direction: c.Direction,
			State: state, Started: c.FirstEvent, Channels: c.Channels,
		})
	}
	recent := a.Forward.RecentEvents()
	for i := len(recent) - 1; i >= 0; i-- { // newest first
		e := recent[i]
		summary := strings.TrimSpace(e.Channel + " " + e.Outcome)
		s.Events = append(s.Events, admin.Event{Time: e.Time, Name: e.Name, Summary: summary, Uniqueid: e.Uniqueid})
	}
	if bans, err := a.Security.ListBans(); err == nil {
		for _, b := range bans {
			source := b.Service
			if b.Manual {
				source = "manual"
			}
			s.Bans = append(s.Bans, admin.Ban{
				Address: b.Address, Reason: b.Reason, Source: source,
				Since: parseTime(b.Created), Expires: parseTime(b.ExpiresAt),
			})
		}
	}
	return s
}

// parseTime reads the security part's times (Odoo's "2006-01-02 15:04:05" UTC, or RFC 3339).
func parseTime(s string) time.Time {
	for _, layout := range []string{"2006-01-02 15:04:05", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// counterValue reads a counter's total from the registry (the delivery engine keeps its counts
// only as metrics).
func counterValue(reg *prometheus.Registry, name string) float64 {
	families, err := reg.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
