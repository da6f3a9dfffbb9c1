package order

import (
	"encoding/json"
	"testing"
	"time"
)

// referenceSLA is the profile of the reference case: accept within 5
// minutes, arrive within 20 minutes of accepting (so no arrival after 30
// minutes is the yellow card), resolve within 2 hours, close within a day.
var referenceSLA = SLA{Accept: 5 * time.Minute, OnScene: 20 * time.Minute, Resolve: 2 * time.Hour, Close: 24 * time.Hour}

func TestEvaluate(t *testing.T) {
	accepted := t0.Add(2 * time.Minute)
	dispatchedOrder := Order{ID: "o", State: StateDispatched, DispatchedAt: t0}
	acceptedOrder := Order{ID: "o", State: StateAccepted, DispatchedAt: t0, AcceptedAt: accepted}
	enRouteOrder := acceptedOrder
	enRouteOrder.State, enRouteOrder.EnRouteAt = StateEnRoute, accepted.Add(5*time.Minute)
	escalated := acceptedOrder
	escalated.Escalations = 2
	withDeparture := referenceSLA
	withDeparture.EnRoute = 10 * time.Minute
	onScene := Order{ID: "o", State: StateOnScene, OnSceneAt: t0}

	tests := []struct {
		name         string
		o            Order
		sla          SLA
		now          time.Time
		wantStage    Stage
		wantDeadline time.Time
		wantCard     Card
		wantNext     time.Time
	}{
		{"waiting to accept", dispatchedOrder, referenceSLA, t0.Add(4 * time.Minute), StageAccept, t0.Add(5 * time.Minute), CardNone, t0.Add(5 * time.Minute)},
		{"accept deadline passed: blue", dispatchedOrder, referenceSLA, t0.Add(5 * time.Minute), StageAccept, t0.Add(5 * time.Minute), CardBlue, t0.Add(7*time.Minute + 30*time.Second)},
		{"1.5x: yellow", dispatchedOrder, referenceSLA, t0.Add(7*time.Minute + 30*time.Second), StageAccept, t0.Add(5 * time.Minute), CardYellow, t0.Add(10 * time.Minute)},
		{"2x: red, nothing after", dispatchedOrder, referenceSLA, t0.Add(10 * time.Minute), StageAccept, t0.Add(5 * time.Minute), CardRed, time.Time{}},
		{"accepted, 19 minutes", acceptedOrder, referenceSLA, accepted.Add(19 * time.Minute), StageOnScene, accepted.Add(20 * time.Minute), CardNone, accepted.Add(20 * time.Minute)},
		{"reference: no arrival after 30 minutes is yellow", acceptedOrder, referenceSLA, accepted.Add(30 * time.Minute), StageOnScene, accepted.Add(20 * time.Minute), CardYellow, accepted.Add(40 * time.Minute)},
		{"arrival is measured from acceptance while en route", enRouteOrder, referenceSLA, accepted.Add(41 * time.Minute), StageOnScene, accepted.Add(20 * time.Minute), CardRed, time.Time{}},
		{"second escalation: red at once", escalated, referenceSLA, accepted.Add(time.Minute), StageOnScene, accepted.Add(20 * time.Minute), CardRed, time.Time{}},
		{"departure overdue first", acceptedOrder, withDeparture, accepted.Add(12 * time.Minute), StageEnRoute, accepted.Add(10 * time.Minute), CardBlue, accepted.Add(15 * time.Minute)},
		{"worst card decides", acceptedOrder, withDeparture, accepted.Add(20 * time.Minute), StageEnRoute, accepted.Add(10 * time.Minute), CardRed, time.Time{}},
		{"before any deadline the nearest one is shown", acceptedOrder, withDeparture, accepted, StageEnRoute, accepted.Add(10 * time.Minute), CardNone, accepted.Add(10 * time.Minute)},
		{"stage without deadline", onScene, SLA{}, t0.Add(72 * time.Hour), StageResolve, time.Time{}, CardNone, time.Time{}},
		{"pending waits for nothing", Order{State: StatePending}, referenceSLA, t0, "", time.Time{}, CardNone, time.Time{}},
		{"closed waits for nothing", Order{State: StateClosed, ResolvedAt: t0}, referenceSLA, t0.Add(48 * time.Hour), "", time.Time{}, CardNone, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.o, tt.sla, tt.now)
			if got.Stage != tt.wantStage || got.Card != tt.wantCard || !got.Deadline.Equal(tt.wantDeadline) || !got.Next.Equal(tt.wantNext) {
				t.Errorf("got stage %s card %s deadline %v next %v\nwant stage %s card %s deadline %v next %v",
					got.Stage, got.Card, got.Deadline, got.Next, tt.wantStage, tt.wantCard, tt.wantDeadline, tt.wantNext)
			}
		})
	}
}

