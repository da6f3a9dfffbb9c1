package event

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/wire"
)

// run feeds a timeline written one character per 100 ms frame ('#' true,
// '.' false) and returns the transitions as "phase@ms".
func run(cfg Config, timeline string) string {
	n := 0
	l := New(cfg, func(time.Time) string { n++; return fmt.Sprintf("e%d", n) })
	t0 := time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)
	var out []string
	for i, c := range timeline {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		if tr, ok := l.Step(now, c == '#'); ok {
			out = append(out, fmt.Sprintf("%s:%s@%d(from %d)", tr.EventID, tr.Phase, now.Sub(t0).Milliseconds(), tr.StartedAt.Sub(t0).Milliseconds()))
		}
	}
	return strings.Join(out, " ")
}

func TestLifecycle(t *testing.T) {
	base := Config{MinDuration: 300 * time.Millisecond, EndAfter: 500 * time.Millisecond, UpdateInterval: time.Second, Cooldown: 0}
	for _, tc := range []struct {
		name     string
		cfg      Config
		timeline string
		want     string
	}{
		{"too short to start", base, "##......", ""},
		{"start after min duration, end after quiet", base, "####......", "e1:start@300(from 0) e1:end@800(from 0)"},
		{"gaps shorter than end_after keep it open", base, "####..##..##......", "e1:start@300(from 0) e1:end@1600(from 0)"},
		{"updates at most every interval", base, "#########################.....",
			"e1:start@300(from 0) e1:update@1300(from 0) e1:update@2300(from 0) e1:end@2900(from 0)"},
		{"a new event after the first ends", base, "####.....####.....", "e1:start@300(from 0) e1:end@800(from 0) e2:start@1200(from 900) e2:end@1700(from 900)"},
		{"cool-down suppresses a quick restart", Config{MinDuration: 0, EndAfter: 200 * time.Millisecond, Cooldown: time.Second},
			"#..#..........#..", "e1:start@0(from 0) e1:end@200(from 0) e2:start@1400(from 1400) e2:end@1600(from 1400)"},
		{"pending resets after a long gap", base, "##......##......", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.cfg, tc.timeline); got != tc.want {
				t.Errorf("\n got: %s\nwant: %s", got, tc.want)
			}
		})
	}
}

func TestFlushEndsOpenEvent(t *testing.T) {
	l := New(Config{EndAfter: time.Second}, func(time.Time) string { return "e" })
	now := time.Now()
	if _, ok := l.Step(now, true); !ok {
		t.Fatal("no start")
	}
	tr, ok := l.Flush(now.Add(time.Second))
	if !ok || tr.Phase != wire.PhaseEnd || tr.EventID != "e" {
		t.Fatalf("flush: %+v %v", tr, ok)
	}
	if _, ok := l.Flush(now); ok {
		t.Fatal("second flush emitted")
	}
}
