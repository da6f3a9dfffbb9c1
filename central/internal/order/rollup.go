package order

import "slices"

// IncidentState is an incident's state, rolled up from its orders.
type IncidentState string

// Incident states.
const (
	IncidentOpen       IncidentState = "open"        // no order is out yet: waiting for the officer or auto-dispatch
	IncidentDispatched IncidentState = "dispatched"  // orders are out, no agency has taken one
	IncidentInProgress IncidentState = "in_progress" // an agency has taken an order and work is not finished
	IncidentResolved   IncidentState = "resolved"    // all work done, waiting for the officer to close
	IncidentClosed     IncidentState = "closed"      // all work done and closed
	IncidentFalseAlarm IncidentState = "false_alarm" // ended as a false alarm
	IncidentCancelled  IncidentState = "cancelled"   // withdrawn
)

// Rollup is the state of an incident with these orders. Rules, first match
// wins:
//
//  1. No orders: open.
//  2. Some order is active (pending … on_scene):
//     - in_progress when an active order is accepted, en_route or on_scene,
//     or another order is already resolved or closed (the work has begun);
//     - otherwise dispatched when an active order is dispatched;
//     - otherwise open (only pending orders).
//  3. No order is active:
//     - resolved when an order is resolved (closing is what is left);
//     - closed when an order is closed;
//     - false_alarm when an order is a false alarm;
//     - cancelled when an order is cancelled;
//     - otherwise every order was rejected: open, back with the officer.
//
// Rejected orders never hold an incident up: they have been or will be
// re-routed (NextAgency).
func Rollup(orders []Order) IncidentState {
	has := func(states ...State) bool {
		return slices.ContainsFunc(orders, func(o Order) bool { return slices.Contains(states, o.State) })
	}
	switch {
	case len(orders) == 0:
		return IncidentOpen
	case has(StatePending, StateDispatched, StateAccepted, StateEnRoute, StateOnScene):
		switch {
		case has(StateAccepted, StateEnRoute, StateOnScene, StateResolved, StateClosed):
			return IncidentInProgress
		case has(StateDispatched):
			return IncidentDispatched
		}
		return IncidentOpen
	case has(StateResolved):
		return IncidentResolved
	case has(StateClosed):
		return IncidentClosed
	case has(StateFalseAlarm):
		return IncidentFalseAlarm
	case has(StateCancelled):
		return IncidentCancelled
	}
	return IncidentOpen
}
