package dispatch

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// stateEvents are the order states an agency is told about when central
// (an officer or the timers) moves an order into them. Agencies' own
// actions (accept, arrive, …) are not echoed back to them.
var stateEvents = map[order.State]string{
	order.StateDispatched: wire.OrderDispatched,
	order.StateCancelled:  wire.OrderCancelled,
	order.StateFalseAlarm: wire.OrderFalseAlarm,
	order.StateClosed:     wire.OrderClosed,
}

// orderMessage is the message that tells agency about rec (the order's
// own agency, or a supervisor for an escalation).
func (d *Dispatcher) orderMessage(rec store.OrderRecord, inc store.Incident, event string, now time.Time) wire.OrderMessage {
	o := rec.Order
	m := wire.OrderMessage{
		Schema: wire.SchemaOrder, Event: event, OrderID: o.ID, IncidentID: o.IncidentID, AgencyID: o.AgencyID,
		Role: string(o.Role), State: string(o.State), Version: o.Version,
		Type: inc.Type, CameraID: inc.CameraID, Zone: inc.Zone, Place: wire.Place{Code: inc.Grid},
		Severity: inc.Severity, DetectedAt: inc.FirstAlertAt, Deadline: rec.NextTimerAt, Reason: o.Reason, At: now,
	}
	if p, ok := d.router.Place(inc.Grid); ok {
		m.Place.NameZH, m.Place.NameEN = p.NameZH, p.NameEN
	}
	if base := strings.TrimRight(d.publicURL, "/"); base != "" {
		m.Links = wire.Links{Console: base + "/", Order: base + "/api/v1/orders/" + o.ID}
	}
	return m
}

// announce queues message m for agency on its MQTT topic and, when it has
// one, its webhook. An agency no longer configured gets nothing (logged).
func (d *Dispatcher) announce(tx store.Tx, agencyID string, m wire.OrderMessage) error {
	ag, ok := d.router.Agency(agencyID)
	if !ok {
		d.log.Warn("no egress: agency not configured", "agency_id", agencyID, "order_id", m.OrderID, "event", m.Event)
		return nil
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("order message: %w", err)
	}
	topic := ag.Topic
	if topic == "" {
		topic = wire.OrdersTopic(ag.ID)
	}
	msgs := []store.Egress{{Channel: store.ChannelMQTT, Target: topic, AgencyID: ag.ID, OrderID: m.OrderID, Event: m.Event,
		Payload: payload, CreatedAt: m.At}}
	if ag.Webhook != "" {
		msgs = append(msgs, store.Egress{Channel: store.ChannelWebhook, Target: ag.Webhook, AgencyID: ag.ID, OrderID: m.OrderID,
			Event: m.Event, Payload: payload, CreatedAt: m.At})
	}
	return tx.EnqueueEgress(msgs...)
}

// announceCard tells the order's agency about a card on its order and the
// supervisor of the place the card escalates to (when it has one).
func (d *Dispatcher) announceCard(tx store.Tx, rec store.OrderRecord, c Card, now time.Time) error {
	inc, err := tx.GetIncident(rec.Order.IncidentID)
	if err != nil {
		return err
	}
	m := d.orderMessage(rec, inc, wire.OrderCard, now)
	m.Card, m.Stage = c.Card.String(), string(c.Stage)
	if err := d.announce(tx, rec.Order.AgencyID, m); err != nil {
		return err
	}
	if c.Notify == "" {
		return nil
	}
	p, ok := d.router.Place(c.Notify)
	if !ok || p.Supervisor == "" || p.Supervisor == rec.Order.AgencyID {
		return nil
	}
	m.Event = wire.OrderEscalation
	return d.announce(tx, p.Supervisor, m)
}

// reroute gives a rejected order's task to the next agency of the
// incident's re-route list, as a new dispatched order; with no agency left
// the incident goes back to the duty officer (audited). It runs in the
// transaction of the rejection.
func (d *Dispatcher) reroute(tx store.Tx, rejected store.OrderRecord, inc store.Incident, now time.Time) error {
	recs, err := tx.OrdersOf(inc.ID)
	if err != nil {
		return err
	}
	next, err := order.NextAgency(rejected.Order, d.router.RerouteOf(inc.Rule), orders(recs))
	if err != nil {
		return err
	}
	if next.ToOfficer {
		_, err := tx.AppendAudit(auditEntry(now, ActorDispatcher, EntityIncident, inc.ID, "reroute:officer", nil, map[string]string{
			"rejected_order": rejected.Order.ID, "why": next.Why}))
		d.log.Warn("rejected order goes back to the duty officer", "order_id", rejected.Order.ID, "incident_id", inc.ID, "why", next.Why)
		return err
	}
	rec := store.OrderRecord{Order: order.New(newID(), inc.ID, next.Agency, next.Role, now), SLAProfile: rejected.SLAProfile}
	o, _, err := order.Apply(rec.Order, order.Command{ID: "reroute:" + rec.Order.ID, Action: order.ActionDispatch,
		ExpectedVersion: rec.Order.Version, Actor: ActorDispatcher, Note: next.Why}, now)
	if err != nil {
		return err
	}
	rec.Order = o
	rec.NextTimerAt = d.nextTimer(rec, now)
	if err := tx.InsertOrder(rec); err != nil {
		return err
	}
	if _, err := tx.AppendAudit(auditEntry(now, ActorDispatcher, EntityOrder, rec.Order.ID, "created:rerouted", nil,
		map[string]any{"order": rec, "rerouted_from": rejected.Order.ID, "why": next.Why})); err != nil {
		return err
	}
	d.m.orders.Inc()
	d.log.Info("rejected order re-routed", "from_order", rejected.Order.ID, "to_agency", next.Agency, "order_id", rec.Order.ID)
	m := d.orderMessage(rec, inc, wire.OrderRerouted, now)
	m.Reason = next.Why
	return d.announce(tx, next.Agency, m)
}

func auditEntry(at time.Time, actor, entity, id, action string, before, after any) audit.Entry {
	e := audit.Entry{At: at, Actor: actor, Entity: entity, EntityID: id, Action: action}
	if before != nil {
		e.Before = snapshot(before)
	}
	if after != nil {
		e.After = snapshot(after)
	}
	return e
}

// egressQueued tells the egress sender that messages may be waiting.
func (d *Dispatcher) egressQueued() {
	if d.onEgress != nil {
		d.onEgress()
	}
}
