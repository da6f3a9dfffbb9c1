// Package dispatch turns stored alerts into incidents and disposal orders:
// it groups an alert with the open incident of its (camera, type, zone),
// routes new incidents, creates one order per assigned agency, applies
// commands to orders, fires the orders' SLA timers, and audits every change
// in the same transaction as the change itself.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// Store is what the dispatcher needs from central's store.
type Store interface {
	InTx(ctx context.Context, fn func(store.Tx) error) error
	UndispatchedAlerts(ctx context.Context, limit int) ([]*wire.Alert, error)
	DueTimers(ctx context.Context, now time.Time, limit int) ([]string, error)
	NextTimer(ctx context.Context) (time.Time, bool, error)
}

// Actors recorded in the audit log for changes made by central itself.
const (
	ActorDispatcher   = "xl-central/dispatch"
	ActorTimer        = "xl-central/sla-timer"
	ActorAutoDispatch = "xl-central/auto-dispatch"
)

// Audit entity names.
const (
	EntityIncident = "incident"
	EntityOrder    = "order"
)

// Dispatcher creates and changes incidents and orders. It is safe for
// concurrent use; the store serialises its transactions.
type Dispatcher struct {
	st     Store
	router *routing.Router
	window time.Duration
	now    func() time.Time
	log    *slog.Logger
	m      *metrics
	wake   chan struct{}
	stored chan struct{} // new alerts wait in the store
	// publicURL is central's address as agencies reach it (links in
	// orders); onEgress is told when messages to agencies were queued.
	publicURL string
	onEgress  func()
}

type metrics struct {
	dispatched prometheus.Counter
	failed     prometheus.Counter
	incidents  prometheus.Counter
	orders     prometheus.Counter
	cards      *prometheus.CounterVec
	latency    prometheus.Histogram
}

// Options configures a Dispatcher.
type Options struct {
	Window time.Duration    // incident window; default 10 minutes
	Now    func() time.Time // clock; default time.Now
	Reg    prometheus.Registerer
	Log    *slog.Logger
	// PublicURL is central's base URL as agencies reach it, for the links
	// in their orders; empty: no links.
	PublicURL string
	// OnEgress is called after a change queued messages to agencies.
	OnEgress func()
}

// New is a dispatcher over st routing with r.
func New(st Store, r *routing.Router, opt Options) *Dispatcher {
	if opt.Window <= 0 {
		opt.Window = 10 * time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Reg == nil {
		opt.Reg = prometheus.NewRegistry()
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(opt.Reg)
	d := &Dispatcher{
		st: st, router: r, window: opt.Window, now: opt.Now, log: opt.Log.With("component", "dispatch"),
		wake: make(chan struct{}, 1), stored: make(chan struct{}, 1), publicURL: opt.PublicURL, onEgress: opt.OnEgress,
		m: &metrics{
			dispatched: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_dispatch_alerts_total",
				Help: "Alerts grouped into incidents."}),
			failed: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_dispatch_failures_total",
				Help: "Stored alerts the dispatcher failed to group into an incident."}),
			incidents: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_incidents_created_total",
				Help: "Incidents created."}),
			orders: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_orders_created_total",
				Help: "Disposal orders created."}),
			cards: f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_sla_cards_total",
				Help: "SLA cards raised by the timers, by card (each is a breached SLA deadline)."}, []string{"card"}),
			latency: f.NewHistogram(prometheus.HistogramOpts{Name: "xl_central_alert_detect_to_dispatched_seconds",
				Help:    "From an alert's detected_at to its grouping into an incident with its orders.",
				Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12)}),
		},
	}
	for c := order.CardBlue; c <= order.CardRed; c++ { // series from zero, for rules
		d.m.cards.WithLabelValues(c.String())
	}
	return d
}

// Result is what dispatching one alert did.
type Result struct {
	IncidentID string
	Created    bool // a new incident
	Duplicate  bool // the alert had been dispatched before: nothing changed
	Orders     []string
}

func newID() string { return ulid.Make().String() }

// activity is the part of an incident an added alert changes.
type activity struct {
	AlertCount   int64     `json:"alert_count"`
	FirstAlertAt time.Time `json:"first_alert_at"`
	LastAlertAt  time.Time `json:"last_alert_at"`
	Severity     int       `json:"severity"`
	Version      int64     `json:"version"`
}

