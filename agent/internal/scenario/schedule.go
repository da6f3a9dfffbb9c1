package scenario

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily time window in a camera's local time, [From, To) in
// minutes after midnight. From > To crosses midnight (20:00–06:00).
type Window struct {
	From, To int
}

// ParseWindow reads "HH:MM-HH:MM" (an en dash or "~" also separates).
// 24:00 is allowed as an end; equal ends are an error (say 00:00-24:00 for
// the whole day).
func ParseWindow(s string) (Window, error) {
	norm := strings.NewReplacer("–", "-", "—", "-", "~", "-", " ", "").Replace(s)
	from, to, ok := strings.Cut(norm, "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	f, err := parseClock(from, false)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	t, err := parseClock(to, true)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	if f == t {
		return Window{}, fmt.Errorf("window %q is empty (for the whole day say 00:00-24:00)", s)
	}
	return Window{From: f, To: t}, nil
}

func parseClock(s string, end bool) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(hh) == 0 || len(hh) > 2 || len(mm) != 2 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return h*60 + m, nil
}

// Contains reports whether the local time of t (in its own location) falls
// in the window.
func (w Window) Contains(t time.Time) bool {
	h, m, s := t.Clock()
	min := float64(h*60+m) + float64(s)/60
	if w.From < w.To {
		return min >= float64(w.From) && min < float64(w.To)
	}
	return min >= float64(w.From) || min < float64(w.To)
}

func (w Window) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.From/60, w.From%60, w.To/60, w.To%60)
}

// Schedule is a set of windows; empty means always.
type Schedule []Window

// ParseSchedule reads every window.
func ParseSchedule(windows []string) (Schedule, error) {
	var out Schedule
	for _, s := range windows {
		w, err := ParseWindow(s)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// Active reports whether t falls in any window (always, when there are
// none).
func (s Schedule) Active(t time.Time) bool {
	if len(s) == 0 {
		return true
	}
	for _, w := range s {
		if w.Contains(t) {
			return true
		}
	}
	return false
}
