package order

import (
	"fmt"
	"slices"
	"time"
)

// SLA is the deadline of each stage of an order, from an SLA profile. A zero
// duration means the stage has no deadline.
type SLA struct {
	Accept  time.Duration // dispatched → accepted
	EnRoute time.Duration // accepted → en_route (departure)
	OnScene time.Duration // accepted → on_scene (arrival)
	Resolve time.Duration // on_scene → resolved
	Close   time.Duration // resolved → closed (the officer's verification)
}

// Stage is a milestone an order is waiting for, named after the state that
// reaches it.
type Stage string

// Stages.
const (
	StageAccept  Stage = "accept"
	StageEnRoute Stage = "en_route"
	StageOnScene Stage = "on_scene"
	StageResolve Stage = "resolve"
	StageClose   Stage = "close"
)

// Limit is the deadline of stage st, measured from the stage's start.
func (s SLA) Limit(st Stage) time.Duration {
	switch st {
	case StageAccept:
		return s.Accept
	case StageEnRoute:
		return s.EnRoute
	case StageOnScene:
		return s.OnScene
	case StageResolve:
		return s.Resolve
	case StageClose:
		return s.Close
	}
	return 0
}

// awaited lists the milestones an order in state s is waiting for. An
// accepted order waits for both departure and arrival; arrival is measured
// from acceptance, so it keeps running while the unit is en route.
func awaited(s State) []Stage {
	switch s {
	case StateDispatched:
		return []Stage{StageAccept}
	case StateAccepted:
		return []Stage{StageEnRoute, StageOnScene}
	case StateEnRoute:
		return []Stage{StageOnScene}
	case StateOnScene:
		return []Stage{StageResolve}
	case StateResolved:
		return []Stage{StageClose}
	}
	return nil
}

// stageStart is when the clock of stage st started for o.
func stageStart(o Order, st Stage) time.Time {
	switch st {
	case StageAccept:
		return o.DispatchedAt
	case StageEnRoute, StageOnScene:
		return o.AcceptedAt
	case StageResolve:
		return o.OnSceneAt
	case StageClose:
		return o.ResolvedAt
	}
	return time.Time{}
}

// Card is the supervision card of an overdue order.
type Card int

// Cards, in rising order.
const (
	CardNone   Card = iota
	CardBlue        // the stage deadline passed
	CardYellow      // 1.5× the deadline
	CardRed         // 2× the deadline, or after the second escalation
)

func (c Card) String() string {
	switch c {
	case CardNone:
		return "none"
	case CardBlue:
		return "blue"
	case CardYellow:
		return "yellow"
	case CardRed:
		return "red"
	}
	return fmt.Sprintf("card(%d)", int(c))
}

// MarshalText writes the card's name.
func (c Card) MarshalText() ([]byte, error) {
	if c < CardNone || c > CardRed {
		return nil, fmt.Errorf("order: no card %d", int(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText reads a card's name.
func (c *Card) UnmarshalText(b []byte) error {
	for k := CardNone; k <= CardRed; k++ {
		if k.String() == string(b) {
			*c = k
			return nil
		}
	}
	return fmt.Errorf("order: unknown card %q", b)
}

// LevelsUp is how many management levels above the order's place a change
// to this card notifies: blue the next level (a grid's town), yellow two (its
// district), red three (its city).
func (c Card) LevelsUp() int {
	if c < CardNone || c > CardRed {
		return 0
	}
	return int(c)
}

// Status is an order's supervision at one instant.
type Status struct {
	// Stage is the milestone that decides the card: the one with the worst
	// card, or the nearest deadline when none is overdue. Empty when the
	// order waits for nothing (pending, or final).
	Stage    Stage
	Start    time.Time // when Stage's clock started
	Deadline time.Time // Start + the stage's limit; zero when it has none
	Card     Card
	// Next is the next instant at which Card or Stage would change if nothing
	// happened to the order; zero when never. Store it as the order's timer.
	Next time.Time
}

// timeCard is the card for a stage elapsed into its limit (limit > 0).
func timeCard(elapsed, limit time.Duration) Card {
	switch {
	case elapsed >= 2*limit:
		return CardRed
	case elapsed >= limit+limit/2:
		return CardYellow
	case elapsed >= limit:
		return CardBlue
	}
	return CardNone
}

// Evaluate is o's supervision status under sla at now.
func Evaluate(o Order, sla SLA, now time.Time) Status {
	cur := evaluateAt(o, sla, now)
	var marks []time.Time
	for _, st := range awaited(o.State) {
		start, limit := stageStart(o, st), sla.Limit(st)
		if start.IsZero() || limit <= 0 {
			continue
		}
		for _, d := range []time.Duration{limit, limit + limit/2, 2 * limit} {
			if t := start.Add(d); t.After(now) {
				marks = append(marks, t)
			}
		}
	}
	slices.SortFunc(marks, time.Time.Compare)
	for _, t := range marks {
		if s := evaluateAt(o, sla, t); s.Card != cur.Card || s.Stage != cur.Stage {
			cur.Next = t
			break
		}
	}
	return cur
}

func evaluateAt(o Order, sla SLA, t time.Time) Status {
	var best Status
	found := false
	for _, st := range awaited(o.State) {
		start := stageStart(o, st)
		if start.IsZero() {
			continue
		}
		s := Status{Stage: st, Start: start}
		if limit := sla.Limit(st); limit > 0 {
			s.Deadline = start.Add(limit)
			s.Card = timeCard(t.Sub(start), limit)
		}
		if !found || worse(s, best) {
			best, found = s, true
		}
	}
	if found && o.Escalations >= 2 {
		best.Card = CardRed
	}
	return best
}

// worse reports whether a should decide the card rather than b: a higher
// card, or the same card with an earlier deadline.
func worse(a, b Status) bool {
	if a.Card != b.Card {
		return a.Card > b.Card
	}
	return !a.Deadline.IsZero() && (b.Deadline.IsZero() || a.Deadline.Before(b.Deadline))
}

// Due reports whether a card must be raised on o at now: the status shows a
// card, and it is higher than the one already raised for that stage. Raise it
// with Apply(o, CardCommand(o, st, actor), now) and notify st.Card.LevelsUp()
// levels above the order's place when Apply returns an event.
func Due(o Order, sla SLA, now time.Time) (Status, bool) {
	st := Evaluate(o, sla, now)
	if st.Card == CardNone {
		return st, false
	}
	return st, st.Stage != o.CardStage || st.Card > o.Card
}

// CardCommand is the command that records the card of st on o. Its ID is
// derived from the order, stage and card, so that two replicas raising the
// same card produce one event: the second gets the idempotent no-op or
// ErrConflict.
func CardCommand(o Order, st Status, actor string) Command {
	return Command{
		ID:              fmt.Sprintf("card:%s:%s:%s", o.ID, st.Stage, st.Card),
		Action:          ActionRaiseCard,
		ExpectedVersion: o.Version,
		Actor:           actor,
		Card:            st.Card,
		Stage:           st.Stage,
	}
}
