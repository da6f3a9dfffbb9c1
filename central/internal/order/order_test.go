package order

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 6, 1, 13, 30, 0, 0, time.UTC) // 21:30 in Asia/Shanghai

// step applies one command with the order's current version and fails the
// test on error.
func step(t *testing.T, o Order, a Action, at time.Time, edit ...func(*Command)) (Order, Event) {
	t.Helper()
	cmd := Command{ID: fmt.Sprintf("%s-v%d", a, o.Version), Action: a, ExpectedVersion: o.Version, Actor: "tester"}
	for _, e := range edit {
		e(&cmd)
	}
	n, ev, err := Apply(o, cmd, at)
	if err != nil {
		t.Fatalf("%s at version %d: %v", a, o.Version, err)
	}
	return n, ev
}

func withNote(s string) func(*Command)   { return func(c *Command) { c.Note = s } }
func withReason(s string) func(*Command) { return func(c *Command) { c.Reason = s } }

func TestReferenceCaseMainLine(t *testing.T) {
	o := New("o-1", "inc-1", "hm-agri-brigade", RoleLead, t0)
	if o.State != StatePending || o.Version != 1 {
		t.Fatalf("new order: %+v", o)
	}
	var ev Event
	o, ev = step(t, o, ActionDispatch, t0)
	if ev.From != StatePending || ev.To != StateDispatched || ev.Version != 2 || ev.OrderID != "o-1" || ev.IncidentID != "inc-1" {
		t.Errorf("dispatch event: %+v", ev)
	}
	o, _ = step(t, o, ActionAccept, t0.Add(2*time.Minute))
	o, _ = step(t, o, ActionArrive, t0.Add(40*time.Minute))
	o, ev = step(t, o, ActionResolve, t0.Add(55*time.Minute), withNote("net seized, two people warned; photo attached"))
	if ev.Note == "" || o.Note != ev.Note {
		t.Errorf("resolve note lost: %+v / %q", ev, o.Note)
	}
	o, ev = step(t, o, ActionClose, t0.Add(70*time.Minute))
	if o.State != StateClosed || ev.To != StateClosed || o.Version != 6 {
		t.Errorf("closed order: state %s version %d", o.State, o.Version)
	}
	want := map[string][2]time.Time{
		"dispatched": {o.DispatchedAt, t0},
		"accepted":   {o.AcceptedAt, t0.Add(2 * time.Minute)},
		"on_scene":   {o.OnSceneAt, t0.Add(40 * time.Minute)},
		"resolved":   {o.ResolvedAt, t0.Add(55 * time.Minute)},
		"closed":     {o.ClosedAt, t0.Add(70 * time.Minute)},
		"since":      {o.StateSince, t0.Add(70 * time.Minute)},
	}
	for name, w := range want {
		if !w[0].Equal(w[1]) {
			t.Errorf("%s at %v, want %v", name, w[0], w[1])
		}
	}
	if !o.EnRouteAt.IsZero() {
		t.Errorf("en_route was skipped but has a time: %v", o.EnRouteAt)
	}
	if len(Allowed(o.State)) != 0 {
		t.Errorf("closed order allows %v", Allowed(o.State))
	}
}

