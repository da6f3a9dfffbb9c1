// Package track follows detected objects from frame to frame: an IoU
// tracker with a constant-velocity motion prior, stable track IDs, tolerance
// for missed frames, per-class matching, and the time each track spends in
// each zone. Pure Go; no OpenCV.
package track

import (
	"errors"
	"fmt"
	"image"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/xueliang/xl/agent/internal/detect"
)

// Zone is a named polygon in normalised coordinates (0–1 from the top-left).
type Zone struct {
	Name    string
	Polygon [][2]float64
}

// Config tunes the tracker. Zero values take the defaults.
type Config struct {
	// IoUThreshold is the least overlap between a track's predicted box and
	// a detection for them to match (default 0.2).
	IoUThreshold float64
	// CentroidGate lets a detection that does not overlap enough match a
	// track whose predicted centre is within this many box sizes (√area) of
	// it, for fast or small objects at low frame rates; negative disables
	// it (default 1).
	CentroidGate float64
	// MaxMissed is how many consecutive frames without a match a track
	// survives (default 10).
	MaxMissed int
	// MaxLost is how long a track survives without a match (default 3 s).
	// A track ends when either limit is passed.
	MaxLost time.Duration
	// MinHits is how many matched detections a track needs before it is
	// reported and gets its ID (default 2); a new track that misses before
	// then is dropped, so spurious detections use up no IDs.
	MinHits int
	// MinScore ignores weaker detections (default 0: none ignored).
	MinScore float32
	// Smoothing is the weight of the newest measured velocity against the
	// running estimate, 0–1 (default 0.5).
	Smoothing float64
	// Zones are where dwell time is measured: a track is in a zone when the
	// bottom-centre of its box (the feet) is inside the polygon.
	Zones []Zone
}

func (c *Config) setDefaults() {
	if c.IoUThreshold == 0 {
		c.IoUThreshold = 0.2
	}
	if c.CentroidGate == 0 {
		c.CentroidGate = 1
	}
	if c.MaxMissed == 0 {
		c.MaxMissed = 10
	}
	if c.MaxLost == 0 {
		c.MaxLost = 3 * time.Second
	}
	if c.MinHits == 0 {
		c.MinHits = 2
	}
	if c.Smoothing == 0 {
		c.Smoothing = 0.5
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.IoUThreshold <= 0 || c.IoUThreshold >= 1 {
		errs = append(errs, fmt.Errorf("iou_threshold %g outside (0, 1)", c.IoUThreshold))
	}
	if c.CentroidGate > 10 {
		errs = append(errs, fmt.Errorf("centroid_gate %g above 10", c.CentroidGate))
	}
	if c.MaxMissed < 0 || c.MaxLost < 0 || c.MinHits < 1 {
		errs = append(errs, errors.New("max_missed, max_lost and min_hits must not be negative"))
	}
	if c.Smoothing <= 0 || c.Smoothing > 1 {
		errs = append(errs, fmt.Errorf("smoothing %g outside (0, 1]", c.Smoothing))
	}
	seen := map[string]bool{}
	for i, z := range c.Zones {
		if z.Name == "" {
			errs = append(errs, fmt.Errorf("zones[%d]: no name", i))
		} else if seen[z.Name] {
			errs = append(errs, fmt.Errorf("zones[%d]: name %q appears twice", i, z.Name))
		}
		seen[z.Name] = true
		if err := validatePolygon(z.Polygon); err != nil {
			errs = append(errs, fmt.Errorf("zones[%d] (%s): %w", i, z.Name, err))
		}
	}
	return errors.Join(errs...)
}

func validatePolygon(p [][2]float64) error {
	if len(p) < 3 {
		return fmt.Errorf("polygon needs at least 3 points, has %d", len(p))
	}
	for i, pt := range p {
		if math.IsNaN(pt[0]) || math.IsNaN(pt[1]) || pt[0] < 0 || pt[0] > 1 || pt[1] < 0 || pt[1] > 1 {
			return fmt.Errorf("point %d (%g, %g) is outside 0–1", i, pt[0], pt[1])
		}
	}
	return nil
}

// Track is one tracked object as of the last Update.
type Track struct {
	ID        int64 // from 1, never reused by a Tracker
	Class     string
	ClassID   int
	Score     float32         // of the last matched detection
	Box       image.Rectangle // the last matched detection, frame pixels
	Predicted image.Rectangle // where the motion prior puts it now
	FirstSeen time.Time
	LastSeen  time.Time                // time of the last matched detection
	Dwell     map[string]time.Duration // time inside each zone it has entered
	Zones     []string                 // zones it was inside at LastSeen, in configuration order
	Hits      int                      // matched detections
	Missed    int                      // consecutive frames without a match
	Lost      bool                     // not matched on the last Update
}

// Tracker follows objects across frames. Not safe for concurrent use: one
// per camera.
type Tracker struct {
	cfg    Config
	tracks []*state
	nextID int64
	last   time.Time
	w, h   int // frame size of the last Update
}

// state is a track's internal state.
type state struct {
	Track
	vx, vy  float64 // centre velocity, pixels per second
	hasVel  bool
	inZone  []bool // per configured zone, at LastSeen
	zoneSet bool   // inZone was measured
}

// New returns a tracker; it fails on an invalid configuration.
func New(cfg Config) (*Tracker, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("track: %w", err)
	}
	cfg.Zones = slices.Clone(cfg.Zones)
	return &Tracker{cfg: cfg}, nil
}