func alertActivity(inc store.Incident) activity {
	return activity{AlertCount: int64(inc.AlertCount), FirstAlertAt: inc.FirstAlertAt, LastAlertAt: inc.LastAlertAt, Severity: inc.Severity, Version: inc.Version}
}

func snapshot(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("dispatch: audit snapshot: %v", err)) // only our own types are passed
	}
	return b
}

// HandleStored dispatches alerts that were just stored for the first time
// (the intake's hook). A failure is logged and counted: the alert itself is
// stored and stays visible; it is not retried here.
func (d *Dispatcher) HandleStored(ctx context.Context, alerts []*wire.Alert) {
	// One transaction for the whole batch: a burst costs one commit, not
	// one per alert, and an incident that gains many alerts is updated and
	// audited once. If any alert fails, the batch is rolled back and the
	// alerts are dispatched one by one, so the others still land.
	results := make([]Result, len(alerts))
	ids := make([]string, len(alerts))
	for i, a := range alerts {
		ids[i] = a.AlertID
	}
	err := d.st.InTx(ctx, func(tx store.Tx) error {
		linked, err := tx.IncidentsOfAlerts(ids)
		if err != nil {
			return err
		}
		b := &batch{tx: tx, open: make(map[incidentKey]*joined), linked: linked}
		for i, a := range alerts {
			results[i] = Result{}
			if err := d.dispatchTx(b, a, &results[i]); err != nil {
				return fmt.Errorf("alert %s: %w", a.AlertID, err)
			}
		}
		if err := d.flush(b); err != nil {
			return err
		}
		return tx.MarkDispatched(ids)
	})
	if err == nil {
		for i, r := range results {
			d.count(r)
			d.observeLatency(alerts[i], r)
		}
		return
	}
	d.log.Warn("batch dispatch failed; dispatching alert by alert", "alerts", len(alerts), "err", err)
	for _, a := range alerts {
		if _, err := d.Dispatch(ctx, a); err != nil {
			d.m.failed.Inc()
			d.log.Error("dispatch failed; the alert is stored but in no incident", "alert_id", a.AlertID, "err", err)
			// Not retried: one bad alert must not stop the queue.
			if err := d.st.InTx(ctx, func(tx store.Tx) error { return tx.MarkDispatched([]string{a.AlertID}) }); err != nil {
				d.log.Error("mark dispatched", "alert_id", a.AlertID, "err", err)
			}
		}
	}
}

// incidentKey is what groups alerts into one incident.
type incidentKey struct{ camera, typ, zone string }

// joined is an open incident that alerts of the current batch joined: the
// alerts are linked at once, the incident is stored and audited once when
// the batch ends.
type joined struct {
	inc      store.Incident // as it will be stored
	before   store.Incident // as stored before this batch
	alertIDs []string       // joined in this batch, in order
}

// batch is the state of one dispatch transaction.
type batch struct {
	tx     store.Tx
	linked map[string]string       // alert → incident, for alerts dispatched before
	open   map[incidentKey]*joined // the latest incident of each key
	all    []*joined               // every incident joined, in order (a key may have two)
}

func (b *batch) track(k incidentKey, j *joined) {
	b.open[k] = j
	b.all = append(b.all, j)
}

// latest is the most recent incident of a key as this batch sees it.
func (b *batch) latest(k incidentKey) (store.Incident, *joined, bool, error) {
	if j, ok := b.open[k]; ok {
		return j.inc, j, true, nil
	}
	inc, ok, err := b.tx.LatestIncident(k.camera, k.typ, k.zone)
	return inc, nil, ok, err
}

// flush stores and audits the incidents that alerts of the batch joined.
func (d *Dispatcher) flush(b *batch) error {
	now := d.now().UTC()
	for _, j := range b.all {
		if len(j.alertIDs) == 0 {
			continue
		}
		prev := j.before.Version
		j.inc.Version = prev + 1
		j.inc.UpdatedAt = now
		if err := b.tx.UpdateIncident(j.inc, prev); err != nil {
			return err
		}
		// A burst adds many alerts to one incident: the audit records what
		// they changed and which alerts they were, not the incident again.
		after := struct {
			activity
			AlertIDs []string `json:"alert_ids"`
		}{alertActivity(j.inc), j.alertIDs}
		if _, err := b.tx.AppendAudit(audit.Entry{At: now, Actor: ActorDispatcher, Entity: EntityIncident, EntityID: j.inc.ID,
			Action: "alerts_added", Before: snapshot(alertActivity(j.before)), After: snapshot(after)}); err != nil {
			return err
		}
		j.before, j.alertIDs = j.inc, nil
	}
	return nil
}

