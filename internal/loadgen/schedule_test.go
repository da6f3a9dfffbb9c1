package loadgen

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/wire"
)

func testConfig() Config {
	c := Default()
	c.Agents, c.CamerasPerAgent = 50, 8
	c.Rate = Rate{Value: 200}
	c.Duration = 2 * time.Minute
	c.Evidence = 0.3
	c.Seed = 7
	return c
}

func TestScheduleSameSeedSameSchedule(t *testing.T) {
	c := testConfig()
	a := NewSchedule(c).Until(c.Duration)
	b := NewSchedule(c).Until(c.Duration)
	if len(a) < 1000 {
		t.Fatalf("only %d events in 2 minutes at 200/s", len(a))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two schedules with the same seed and settings differ")
	}
	c.Seed = 8
	d := NewSchedule(c).Until(c.Duration)
	if reflect.DeepEqual(a, d) {
		t.Fatal("a different seed gave the same schedule")
	}
	same := 0
	for i := range min(len(a), len(d)) {
		if a[i].At == d[i].At {
			same++
		}
	}
	if same > len(a)/100 {
		t.Errorf("%d of %d arrival times equal under another seed", same, len(a))
	}
}

// A camera's arrivals do not depend on the size of the fleet around it, so
// that runs of 10k and 100k cameras are comparable.
func TestScheduleCameraIndependentOfFleet(t *testing.T) {
	c := testConfig()
	c.Rate = Rate{Value: 30, PerCamera: true}
	small := NewSchedule(c).Agent(3)
	c.Agents = 5000
	big := NewSchedule(c).Agent(3)
	for range 50 {
		if x, y := small.Next(), big.Next(); x != y {
			t.Fatalf("agent 3's schedule changed with the fleet size: %v vs %v", x, y)
		}
	}
}

func TestScheduleRateAndContent(t *testing.T) {
	c := testConfig()
	c.Duration = 10 * time.Minute
	ev := NewSchedule(c).Until(c.Duration)
	want := 200 * c.Duration.Seconds()
	if got := float64(len(ev)); math.Abs(got-want) > 4*math.Sqrt(want) {
		t.Errorf("%v events, want about %v (Poisson, 4 sigma)", got, want)
	}
	types, snaps := map[string]int{}, 0
	open := map[[2]int]bool{}
	for i, e := range ev {
		if i > 0 && e.At < ev[i-1].At {
			t.Fatalf("event %d is before event %d", i, i-1)
		}
		key := [2]int{e.Agent, e.Camera}
		switch e.Phase {
		case wire.PhaseStart:
			if open[key] {
				t.Fatalf("camera %v starts an event while one is open", key)
			}
			open[key] = true
		case wire.PhaseUpdate, wire.PhaseEnd:
			if !open[key] {
				t.Fatalf("camera %v: %s without a start", key, e.Phase)
			}
			open[key] = e.Phase == wire.PhaseUpdate
		}
		if !wire.ValidType(e.Type) || e.Severity < 1 || e.Severity > 4 {
			t.Fatalf("invalid event %v", e)
		}
		types[e.Type]++
		if e.Evidence > 0 {
			snaps++
			if e.Evidence > wire.MaxSnapshotBytes || e.Phase == wire.PhaseEnd {
				t.Fatalf("bad snapshot in %v", e)
			}
		}
	}
	if len(types) < 6 {
		t.Errorf("only %d alert types drawn: %v", len(types), types)
	}
	if types[wire.TypeIntrusion] < types[wire.TypeCameraTamper] {
		t.Errorf("intrusions (%d) should outnumber tampering (%d)", types[wire.TypeIntrusion], types[wire.TypeCameraTamper])
	}
	if snaps == 0 {
		t.Error("no snapshots at --evidence 0.3")
	}
}

// The diurnal profile, compressed to a day in 24 minutes, is quiet in the
// small hours and stormy at dusk; the daily mean stays the configured rate.
func TestScheduleDiurnalProfile(t *testing.T) {
	c := testConfig()
	c.Profile, c.Compress, c.StartHour = "diurnal", 60, 0
	c.Duration = 24 * time.Minute // one simulated day
	ev := NewSchedule(c).Until(c.Duration)
	perHour := make([]int, 24)
	for _, e := range ev {
		perHour[int(e.At.Minutes())]++
	}
	night := perHour[2] + perHour[3] + perHour[4]
	dusk := perHour[17] + perHour[18] + perHour[19]
	if dusk < 10*night {
		t.Errorf("dusk (17–19 h) %d alerts, small hours (2–4 h) %d: want a storm at dusk against quiet nights; per hour %v", dusk, night, perHour)
	}
	want := 200 * c.Duration.Seconds()
	if got := float64(len(ev)); math.Abs(got-want) > 0.05*want {
		t.Errorf("%v alerts in a day, want about %v: the profile's mean should be the rate", got, want)
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in     string
		perCam float64 // per camera per second with 1000 cameras
		err    bool
	}{
		{"200", 0.2, false},
		{"200/s", 0.2, false},
		{"36/cam/h", 0.01, false},
		{"-1", 0, true},
		{"fast", 0, true},
		{"3/min", 0, true},
	} {
		r, err := ParseRate(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err == nil && math.Abs(r.PerCameraPerSecond(1000)-tc.perCam) > 1e-12 {
			t.Errorf("%q: %v per camera per second, want %v", tc.in, r.PerCameraPerSecond(1000), tc.perCam)
		}
	}
}

func TestConfigValidateNamesEveryBadFlag(t *testing.T) {
	c := Default()
	c.Agents, c.Profile, c.Evidence, c.StormFraction = 0, "weekly", 2, -1
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, flag := range []string{"--agents", "--profile", "--evidence", "--storm-fraction"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error does not name %s: %v", flag, err)
		}
	}
	if _, err := New(c, nil, nil); err == nil {
		t.Error("New accepted an invalid configuration")
	}
}