// pair is a possible match between a track and a detection.
type pair struct {
	t, d int
	sim  float64
}

// Update takes the detections of the frame taken at time at (frames come
// in time order; an earlier time counts as the previous one) and returns the
// confirmed tracks, lost ones included, by ID. frameW and frameH place the
// boxes in the normalised zones; with either ≤ 0 zones are not evaluated.
func (tr *Tracker) Update(at time.Time, dets []detect.Detection, frameW, frameH int) []Track {
	if !tr.last.IsZero() && at.Before(tr.last) {
		at = tr.last
	}
	tr.last = at
	if frameW > 0 && frameH > 0 {
		tr.w, tr.h = frameW, frameH
	}

	// Where each track should be now.
	for _, s := range tr.tracks {
		s.Predicted = s.predict(at)
	}

	// Candidate matches, best first: overlapping ones before centroid ones.
	var pairs []pair
	for di, d := range dets {
		if d.Score < tr.cfg.MinScore || d.Box.Empty() {
			continue
		}
		for ti, s := range tr.tracks {
			if s.ClassID != d.ClassID || s.Class != d.Class {
				continue
			}
			sim, ok := tr.similarity(s.Predicted, d.Box)
			if s.Missed > 0 && s.hasVel {
				// A lost track may have stopped behind something: its last
				// box counts too, a little below the prediction.
				if last, lok := tr.similarity(s.Box, d.Box); lok && 0.9*last > sim {
					sim, ok = 0.9*last, true
				}
			}
			if ok {
				pairs = append(pairs, pair{t: ti, d: di, sim: sim})
			}
		}
	}
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].sim > pairs[j].sim })
	trackUsed := make([]bool, len(tr.tracks))
	detUsed := make([]bool, len(dets))
	for _, p := range pairs {
		if trackUsed[p.t] || detUsed[p.d] {
			continue
		}
		trackUsed[p.t], detUsed[p.d] = true, true
		tr.tracks[p.t].observe(at, dets[p.d], &tr.cfg, frameW, frameH)
	}

	// Unmatched tracks miss a frame; tentative ones and those lost too long
	// end.
	kept := tr.tracks[:0]
	for i, s := range tr.tracks {
		if !trackUsed[i] {
			s.Missed++
			s.Lost = true
			if s.ID == 0 || s.Missed > tr.cfg.MaxMissed || at.Sub(s.LastSeen) > tr.cfg.MaxLost {
				continue
			}
		}
		kept = append(kept, s)
	}
	clear(tr.tracks[len(kept):])
	tr.tracks = kept

	// Unmatched detections start tracks.
	for di, d := range dets {
		if detUsed[di] || d.Score < tr.cfg.MinScore || d.Box.Empty() {
			continue
		}
		s := &state{Track: Track{Class: d.Class, ClassID: d.ClassID, FirstSeen: at, LastSeen: at,
			Dwell: map[string]time.Duration{}}}
		s.observe(at, d, &tr.cfg, frameW, frameH)
		tr.tracks = append(tr.tracks, s)
	}

	// Tracks with enough hits get their ID.
	for _, s := range tr.tracks {
		if s.ID == 0 && s.Hits >= tr.cfg.MinHits {
			tr.nextID++
			s.ID = tr.nextID
		}
	}
	return tr.Tracks()
}

// Advance moves every track's Predicted box to time at by its motion prior,
// without a detection: a frame the detector skipped. Nothing is counted as
// missed, and dwell is not measured (it is, between detections, at the next
// Update). It returns the confirmed tracks, as Tracks does.
func (tr *Tracker) Advance(at time.Time) []Track {
	if !tr.last.IsZero() && at.Before(tr.last) {
		at = tr.last
	}
	for _, s := range tr.tracks {
		s.Predicted = s.predict(at)
	}
	return tr.Tracks()
}

// SetZones replaces the zones dwell is measured in (a configuration
// reload). Tracks keep their dwell per zone name; which zones they are in is
// measured again at their last box.
func (tr *Tracker) SetZones(zones []Zone) error {
	cfg := tr.cfg
	cfg.Zones = slices.Clone(zones)
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("track: %w", err)
	}
	tr.cfg = cfg
	for _, s := range tr.tracks {
		s.inZone, s.zoneSet = nil, false
		s.Zones = s.Zones[:0]
		if tr.w <= 0 || tr.h <= 0 || len(cfg.Zones) == 0 {
			continue
		}
		s.inZone = make([]bool, len(cfg.Zones))
		px, py := feet(s.Box, tr.w, tr.h)
		for i, z := range cfg.Zones {
			if PointInPolygon([2]float64{px, py}, z.Polygon) {
				s.inZone[i] = true
				s.Zones = append(s.Zones, z.Name)
			}
		}
		s.zoneSet = true
	}
	return nil
}