// TestNextVisitsEveryCardChange follows Status.Next from acceptance, as a
// timer kept in the database would.
func TestNextVisitsEveryCardChange(t *testing.T) {
	accepted := t0.Add(2 * time.Minute)
	o := Order{ID: "o", State: StateAccepted, DispatchedAt: t0, AcceptedAt: accepted}
	var got []string
	for now := accepted; !now.IsZero(); {
		st := Evaluate(o, referenceSLA, now)
		got = append(got, now.Sub(accepted).String()+" "+st.Card.String())
		now = st.Next
	}
	want := []string{"0s none", "20m0s blue", "30m0s yellow", "40m0s red"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: got %s, want %s", i, got[i], want[i])
		}
	}
}

func TestDueRaisesEachCardOnce(t *testing.T) {
	accepted := t0.Add(2 * time.Minute)
	o := Order{ID: "o-1", State: StateAccepted, Version: 4, DispatchedAt: t0, AcceptedAt: accepted}

	if _, due := Due(o, referenceSLA, accepted.Add(19*time.Minute)); due {
		t.Fatal("due before the deadline")
	}
	st, due := Due(o, referenceSLA, accepted.Add(31*time.Minute))
	if !due || st.Card != CardYellow || st.Stage != StageOnScene || st.Card.LevelsUp() != 2 {
		t.Fatalf("at 31m: %+v due %v", st, due)
	}
	// Two replicas see the same due card and send the same command.
	cmd := CardCommand(o, st, "sla")
	o1, ev, err := Apply(o, cmd, accepted.Add(31*time.Minute))
	if err != nil || ev.Card != CardYellow || ev.Stage != StageOnScene || ev.From != StateAccepted || ev.To != StateAccepted {
		t.Fatalf("raise: %v %+v", err, ev)
	}
	if _, ev2, err := Apply(o1, CardCommand(o, st, "sla"), accepted.Add(31*time.Minute)); err != nil || !ev2.IsZero() {
		t.Errorf("second replica: %v %+v (want a no-op)", err, ev2)
	}
	if _, due := Due(o1, referenceSLA, accepted.Add(35*time.Minute)); due {
		t.Error("yellow due again")
	}
	// Departing does not restart the arrival clock, nor re-raise its card.
	o2, _ := step(t, o1, ActionDepart, accepted.Add(36*time.Minute))
	if _, due := Due(o2, referenceSLA, accepted.Add(36*time.Minute)); due {
		t.Error("yellow due again after departure")
	}
	st, due = Due(o2, referenceSLA, accepted.Add(40*time.Minute))
	if !due || st.Card != CardRed {
		t.Errorf("at 40m: %+v due %v", st, due)
	}
	// A lower or equal card for the same stage is refused.
	if _, _, err := Apply(o1, Command{ID: "x", Action: ActionRaiseCard, ExpectedVersion: o1.Version, Actor: "sla", Card: CardBlue, Stage: StageOnScene}, t0); err == nil {
		t.Error("lower card accepted")
	}
	// Arrival starts a new stage; its first card is due again.
	o3, _ := step(t, o2, ActionArrive, accepted.Add(41*time.Minute))
	st, due = Due(o3, referenceSLA, accepted.Add(41*time.Minute+2*time.Hour))
	if !due || st.Stage != StageResolve || st.Card != CardBlue {
		t.Errorf("resolve stage: %+v due %v", st, due)
	}
}

func TestCardText(t *testing.T) {
	for c := CardNone; c <= CardRed; c++ {
		b, err := c.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Card
		if err := back.UnmarshalText(b); err != nil || back != c {
			t.Errorf("%s: round trip gave %v %v", c, back, err)
		}
	}
	var c Card
	if err := c.UnmarshalText([]byte("green")); err == nil {
		t.Error("green accepted")
	}
	if _, err := Card(9).MarshalText(); err == nil {
		t.Error("card 9 marshalled")
	}
	o := Order{ID: "o", State: StateAccepted, Card: CardYellow, CardStage: StageOnScene}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var back Order
	if err := json.Unmarshal(b, &back); err != nil || back.Card != CardYellow || back.CardStage != StageOnScene {
		t.Errorf("JSON round trip: %s → %+v %v", b, back, err)
	}
}
