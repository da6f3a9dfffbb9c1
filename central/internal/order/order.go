// Package order is the disposal order: one per agency assigned to an
// incident. It holds the order's state machine (commands with optimistic
// locking and idempotency keys), the roll-up of an incident's state from its
// orders, the choice of the next agency when an order is rejected, and the
// SLA cards (blue, yellow, red) of overdue orders.
//
// Everything here is pure: functions take the order and the time and return
// the new order and the event to store. The store, the timers' persistence
// and the notifications live elsewhere and call this package.
package order

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// State is where an order stands.
type State string

// Order states. The main line is pending → dispatched → accepted → en_route →
// on_scene → resolved → closed; rejected, cancelled and false_alarm end an
// order early.
const (
	StatePending    State = "pending"     // created, waiting to be dispatched (by the officer or the auto-dispatch timer)
	StateDispatched State = "dispatched"  // sent to the agency
	StateAccepted   State = "accepted"    // the agency took it
	StateEnRoute    State = "en_route"    // a unit is on its way
	StateOnScene    State = "on_scene"    // a unit arrived
	StateResolved   State = "resolved"    // the unit reports it dealt with the case
	StateClosed     State = "closed"      // the officer verified and closed it
	StateRejected   State = "rejected"    // the agency declined it, with a reason
	StateCancelled  State = "cancelled"   // withdrawn by the officer
	StateFalseAlarm State = "false_alarm" // nothing to act on
)

// States lists every state, main line first.
func States() []State {
	return []State{StatePending, StateDispatched, StateAccepted, StateEnRoute, StateOnScene,
		StateResolved, StateClosed, StateRejected, StateCancelled, StateFalseAlarm}
}

// Valid reports whether s is a defined state.
func (s State) Valid() bool { return slices.Contains(States(), s) }

// Terminal reports whether no command can change an order in state s.
func (s State) Terminal() bool {
	switch s {
	case StateClosed, StateRejected, StateCancelled, StateFalseAlarm:
		return true
	}
	return false
}

// Active reports whether the order is open and still needs work
// (pending up to on_scene).
func (s State) Active() bool {
	switch s {
	case StatePending, StateDispatched, StateAccepted, StateEnRoute, StateOnScene:
		return true
	}
	return false
}

// Role is an agency's part in an incident.
type Role string

// Roles.
const (
	RoleLead    Role = "lead"
	RoleSupport Role = "support"
)

// Action is what a command asks for.
type Action string

// Actions. Each one but escalate and raise_card moves the order to another
// state; those two record supervision on the order without changing its
// state.
const (
	ActionDispatch   Action = "dispatch"    // pending → dispatched
	ActionAccept     Action = "accept"      // dispatched → accepted
	ActionReject     Action = "reject"      // dispatched, accepted → rejected (reason required)
	ActionDepart     Action = "depart"      // accepted → en_route
	ActionArrive     Action = "arrive"      // accepted, en_route → on_scene
	ActionResolve    Action = "resolve"     // on_scene → resolved (note required)
	ActionClose      Action = "close"       // resolved → closed
	ActionCancel     Action = "cancel"      // any open state → cancelled (reason required)
	ActionFalseAlarm Action = "false_alarm" // any open state → false_alarm
	ActionEscalate   Action = "escalate"    // supervision (督办) by a higher level; counts toward the red card
	ActionRaiseCard  Action = "raise_card"  // records a card raised by the SLA timers
)

// transition is one row of the table: the states an action is allowed in
// and the state it leads to (empty: the state does not change).
type transition struct {
	from []State
	to   State
}

// transitionOf is the state machine: the row for action a.
func transitionOf(a Action) (transition, bool) {
	open := []State{StatePending, StateDispatched, StateAccepted, StateEnRoute, StateOnScene, StateResolved}
	supervised := []State{StateDispatched, StateAccepted, StateEnRoute, StateOnScene, StateResolved}
	switch a {
	case ActionDispatch:
		return transition{from: []State{StatePending}, to: StateDispatched}, true
	case ActionAccept:
		return transition{from: []State{StateDispatched}, to: StateAccepted}, true
	case ActionReject:
		return transition{from: []State{StateDispatched, StateAccepted}, to: StateRejected}, true
	case ActionDepart:
		return transition{from: []State{StateAccepted}, to: StateEnRoute}, true
	case ActionArrive:
		return transition{from: []State{StateAccepted, StateEnRoute}, to: StateOnScene}, true
	case ActionResolve:
		return transition{from: []State{StateOnScene}, to: StateResolved}, true
	case ActionClose:
		return transition{from: []State{StateResolved}, to: StateClosed}, true
	case ActionCancel:
		return transition{from: open, to: StateCancelled}, true
	case ActionFalseAlarm:
		return transition{from: open, to: StateFalseAlarm}, true
	case ActionEscalate, ActionRaiseCard:
		return transition{from: supervised}, true
	}
	return transition{}, false
}

// Actions lists every action.
func Actions() []Action {
	return []Action{ActionDispatch, ActionAccept, ActionReject, ActionDepart, ActionArrive, ActionResolve,
		ActionClose, ActionCancel, ActionFalseAlarm, ActionEscalate, ActionRaiseCard}
}

