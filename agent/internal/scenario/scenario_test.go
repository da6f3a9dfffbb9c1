package scenario

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/zone"
)

var (
	box      = [][2]float64{{0.1, 0.1}, {0.5, 0.1}, {0.5, 0.5}, {0.1, 0.5}}
	testZone = []zone.Zone{
		{Name: "bank", Tags: []string{"no_fishing", "water"}, Polygon: box},
		{Name: "river", Tags: []string{"water", "restricted"}, Polygon: box},
		{Name: "road", Tags: []string{"restricted"}, Polygon: box},
		{Name: "glare", Tags: []string{"no_fishing"}, Polygon: box, Exclude: true},
	}
	shanghai, _ = time.LoadLocation("Asia/Shanghai")
	// t0 is 21:00 in Shanghai.
	t0 = time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)
	lc = event.Config{MinDuration: time.Second, EndAfter: 2 * time.Second, UpdateInterval: 10 * time.Second}
)

func zones(t *testing.T) *zone.Set {
	t.Helper()
	s, err := zone.NewSet(testZone)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func engine(t *testing.T, opts Options, specs ...Spec) *Engine {
	t.Helper()
	if opts.Location == nil {
		opts.Location = shanghai
	}
	n := 0
	opts.NewID = func(time.Time) string { n++; return fmt.Sprintf("e%d", n) }
	e, err := New(specs, zones(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func obj(id int64, class string, zone string, dwell time.Duration) Object {
	return Object{TrackID: id, Class: class, Score: 0.8, Box: [4]float64{0.2, 0.2, 0.05, 0.1},
		Zones: []string{zone}, Dwell: map[string]time.Duration{zone: dwell}}
}

// frames builds a timeline of 500 ms frames: objects(i) gives frame i's
// objects.
func steps(e *Engine, start time.Time, n int, objects func(i int) []Object, tamper func(i int) string) []string {
	var out []string
	for i := range n {
		f := Frame{At: start.Add(time.Duration(i) * 500 * time.Millisecond), Objects: objects(i)}
		if tamper != nil {
			f.Tamper = tamper(i)
		}
		for _, r := range e.Step(f) {
			if r.Transition == nil {
				continue
			}
			s := fmt.Sprintf("%s@%s:%s@%.1f", r.Rule.Type(), r.Rule.Zone, r.Transition.Phase, r.Transition.At.Sub(start).Seconds())
			if r.Reason != "" {
				s += "(" + r.Reason + ")"
			}
			if len(r.Hits) > 0 {
				var ids []string
				for _, h := range r.Hits {
					ids = append(ids, fmt.Sprintf("%d", h.TrackID))
				}
				s += "[" + strings.Join(ids, ",") + "]"
			}
			out = append(out, s)
		}
	}
	return out
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		specs   []Spec
		start   time.Time
		n       int
		objects func(i int) []Object
		tamper  func(i int) string
		want    []string
	}{
		{
			name:  "intrusion: a person on the road, then gone",
			specs: []Spec{{Type: Intrusion, Severity: 3, Zones: []string{"road"}, Lifecycle: lc}},
			n:     20,
			objects: func(i int) []Object {
				if i < 8 {
					return []Object{obj(1, "person", "road", time.Duration(i)*500*time.Millisecond)}
				}
				return nil
			},
			want: []string{"intrusion@road:start@1.0[1]", "intrusion@road:end@5.5"},
		},
		{
			name:  "intrusion ignores other classes and other zones",
			specs: []Spec{{Type: Intrusion, Severity: 3, Zones: []string{"road"}, Lifecycle: lc}},
			n:     10,
			objects: func(int) []Object {
				return []Object{obj(1, "car", "road", time.Minute), obj(2, "person", "bank", time.Minute)}
			},
			want: nil,
		},
		{
			name:  "loitering waits for the dwell",
			specs: []Spec{{Type: Loitering, Severity: 3, Zones: []string{"road"}, MinDwell: 3 * time.Second, Lifecycle: lc}},
			n:     14,
			objects: func(i int) []Object {
				return []Object{obj(7, "person", "road", time.Duration(i)*500*time.Millisecond)}
			},
			// dwell 3 s at frame 6 (3.0 s), true for the min duration of 1 s
			want: []string{"loitering@road:start@4.0[7]"},
		},
		{
			name:  "crowd needs three together",
			specs: []Spec{{Type: Crowd, Severity: 2, Zones: []string{"road"}, Lifecycle: lc}},
			n:     16,
			objects: func(i int) []Object {
				people := []Object{obj(1, "person", "road", 0), obj(2, "person", "road", 0)}
				if i >= 4 && i < 10 {
					people = append(people, obj(3, "person", "road", 0))
				}
				return people
			},
			want: []string{"crowd@road:start@3.0[1,2,3]", "crowd@road:end@6.5"},
		},
		{
			name:  "illegal_fishing selects no_fishing zones by default and counts boats",
			specs: []Spec{{Type: IllegalFishing, Severity: 2, MinDwell: time.Second, Lifecycle: lc}},
			n:     6,
			objects: func(i int) []Object {
				return []Object{obj(4, "boat", "bank", time.Duration(i)*time.Second)}
			},
			want: []string{"illegal_fishing@bank:start@1.5[4]"}, // dwell 1 s at 0.5 s, then the min duration
		},
		{
			name:  "boat_in_restricted_water: zones tagged water and restricted",
			specs: []Spec{{Type: BoatInRestrictedWater, Severity: 2, Lifecycle: lc}},
			n:     6,
			objects: func(i int) []Object {
				return []Object{obj(5, "boat", "river", 0), obj(6, "boat", "road", 0), obj(8, "boat", "bank", 0)}
			},
			want: []string{"boat_in_restricted_water@river:start@1.0[5]"},
		},
		{
			name: "schedule 20:00-06:00 crosses midnight: quiet by day",
			specs: []Spec{{Type: Intrusion, Severity: 3, Zones: []string{"road"}, Schedule: []string{"20:00-06:00"},
				Lifecycle: lc}},
			start:   time.Date(2026, 11, 21, 4, 0, 0, 0, time.UTC), // 12:00 in Shanghai
			n:       10,
			objects: func(int) []Object { return []Object{obj(1, "person", "road", 0)} },
			want:    nil,
		},
		{
			name: "schedule 20:00-06:00 crosses midnight: fires after midnight, ends at 06:00",
			specs: []Spec{{Type: Intrusion, Severity: 3, Zones: []string{"road"}, Schedule: []string{"20:00–06:00"},
				Lifecycle: lc}},
			start:   time.Date(2026, 11, 21, 21, 59, 55, 0, time.UTC), // 05:59:55 in Shanghai
			n:       20,
			objects: func(int) []Object { return []Object{obj(1, "person", "road", 0)} },
			want:    []string{"intrusion@road:start@1.0[1]", "intrusion@road:end@6.5"}, // last true at 4.5 s (05:59:59.5)
		},
		{
			name:    "camera_tamper carries the reason",
			specs:   []Spec{{Type: CameraTamper, Severity: 2, Lifecycle: lc}},
			n:       14,
			objects: func(int) []Object { return nil },
			tamper: func(i int) string {
				if i >= 2 && i < 8 {
					return "covered"
				}
				return ""
			},
			want: []string{"camera_tamper@:start@2.0(covered)", "camera_tamper@:end@5.5"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engine(t, Options{}, tc.specs...)
			start := tc.start
			if start.IsZero() {
				start = t0
			}
			got := steps(e, start, tc.n, tc.objects, tc.tamper)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestMotionOnlyIntrusion(t *testing.T) {
	e := engine(t, Options{MotionOnly: true}, Spec{Type: Intrusion, Severity: 3, Zones: []string{"road"}, MinMotion: 0.05, Lifecycle: lc})
	var got []string
	for i := range 10 {
		m := Motion{Warm: true, Ratio: 0.2, Blobs: [][4]float64{{0.2, 0.2, 0.1, 0.1}}}
		if i >= 5 {
			m.Ratio = 0.01 // below min_motion
		}
		for _, r := range e.Step(Frame{At: t0.Add(time.Duration(i) * 500 * time.Millisecond), Motion: map[string]Motion{"road": m}}) {
			if r.Transition != nil {
				got = append(got, fmt.Sprintf("%s:%d", r.Transition.Phase, len(r.Hits)))
				if len(r.Hits) > 0 && r.Hits[0].Class != MotionClass {
					t.Errorf("hit class %q", r.Hits[0].Class)
				}
			}
		}
	}
	if !slices.Equal(got, []string{"start:1", "end:0"}) {
		t.Fatalf("got %v", got)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		opts Options
		want string
	}{
		{"unknown type", Spec{Type: "teleport", Severity: 1, Lifecycle: lc}, Options{}, `"teleport" is not one of`},
		{"bad severity", Spec{Type: Intrusion, Severity: 5, Zones: []string{"road"}, Lifecycle: lc}, Options{}, "severity: 5 is outside"},
		{"bad schedule", Spec{Type: Intrusion, Severity: 1, Zones: []string{"road"}, Schedule: []string{"25:00-06:00"}, Lifecycle: lc}, Options{}, "not a time of day"},
		{"empty window", Spec{Type: Intrusion, Severity: 1, Zones: []string{"road"}, Schedule: []string{"06:00-06:00"}, Lifecycle: lc}, Options{}, "is empty"},
		{"unknown zone", Spec{Type: Intrusion, Severity: 1, Zones: []string{"lake"}, Lifecycle: lc}, Options{}, `no zone named "lake"`},
		{"exclude zone", Spec{Type: Intrusion, Severity: 1, Zones: []string{"glare"}, Lifecycle: lc}, Options{}, "exclude zone"},
		{"no zones", Spec{Type: Intrusion, Severity: 1, Lifecycle: lc}, Options{}, "no include zone"},
		{"tamper with zones", Spec{Type: CameraTamper, Severity: 1, Zones: []string{"road"}, Lifecycle: lc}, Options{}, "takes no zones"},
		{"crowd of one", Spec{Type: Crowd, Severity: 1, Zones: []string{"road"}, MinCount: 1, Lifecycle: lc}, Options{}, "min_count: crowd needs at least 2"},
		{"class the detector lacks", Spec{Type: IllegalFishing, Severity: 1, Lifecycle: lc}, Options{Classes: []string{"person"}}, `class "boat"`},
		{"motion only", Spec{Type: Crowd, Severity: 1, Zones: []string{"road"}, Lifecycle: lc}, Options{MotionOnly: true}, "needs an object detector"},
		{"no end_after", Spec{Type: Intrusion, Severity: 1, Zones: []string{"road"}}, Options{}, "end_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.spec.WithDefaults(), zones(t), tc.opts).Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if err := Check(Spec{Type: CameraTamper, Severity: 2, Lifecycle: lc}.WithDefaults(), zones(t), Options{MotionOnly: true}).Err(); err != nil {
		t.Errorf("camera_tamper needs no detector: %v", err)
	}
}

func TestWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 1, h, m, 0, 0, time.UTC) }
	for _, tc := range []struct {
		w    string
		t    time.Time
		want bool
	}{
		{"20:00-06:00", at(21, 0), true},
		{"20:00-06:00", at(2, 0), true},
		{"20:00-06:00", at(6, 0), false},
		{"20:00-06:00", at(12, 0), false},
		{"08:30-17:00", at(8, 30), true},
		{"08:30-17:00", at(17, 0), false},
		{"00:00-24:00", at(23, 59), true},
	} {
		w, err := ParseWindow(tc.w)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Contains(tc.t); got != tc.want {
			t.Errorf("%s contains %s: %v, want %v", tc.w, tc.t.Format("15:04"), got, tc.want)
		}
	}
	for _, bad := range []string{"20:00", "8-9", "24:00-06:00", "20:60-21:00", "aa:bb-cc:dd"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A reload keeps the open event of a rule that survives (its settings
// change), ends the events of rules that disappear and starts new rules
// idle.
func TestReconfigure(t *testing.T) {
	e := engine(t, Options{},
		Spec{Type: Intrusion, Severity: 3, Zones: []string{"road", "bank"}, Lifecycle: lc},
	)
	person := func(at time.Duration) []Object {
		return []Object{obj(1, "person", "road", at), obj(2, "person", "bank", at)}
	}
	for i := range 4 {
		e.Step(Frame{At: t0.Add(time.Duration(i) * 500 * time.Millisecond), Objects: person(0)})
	}
	at := t0.Add(2 * time.Second)
	ended, err := e.Reconfigure([]Spec{
		{Type: Intrusion, Severity: 1, Zones: []string{"road"}, Lifecycle: lc},
		{Type: Crowd, Severity: 2, Zones: []string{"road"}, MinCount: 2, Lifecycle: lc},
	}, zones(t), at)
	if err != nil {
		t.Fatal(err)
	}
	if len(ended) != 1 || ended[0].Rule.Zone != "bank" || ended[0].Transition.Phase != "end" {
		t.Fatalf("ended %+v", ended)
	}
	res := e.Step(Frame{At: at.Add(500 * time.Millisecond), Objects: person(0)})
	if len(res) != 2 || !res[0].Active || res[0].Transition != nil || res[0].Rule.Spec.Severity != 1 {
		t.Fatalf("the road intrusion should go on, now at severity 1: %+v", res[0])
	}
	if res[1].Active {
		t.Fatal("the new crowd rule starts idle")
	}
	if _, err := e.Reconfigure([]Spec{{Type: Intrusion, Severity: 9, Zones: []string{"road"}, Lifecycle: lc}}, zones(t), at); err == nil {
		t.Fatal("an invalid reload was accepted")
	}
	if len(e.Rules()) != 2 {
		t.Fatal("a failed reload changed the rules")
	}
}
