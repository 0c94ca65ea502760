package forwarder

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/eventmap"
)

// OnEventsConnected runs after every (re)connect of the events session (the lead wires it to
// ami.ClientConfig.OnEventsConnected). It lists the live channels with CoreShowChannels and feeds
// the map the synthetic AgentChannelsSnapshot event (contract §3.6), so Odoo can close the
// channels and calls whose Hangup was missed while the session was down.
//
// The snapshot's EventTime is when CoreShowChannels was sent, not when its reply came: a channel
// created after that instant is not in the list, and Odoo must only close channels older than the
// snapshot's EventTime.
//
// If the listing fails, no snapshot is sent: an empty list would close every call in Odoo.
func (f *Forwarder) OnEventsConnected(ctx context.Context, gap time.Duration) {
	if f.cfg.AMI == nil || !f.waitForMap(ctx) {
		return
	}
	sent := f.cfg.Now()
	uniqueids, err := f.liveChannels(ctx)
	if err != nil {
		f.metrics.snapshots.WithLabelValues("failed").Inc()
		f.log.Warn("forwarder: no channels snapshot after reconnect", "gap", gap, "err", err)
		return
	}
	live := make(map[string]bool, len(uniqueids))
	for _, id := range uniqueids {
		live[id] = true
	}
	f.lanes.keepOnly(live, sent)
	f.view.keepOnly(live)

	ev := eventmap.NewEvent(6)
	ev.Set("Event", SnapshotEvent)
	ev.Set(FieldUniqueids, uniqueids) // always a list, even of one or none
	ev.Set(FieldGapSeconds, gap.Seconds())
	ev, eventID := f.enrich(ev, "", sent)

	f.eventsIn.Add(1)
	f.metrics.eventsIn.Inc()
	rows, condErrs := f.cfg.Map.Match(eventmap.SourceAMI, SnapshotEvent, ev)
	if condErrs > 0 {
		f.conditionErrors.Add(uint64(condErrs))
		f.metrics.conditionErrors.Add(float64(condErrs))
	}
	lane := "event:" + SnapshotEvent
	outcome := OutcomeNoHandler
	if len(rows) > 0 {
		outcome = OutcomeEnqueued
		f.matched.Add(1)
		f.metrics.matched.Inc()
	}
	slot := f.view.record(RecentEvent{Time: sent, Name: SnapshotEvent, Lane: lane, AgentEventID: eventID,
		Handlers: len(rows), ConditionErrors: condErrs, Outcome: outcome})
	f.metrics.snapshots.WithLabelValues("sent").Inc()
	f.log.Info("forwarder: channels snapshot", "channels", len(uniqueids), "gap", gap, "handlers", len(rows))
	if len(rows) == 0 {
		return
	}
	items := appendItems(nil, rows, ev, lane, "event:"+SnapshotEvent, sent)
	f.enqueue(ctx, items, []pending{{slot: slot, eventID: eventID, items: len(items)}})
}

// liveChannels returns the Uniqueid of every channel CoreShowChannels lists (a list, maybe empty).
func (f *Forwarder) liveChannels(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotActionTTL)
	defer cancel()
	replies, err := f.cfg.AMI.Do(ctx, ami.NewMessage("Action", "CoreShowChannels"))
	if err != nil {
		return nil, err
	}
	if len(replies) == 0 {
		return nil, errors.New("forwarder: CoreShowChannels: empty reply")
	}
	if replies[0].IsError() {
		return nil, errors.New("forwarder: CoreShowChannels: " + replies[0].Get("Message"))
	}
	uniqueids := []string{}
	for _, r := range replies[1:] {
		if !strings.EqualFold(r.Event(), "CoreShowChannel") {
			continue
		}
		if id := r.Get("Uniqueid"); usable(id) {
			uniqueids = append(uniqueids, strings.Clone(id))
		}
	}
	return uniqueids, nil
}