// NotifyStored tells the dispatcher that new alerts wait in the store.
func (d *Dispatcher) NotifyStored() {
	select {
	case d.stored <- struct{}{}:
	default:
	}
}

// dispatchBatch is how many stored alerts one transaction dispatches.
const dispatchBatch = 500

// DrainAlerts dispatches every alert waiting in the store, in arrival
// order, a batch per transaction; it returns how many it handled.
func (d *Dispatcher) DrainAlerts(ctx context.Context) (int, error) {
	n := 0
	for ctx.Err() == nil {
		alerts, err := d.st.UndispatchedAlerts(ctx, dispatchBatch)
		if err != nil {
			return n, err
		}
		if len(alerts) == 0 {
			return n, nil
		}
		d.HandleStored(ctx, alerts)
		n += len(alerts)
	}
	return n, ctx.Err()
}

// drainLoop dispatches stored alerts whenever intake says there are new
// ones, and every second in case a notice was missed (or central restarted
// with alerts waiting).
func (d *Dispatcher) drainLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if _, err := d.DrainAlerts(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("dispatch queue", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.stored:
		case <-tick.C:
		}
	}
}

func (d *Dispatcher) count(res Result) {
	if !res.Duplicate {
		d.m.dispatched.Inc()
	}
	if res.Created {
		d.m.incidents.Inc()
		d.m.orders.Add(float64(len(res.Orders)))
		d.Wake()
		d.egressQueued()
	}
}

// Dispatch adds a stored alert to its incident, creating, routing and
// ordering a new incident when none is open, in one transaction. Dispatching
// the same alert again changes nothing.
func (d *Dispatcher) Dispatch(ctx context.Context, a *wire.Alert) (Result, error) {
	var res Result
	err := d.st.InTx(ctx, func(tx store.Tx) error {
		res = Result{}
		linked, err := tx.IncidentsOfAlerts([]string{a.AlertID})
		if err != nil {
			return err
		}
		b := &batch{tx: tx, open: make(map[incidentKey]*joined), linked: linked}
		if err := d.dispatchTx(b, a, &res); err != nil {
			return err
		}
		if err := d.flush(b); err != nil {
			return err
		}
		return tx.MarkDispatched([]string{a.AlertID})
	})
	if err != nil {
		return Result{}, fmt.Errorf("dispatch alert %s: %w", a.AlertID, err)
	}
	d.count(res)
	d.observeLatency(a, res)
	return res, nil
}

// observeLatency records how long after its detection an alert was put into
// an incident with its orders (a redelivered alert is not counted again).
func (d *Dispatcher) observeLatency(a *wire.Alert, res Result) {
	if res.Duplicate || a.DetectedAt.IsZero() {
		return
	}
	d.m.latency.Observe(max(0, d.now().Sub(a.DetectedAt).Seconds()))
}

// dispatchTx is Dispatch inside the caller's batch.
func (d *Dispatcher) dispatchTx(b *batch, a *wire.Alert, res *Result) error {
	tx := b.tx
	if id, ok := b.linked[a.AlertID]; ok {
		res.IncidentID, res.Duplicate = id, true
		return nil
	}
	b.linked[a.AlertID] = "" // a repeat later in the batch is a duplicate
	now := d.now().UTC()
	at := a.DetectedAt.UTC()
	k := incidentKey{a.CameraID, a.Type, a.Zone}
	inc, j, ok, err := b.latest(k)
	if err != nil {
		return err
	}
	if ok && !inc.Closed() && at.Sub(inc.LastAlertAt) <= d.window {
		if j == nil {
			j = &joined{inc: inc, before: inc}
			b.track(k, j)
		}
		j.inc.AlertCount++
		if at.After(j.inc.LastAlertAt) {
			j.inc.LastAlertAt = at
		}
		if at.Before(j.inc.FirstAlertAt) {
			j.inc.FirstAlertAt = at
		}
		if a.Severity > 0 && a.Severity < j.inc.Severity {
			j.inc.Severity = a.Severity
		}
		j.alertIDs = append(j.alertIDs, a.AlertID)
		if err := tx.LinkAlert(j.inc.ID, a.AlertID, at); err != nil {
			return err
		}
		res.IncidentID = j.inc.ID
		return nil
	}
	created, err := d.create(tx, a, now, res)
	if err != nil {
		return err
	}
	// Later alerts of the batch join the new incident.
	b.track(k, &joined{inc: created, before: created})
	return nil
}

