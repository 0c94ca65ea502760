package daemon

import (
	"net/http"

	"github.com/odoopbx/odoopbx/internal/control"
)

// statusHandler answers the CLI's status request on the control socket.
func statusHandler(a *Agent) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, http.StatusOK, a.Status())
	})
}
