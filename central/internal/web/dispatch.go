package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
)

// Incidents is what the incident and order routes need.
type Incidents interface {
	ListIncidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error)
	GetIncident(ctx context.Context, id string) (store.Incident, error)
	IncidentAlerts(ctx context.Context, id string, limit int) ([]store.AlertRecord, error)
	OrdersOf(ctx context.Context, incidentID string) ([]store.OrderRecord, error)
	ListOrders(ctx context.Context, agencyID string, limit int) ([]store.OrderRecord, error)
	GetOrder(ctx context.Context, id string) (store.OrderRecord, error)
}

// Transitioner applies commands to orders (the dispatcher).
type Transitioner interface {
	Transition(ctx context.Context, orderID string, cmd order.Command) (store.OrderRecord, error)
}

// WithDispatch adds the incident and order routes (registered by Register).
func (a *API) WithDispatch(inc Incidents, tr Transitioner) *API {
	a.inc, a.tr = inc, tr
	return a
}

func (a *API) registerDispatch(mux *http.ServeMux) {
	if a.inc == nil {
		return
	}
	a.handle(mux, "GET /api/v1/incidents", staffRoles, a.listIncidents)
	a.handle(mux, "GET /api/v1/incidents/{id}", staffRoles, a.getIncident)
	a.handle(mux, "GET /api/v1/orders", anyRole, a.listOrders)
	a.handle(mux, "GET /api/v1/orders/{id}", anyRole, a.getOrder)
	a.handle(mux, "GET /api/v1/orders/{id}/snapshot.jpg", anyRole, a.orderSnapshot)
	if a.tr != nil {
		a.handle(mux, "POST /api/v1/orders/{id}/transitions", []string{store.RoleOfficer, store.RoleAgency, store.RoleAdmin}, a.transition)
	}
	if a.photos != nil {
		a.handle(mux, "GET /api/v1/orders/{id}/photos", anyRole, a.listPhotos)
		a.handle(mux, "POST /api/v1/orders/{id}/photos", []string{store.RoleOfficer, store.RoleAgency, store.RoleAdmin}, a.addPhoto)
		a.handle(mux, "GET /api/v1/orders/{id}/photos/{photo_id}", anyRole, a.getPhoto)
	}
}

// OrderView is an order as the API shows it.
type OrderView struct {
	order.Order
	SLAProfile     string         `json:"sla_profile,omitempty"`
	AutoDispatchAt any            `json:"auto_dispatch_at,omitempty"`
	NextTimerAt    any            `json:"next_timer_at,omitempty"`
	Allowed        []order.Action `json:"allowed"`
}

// ViewOrder is an order as the API (and its live events) show it.
func ViewOrder(r store.OrderRecord) OrderView { return orderView(r) }

func orderView(r store.OrderRecord) OrderView {
	v := OrderView{Order: r.Order, SLAProfile: r.SLAProfile, Allowed: order.Allowed(r.Order.State)}
	if !r.AutoDispatchAt.IsZero() {
		v.AutoDispatchAt = r.AutoDispatchAt
	}
	if !r.NextTimerAt.IsZero() {
		v.NextTimerAt = r.NextTimerAt
	}
	if v.Allowed == nil {
		v.Allowed = []order.Action{}
	}
	return v
}

func orderViews(recs []store.OrderRecord) []OrderView {
	out := make([]OrderView, 0, len(recs))
	for _, r := range recs {
		out = append(out, orderView(r))
	}
	return out
}

func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be 1–"+strconv.Itoa(MaxPageSize))
			return 0, false
		}
		limit = n
	}
	return limit, true
}

