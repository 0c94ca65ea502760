package delivery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/odoopbx/odoopbx/internal/control"
)

// QueueStatus is the answer to GET /queue.
type QueueStatus struct {
	StoreStats
	LanesBusy int64       `json:"lanes_busy"`
	Odoo      string      `json:"odoo"`
	Paused    bool        `json:"paused"`
	PerLane   []LaneStats `json:"per_lane"`
}

// RetryRequest is the body of POST /queue/retry: an id, or all.
type RetryRequest struct {
	ID  json.RawMessage `json:"id,omitempty"` // a string or a number
	All bool            `json:"all,omitempty"`
}

// DropRequest is the body of POST /queue/drop.
type DropRequest struct {
	ID json.RawMessage `json:"id"`
}

// ChangeResult answers retry and drop: the ids moved or removed.
type ChangeResult struct {
	IDs []string `json:"ids"`
}

// ParseRequestID accepts "42" and 42.
func ParseRequestID(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", errors.New("delivery: an id is required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, nil
	}
	var n uint64
	if json.Unmarshal(raw, &n) == nil && n > 0 {
		return strconv.FormatUint(n, 10), nil
	}
	return "", fmt.Errorf("delivery: bad id %s", raw)
}

// Status is what GET /queue answers.
func (e *Engine) Status() QueueStatus {
	return QueueStatus{StoreStats: e.cfg.Spool.Stats(), LanesBusy: e.busy.Load(), Odoo: e.odooState.Load().(string),
		Paused: e.paused.Load(), PerLane: e.cfg.Spool.LaneStats()}
}

// Retry moves a dead letter (or all) back to its lane and schedules it.
func (e *Engine) Retry(req RetryRequest) (ChangeResult, error) {
	var items []Item
	if req.All {
		var err error
		items, err = e.cfg.Spool.RetryAll()
		if err != nil && len(items) == 0 {
			return ChangeResult{}, err
		}
	} else {
		id, err := ParseRequestID(req.ID)
		if err != nil {
			return ChangeResult{}, err
		}
		it, err := e.cfg.Spool.Retry(id)
		if err != nil {
			return ChangeResult{}, err
		}
		items = []Item{it}
	}
	e.wakeLanes(items)
	res := ChangeResult{IDs: []string{}}
	for _, it := range items {
		res.IDs = append(res.IDs, it.ID)
	}
	return res, nil
}

// ControlRoutes mounts GET /queue, GET /queue/dead, POST /queue/retry and POST /queue/drop.
func (e *Engine) ControlRoutes(srv *control.Server) {
	srv.Handle("GET /queue", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, e.Status())
	}))
	srv.Handle("GET /queue/dead", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dead, err := e.cfg.Spool.DeadItems()
		if err != nil {
			control.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if dead == nil {
			dead = []DeadItem{}
		}
		control.WriteJSON(w, http.StatusOK, dead)
	}))
	srv.Handle("POST /queue/retry", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req RetryRequest
		if err := decodeBody(r, &req); err != nil {
			control.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		res, err := e.Retry(req)
		if err != nil {
			control.WriteError(w, statusOf(err), err.Error())
			return
		}
		control.WriteJSON(w, http.StatusOK, res)
	}))
	srv.Handle("POST /queue/drop", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req DropRequest
		if err := decodeBody(r, &req); err != nil {
			control.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		id, err := ParseRequestID(req.ID)
		if err != nil {
			control.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := e.cfg.Spool.Drop(id); err != nil {
			control.WriteError(w, statusOf(err), err.Error())
			return
		}
		control.WriteJSON(w, http.StatusOK, ChangeResult{IDs: []string{id}})
	}))
}

func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("delivery: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("delivery: bad request body: %w", err)
	}
	return nil
}

func statusOf(err error) int {
	if errors.Is(err, ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}
