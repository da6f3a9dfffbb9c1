package order

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// notice is a card notification sent by a test replica.
type notice struct {
	replica  int
	card     Card
	stage    Stage
	levelsUp int
	after    time.Duration // since acceptance
}

// board is an in-memory store of orders with compare-and-swap on the
// version, shared by the replicas of the test.
type board struct {
	mu      sync.Mutex
	orders  map[string]Order
	sla     SLA
	notices []notice
}

func (b *board) get(id string) Order {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.orders[id]
}

// apply is the store's transaction: apply cmd to the stored order and save
// the result. The lock stands for SELECT … FOR UPDATE.
func (b *board) apply(id string, cmd Command, now time.Time) (Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ev, err := Apply(b.orders[id], cmd, now)
	if err != nil {
		return Event{}, err
	}
	b.orders[id] = n
	return ev, nil
}

// next is the earliest stored timer.
func (b *board) next(now time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var at time.Time
	for _, o := range b.orders {
		st, due := Due(o, b.sla, now)
		t := st.Next
		if due {
			t = now
		}
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at, !at.IsZero()
}

// fire raises every due card, as one replica would: read, decide, then
// apply with the version read; a conflict or a no-op means another replica
// did it.
func (b *board) fire(replica int, now time.Time) {
	b.mu.Lock()
	due := map[string]Command{}
	for id, o := range b.orders {
		if st, ok := Due(o, b.sla, now); ok {
			due[id] = CardCommand(o, st, "sla")
		}
	}
	b.mu.Unlock()
	for id, cmd := range due {
		ev, err := b.apply(id, cmd, now)
		if err != nil || ev.IsZero() {
			continue
		}
		o := b.get(id)
		b.mu.Lock()
		b.notices = append(b.notices, notice{replica, ev.Card, ev.Stage, ev.Card.LevelsUp(), now.Sub(o.AcceptedAt)})
		b.mu.Unlock()
	}
}

// TestTimersReferenceCase runs the reference case on a fake clock with two
// replicas driving the same timers: the brigade accepts within 2 minutes,
// does not arrive, gets blue at 20 minutes and yellow at 30 (two levels up:
// the district), arrives at 35 minutes, resolves and is closed; every card
// is raised exactly once.
func TestTimersReferenceCase(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		b := &board{orders: map[string]Order{}, sla: referenceSLA}
		b.orders["o-1"] = New("o-1", "inc-1", "hm-agri-brigade", RoleLead, start)

		ctx, cancel := context.WithCancel(t.Context())
		wakes := []chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}
		errs := make(chan error, 2)
		for i, w := range wakes {
			go func() { errs <- RunTimers(ctx, w, b.next, func(now time.Time) { b.fire(i, now) }) }()
		}
		do := func(a Action, note string) {
			t.Helper()
			o := b.get("o-1")
			cmd := Command{ID: string(a), Action: a, ExpectedVersion: o.Version, Actor: "brigade-duty", Note: note}
			if _, err := b.apply("o-1", cmd, time.Now()); err != nil {
				t.Fatalf("%s: %v", a, err)
			}
			for _, w := range wakes {
				select {
				case w <- struct{}{}:
				default:
				}
			}
		}

		do(ActionDispatch, "")
		time.Sleep(2 * time.Minute)
		do(ActionAccept, "")
		time.Sleep(35 * time.Minute)
		synctest.Wait()
		do(ActionArrive, "")
		time.Sleep(20 * time.Minute)
		do(ActionResolve, "net seized; photo attached")
		time.Sleep(10 * time.Minute)
		do(ActionClose, "")
		time.Sleep(48 * time.Hour) // nothing may fire for a closed order
		synctest.Wait()
		cancel()
		for range wakes {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Errorf("RunTimers returned %v", err)
			}
		}

		want := []notice{
			{card: CardBlue, stage: StageOnScene, levelsUp: 1, after: 20 * time.Minute},
			{card: CardYellow, stage: StageOnScene, levelsUp: 2, after: 30 * time.Minute},
		}
		if len(b.notices) != len(want) {
			t.Fatalf("notices: %+v, want %+v", b.notices, want)
		}
		for i, w := range want {
			g := b.notices[i]
			if g.card != w.card || g.stage != w.stage || g.levelsUp != w.levelsUp || g.after != w.after {
				t.Errorf("notice %d: %+v, want %+v", i, g, w)
			}
		}
		if o := b.get("o-1"); o.State != StateClosed || o.Card != CardYellow {
			t.Errorf("final order: %s card %s", o.State, o.Card)
		}
	})
}

// TestRunTimersDoesNotSpin checks that a next function that never moves on
// makes the loop back off rather than spin.
func TestRunTimersDoesNotSpin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		due := time.Now()
		fires := 0
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		err := RunTimers(ctx, nil, func(time.Time) (time.Time, bool) { return due, true }, func(time.Time) { fires++ })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("returned %v", err)
		}
		if fires < 9 || fires > 11 {
			t.Errorf("%d fires in 10 s, want about one a second", fires)
		}
	})
}