func (d *Dispatcher) create(tx store.Tx, a *wire.Alert, now time.Time, res *Result) (store.Incident, error) {
	at := a.DetectedAt.UTC()
	dec := d.router.Route(a, at)
	inc := store.Incident{
		ID: newID(), CameraID: a.CameraID, Type: a.Type, Zone: a.Zone, Grid: dec.Grid,
		Severity: a.Severity, FirstAlertAt: at, LastAlertAt: at, AlertCount: 1,
		Rule: dec.Rule, SLAProfile: dec.SLAProfile, Why: dec.Why,
		CreatedAt: now, UpdatedAt: now, Version: 1,
	}
	if last, ok, err := tx.LastClosedIncident(a.CameraID, a.Type, a.Zone); err != nil {
		return store.Incident{}, err
	} else if ok {
		inc.RecurrenceOf = last.ID
	}
	var recs []store.OrderRecord
	for i, agency := range dec.Agencies() {
		role := order.RoleSupport
		if i == 0 {
			role = order.RoleLead
		}
		rec := store.OrderRecord{Order: order.New(newID(), inc.ID, agency, role, now), SLAProfile: dec.SLAProfile}
		if dec.Auto {
			o, _, err := order.Apply(rec.Order, order.Command{ID: "auto:" + rec.Order.ID, Action: order.ActionDispatch,
				ExpectedVersion: rec.Order.Version, Actor: ActorDispatcher}, now)
			if err != nil {
				return store.Incident{}, err
			}
			rec.Order = o
		} else if dec.AutoAfter > 0 {
			rec.AutoDispatchAt = now.Add(dec.AutoAfter)
		}
		rec.NextTimerAt = d.nextTimer(rec, now)
		recs = append(recs, rec)
	}
	inc.State = order.Rollup(orders(recs))
	if err := tx.InsertIncident(inc); err != nil {
		return store.Incident{}, err
	}
	if err := tx.LinkAlert(inc.ID, a.AlertID, at); err != nil {
		return store.Incident{}, err
	}
	action := "created"
	if inc.RecurrenceOf != "" {
		action = "created:recurrence"
	}
	if _, err := tx.AppendAudit(audit.Entry{At: now, Actor: ActorDispatcher, Entity: EntityIncident, EntityID: inc.ID,
		Action: action, After: snapshot(inc)}); err != nil {
		return store.Incident{}, err
	}
	for _, rec := range recs {
		if err := tx.InsertOrder(rec); err != nil {
			return store.Incident{}, err
		}
		if _, err := tx.AppendAudit(audit.Entry{At: now, Actor: ActorDispatcher, Entity: EntityOrder, EntityID: rec.Order.ID,
			Action: "created:" + string(rec.Order.State), After: snapshot(rec)}); err != nil {
			return store.Incident{}, err
		}
		if rec.Order.State == order.StateDispatched {
			if err := d.announce(tx, rec.Order.AgencyID, d.orderMessage(rec, inc, wire.OrderDispatched, now)); err != nil {
				return store.Incident{}, err
			}
		}
		res.Orders = append(res.Orders, rec.Order.ID)
	}
	res.IncidentID, res.Created = inc.ID, true
	return inc, nil
}

func orders(recs []store.OrderRecord) []order.Order {
	out := make([]order.Order, len(recs))
	for i, r := range recs {
		out[i] = r.Order
	}
	return out
}

// sla is the SLA of a stored order; a profile no longer configured has no
// deadlines.
func (d *Dispatcher) sla(rec store.OrderRecord) order.SLA {
	if p, ok := d.router.Profile(rec.SLAProfile); ok {
		return p.SLA()
	}
	return order.SLA{}
}

