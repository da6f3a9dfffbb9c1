package routing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily time window in local time, start included, end
// excluded. It wraps midnight when End is not after Start.
type Window struct {
	Start, End int // minutes since midnight; End may be 1440 (24:00)
}

const minutesPerDay = 24 * 60

// errBadWindow explains the form of a window.
var errBadWindow = errors.New(`want "HH:MM-HH:MM", e.g. "20:00-06:00"`)

// ParseWindow reads "HH:MM-HH:MM". "24:00" is allowed as an end; a window
// whose end is not after its start wraps midnight; an empty window (equal
// ends) is an error.
func ParseWindow(s string) (Window, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Window{}, fmt.Errorf("%q: %w", s, errBadWindow)
	}
	start, err := parseClock(a, false)
	if err != nil {
		return Window{}, fmt.Errorf("%q: start: %w", s, err)
	}
	end, err := parseClock(b, true)
	if err != nil {
		return Window{}, fmt.Errorf("%q: end: %w", s, err)
	}
	if start == end || (start == 0 && end == minutesPerDay) {
		return Window{}, fmt.Errorf("%q: start and end are the same time; leave windows out for the whole day", s)
	}
	return Window{Start: start, End: end}, nil
}

func parseClock(s string, allow24 bool) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, errBadWindow
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	switch {
	case err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59:
		return 0, errBadWindow
	case hh == 24 && mm == 0 && allow24:
		return minutesPerDay, nil
	case hh > 23:
		return 0, fmt.Errorf("%02d:%02d is not a time of day", hh, mm)
	}
	return hh*60 + mm, nil
}

// Wraps reports whether the window runs past midnight.
func (w Window) Wraps() bool { return w.End <= w.Start }

// Contains reports whether local time t falls in the window and, if so,
// the date the window started on (the day before t for the part of a
// wrapping window after midnight).
func (w Window) Contains(t time.Time) (started time.Time, ok bool) {
	m := t.Hour()*60 + t.Minute()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
	switch {
	case !w.Wraps():
		return day, m >= w.Start && m < w.End
	case m >= w.Start:
		return day, true
	case m < w.End:
		return day.AddDate(0, 0, -1), true
	}
	return time.Time{}, false
}

func (w Window) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// parseWeekday reads mon … sun or monday … sunday, in any case.
func parseWeekday(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for d := time.Sunday; d <= time.Saturday; d++ {
		name := strings.ToLower(d.String())
		if s == name || s == name[:3] {
			return d, true
		}
	}
	return 0, false
}
