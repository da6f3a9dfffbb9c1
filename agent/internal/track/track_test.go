package track

import (
	"image"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/detect"
)

var t0 = time.Date(2025, 3, 1, 20, 0, 0, 0, time.UTC)

const step = 100 * time.Millisecond // 10 frames per second

func person(x, y int) detect.Detection {
	return detect.Detection{Class: "person", ClassID: 0, Score: 0.8, Box: image.Rect(x, y, x+40, y+80)}
}

func car(x, y int) detect.Detection {
	return detect.Detection{Class: "car", ClassID: 2, Score: 0.7, Box: image.Rect(x, y, x+40, y+80)}
}

// run feeds frames step apart and returns the tracks after each.
func run(t *testing.T, cfg Config, frames [][]detect.Detection) [][]Track {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]Track, len(frames))
	for i, dets := range frames {
		out[i] = tr.Update(t0.Add(time.Duration(i)*step), dets, 1000, 1000)
	}
	return out
}

// idAt returns the ID of the track whose last box is b.
func idAt(tracks []Track, b image.Rectangle) int64 {
	for _, tr := range tracks {
		if tr.Box == b {
			return tr.ID
		}
	}
	return 0
}

func ids(history [][]Track) []int64 {
	var out []int64
	for _, tracks := range history {
		for _, tr := range tracks {
			if !slices.Contains(out, tr.ID) {
				out = append(out, tr.ID)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		frames  func() [][]detect.Detection
		wantIDs int // distinct IDs over the run
		check   func(t *testing.T, h [][]Track)
	}{
		{
			name: "a walker keeps one ID",
			frames: func() (f [][]detect.Detection) {
				for i := range 30 {
					f = append(f, []detect.Detection{person(100+6*i, 300)})
				}
				return f
			},
			wantIDs: 1,
			check: func(t *testing.T, h [][]Track) {
				if len(h[0]) != 0 {
					t.Error("a track was reported after one detection (min hits 2)")
				}
				if tr := h[29][0]; tr.Hits != 30 || tr.FirstSeen != t0 || tr.LastSeen != t0.Add(29*step) || tr.Lost {
					t.Errorf("track %+v", tr)
				}
			},
		},
		{
			// Head-on on one line, 12 px a frame: at frame 13 each walker is
			// exactly where the other was, so only the motion prior tells
			// them apart.
			name: "crossing paths keep their IDs",
			frames: func() (f [][]detect.Detection) {
				for i := range 30 {
					f = append(f, []detect.Detection{person(100+12*i, 300), person(400-12*i, 300)})
				}
				return f
			},
			wantIDs: 2,
			check: func(t *testing.T, h [][]Track) {
				a, b := idAt(h[2], person(124, 300).Box), idAt(h[2], person(376, 300).Box)
				if a == 0 || b == 0 || a == b {
					t.Fatalf("IDs %d, %d", a, b)
				}
				if got := idAt(h[29], person(100+12*29, 300).Box); got != a {
					t.Errorf("the walker going right ends as %d, began as %d", got, a)
				}
				if got := idAt(h[29], person(400-12*29, 300).Box); got != b {
					t.Errorf("the walker going left ends as %d, began as %d", got, b)
				}
			},
		},
		{
			// The same, with the walker behind hidden for 5 frames while they
			// pass: it comes back where its motion says.
			name: "crossing with the one behind hidden keeps the IDs",
			frames: func() (f [][]detect.Detection) {
				for i := range 30 {
					dets := []detect.Detection{person(100+12*i, 300)}
					if i < 11 || i > 15 {
						dets = append(dets, person(400-12*i, 300))
					}
					f = append(f, dets)
				}
				return f
			},
			wantIDs: 2,
			check: func(t *testing.T, h [][]Track) {
				a, b := idAt(h[2], person(124, 300).Box), idAt(h[2], person(376, 300).Box)
				if got := idAt(h[29], person(100+12*29, 300).Box); got != a {
					t.Errorf("the walker in front ends as %d, began as %d", got, a)
				}
				if got := idAt(h[29], person(400-12*29, 300).Box); got != b {
					t.Errorf("the hidden walker ends as %d, began as %d", got, b)
				}
				for _, tr := range h[14] {
					if tr.ID == b && (!tr.Lost || tr.Missed != 4) {
						t.Errorf("hidden walker during the occlusion: %+v", tr)
					}
				}
			},
		},
		{
			name: "a gap shorter than max missed keeps the ID",
			cfg:  Config{MaxMissed: 10},
			frames: func() (f [][]detect.Detection) {
				for i := range 30 {
					var dets []detect.Detection
					if i < 10 || i >= 18 { // 8 frames missed
						dets = append(dets, person(100+3*i, 300))
					}
					f = append(f, dets)
				}
				return f
			},
			wantIDs: 1,
			check: func(t *testing.T, h [][]Track) {
				tr := h[14][0]
				if !tr.Lost || tr.Missed != 5 || tr.Box != person(127, 300).Box {
					t.Errorf("while missing: %+v", tr)
				}
				if want := person(100+3*14, 300).Box; tr.Predicted.Sub(want.Min).Min.X > 1 || tr.Predicted.Sub(want.Min).Min.X < -1 {
					t.Errorf("predicted %v, want about %v", tr.Predicted, want)
				}
			},
		},
		{
			name: "a gap longer than max missed gives a new ID",
			cfg:  Config{MaxMissed: 10},
			frames: func() (f [][]detect.Detection) {
				for i := range 40 {
					var dets []detect.Detection
					if i < 10 || i >= 22 { // 12 frames missed
						dets = append(dets, person(100+3*i, 300))
					}
					f = append(f, dets)
				}
				return f
			},
			wantIDs: 2,
			check: func(t *testing.T, h [][]Track) {
				if len(h[21]) != 0 {
					t.Errorf("track outlived max missed: %+v", h[21])
				}
			},
		},
		{
			name: "a gap shorter than max lost keeps the ID",
			cfg:  Config{MaxMissed: 100, MaxLost: time.Second},
			frames: func() (f [][]detect.Detection) {
				for i := range 30 {
					var dets []detect.Detection
					if i < 10 || i >= 19 { // 0.9 s between detections
						dets = append(dets, person(100+3*i, 300))
					}
					f = append(f, dets)
				}
				return f
			},
			wantIDs: 1,
		},
		{
			name: "a gap longer than max lost gives a new ID",
			cfg:  Config{MaxMissed: 100, MaxLost: time.Second},
			frames: func() (f [][]detect.Detection) {
				for i := range 30 {
					var dets []detect.Detection
					if i < 10 || i >= 21 { // 1.1 s between detections
						dets = append(dets, person(100+3*i, 300))
					}
					f = append(f, dets)
				}
				return f
			},
			wantIDs: 2,
		},
		{
			name: "classes are matched separately",
			frames: func() (f [][]detect.Detection) {
				for i := range 10 {
					f = append(f, []detect.Detection{person(100+2*i, 300), car(100+2*i, 300)})
				}
				return f
			},
			wantIDs: 2,
			check: func(t *testing.T, h [][]Track) {
				last := h[9]
				if len(last) != 2 || last[0].Class == last[1].Class {
					t.Errorf("tracks %+v", last)
				}
			},
		},
		{
			name: "a person does not continue a car's track",
			frames: func() (f [][]detect.Detection) {
				for i := range 10 {
					d := car(100, 300)
					if i >= 5 {
						d = person(100, 300)
					}
					f = append(f, []detect.Detection{d})
				}
				return f
			},
			wantIDs: 2,
		},
		{
			name: "a one-frame false detection gets no ID",
			frames: func() (f [][]detect.Detection) {
				for i := range 10 {
					dets := []detect.Detection{person(100+2*i, 300)}
					if i == 4 {
						dets = append(dets, person(700, 700))
					}
					f = append(f, dets)
				}
				return f
			},
			wantIDs: 1,
		},
		{
			name: "weak detections are ignored",
			cfg:  Config{MinScore: 0.5},
			frames: func() (f [][]detect.Detection) {
				for range 5 {
					f = append(f, []detect.Detection{{Class: "person", Score: 0.3, Box: image.Rect(0, 0, 10, 20)}})
				}
				return f
			},
			wantIDs: 0,
		},
		{
			name: "a fast object at a low frame rate matches by centroid",
			frames: func() (f [][]detect.Detection) {
				for i := range 10 {
					f = append(f, []detect.Detection{person(100+35*i, 300)}) // 35 px steps, 40 px wide: IoU < 0.2 at first
				}
				return f
			},
			wantIDs: 1,
		},
		{
			name: "with the centroid gate off, it does not",
			cfg:  Config{CentroidGate: -1},
			frames: func() (f [][]detect.Detection) {
				for i := range 10 {
					f = append(f, []detect.Detection{person(100+35*i, 300)})
				}
				return f
			},
			wantIDs: 0, // every detection starts a new tentative track, none reaches two hits
		},
		{
			name: "minimum hits 1 reports at once",
			cfg:  Config{MinHits: 1},
			frames: func() [][]detect.Detection {
				return [][]detect.Detection{{person(0, 0)}}
			},
			wantIDs: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := run(t, tc.cfg, tc.frames())
			if got := ids(h); len(got) != tc.wantIDs {
				t.Errorf("IDs %v, want %d distinct", got, tc.wantIDs)
			}
			if tc.check != nil {
				tc.check(t, h)
			}
		})
	}
}

func TestDwell(t *testing.T) {
	zones := []Zone{
		{Name: "left", Polygon: [][2]float64{{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}},
		{Name: "far-corner", Polygon: [][2]float64{{0.9, 0.9}, {1, 0.9}, {1, 1}}},
	}
	// The feet walk right from x = 400 to 600, 10 px a frame, then back to
	// 400. The left zone ends at x = 500.
	var frames [][]detect.Detection
	for i := range 21 {
		frames = append(frames, []detect.Detection{person(380+10*i, 300)})
	}
	for i := range 21 {
		frames = append(frames, []detect.Detection{person(580-10*i, 300)})
	}
	h := run(t, Config{Zones: zones}, frames)

	at := func(i int) Track {
		t.Helper()
		if len(h[i]) != 1 {
			t.Fatalf("frame %d: tracks %+v", i, h[i])
		}
		return h[i][0]
	}
	tests := []struct {
		frame int
		dwell time.Duration
		zones []string
	}{
		{1, 100 * time.Millisecond, []string{"left"}},
		{9, 900 * time.Millisecond, []string{"left"}},  // x = 490, inside since frame 0
		{10, 900 * time.Millisecond, nil},              // x = 500: left the zone
		{20, 900 * time.Millisecond, nil},              // far right, outside all along
		{31, 900 * time.Millisecond, nil},              // x = 500 on the way back
		{32, 900 * time.Millisecond, []string{"left"}}, // x = 490, back in: the step in does not count
		{41, 1800 * time.Millisecond, []string{"left"}},
	}
	for _, tc := range tests {
		tr := at(tc.frame)
		if tr.Dwell["left"] != tc.dwell || !slices.Equal(tr.Zones, tc.zones) {
			t.Errorf("frame %d: dwell %v in %v, want %v in %v", tc.frame, tr.Dwell["left"], tr.Zones, tc.dwell, tc.zones)
		}
		if _, ok := tr.Dwell["far-corner"]; ok {
			t.Errorf("frame %d: dwell in a zone never entered", tc.frame)
		}
	}
}

func TestTracksAreCopies(t *testing.T) {
	zones := []Zone{{Name: "all", Polygon: [][2]float64{{0, 0}, {1, 0}, {1, 1}, {0, 1}}}}
	tr, err := New(Config{Zones: zones, MinHits: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr.Update(t0, []detect.Detection{person(100, 100)}, 1000, 1000)
	got := tr.Update(t0.Add(time.Second), []detect.Detection{person(100, 100)}, 1000, 1000)
	got[0].Dwell["all"] = time.Hour
	got[0].Zones[0] = "changed"
	again := tr.Tracks()
	if again[0].Dwell["all"] != time.Second || again[0].Zones[0] != "all" {
		t.Errorf("Update handed out the tracker's own state: %+v", again[0])
	}
}

func TestDwellCountsAShortGapInside(t *testing.T) {
	zones := []Zone{{Name: "all", Polygon: [][2]float64{{0, 0}, {1, 0}, {1, 1}, {0, 1}}}}
	tr, err := New(Config{Zones: zones})
	if err != nil {
		t.Fatal(err)
	}
	tr.Update(t0, []detect.Detection{person(100, 100)}, 1000, 1000)
	tr.Update(t0.Add(time.Second), []detect.Detection{person(100, 100)}, 1000, 1000)
	tr.Update(t0.Add(2*time.Second), nil, 1000, 1000) // missed, inside before and after
	got := tr.Update(t0.Add(3*time.Second), []detect.Detection{person(100, 100)}, 1000, 1000)
	if len(got) != 1 || got[0].Dwell["all"] != 3*time.Second {
		t.Fatalf("tracks %+v", got)
	}
	// No frame size: zones are not evaluated, nothing breaks.
	got = tr.Update(t0.Add(4*time.Second), []detect.Detection{person(100, 100)}, 0, 0)
	if len(got) != 1 || got[0].Dwell["all"] != 3*time.Second {
		t.Fatalf("without a frame size: %+v", got)
	}
}

func TestTimeGoingBackwards(t *testing.T) {
	zones := []Zone{{Name: "all", Polygon: [][2]float64{{0, 0}, {1, 0}, {1, 1}, {0, 1}}}}
	tr, err := New(Config{Zones: zones})
	if err != nil {
		t.Fatal(err)
	}
	tr.Update(t0.Add(time.Second), []detect.Detection{person(100, 100)}, 1000, 1000)
	got := tr.Update(t0, []detect.Detection{person(101, 100)}, 1000, 1000)
	if len(got) != 1 || got[0].Dwell["all"] < 0 || got[0].LastSeen != t0.Add(time.Second) {
		t.Fatalf("tracks %+v", got)
	}
}

func TestIDsAreNeverReused(t *testing.T) {
	tr, err := New(Config{MaxMissed: 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	at := t0
	for round := range 5 {
		for range 3 {
			for _, x := range tr.Update(at, []detect.Detection{person(100*round, 0)}, 1000, 1000) {
				seen[x.ID] = true
			}
			at = at.Add(step)
		}
		for range 3 {
			tr.Update(at, nil, 1000, 1000)
			at = at.Add(step)
		}
	}
	if len(seen) != 5 {
		t.Errorf("IDs %v, want 5 distinct", seen)
	}
}

func TestConfigValidation(t *testing.T) {
	square := [][2]float64{{0, 0}, {1, 0}, {1, 1}}
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{IoUThreshold: 1.5}, "iou_threshold"},
		{Config{MinHits: -1}, "must not be negative"},
		{Config{Smoothing: 2}, "smoothing"},
		{Config{Zones: []Zone{{Name: "", Polygon: square}}}, "no name"},
		{Config{Zones: []Zone{{Name: "a", Polygon: square}, {Name: "a", Polygon: square}}}, "appears twice"},
		{Config{Zones: []Zone{{Name: "a", Polygon: square[:2]}}}, "at least 3 points"},
		{Config{Zones: []Zone{{Name: "a", Polygon: [][2]float64{{0, 0}, {1.2, 0}, {1, 1}}}}}, "outside 0–1"},
	}
	for _, tc := range tests {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestPointInPolygon(t *testing.T) {
	square := [][2]float64{{0.2, 0.2}, {0.8, 0.2}, {0.8, 0.8}, {0.2, 0.8}}
	// An L: the top-right quarter is cut away.
	ell := [][2]float64{{0, 0}, {0.5, 0}, {0.5, 0.5}, {1, 0.5}, {1, 1}, {0, 1}}
	triangle := [][2]float64{{0.5, 0}, {1, 1}, {0, 1}}
	tests := []struct {
		name string
		poly [][2]float64
		p    [2]float64
		want bool
	}{
		{"square centre", square, [2]float64{0.5, 0.5}, true},
		{"square outside left", square, [2]float64{0.1, 0.5}, false},
		{"square outside below", square, [2]float64{0.5, 0.9}, false},
		{"L inside the foot", ell, [2]float64{0.75, 0.75}, true},
		{"L inside the stem", ell, [2]float64{0.25, 0.25}, true},
		{"L in the cut-away corner", ell, [2]float64{0.75, 0.25}, false},
		{"triangle inside", triangle, [2]float64{0.5, 0.9}, true},
		{"triangle beside the apex", triangle, [2]float64{0.2, 0.2}, false},
		{"degenerate polygon", [][2]float64{{0, 0}, {1, 1}}, [2]float64{0.5, 0.5}, false},
	}
	for _, tc := range tests {
		if got := PointInPolygon(tc.p, tc.poly); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// BenchmarkUpdate is one frame with 20 people walking.
func BenchmarkUpdate(b *testing.B) {
	tr, err := New(Config{Zones: []Zone{{Name: "z", Polygon: [][2]float64{{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}}}})
	if err != nil {
		b.Fatal(err)
	}
	dets := make([]detect.Detection, 20)
	for i := 0; b.Loop(); i++ {
		for k := range dets {
			dets[k] = person(50*k+i%100, 40*(k%5)+i%50)
		}
		tr.Update(t0.Add(time.Duration(i)*step), dets, 1000, 1000)
	}
}

// Frames the detector skips: Advance moves the predicted box along the
// track's velocity and counts nothing as missed, so a track carried over
// many skipped frames is neither lost nor ended.
func TestAdvanceCarriesTracksBetweenDetections(t *testing.T) {
	tr, err := New(Config{MaxMissed: 2})
	if err != nil {
		t.Fatal(err)
	}
	tr.Update(t0, []detect.Detection{person(100, 300)}, 1000, 1000)
	tr.Update(t0.Add(step), []detect.Detection{person(110, 300)}, 1000, 1000) // 100 px/s to the right
	var got []Track
	for i := 2; i <= 10; i++ {
		got = tr.Advance(t0.Add(time.Duration(i) * step))
	}
	if len(got) != 1 || got[0].Lost || got[0].Missed != 0 {
		t.Fatalf("after nine skipped frames: %+v", got)
	}
	if p := got[0].Predicted; p.Min.X < 180 || p.Min.X > 200 || got[0].Box.Min.X != 110 {
		t.Errorf("predicted %v (want x≈190), last box %v", p, got[0].Box)
	}
	// The next detection near the prediction keeps the ID.
	got = tr.Update(t0.Add(11*step), []detect.Detection{person(200, 300)}, 1000, 1000)
	if len(got) != 1 || got[0].ID != 1 || got[0].Lost {
		t.Fatalf("after the next detection: %+v", got)
	}
}

// A reload replaces the zones: membership is measured again at once, dwell
// per zone name is kept.
func TestSetZones(t *testing.T) {
	left := Zone{Name: "left", Polygon: [][2]float64{{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}}
	right := Zone{Name: "right", Polygon: [][2]float64{{0.5, 0}, {1, 0}, {1, 1}, {0.5, 1}}}
	tr, err := New(Config{Zones: []Zone{left}})
	if err != nil {
		t.Fatal(err)
	}
	tr.Update(t0, []detect.Detection{person(100, 300)}, 1000, 1000)
	tr.Update(t0.Add(time.Second), []detect.Detection{person(100, 300)}, 1000, 1000)
	if err := tr.SetZones([]Zone{right, left}); err != nil {
		t.Fatal(err)
	}
	got := tr.Tracks()
	if len(got) != 1 || !slices.Equal(got[0].Zones, []string{"left"}) || got[0].Dwell["left"] != time.Second {
		t.Fatalf("after SetZones: %+v", got)
	}
	got = tr.Update(t0.Add(2*time.Second), []detect.Detection{person(100, 300)}, 1000, 1000)
	if got[0].Dwell["left"] != 2*time.Second {
		t.Errorf("dwell %v, want 2s", got[0].Dwell["left"])
	}
	if err := tr.SetZones([]Zone{{Name: "bad", Polygon: [][2]float64{{0, 0}}}}); err == nil {
		t.Error("an invalid zone was accepted")
	}
}
