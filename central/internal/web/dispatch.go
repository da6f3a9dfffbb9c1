package web

import (
	"context"
	"encoding/json"
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
	mux.HandleFunc("GET /api/v1/incidents", a.listIncidents)
	mux.HandleFunc("GET /api/v1/incidents/{id}", a.getIncident)
	mux.HandleFunc("GET /api/v1/orders", a.listOrders)
	mux.HandleFunc("GET /api/v1/orders/{id}", a.getOrder)
	if a.tr != nil {
		mux.HandleFunc("POST /api/v1/orders/{id}/transitions", a.transition)
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
	list, err := a.inc.ListOrders(r.Context(), r.URL.Query().Get("agency_id"), limit)
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
	Actor           string       `json:"actor"` // until authentication names the caller
}

func (a *API) transition(w http.ResponseWriter, r *http.Request) {
	var body TransitionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body must be {action, expected_version, command_id, note, reason, actor}: "+err.Error())
		return
	}
	rec, err := a.tr.Transition(r.Context(), r.PathValue("id"), order.Command{
		ID: body.CommandID, Action: body.Action, ExpectedVersion: body.ExpectedVersion,
		Actor: body.Actor, Note: body.Note, Reason: body.Reason,
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