func (a *API) listIncidents(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	list, err := a.inc.ListIncidents(r.Context(), store.IncidentFilter{CameraID: q.Get("camera_id"), State: q.Get("state"), Limit: limit})
	if err != nil {
		a.storeError(w, "list incidents", err)
		return
	}
	if list == nil {
		list = []store.Incident{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": list})
}

func (a *API) getIncident(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	inc, err := a.inc.GetIncident(r.Context(), id)
	if err != nil {
		a.storeError(w, "get incident", err)
		return
	}
	alerts, err := a.inc.IncidentAlerts(r.Context(), id, MaxPageSize)
	if err != nil {
		a.storeError(w, "incident alerts", err)
		return
	}
	orders, err := a.inc.OrdersOf(r.Context(), id)
	if err != nil {
		a.storeError(w, "incident orders", err)
		return
	}
	views := make([]AlertView, 0, len(alerts))
	for _, rec := range alerts {
		views = append(views, view(rec))
	}
	writeJSON(w, http.StatusOK, map[string]any{"incident": inc, "alerts": views, "orders": orderViews(orders)})
}

func (a *API) listOrders(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	agency := r.URL.Query().Get("agency_id")
	if p, ok := principalOf(r); ok && p.User.Role == store.RoleAgency {
		agency = p.User.AgencyID // an agency sees only its own orders
	}
	list, err := a.inc.ListOrders(r.Context(), agency, limit)
	if err != nil {
		a.storeError(w, "list orders", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": orderViews(list)})
}

func (a *API) storeError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	a.log.Error(what, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "store error")
}

// TransitionRequest is the body of POST /api/v1/orders/{id}/transitions.
type TransitionRequest struct {
	Action          order.Action `json:"action"`
	ExpectedVersion int64        `json:"expected_version"`
	CommandID       string       `json:"command_id"`
	Note            string       `json:"note"`
	Reason          string       `json:"reason"`
	// Actor is the person acting, when a system's token acts for one; the
	// audit records the authenticated user (and this name after a slash).
	Actor string `json:"actor"`
}

// fieldActions are what an agency's users may do to its orders.
var fieldActions = map[order.Action]bool{order.ActionAccept: true, order.ActionReject: true, order.ActionDepart: true,
	order.ActionArrive: true, order.ActionResolve: true}

// visibleOrder loads an order the caller may see: an agency user gets
// 404 for another agency's order, as if it did not exist.
func (a *API) visibleOrder(w http.ResponseWriter, r *http.Request) (store.OrderRecord, bool) {
	rec, err := a.inc.GetOrder(r.Context(), r.PathValue("id"))
	if err == nil {
		if p, ok := principalOf(r); ok && p.User.Role == store.RoleAgency && rec.Order.AgencyID != p.User.AgencyID {
			err = store.ErrNotFound
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no order "+r.PathValue("id"))
		return rec, false
	}
	if err != nil {
		a.storeError(w, "order", err)
		return rec, false
	}
	return rec, true
}

func (a *API) transition(w http.ResponseWriter, r *http.Request) {
	var body TransitionRequest
	if !decodeJSON(w, r, MaxTransitionBytes, &body, "{action, expected_version, command_id, note, reason, actor}") {
		return
	}
	actor := body.Actor
	if p, ok := principalOf(r); ok {
		if p.User.Role == store.RoleAgency && !fieldActions[body.Action] {
			writeError(w, http.StatusForbidden, "forbidden", "a field unit may accept, reject, depart, arrive and resolve only")
			return
		}
		actor = p.Actor()
		if body.Actor != "" && body.Actor != p.User.Username {
			actor += "/" + body.Actor
		}
	}
	if _, ok := a.visibleOrder(w, r); !ok {
		return
	}
	rec, err := a.tr.Transition(r.Context(), r.PathValue("id"), order.Command{
		ID: body.CommandID, Action: body.Action, ExpectedVersion: body.ExpectedVersion,
		Actor: actor, Note: body.Note, Reason: body.Reason,
	})
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{"order": orderView(rec)})
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no order "+r.PathValue("id"))
	case errors.Is(err, order.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, order.ErrCommandReused):
		writeError(w, http.StatusConflict, "command_reused", err.Error())
	case errors.Is(err, order.ErrInvalidTransition):
		writeError(w, http.StatusUnprocessableEntity, "invalid_transition", err.Error())
	case errors.Is(err, order.ErrInvalidCommand), errors.Is(err, dispatch.ErrForbiddenAction):
		writeError(w, http.StatusUnprocessableEntity, "invalid_command", err.Error())
	default:
		a.log.Error("transition", "order_id", r.PathValue("id"), "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "store error")
	}
}
