package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/odoopbx/odoopbx/internal/admin"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/control"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/spool"
)

// queueCmd inspects and repairs the delivery spool: through the running agent's control socket
// when it answers, else by opening the spool directly.
func (a *app) queueCmd() *command {
	var all, jsonl bool
	return &command{
		name:    "queue",
		summary: "show the delivery spool: pending items per lane, dead letters, bytes",
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("queue: unknown command %q (dead, retry, drop)", args[0])}
			}
			return a.queueStatus(ctx)
		},
		subs: []*command{
			{
				name:    "dead",
				summary: "list the dead letters: id, origin, target, attempts, last error",
				setup: func(fs *flag.FlagSet) {
					fs.BoolVar(&jsonl, "jsonl", false, "print whole items as JSON lines (to save or replay them)")
				},
				run: func(ctx context.Context, args []string) error {
					if len(args) > 0 {
						return usageError{"queue dead: takes no arguments"}
					}
					return a.queueDead(ctx, jsonl)
				},
			},
			{
				name:    "retry",
				usage:   "ID | --all",
				summary: "move a dead letter (or all of them) back to its lane for delivery",
				setup:   func(fs *flag.FlagSet) { fs.BoolVar(&all, "all", false, "retry every dead letter") },
				run: func(ctx context.Context, args []string) error {
					if all == (len(args) == 1) || len(args) > 1 {
						return usageError{"queue retry: give one ID or --all"}
					}
					req := delivery.RetryRequest{All: all}
					if !all {
						req.ID = []byte(`"` + strings.TrimSpace(args[0]) + `"`)
						if _, err := spool.ParseID(args[0]); err != nil {
							return usageError{err.Error()}
						}
					}
					return a.queueRetry(ctx, req)
				},
			},
			{
				name:    "drop",
				usage:   "ID",
				summary: "delete a dead letter (or a pending item) for good",
				run: func(ctx context.Context, args []string) error {
					if len(args) != 1 {
						return usageError{"queue drop: give one ID"}
					}
					if _, err := spool.ParseID(args[0]); err != nil {
						return usageError{err.Error()}
					}
					return a.queueDrop(ctx, args[0])
				},
			},
		},
	}
}

// withQueue runs online against the agent, or offline on the spool when no agent answers.
func (a *app) withQueue(ctx context.Context, online func(stateDir string) error, offline func(sp *spool.Spool) error) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	err = online(cfg.StateDir)
	if !errors.Is(err, control.ErrNoDaemon) {
		return err
	}
	sp, err := openSpool(cfg)
	if err != nil {
		return err
	}
	defer sp.Close()
	return offline(sp)
}

func openSpool(cfg config.Config) (*spool.Spool, error) {
	sp, err := spool.Open(cfg.Spool.Dir, spool.Options{MaxBytes: cfg.Spool.MaxBytes, MaxAge: cfg.Spool.MaxAge.D()})
	if errors.Is(err, spool.ErrLocked) {
		return nil, fmt.Errorf("queue: the spool %s is held by a running agent whose control socket does not answer: %w", cfg.Spool.Dir, err)
	}
	return sp, err
}

func (a *app) queueStatus(ctx context.Context) error {
	var st delivery.QueueStatus
	online := true
	err := a.withQueue(ctx,
		func(stateDir string) error { return control.Call(ctx, stateDir, "GET", "/queue", nil, &st) },
		func(sp *spool.Spool) error {
			online = false
			st = delivery.QueueStatus{StoreStats: sp.Stats(), PerLane: sp.LaneStats()}
			return nil
		})
	if err != nil {
		return err
	}
	w := a.stdout
	fmt.Fprintf(w, "pending:  %d items in %d lanes\n", st.Pending, st.Lanes)
	fmt.Fprintf(w, "dead:     %d\n", st.Dead)
	if st.MaxBytes > 0 {
		fmt.Fprintf(w, "bytes:    %s of %s\n", admin.FormatBytes(st.Bytes), admin.FormatBytes(st.MaxBytes))
	} else {
		fmt.Fprintf(w, "bytes:    %s\n", admin.FormatBytes(st.Bytes))
	}
	if online {
		state := st.Odoo
		if st.Paused {
			state += ", delivery paused"
		}
		fmt.Fprintf(w, "refused:  %d since start\n", st.Refused)
		fmt.Fprintf(w, "busy:     %d lanes\n", st.LanesBusy)
		fmt.Fprintf(w, "odoo:     %s\n", state)
	} else {
		fmt.Fprintln(w, "agent:    not running (read from the spool)")
	}
	if len(st.PerLane) == 0 {
		return nil
	}
	const maxLanes = 20
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LANE\tPENDING\tOLDEST\tHEAD ID")
	for i, l := range st.PerLane {
		if i == maxLanes {
			fmt.Fprintf(tw, "... %d more lanes\t\t\t\n", len(st.PerLane)-maxLanes)
			break
		}
		fmt.Fprintf(tw, "%s\t%d\t%s ago\t%s\n", l.Lane, l.Pending, time.Since(l.Oldest).Round(time.Second), l.HeadID)
	}
	return tw.Flush()
}

func (a *app) queueDead(ctx context.Context, jsonl bool) error {
	var dead []delivery.DeadItem
	err := a.withQueue(ctx,
		func(stateDir string) error { return control.Call(ctx, stateDir, "GET", "/queue/dead", nil, &dead) },
		func(sp *spool.Spool) error {
			var err error
			dead, err = sp.DeadItems()
			return err
		})
	if err != nil {
		return err
	}
	if jsonl {
		enc := json.NewEncoder(a.stdout)
		for _, d := range dead {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	if len(dead) == 0 {
		fmt.Fprintln(a.stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEAD AT\tORIGIN\tLANE\tTARGET\tATTEMPTS\tREASON\tLAST ERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s.%s\t%d\t%s\t%s\n", d.ID, d.DeadAt.Local().Format(time.DateTime), orDash(d.Origin),
			d.Lane, d.Model, d.Method, d.Attempts, oneLine(d.Reason, 60), oneLine(d.LastError, 120))
	}
	return tw.Flush()
}

func (a *app) queueRetry(ctx context.Context, req delivery.RetryRequest) error {
	var res delivery.ChangeResult
	err := a.withQueue(ctx,
		func(stateDir string) error { return control.Call(ctx, stateDir, "POST", "/queue/retry", req, &res) },
		func(sp *spool.Spool) error {
			var items []delivery.Item
			var err error
			if req.All {
				items, err = sp.RetryAll()
			} else {
				var id string
				if id, err = delivery.ParseRequestID(req.ID); err == nil {
					var it delivery.Item
					it, err = sp.Retry(id)
					items = []delivery.Item{it}
				}
			}
			for _, it := range items {
				if it.ID != "" {
					res.IDs = append(res.IDs, it.ID)
				}
			}
			return err
		})
	if err != nil {
		return err
	}
	if len(res.IDs) == 0 {
		fmt.Fprintln(a.stdout, "no dead letters to retry")
		return nil
	}
	fmt.Fprintf(a.stdout, "moved back to their lanes: %s\n", strings.Join(res.IDs, " "))
	return nil
}

func (a *app) queueDrop(ctx context.Context, id string) error {
	err := a.withQueue(ctx,
		func(stateDir string) error {
			return control.Call(ctx, stateDir, "POST", "/queue/drop", delivery.DropRequest{ID: []byte(`"` + id + `"`)}, nil)
		},
		func(sp *spool.Spool) error { return sp.Drop(id) })
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "dropped %s\n", id)
	return nil
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max-1] + "…"
	}
	return orDash(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
