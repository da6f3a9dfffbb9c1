package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/xueliang/xl/central/internal/store"
)

// Egress is what the delivery routes need: messages to agencies and a way
// to send a dead one again.
type Egress interface {
	ListEgress(ctx context.Context, f store.EgressFilter) ([]store.Egress, error)
	RetryEgress(ctx context.Context, id int64, now time.Time) error
}

// WithEgress adds the delivery routes; notify wakes the sender after a
// retry.
func (a *API) WithEgress(e Egress, notify func()) *API {
	a.eg, a.egNotify = e, notify
	return a
}

func (a *API) registerEgress(mux *http.ServeMux) {
	if a.eg == nil {
		return
	}
	a.handle(mux, "GET /api/v1/egress", staffRoles, a.listEgress)
	a.handle(mux, "POST /api/v1/egress/{id}/retry", opsRoles, a.retryEgress)
}

func (a *API) listEgress(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := store.EgressFilter{State: q.Get("state"), OrderID: q.Get("order_id"), Limit: limit}
	switch f.State {
	case "", store.EgressPending, store.EgressDelivered, store.EgressDead:
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "state must be pending, delivered or dead")
		return
	}
	list, err := a.eg.ListEgress(r.Context(), f)
	if err != nil {
		a.storeError(w, "egress", err)
		return
	}
	if list == nil {
		list = []store.Egress{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"egress": list})
}

func (a *API) retryEgress(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "id must be a number")
		return
	}
	switch err := a.eg.RetryEgress(r.Context(), id, time.Now()); {
	case err == nil:
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "not_dead", "message "+r.PathValue("id")+" is not a dead letter (or does not exist)")
		return
	default:
		a.storeError(w, "egress", err)
		return
	}
	if a.egNotify != nil {
		a.egNotify()
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "state": store.EgressPending})
}

// getOrder shows one order and, when the delivery routes are on, what was
// sent to its agency.
func (a *API) getOrder(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.visibleOrder(w, r)
	if !ok {
		return
	}
	out := map[string]any{"order": orderView(rec)}
	// The incident's place and time, for a field unit that cannot list
	// incidents, and the first alert's snapshot.
	if inc, err := a.inc.GetIncident(r.Context(), rec.Order.IncidentID); err == nil {
		out["incident"] = inc
		if alerts, err := a.inc.IncidentAlerts(r.Context(), inc.ID, 1); err == nil && len(alerts) > 0 {
			first, err := a.r.GetAlert(r.Context(), alerts[0].Alert.AlertID) // with its evidence
			if err != nil {
				first = alerts[0]
			}
			v := view(first)
			out["first_alert"] = map[string]any{"alert_id": v.AlertID, "site": v.Site, "geo": v.Geo, "detected_at": v.DetectedAt,
				"snapshot_url": orderSnapshotURL(rec.Order.ID, v.SnapshotURL)}
		}
	}
	if p, ok := principalOf(r); a.eg != nil && (!ok || p.User.Role != store.RoleAgency) {
		list, err := a.eg.ListEgress(r.Context(), store.EgressFilter{OrderID: rec.Order.ID, Limit: 100})
		if err != nil {
			a.storeError(w, "egress", err)
			return
		}
		if list == nil {
			list = []store.Egress{}
		}
		out["deliveries"] = list
	}
	writeJSON(w, http.StatusOK, out)
}
