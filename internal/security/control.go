package security

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/control"
)

// Control socket routes for the CLI (odoopbx-agent bans ...).
const (
	RouteBans = "/security/bans"
)

// BanRequest is the body of POST /security/bans.
type BanRequest struct {
	Address string `json:"address"`
	// For is a Go duration or a number of seconds; empty means security_banned_timeout.
	For    string `json:"for,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// UnbanResult is the answer of DELETE /security/bans.
type UnbanResult struct {
	Removed  []string `json:"removed"`
	NotFound []string `json:"not_found"`
}

// BanList is the answer of GET /security/bans.
type BanList struct {
	Enabled   bool      `json:"enabled"`
	Available bool      `json:"available"`
	Bans      []BanView `json:"bans"`
}

// Mount adds the bans routes to the daemon's control socket.
func (e *Engine) Mount(s *control.Server) {
	s.Handle("GET "+RouteBans, http.HandlerFunc(e.serveList))
	s.Handle("POST "+RouteBans, http.HandlerFunc(e.serveBan))
	s.Handle("DELETE "+RouteBans, http.HandlerFunc(e.serveUnban))
}

// ControlHandler serves the same routes on a plain handler (for tests or another mux).
func (e *Engine) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+RouteBans, e.serveList)
	mux.HandleFunc("POST "+RouteBans, e.serveBan)
	mux.HandleFunc("DELETE "+RouteBans, e.serveUnban)
	return mux
}

func (e *Engine) serveList(w http.ResponseWriter, _ *http.Request) {
	bans, err := e.ListBans()
	if err != nil {
		control.WriteError(w, http.StatusConflict, err.Error())
		return
	}
	st := e.Status()
	control.WriteJSON(w, http.StatusOK, BanList{Enabled: st.Enabled, Available: st.Available, Bans: bans})
}

func (e *Engine) serveBan(w http.ResponseWriter, r *http.Request) {
	var req BanRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		control.WriteError(w, http.StatusBadRequest, "security: bad request: "+err.Error())
		return
	}
	p, err := ParsePrefix(req.Address)
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, err := ParseBanDuration(req.For)
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = "manual (cli)"
	}
	v, err := e.Ban(r.Context(), p, ttl, reason)
	if err != nil {
		control.WriteError(w, statusOf(err), err.Error())
		return
	}
	control.WriteJSON(w, http.StatusOK, v)
}

func (e *Engine) serveUnban(w http.ResponseWriter, r *http.Request) {
	addrs := r.URL.Query()["address"]
	if len(addrs) == 0 {
		control.WriteError(w, http.StatusBadRequest, "security: give ?address=ADDR")
		return
	}
	var prefixes []netip.Prefix
	for _, a := range addrs {
		p, err := ParsePrefix(a)
		if err != nil {
			control.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		prefixes = append(prefixes, p)
	}
	removed, notFound, err := e.Unban(r.Context(), prefixes)
	if err != nil {
		control.WriteError(w, statusOf(err), err.Error())
		return
	}
	res := UnbanResult{Removed: removed, NotFound: notFound}
	if res.Removed == nil {
		res.Removed = []string{}
	}
	if res.NotFound == nil {
		res.NotFound = []string{}
	}
	control.WriteJSON(w, http.StatusOK, res)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrDisabled):
		return http.StatusConflict
	case errors.Is(err, ErrNeverBanned), errors.Is(err, ErrInvalidBan):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// ParseBanDuration reads a --for value: "" (the default length), a Go duration or seconds.
func ParseBanDuration(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return 0, errors.New("security: ban time " + err.Error())
	}
	if d.D() < time.Second {
		return 0, errors.New("security: ban time must be at least one second")
	}
	return d.D(), nil
}
