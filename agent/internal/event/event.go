// Package event turns a per-frame "is the scenario true?" signal into an
// event lifecycle: start after a minimum duration, updates at most every
// interval, end after a quiet period, and a cool-down before the next start.
// It works on frame time, so a replay behaves exactly like the live stream.
package event

import (
	"time"

	"github.com/xueliang/xl/internal/wire"
)

// Config tunes one scenario's lifecycle.
type Config struct {
	MinDuration    time.Duration // true this long (allowing gaps < EndAfter) before start
	EndAfter       time.Duration // false this long before end
	UpdateInterval time.Duration // at most one update this often; 0 disables updates
	Cooldown       time.Duration // after end, no new start for this long
}

// Transition is a phase change to publish.
type Transition struct {
	Phase     wire.Phase
	EventID   string
	StartedAt time.Time
	At        time.Time
}

type state int

const (
	idle state = iota
	pending
	active
)

// Lifecycle is the state of one scenario on one camera. Not safe for
// concurrent use; each camera worker owns its own.
type Lifecycle struct {
	cfg          Config
	newID        func(time.Time) string
	st           state
	eventID      string
	pendingSince time.Time
	startedAt    time.Time
	lastTrue     time.Time
	lastEmit     time.Time
	endedAt      time.Time
}

// New returns an idle lifecycle; newID makes event IDs.
func New(cfg Config, newID func(time.Time) string) *Lifecycle {
	return &Lifecycle{cfg: cfg, newID: newID}
}

// Reconfigure changes the settings (a configuration reload); an open event
// goes on under the new ones.
func (l *Lifecycle) Reconfigure(cfg Config) { l.cfg = cfg }

// Active reports whether an event is open.
func (l *Lifecycle) Active() bool { return l.st == active }

// Step feeds one observation at frame time now.
func (l *Lifecycle) Step(now time.Time, isTrue bool) (Transition, bool) {
	if isTrue {
		l.lastTrue = now
	}
	switch l.st {
	case idle:
		if !isTrue || (!l.endedAt.IsZero() && now.Sub(l.endedAt) < l.cfg.Cooldown) {
			return Transition{}, false
		}
		l.st, l.pendingSince = pending, now
		return l.maybeStart(now)
	case pending:
		if !isTrue && now.Sub(l.lastTrue) >= l.cfg.EndAfter {
			l.st = idle
			return Transition{}, false
		}
		if isTrue {
			return l.maybeStart(now)
		}
	case active:
		if !isTrue && now.Sub(l.lastTrue) >= l.cfg.EndAfter {
			return l.end(now), true
		}
		if isTrue && l.cfg.UpdateInterval > 0 && now.Sub(l.lastEmit) >= l.cfg.UpdateInterval {
			l.lastEmit = now
			return Transition{Phase: wire.PhaseUpdate, EventID: l.eventID, StartedAt: l.startedAt, At: now}, true
		}
	}
	return Transition{}, false
}

func (l *Lifecycle) maybeStart(now time.Time) (Transition, bool) {
	if now.Sub(l.pendingSince) < l.cfg.MinDuration {
		return Transition{}, false
	}
	l.st = active
	l.startedAt = l.pendingSince
	l.eventID = l.newID(l.startedAt)
	l.lastEmit = now
	return Transition{Phase: wire.PhaseStart, EventID: l.eventID, StartedAt: l.startedAt, At: now}, true
}

func (l *Lifecycle) end(now time.Time) Transition {
	t := Transition{Phase: wire.PhaseEnd, EventID: l.eventID, StartedAt: l.startedAt, At: now}
	l.st, l.endedAt, l.eventID = idle, now, ""
	return t
}

// Flush ends an open event at now (the stream was lost, or the agent stops).
func (l *Lifecycle) Flush(now time.Time) (Transition, bool) {
	if l.st != active {
		l.st = idle
		return Transition{}, false
	}
	return l.end(now), true
}