// Allowed lists the actions a command may take on an order in state s (for
// the buttons of a console or a field unit's phone).
func Allowed(s State) []Action {
	var out []Action
	for _, a := range Actions() {
		if Can(s, a) {
			out = append(out, a)
		}
	}
	return out
}

// Can reports whether action a is allowed in state s.
func Can(s State, a Action) bool {
	t, ok := transitionOf(a)
	return ok && slices.Contains(t.from, s)
}

// Next is the state action a leads to from s; ok is false when a is not
// allowed in s.
func Next(s State, a Action) (next State, ok bool) {
	if !Can(s, a) {
		return "", false
	}
	if t, _ := transitionOf(a); t.to != "" {
		return t.to, true
	}
	return s, true
}

// MaxRecentCommands is how many applied command IDs an order remembers for
// idempotency. A retry of an older command fails with ErrConflict (its
// expected version is stale), which is safe.
const MaxRecentCommands = 32

// AppliedCommand is a command an order has applied, kept for idempotency.
type AppliedCommand struct {
	ID     string `json:"id"`
	Action Action `json:"action"`
}

// Order is one agency's disposal order for an incident.
type Order struct {
	ID         string `json:"id"`
	IncidentID string `json:"incident_id"`
	AgencyID   string `json:"agency_id"`
	Role       Role   `json:"role"`
	State      State  `json:"state"`
	// Version increases by one with every applied command; commands name the
	// version they expect (optimistic locking).
	Version    int64     `json:"version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	StateSince time.Time `json:"state_since"` // when State was entered

	// When each step of the main line was reached (zero: not yet).
	DispatchedAt time.Time `json:"dispatched_at,omitzero"`
	AcceptedAt   time.Time `json:"accepted_at,omitzero"`
	EnRouteAt    time.Time `json:"en_route_at,omitzero"`
	OnSceneAt    time.Time `json:"on_scene_at,omitzero"`
	ResolvedAt   time.Time `json:"resolved_at,omitzero"`
	ClosedAt     time.Time `json:"closed_at,omitzero"`

	// Card is the last card raised, for the stage CardStage. A card is raised
	// once per stage and colour (see Due).
	Card      Card      `json:"card,omitzero"`
	CardStage Stage     `json:"card_stage,omitempty"`
	CardAt    time.Time `json:"card_at,omitzero"`
	// Escalations counts escalate commands (supervision by a higher level)
	// since the order last changed state; two make the card red.
	Escalations int `json:"escalations,omitempty"`

	Note   string `json:"note,omitempty"`   // the last note (e.g. the resolution)
	Reason string `json:"reason,omitempty"` // why it was rejected, cancelled or a false alarm

	// Commands are the IDs of the last MaxRecentCommands applied commands,
	// oldest first.
	Commands []AppliedCommand `json:"commands,omitempty"`
}

// New is a pending order, version 1.
func New(id, incidentID, agencyID string, role Role, now time.Time) Order {
	now = now.UTC()
	return Order{
		ID: id, IncidentID: incidentID, AgencyID: agencyID, Role: role,
		State: StatePending, Version: 1,
		CreatedAt: now, UpdatedAt: now, StateSince: now,
	}
}

// Command asks for one change of an order.
type Command struct {
	ID              string // idempotency key, unique per intended change
	Action          Action
	ExpectedVersion int64 // the order's Version the sender saw
	Actor           string
	Note            string
	Reason          string
	// Card and Stage are for raise_card only (see CardCommand).
	Card  Card
	Stage Stage
}

// Event is what an applied command changed; the caller stores and audits it.
type Event struct {
	OrderID    string    `json:"order_id"`
	IncidentID string    `json:"incident_id"`
	AgencyID   string    `json:"agency_id"`
	CommandID  string    `json:"command_id"`
	Action     Action    `json:"action"`
	From       State     `json:"from"`
	To         State     `json:"to"`
	Version    int64     `json:"version"` // the order's version after the event
	Actor      string    `json:"actor"`
	Note       string    `json:"note,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Card       Card      `json:"card,omitzero"`
	Stage      Stage     `json:"stage,omitempty"`
	At         time.Time `json:"at"`
}

// IsZero reports whether e is the empty event Apply returns for a command
// that was already applied.
func (e Event) IsZero() bool { return e.CommandID == "" && e.Version == 0 }

// Sentinel errors; the typed errors below match them with errors.Is.
var (
	ErrConflict          = errors.New("order: version conflict")
	ErrInvalidTransition = errors.New("order: action not allowed in this state")
	ErrInvalidCommand    = errors.New("order: invalid command")
	ErrCommandReused     = errors.New("order: command id already used for another action")
	ErrNotRejected       = errors.New("order: not rejected")
)

