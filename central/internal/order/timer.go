package order

import (
	"context"
	"time"
)

// StuckTimerBackoff is how long RunTimers waits before firing again when next
// still reports a time at or before the last fire (fire made no progress).
const StuckTimerBackoff = time.Second

// RunTimers drives timers that are kept as data (each order's Status.Next),
// until ctx is done; it then returns ctx.Err().
//
// next returns the earliest instant anything is due, given the current time;
// ok false means nothing is scheduled. When that instant comes, fire is called
// with the current time: it raises what is due (see Due) and updates the data
// so that next moves on. A value on wake (e.g. an order changed) makes the
// loop ask next again before its timer expires. RunTimers holds no state of
// its own: after a restart it picks up where the data says.
func RunTimers(ctx context.Context, wake <-chan struct{}, next func(now time.Time) (time.Time, bool), fire func(now time.Time)) error {
	var lastFire time.Time
	for {
		now := time.Now()
		at, ok := next(now)
		if ok && !lastFire.IsZero() && !at.After(lastFire) {
			// fire did not move the timer on: do not spin.
			at = lastFire.Add(StuckTimerBackoff)
		}
		if ok && !at.After(now) {
			lastFire = now
			fire(now)
			continue
		}
		var timeout <-chan time.Time
		var timer *time.Timer
		if ok {
			timer = time.NewTimer(at.Sub(now))
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return ctx.Err()
		case <-wake:
			if timer != nil {
				timer.Stop()
			}
		case <-timeout:
			now := time.Now()
			lastFire = now
			fire(now)
		}
	}
}