// nextTimer is when the timers must look at rec again: its auto-dispatch
// while pending, now when a card is due, else the next card change.
func (d *Dispatcher) nextTimer(rec store.OrderRecord, now time.Time) time.Time {
	o := rec.Order
	if o.State == order.StatePending {
		return rec.AutoDispatchAt
	}
	if o.State.Terminal() {
		return time.Time{}
	}
	st, due := order.Due(o, d.sla(rec), now)
	if due {
		return now
	}
	return st.Next
}

// ErrForbiddenAction is returned by Transition for actions only central
// itself takes (raise_card).
var ErrForbiddenAction = errors.New("dispatch: this action is taken by central's timers only")

// Transition applies a command to an order, rolls the incident's state up
// and audits both, in one transaction. A retried command (same ID and
// action) returns the order unchanged. Errors match order.ErrConflict,
// order.ErrInvalidTransition, order.ErrInvalidCommand,
// order.ErrCommandReused, store.ErrNotFound or ErrForbiddenAction.
func (d *Dispatcher) Transition(ctx context.Context, orderID string, cmd order.Command) (store.OrderRecord, error) {
	if cmd.Action == order.ActionRaiseCard {
		return store.OrderRecord{}, ErrForbiddenAction
	}
	var out store.OrderRecord
	err := d.st.InTx(ctx, func(tx store.Tx) error {
		rec, err := tx.GetOrder(orderID)
		if err != nil {
			return err
		}
		rec, _, err = d.apply(tx, rec, cmd, d.now().UTC(), time.Time{})
		out = rec
		return err
	})
	if err == nil {
		d.Wake()
		d.egressQueued()
	}
	return out, err
}

// apply applies cmd to rec and stores and audits the result and the
// incident's new state. claim, when not zero, makes the update a timer
// claim. changed is false for a retried command.
func (d *Dispatcher) apply(tx store.Tx, rec store.OrderRecord, cmd order.Command, now, claim time.Time) (store.OrderRecord, bool, error) {
	before := rec
	o, ev, err := order.Apply(rec.Order, cmd, now)
	if err != nil {
		return rec, false, err
	}
	if ev.IsZero() {
		return rec, false, nil
	}
	rec.Order = o
	if o.State != order.StatePending {
		rec.AutoDispatchAt = time.Time{}
	}
	rec.NextTimerAt = d.nextTimer(rec, now)
	if err := tx.UpdateOrder(rec, before.Order.Version, claim); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return rec, false, fmt.Errorf("order %s: %w (%w)", o.ID, order.ErrConflict, err)
		}
		return rec, false, err
	}
	action := string(cmd.Action)
	if cmd.Action == order.ActionRaiseCard {
		action += ":" + cmd.Card.String() + ":" + string(cmd.Stage)
	}
	if _, err := tx.AppendAudit(audit.Entry{At: now, Actor: cmd.Actor, Entity: EntityOrder, EntityID: o.ID,
		Action: action, Before: snapshot(before), After: snapshot(rec)}); err != nil {
		return rec, false, err
	}
	if before.Order.State == o.State {
		return rec, true, nil
	}
	inc, err := tx.GetIncident(o.IncidentID)
	if err != nil {
		return rec, false, err
	}
	if ev, ok := stateEvents[o.State]; ok {
		if err := d.announce(tx, o.AgencyID, d.orderMessage(rec, inc, ev, now)); err != nil {
			return rec, false, err
		}
	}
	if o.State == order.StateRejected {
		if err := d.reroute(tx, rec, inc, now); err != nil {
			return rec, false, err
		}
	}
	recs, err := tx.OrdersOf(inc.ID)
	if err != nil {
		return rec, false, err
	}
	if st := order.Rollup(orders(recs)); st != inc.State {
		prev, incBefore := inc.Version, inc
		inc.State, inc.Version, inc.UpdatedAt = st, inc.Version+1, now
		if err := tx.UpdateIncident(inc, prev); err != nil {
			return rec, false, err
		}
		if _, err := tx.AppendAudit(audit.Entry{At: now, Actor: cmd.Actor, Entity: EntityIncident, EntityID: inc.ID,
			Action: "state:" + string(st), Before: snapshot(incBefore), After: snapshot(inc)}); err != nil {
			return rec, false, err
		}
	}
	return rec, true, nil
}
