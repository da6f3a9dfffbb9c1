package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
)

// timerBatch is the most due timers one FireDue call handles.
const timerBatch = 256

// Wake tells a running timer loop that timers may have moved (an order
// changed).
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Card is an SLA card raised by the timers, with the place to notify.
type Card struct {
	OrderID  string
	Card     order.Card
	Stage    order.Stage
	Notify   string // code of the place Card.LevelsUp() levels above the incident's grid; "" when unknown
	Dispatch bool   // not a card: a pending order was auto-dispatched
}

// FireDue fires every timer due at now: it auto-dispatches pending orders
// whose fallback time came and raises due SLA cards. Each timer is claimed
// with the order's version and due time in the same transaction as the
// change and its audit entry, so a timer fires once even when several
// loops race for it.
func (d *Dispatcher) FireDue(ctx context.Context, now time.Time) ([]Card, error) {
	now = now.UTC()
	var fired []Card
	for {
		ids, err := d.st.DueTimers(ctx, now, timerBatch)
		if err != nil {
			return fired, err
		}
		progress := false
		for _, id := range ids {
			c, ok, err := d.fire(ctx, id, now)
			if err != nil {
				if errors.Is(err, order.ErrConflict) {
					continue // another loop fired it
				}
				return fired, fmt.Errorf("timer of order %s: %w", id, err)
			}
			progress = true
			if ok {
				fired = append(fired, c)
			}
		}
		if len(ids) < timerBatch || !progress {
			return fired, nil
		}
	}
}

// fire handles one due timer; ok is false when nothing was due after all
// (the timer is then only moved on).
func (d *Dispatcher) fire(ctx context.Context, id string, now time.Time) (c Card, ok bool, err error) {
	err = d.st.InTx(ctx, func(tx store.Tx) error {
		c, ok = Card{}, false
		rec, err := tx.GetOrder(id)
		if err != nil {
			return err
		}
		if rec.NextTimerAt.IsZero() || rec.NextTimerAt.After(now) {
			return nil // fired or moved meanwhile
		}
		o := rec.Order
		var cmd order.Command
		switch {
		case o.State == order.StatePending && !rec.AutoDispatchAt.IsZero() && !rec.AutoDispatchAt.After(now):
			cmd = order.Command{ID: "auto-dispatch:" + o.ID, Action: order.ActionDispatch, ExpectedVersion: o.Version, Actor: ActorAutoDispatch}
			c = Card{OrderID: o.ID, Dispatch: true}
		default:
			st, due := order.Due(o, d.sla(rec), now)
			if !due {
				// Nothing to raise: only move the timer on.
				prev := rec.Order.Version
				rec.NextTimerAt = d.nextTimer(rec, now)
				if !rec.NextTimerAt.After(now) {
					rec.NextTimerAt = time.Time{}
				}
				return tx.UpdateOrder(rec, prev, now)
			}
			cmd = order.CardCommand(o, st, ActorTimer)
			c = Card{OrderID: o.ID, Card: st.Card, Stage: st.Stage}
			if inc, err := tx.GetIncident(o.IncidentID); err == nil {
				if p, ok := d.router.LevelsAbove(inc.Grid, st.Card.LevelsUp()); ok {
					c.Notify = p.Code
				}
			}
		}
		rec, changed, err := d.apply(tx, rec, cmd, now, now)
		if err != nil {
			return err
		}
		ok = changed
		if ok && !c.Dispatch {
			return d.announceCard(tx, rec, c, now)
		}
		return nil
	})
	if err != nil {
		return Card{}, false, err
	}
	if ok {
		d.egressQueued()
	}
	if ok && !c.Dispatch {
		d.m.cards.WithLabelValues(c.Card.String()).Inc()
		d.log.Info("SLA card raised", "order_id", c.OrderID, "card", c.Card.String(), "stage", string(c.Stage), "notify", c.Notify)
	}
	return c, ok, nil
}

// Run is the timer loop: it fires timers as they come due, until ctx is
// done. Timers are data (orders.next_timer_at): after a restart the loop
// picks up where the store says.
func (d *Dispatcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { d.drainLoop(ctx) })
	defer wg.Wait()
	defer cancel() // runs first: stops the drain loop if the timers fail
	err := order.RunTimers(ctx, d.wake, func(time.Time) (time.Time, bool) {
		at, ok, err := d.st.NextTimer(ctx)
		if err != nil {
			d.log.Error("timers: next", "err", err)
			return d.now().Add(time.Second), true
		}
		return at, ok
	}, func(time.Time) {
		if _, err := d.FireDue(ctx, d.now()); err != nil && ctx.Err() == nil {
			d.log.Error("timers: fire", "err", err)
		}
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Close does nothing: Run stops with its context.
func (d *Dispatcher) Close() error { return nil }