// ConflictError is a command whose expected version is not the order's.
type ConflictError struct {
	OrderID          string
	Expected, Actual int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("order %s: version conflict: command expects version %d, order is at %d", e.OrderID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// TransitionError is an action the order's state does not allow.
type TransitionError struct {
	OrderID string
	From    State
	Action  Action
}

func (e *TransitionError) Error() string {
	if e.From.Terminal() {
		return fmt.Sprintf("order %s: %s is not allowed: the order is %s (final)", e.OrderID, e.Action, e.From)
	}
	return fmt.Sprintf("order %s: %s is not allowed in state %s (allowed: %v)", e.OrderID, e.Action, e.From, Allowed(e.From))
}

// Is makes errors.Is(err, ErrInvalidTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// Apply applies cmd to o at now. It returns the new order and the event to
// store, or:
//   - o unchanged, a zero Event and no error when a command with the same ID
//     and action was already applied (a retry);
//   - ErrCommandReused when the ID was used for another action;
//   - ErrInvalidCommand (wrapped) for a malformed command;
//   - *ConflictError (ErrConflict) when cmd.ExpectedVersion is not o.Version;
//   - *TransitionError (ErrInvalidTransition) when the state does not allow
//     the action.
//
// o is not modified.
func Apply(o Order, cmd Command, now time.Time) (Order, Event, error) {
	if i := slices.IndexFunc(o.Commands, func(c AppliedCommand) bool { return c.ID == cmd.ID }); cmd.ID != "" && i >= 0 {
		if o.Commands[i].Action != cmd.Action {
			return o, Event{}, fmt.Errorf("%w: %q was %s, now %s", ErrCommandReused, cmd.ID, o.Commands[i].Action, cmd.Action)
		}
		return o, Event{}, nil
	}
	if err := checkCommand(cmd); err != nil {
		return o, Event{}, err
	}
	if cmd.ExpectedVersion != o.Version {
		return o, Event{}, &ConflictError{OrderID: o.ID, Expected: cmd.ExpectedVersion, Actual: o.Version}
	}
	to, ok := Next(o.State, cmd.Action)
	if !ok {
		return o, Event{}, &TransitionError{OrderID: o.ID, From: o.State, Action: cmd.Action}
	}
	now = now.UTC()

	n := o
	n.Commands = append(slices.Clone(o.Commands), AppliedCommand{ID: cmd.ID, Action: cmd.Action})
	if len(n.Commands) > MaxRecentCommands {
		n.Commands = slices.Delete(n.Commands, 0, len(n.Commands)-MaxRecentCommands)
	}
	n.Version++
	n.UpdatedAt = now
	if cmd.Note != "" {
		n.Note = cmd.Note
	}
	switch cmd.Action {
	case ActionEscalate:
		n.Escalations++
	case ActionRaiseCard:
		if !slices.Contains(awaited(o.State), cmd.Stage) {
			return o, Event{}, fmt.Errorf("%w: stage %s is not awaited in state %s", ErrInvalidCommand, cmd.Stage, o.State)
		}
		if cmd.Stage == o.CardStage && cmd.Card <= o.Card {
			return o, Event{}, fmt.Errorf("%w: card %s for %s is not above the %s already raised", ErrInvalidCommand, cmd.Card, cmd.Stage, o.Card)
		}
		n.Card, n.CardStage, n.CardAt = cmd.Card, cmd.Stage, now
	}
	if to != o.State {
		n.State = to
		n.StateSince = now
		n.Escalations = 0
		switch to {
		case StateDispatched:
			n.DispatchedAt = now
		case StateAccepted:
			n.AcceptedAt = now
		case StateEnRoute:
			n.EnRouteAt = now
		case StateOnScene:
			n.OnSceneAt = now
		case StateResolved:
			n.ResolvedAt = now
		case StateClosed:
			n.ClosedAt = now
		case StateRejected, StateCancelled, StateFalseAlarm:
			n.Reason = cmd.Reason
		}
	}
	ev := Event{
		OrderID: o.ID, IncidentID: o.IncidentID, AgencyID: o.AgencyID,
		CommandID: cmd.ID, Action: cmd.Action, From: o.State, To: n.State, Version: n.Version,
		Actor: cmd.Actor, Note: cmd.Note, Reason: cmd.Reason, At: now,
	}
	if cmd.Action == ActionRaiseCard {
		ev.Card, ev.Stage = cmd.Card, cmd.Stage
	}
	return n, ev, nil
}

// checkCommand checks what a command must carry, whatever the order.
func checkCommand(cmd Command) error {
	if _, ok := transitionOf(cmd.Action); !ok {
		return fmt.Errorf("%w: unknown action %q", ErrInvalidCommand, cmd.Action)
	}
	var missing string
	switch {
	case cmd.ID == "":
		missing = "an id (idempotency key)"
	case cmd.Actor == "":
		missing = "an actor"
	case (cmd.Action == ActionReject || cmd.Action == ActionCancel) && cmd.Reason == "":
		missing = "a reason"
	case cmd.Action == ActionResolve && cmd.Note == "":
		missing = "a note"
	case cmd.Action == ActionRaiseCard && (cmd.Card <= CardNone || cmd.Card > CardRed):
		missing = "a card (blue, yellow or red)"
	case cmd.Action == ActionRaiseCard && cmd.Stage == "":
		missing = "a stage"
	}
	if missing != "" {
		return fmt.Errorf("%w: %s needs %s", ErrInvalidCommand, cmd.Action, missing)
	}
	return nil
}