func feet(b image.Rectangle, w, h int) (float64, float64) {
	return (float64(b.Min.X) + float64(b.Max.X)) / 2 / float64(w), float64(b.Max.Y) / float64(h)
}

// Tracks returns the confirmed tracks as of the last Update, by ID.
func (tr *Tracker) Tracks() []Track {
	out := make([]Track, 0, len(tr.tracks))
	for _, s := range tr.tracks {
		if s.ID == 0 {
			continue
		}
		t := s.Track
		t.Dwell = maps.Clone(s.Dwell)
		t.Zones = slices.Clone(s.Zones)
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// similarity scores a predicted box against a detection: 1 + IoU when they
// overlap enough, else up to 1 by centre distance within the gate.
func (tr *Tracker) similarity(pred, det image.Rectangle) (float64, bool) {
	if v := iou(pred, det); v >= tr.cfg.IoUThreshold {
		return 1 + v, true
	}
	if tr.cfg.CentroidGate <= 0 {
		return 0, false
	}
	pa, da := area(pred), area(det)
	if pa == 0 || da == 0 || pa > 4*da || da > 4*pa {
		return 0, false // too different in size to be the same object
	}
	pcx, pcy := centre(pred)
	dcx, dcy := centre(det)
	dist := math.Hypot(pcx-dcx, pcy-dcy) / math.Sqrt(pa)
	if dist > tr.cfg.CentroidGate {
		return 0, false
	}
	return 1 - dist/tr.cfg.CentroidGate/2, true // 0.5–1: below any overlap
}

// predict moves the last box by the velocity for the time since LastSeen.
func (s *state) predict(at time.Time) image.Rectangle {
	if !s.hasVel {
		return s.Box
	}
	dt := at.Sub(s.LastSeen).Seconds()
	return s.Box.Add(image.Pt(int(math.Round(s.vx*dt)), int(math.Round(s.vy*dt))))
}

// observe updates the track with a matched detection: velocity, box, hits
// and dwell.
func (s *state) observe(at time.Time, d detect.Detection, cfg *Config, w, h int) {
	alpha := cfg.Smoothing
	prevSeen := s.LastSeen
	if s.Hits > 0 {
		if dt := at.Sub(prevSeen).Seconds(); dt > 0 {
			ox, oy := centre(s.Box)
			nx, ny := centre(d.Box)
			vx, vy := (nx-ox)/dt, (ny-oy)/dt
			if s.hasVel {
				vx, vy = alpha*vx+(1-alpha)*s.vx, alpha*vy+(1-alpha)*s.vy
			}
			s.vx, s.vy, s.hasVel = vx, vy, true
		}
	}
	s.Box, s.Predicted, s.Score = d.Box, d.Box, d.Score
	s.LastSeen = at
	s.Hits++
	s.Missed = 0
	s.Lost = false
	if w <= 0 || h <= 0 || len(cfg.Zones) == 0 {
		return
	}
	// The feet: bottom-centre of the box, normalised.
	px, py := feet(d.Box, w, h)
	if s.inZone == nil {
		s.inZone = make([]bool, len(cfg.Zones))
	}
	s.Zones = s.Zones[:0]
	for i, z := range cfg.Zones {
		in := PointInPolygon([2]float64{px, py}, z.Polygon)
		if in {
			// Time between two observations both inside counts; entering
			// or leaving between observations does not.
			if s.zoneSet && s.inZone[i] && at.After(prevSeen) {
				s.Dwell[z.Name] += at.Sub(prevSeen)
			} else if _, ok := s.Dwell[z.Name]; !ok {
				s.Dwell[z.Name] = 0
			}
			s.Zones = append(s.Zones, z.Name)
		}
		s.inZone[i] = in
	}
	s.zoneSet = true
}

// PointInPolygon reports whether p is inside the polygon (even-odd rule;
// points exactly on an edge may fall either way).
func PointInPolygon(p [2]float64, poly [][2]float64) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a[1] > p[1]) != (b[1] > p[1]) &&
			p[0] < (b[0]-a[0])*(p[1]-a[1])/(b[1]-a[1])+a[0] {
			in = !in
		}
	}
	return in
}

func centre(r image.Rectangle) (float64, float64) {
	return (float64(r.Min.X) + float64(r.Max.X)) / 2, (float64(r.Min.Y) + float64(r.Max.Y)) / 2
}

func area(r image.Rectangle) float64 { return float64(r.Dx()) * float64(r.Dy()) }

func iou(a, b image.Rectangle) float64 {
	in := area(a.Intersect(b))
	if in == 0 {
		return 0
	}
	return in / (area(a) + area(b) - in)
}