// TestTransitionTable checks every (state, action) pair against the table
// written out here, independently of the package's.
func TestTransitionTable(t *testing.T) {
	allowed := map[State]map[Action]State{
		StatePending:    {ActionDispatch: StateDispatched, ActionCancel: StateCancelled, ActionFalseAlarm: StateFalseAlarm},
		StateDispatched: {ActionAccept: StateAccepted, ActionReject: StateRejected, ActionCancel: StateCancelled, ActionFalseAlarm: StateFalseAlarm, ActionEscalate: StateDispatched, ActionRaiseCard: StateDispatched},
		StateAccepted:   {ActionDepart: StateEnRoute, ActionArrive: StateOnScene, ActionReject: StateRejected, ActionCancel: StateCancelled, ActionFalseAlarm: StateFalseAlarm, ActionEscalate: StateAccepted, ActionRaiseCard: StateAccepted},
		StateEnRoute:    {ActionArrive: StateOnScene, ActionCancel: StateCancelled, ActionFalseAlarm: StateFalseAlarm, ActionEscalate: StateEnRoute, ActionRaiseCard: StateEnRoute},
		StateOnScene:    {ActionResolve: StateResolved, ActionCancel: StateCancelled, ActionFalseAlarm: StateFalseAlarm, ActionEscalate: StateOnScene, ActionRaiseCard: StateOnScene},
		StateResolved:   {ActionClose: StateClosed, ActionCancel: StateCancelled, ActionFalseAlarm: StateFalseAlarm, ActionEscalate: StateResolved, ActionRaiseCard: StateResolved},
		StateClosed:     {},
		StateRejected:   {},
		StateCancelled:  {},
		StateFalseAlarm: {},
	}
	stageFor := map[State]Stage{StateDispatched: StageAccept, StateAccepted: StageOnScene, StateEnRoute: StageOnScene, StateOnScene: StageResolve, StateResolved: StageClose}
	for _, s := range States() {
		for _, a := range Actions() {
			t.Run(fmt.Sprintf("%s/%s", s, a), func(t *testing.T) {
				o := Order{ID: "o", State: s, Version: 7}
				stage, ok := stageFor[s]
				if !ok {
					stage = StageAccept // any stage: the state refuses cards anyway
				}
				cmd := Command{ID: "c", Action: a, ExpectedVersion: 7, Actor: "x", Note: "n", Reason: "r", Card: CardBlue, Stage: stage}
				n, ev, err := Apply(o, cmd, t0)
				want, ok := allowed[s][a]
				if !ok {
					var te *TransitionError
					if !errors.Is(err, ErrInvalidTransition) || !errors.As(err, &te) || te.From != s || te.Action != a {
						t.Fatalf("want *TransitionError, got %v", err)
					}
					if n.Version != 7 || !ev.IsZero() {
						t.Errorf("a refused command changed the order: %+v %+v", n, ev)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if n.State != want || ev.From != s || ev.To != want || n.Version != 8 {
					t.Errorf("got %s (event %s→%s, v%d), want %s v8", n.State, ev.From, ev.To, n.Version, want)
				}
				if Can(s, a) != true {
					t.Error("Can disagrees")
				}
			})
		}
	}
}

func TestConflict(t *testing.T) {
	o := New("o-1", "inc-1", "a", RoleLead, t0)
	o, _ = step(t, o, ActionDispatch, t0)
	_, ev, err := Apply(o, Command{ID: "late", Action: ActionAccept, ExpectedVersion: 1, Actor: "duty-phone"}, t0)
	var ce *ConflictError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Expected != 1 || ce.Actual != 2 {
		t.Fatalf("want ConflictError 1 vs 2, got %v", err)
	}
	if !ev.IsZero() {
		t.Errorf("event on conflict: %+v", ev)
	}
	if want := "order o-1: version conflict: command expects version 1, order is at 2"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	_, _, err = Apply(Order{ID: "o-9", State: StateClosed, Version: 3}, Command{ID: "c", Action: ActionAccept, ExpectedVersion: 3, Actor: "x"}, t0)
	if want := "order o-9: accept is not allowed: the order is closed (final)"; err == nil || err.Error() != want {
		t.Errorf("message %v, want %q", err, want)
	}
}

func TestIdempotentRetry(t *testing.T) {
	o := New("o-1", "inc-1", "a", RoleLead, t0)
	o, _ = step(t, o, ActionDispatch, t0)
	accept := Command{ID: "phone-123", Action: ActionAccept, ExpectedVersion: o.Version, Actor: "duty-phone"}
	o1, ev1, err := Apply(o, accept, t0.Add(time.Minute))
	if err != nil || ev1.IsZero() {
		t.Fatalf("first accept: %v %+v", err, ev1)
	}
	// The phone did not see the reply and sends the same command again: its
	// expected version is now stale, but the ID was applied.
	o2, ev2, err := Apply(o1, accept, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !ev2.IsZero() || o2.Version != o1.Version || !o2.UpdatedAt.Equal(o1.UpdatedAt) {
		t.Errorf("retry made a change: %+v, version %d→%d", ev2, o1.Version, o2.Version)
	}
	// The same ID for another action is a client bug.
	_, _, err = Apply(o1, Command{ID: "phone-123", Action: ActionDepart, ExpectedVersion: o1.Version, Actor: "duty-phone"}, t0)
	if !errors.Is(err, ErrCommandReused) {
		t.Errorf("reused id: got %v", err)
	}
}

func TestRecentCommandsAreBounded(t *testing.T) {
	o := New("o-1", "inc-1", "a", RoleLead, t0)
	o, _ = step(t, o, ActionDispatch, t0)
	first := Command{ID: "esc-0", Action: ActionEscalate, ExpectedVersion: o.Version, Actor: "district"}
	o, _, err := Apply(o, first, t0)
	if err != nil {
		t.Fatal(err)
	}
	before := o
	for i := 1; i <= MaxRecentCommands; i++ {
		o, _, err = Apply(o, Command{ID: fmt.Sprintf("esc-%d", i), Action: ActionEscalate, ExpectedVersion: o.Version, Actor: "district"}, t0)
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(o.Commands) != MaxRecentCommands || o.Commands[0].ID != "esc-1" {
		t.Errorf("kept %d commands starting at %s", len(o.Commands), o.Commands[0].ID)
	}
	if len(before.Commands) != 2 {
		t.Errorf("Apply modified its input's command list: %d", len(before.Commands))
	}
	// A retry of a forgotten command is refused safely.
	if _, _, err := Apply(o, first, t0); !errors.Is(err, ErrConflict) {
		t.Errorf("forgotten retry: got %v", err)
	}
}

func TestInvalidCommands(t *testing.T) {
	dispatched := Order{ID: "o", State: StateDispatched, Version: 3, DispatchedAt: t0}
	onScene := Order{ID: "o", State: StateOnScene, Version: 3}
	tests := []struct {
		name string
		o    Order
		cmd  Command
		want error
	}{
		{"unknown action", dispatched, Command{ID: "c", Action: "teleport", ExpectedVersion: 3, Actor: "x"}, ErrInvalidCommand},
		{"no id", dispatched, Command{Action: ActionAccept, ExpectedVersion: 3, Actor: "x"}, ErrInvalidCommand},
		{"no actor", dispatched, Command{ID: "c", Action: ActionAccept, ExpectedVersion: 3}, ErrInvalidCommand},
		{"reject without reason", dispatched, Command{ID: "c", Action: ActionReject, ExpectedVersion: 3, Actor: "x"}, ErrInvalidCommand},
		{"cancel without reason", dispatched, Command{ID: "c", Action: ActionCancel, ExpectedVersion: 3, Actor: "x"}, ErrInvalidCommand},
		{"resolve without note", onScene, Command{ID: "c", Action: ActionResolve, ExpectedVersion: 3, Actor: "x"}, ErrInvalidCommand},
		{"card without colour", dispatched, Command{ID: "c", Action: ActionRaiseCard, ExpectedVersion: 3, Actor: "sla", Stage: StageAccept}, ErrInvalidCommand},
		{"card for a stage not awaited", dispatched, Command{ID: "c", Action: ActionRaiseCard, ExpectedVersion: 3, Actor: "sla", Card: CardBlue, Stage: StageResolve}, ErrInvalidCommand},
		{"a malformed command is reported before the version", dispatched, Command{ID: "c", Action: ActionReject, ExpectedVersion: 1, Actor: "x"}, ErrInvalidCommand},
		{"wrong version", dispatched, Command{ID: "c", Action: ActionAccept, ExpectedVersion: 2, Actor: "x"}, ErrConflict},
		{"wrong state", onScene, Command{ID: "c", Action: ActionAccept, ExpectedVersion: 3, Actor: "x"}, ErrInvalidTransition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Apply(tt.o, tt.cmd, t0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRejectKeepsReasonAndResetsEscalations(t *testing.T) {
	o := New("o-1", "inc-1", "river-police", RoleSupport, t0)
	o, _ = step(t, o, ActionDispatch, t0)
	o, _ = step(t, o, ActionEscalate, t0)
	if o.Escalations != 1 || o.State != StateDispatched {
		t.Fatalf("escalate: %+v", o)
	}
	o, ev := step(t, o, ActionReject, t0.Add(time.Minute), withReason("outside our waters"))
	if o.State != StateRejected || o.Reason != "outside our waters" || ev.Reason != o.Reason || o.Escalations != 0 {
		t.Errorf("rejected order: %+v", o)
	}
}

func TestNextAgency(t *testing.T) {
	rejected := Order{ID: "o-2", AgencyID: "river-police", Role: RoleSupport, State: StateRejected, Reason: "not our waters"}
	lead := Order{ID: "o-1", AgencyID: "agri-brigade", Role: RoleLead, State: StateAccepted}
	tests := []struct {
		name       string
		rejected   Order
		candidates []string
		incident   []Order
		want       Reroute
		wantErr    error
	}{
		{"first free candidate", rejected, []string{"river-police", "agri-brigade", "town-patrol", "water-police"},
			[]Order{lead, rejected}, Reroute{Agency: "town-patrol", Role: RoleSupport}, nil},
		{"an agency that rejected before is skipped", rejected, []string{"town-patrol", "water-police"},
			[]Order{lead, rejected, {AgencyID: "town-patrol", State: StateRejected}}, Reroute{Agency: "water-police", Role: RoleSupport}, nil},
		{"a cancelled agency may be asked again", rejected, []string{"town-patrol"},
			[]Order{lead, {AgencyID: "town-patrol", State: StateCancelled}}, Reroute{Agency: "town-patrol", Role: RoleSupport}, nil},
		{"nobody left: the officer", rejected, []string{"agri-brigade"}, []Order{lead}, Reroute{Role: RoleSupport, ToOfficer: true}, nil},
		{"no candidates: the officer", rejected, nil, nil, Reroute{Role: RoleSupport, ToOfficer: true}, nil},
		{"not rejected", lead, []string{"town-patrol"}, nil, Reroute{}, ErrNotRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NextAgency(tt.rejected, tt.candidates, tt.incident)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Agency != tt.want.Agency || got.Role != tt.want.Role || got.ToOfficer != tt.want.ToOfficer || got.Why == "" {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRollup(t *testing.T) {
	of := func(states ...State) []Order {
		var out []Order
		for i, s := range states {
			out = append(out, Order{ID: fmt.Sprint(i), State: s})
		}
		return out
	}
	tests := []struct {
		name   string
		orders []Order
		want   IncidentState
	}{
		{"no orders", nil, IncidentOpen},
		{"waiting for dispatch", of(StatePending, StatePending), IncidentOpen},
		{"one out, one waiting", of(StateDispatched, StatePending), IncidentDispatched},
		{"both out", of(StateDispatched, StateDispatched), IncidentDispatched},
		{"lead accepted", of(StateAccepted, StateDispatched), IncidentInProgress},
		{"en route", of(StateEnRoute), IncidentInProgress},
		{"on scene", of(StateOnScene, StateRejected), IncidentInProgress},
		{"lead resolved, support still out", of(StateResolved, StateDispatched), IncidentInProgress},
		{"lead closed, re-routed support pending", of(StateClosed, StateRejected, StatePending), IncidentInProgress},
		{"rejected and re-routed", of(StateRejected, StateDispatched), IncidentDispatched},
		{"all resolved", of(StateResolved, StateResolved), IncidentResolved},
		{"one resolved, one closed", of(StateClosed, StateResolved), IncidentResolved},
		{"resolved, support rejected", of(StateResolved, StateRejected), IncidentResolved},
		{"all closed", of(StateClosed, StateClosed), IncidentClosed},
		{"closed and a cancelled support", of(StateClosed, StateCancelled), IncidentClosed},
		{"false alarm, rest cancelled", of(StateFalseAlarm, StateCancelled), IncidentFalseAlarm},
		{"false alarm found by one unit, other closed", of(StateFalseAlarm, StateClosed), IncidentClosed},
		{"all cancelled", of(StateCancelled, StateCancelled), IncidentCancelled},
		{"rejected then the rest cancelled", of(StateRejected, StateCancelled), IncidentCancelled},
		{"all rejected: back to the officer", of(StateRejected, StateRejected), IncidentOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Rollup(tt.orders); got != tt.want {
				t.Errorf("Rollup(%v) = %s, want %s", states(tt.orders), got, tt.want)
			}
		})
	}
}

func states(os []Order) []State {
	var out []State
	for _, o := range os {
		out = append(out, o.State)
	}
	return out
}

func TestAllowedMatchesCan(t *testing.T) {
	for _, s := range States() {
		for _, a := range Allowed(s) {
			if !Can(s, a) {
				t.Errorf("%s allows %s but Can says no", s, a)
			}
		}
		if s.Terminal() && len(Allowed(s)) > 0 {
			t.Errorf("terminal %s allows %v", s, Allowed(s))
		}
		if s.Terminal() == s.Active() && s != StateResolved {
			t.Errorf("%s: terminal %v, active %v", s, s.Terminal(), s.Active())
		}
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
	if slices.Contains(States(), State("lost")) || State("lost").Valid() {
		t.Error("unknown state valid")
	}
}
