package pipeline

import (
	"errors"
	"fmt"
	"image"
	"math"
	"slices"
	"time"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/decode"
	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/agent/internal/scenario"
	"github.com/xueliang/xl/agent/internal/tamper"
	"github.com/xueliang/xl/agent/internal/track"
	"github.com/xueliang/xl/agent/internal/zone"
)

// Gating modes: when the detector runs.
const (
	// GateMotion runs the detector only when something moves, and only
	// around what moves and the objects already tracked.
	GateMotion = "motion"
	// GateAlways runs it on the whole frame.
	GateAlways = "always"
)

// DetectConfig says when the object detector runs.
type DetectConfig struct {
	Gating string // GateMotion (default) or GateAlways
	// Every: the detector runs at most every Nth analysed frame (default
	// 1); the tracker carries the boxes in between.
	Every int
	// Refresh: with motion gating, objects that stand still (and so stop
	// moving in the background model) are looked at again this often
	// (default 10 s), or their tracks would be lost.
	Refresh time.Duration
	// MinScore drops weaker detections before tracking (default 0).
	MinScore float32
}

func (c *DetectConfig) setDefaults() {
	if c.Gating == "" {
		c.Gating = GateMotion
	}
	if c.Every == 0 {
		c.Every = 1
	}
	if c.Refresh == 0 {
		c.Refresh = 10 * time.Second
	}
}

func (c DetectConfig) validate() error {
	switch {
	case c.Gating != GateMotion && c.Gating != GateAlways:
		return fmt.Errorf("detect.gating %q is not %s or %s", c.Gating, GateMotion, GateAlways)
	case c.Every < 1 || c.Every > 100:
		return fmt.Errorf("detect.every %d outside 1–100", c.Every)
	case c.Refresh < 0:
		return errors.New("detect.refresh must not be negative")
	case c.MinScore < 0 || c.MinScore >= 1:
		return fmt.Errorf("detect.min_score %g outside 0–1", c.MinScore)
	}
	return nil
}

// Stats count what an Analyser did, for replay summaries and benchmarks.
type Stats struct {
	Frames        int            // frames analysed
	DetectorDue   int            // the detector's turns (every Nth frame)
	DetectorCalls int            // frames on which it ran
	GatedSkips    int            // turns skipped: nothing moved
	Detections    map[string]int // objects the detector found, by class
}

func (s Stats) clone() Stats {
	s.Detections = cloneCounts(s.Detections)
	return s
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Step is what one analysed frame produced.
type Step struct {
	At       time.Time
	Results  []scenario.Result // one per rule
	Tracks   []track.Track     // confirmed tracks after this frame
	Detected bool              // the detector ran on this frame
	Tamper   tamper.Verdict    // zero when no camera_tamper scenario
	Size     image.Point       // the frame's size
}

// Analyser is one camera's analysis of single frames: scale to the
// analysis width → tamper check → motion → detection where there is
// motion (every Nth frame) → tracking → zones → scenarios → event
// lifecycles. Not safe for concurrent use: one goroutine owns it.
type Analyser struct {
	cfg     Config
	zones   *zone.Set
	det     detect.Detector // nil: motion only
	motion  *motion.Detector
	tamper  *tamper.Detector // nil without a camera_tamper scenario
	tracker *track.Tracker
	engine  *scenario.Engine
	classes []string // classes the scenarios need

	small       gocv.Mat
	sinceDetect int
	lastDetect  time.Time
	stats       Stats
	closed      bool
}

// NewAnalyser validates cfg and builds the analysis state. cfg.Detector is
// used, not owned.
func NewAnalyser(cfg Config) (_ *Analyser, err error) {
	cfg.Detect.setDefaults()
	if err := cfg.Detect.validate(); err != nil {
		return nil, err
	}
	zs, err := zone.NewSet(cfg.Zones)
	if err != nil {
		return nil, err
	}
	a := &Analyser{cfg: cfg, zones: zs, det: cfg.Detector, small: gocv.NewMat(), sinceDetect: cfg.Detect.Every,
		stats: Stats{Detections: map[string]int{}}}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.engine, err = scenario.New(cfg.Scenarios, zs, a.scenarioOptions(cfg)); err != nil {
		return nil, err
	}
	a.classes = neededClasses(a.engine)
	include, exclude := polygons(zs)
	mc := cfg.Motion
	mc.Ignore = exclude
	if a.motion, err = motion.New(mc, include); err != nil {
		return nil, err
	}
	tc := cfg.Track
	tc.Zones = trackZones(zs)
	if a.tracker, err = track.New(tc); err != nil {
		return nil, err
	}
	if err := a.setTamper(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Analyser) scenarioOptions(cfg Config) scenario.Options {
	opts := scenario.Options{Location: cfg.Location, MotionOnly: cfg.Detector == nil, Classes: cfg.DetectorClasses}
	if cfg.NewEventID != nil {
		opts.NewID = cfg.NewEventID
	}
	return opts
}

// setTamper makes or drops the tamper detector as the scenarios need it.
func (a *Analyser) setTamper() error {
	need := false
	for _, r := range a.engine.Rules() {
		need = need || r.Type() == scenario.CameraTamper
	}
	switch {
	case need && a.tamper == nil:
		t, err := tamper.New(a.cfg.Tamper)
		if err != nil {
			return err
		}
		a.tamper = t
	case !need && a.tamper != nil:
		a.tamper.Close()
		a.tamper = nil
	}
	return nil
}

func neededClasses(e *scenario.Engine) []string {
	var out []string
	for _, r := range e.Rules() {
		for _, c := range r.Spec.Classes {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

func polygons(zs *zone.Set) (include, exclude [][][2]float64) {
	for _, z := range zs.All() {
		if z.Exclude {
			exclude = append(exclude, z.Polygon)
		} else {
			include = append(include, z.Polygon)
		}
	}
	return include, exclude
}

func trackZones(zs *zone.Set) []track.Zone {
	var out []track.Zone
	for _, z := range zs.Include() {
		out = append(out, track.Zone{Name: z.Name, Polygon: z.Polygon})
	}
	return out
}

// Close frees the native state (not the detector, which is shared).
func (a *Analyser) Close() {
	if a.closed {
		return
	}
	a.closed = true
	if a.motion != nil {
		a.motion.Close()
	}
	if a.tamper != nil {
		a.tamper.Close()
	}
	a.small.Close()
}

// Stats returns the counts so far.
func (a *Analyser) Stats() Stats { return a.stats.clone() }

// Rules are the scenario rules in force.
func (a *Analyser) Rules() []*scenario.Rule { return a.engine.Rules() }

// Zones are the zones in force.
func (a *Analyser) Zones() []zone.Zone { return a.zones.All() }

// checkReload validates what a reload would apply, changing nothing.
func (a *Analyser) checkReload(cfg Config) error {
	zs, err := zone.NewSet(cfg.Zones)
	if err != nil {
		return err
	}
	opts := a.scenarioOptions(a.cfg)
	opts.Location = cfg.Location
	_, err = scenario.New(cfg.Scenarios, zs, opts)
	return err
}

// reload applies new zones and scenarios (and the time zone) at frame time
// at, keeping the background model, the tracks and the open events of the
// rules that remain; it returns the ends of the events of rules that are
// gone. On an error nothing changes.
func (a *Analyser) reload(cfg Config, at time.Time) ([]scenario.Result, error) {
	if err := a.checkReload(cfg); err != nil {
		return nil, err
	}
	zs, _ := zone.NewSet(cfg.Zones)
	include, exclude := polygons(zs)
	if err := a.motion.SetZones(include, exclude); err != nil {
		return nil, err
	}
	if err := a.tracker.SetZones(trackZones(zs)); err != nil {
		return nil, err
	}
	a.cfg.Zones, a.cfg.Scenarios, a.cfg.Location = cfg.Zones, cfg.Scenarios, cfg.Location
	a.zones = zs
	ended, err := a.engine.Reconfigure(cfg.Scenarios, zs, at)
	if err != nil {
		return nil, err
	}
	a.engine.SetLocation(cfg.Location)
	a.classes = neededClasses(a.engine)
	return ended, a.setTamper()
}

// Picture is a frame as analysis takes it (a decode.Picture): at the
// motion width for motion and the tamper check, and at full size only when
// the detector or evidence needs it. Its Mats belong to it.
type Picture interface {
	Size() image.Point
	Scaled(width int) (gocv.Mat, error)
	Full() (gocv.Mat, error)
}

// matPicture is a BGR Mat the caller owns, scaled into the analyser's
// buffer.
type matPicture struct {
	m     gocv.Mat
	small *gocv.Mat
}

func (p matPicture) Size() image.Point       { return image.Pt(p.m.Cols(), p.m.Rows()) }
func (p matPicture) Full() (gocv.Mat, error) { return p.m, nil }
func (p matPicture) Scaled(width int) (gocv.Mat, error) {
	sz := decode.ScaledSize(p.Size(), width)
	if sz == p.Size() {
		return p.m, nil
	}
	gocv.Resize(p.m, p.small, sz, 0, 0, gocv.InterpolationArea)
	return *p.small, nil
}

// Analyse runs one BGR frame taken at at through the pipeline.
func (a *Analyser) Analyse(frame gocv.Mat, at time.Time) (Step, error) {
	if frame.Ptr() == nil || frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return Step{}, fmt.Errorf("pipeline: want an 8-bit BGR frame, got %dx%d type %v", frame.Cols(), frame.Rows(), frame.Type())
	}
	return a.AnalysePicture(matPicture{m: frame, small: &a.small}, at)
}

// AnalysePicture runs one frame taken at at through the pipeline.
func (a *Analyser) AnalysePicture(p Picture, at time.Time) (Step, error) {
	if a.closed {
		return Step{}, errors.New("pipeline: analyser is closed")
	}
	size := p.Size()
	if size.X < 16 || size.Y < 16 {
		return Step{}, fmt.Errorf("pipeline: want a frame of at least 16x16, got %dx%d", size.X, size.Y)
	}
	step := Step{At: at, Size: size}

	// Motion and the tamper check work at the analysis width (the source
	// converts decoded frames to it directly); the detector crops from the
	// full frame.
	small, err := p.Scaled(a.cfg.Motion.Width)
	if err != nil {
		return step, fmt.Errorf("pipeline: %w", err)
	}
	if small.Empty() || small.Type() != gocv.MatTypeCV8UC3 {
		return step, fmt.Errorf("pipeline: want an 8-bit BGR frame, got type %v", small.Type())
	}
	in := scenario.Frame{At: at}
	if a.tamper != nil {
		v, err := a.tamper.Process(small, at)
		if err != nil {
			return step, err
		}
		step.Tamper, in.Tamper = v, v.Reason
	}
	zoneMotion, err := a.motion.Process(small)
	if err != nil {
		return step, err
	}
	a.stats.Frames++
	if a.det == nil {
		in.Motion = map[string]scenario.Motion{}
		for i, z := range a.zones.Include() {
			m := zoneMotion[i]
			in.Motion[z.Name] = scenario.Motion{Warm: m.Warm, Ratio: m.Ratio, Blobs: m.Blobs}
		}
	} else {
		tracks, detected, err := a.detectAndTrack(p, size, at)
		if err != nil {
			return step, err
		}
		step.Tracks, step.Detected = tracks, detected
		in.Objects = a.objects(tracks, size, at)
	}
	step.Results = a.engine.Step(in)
	return step, nil
}

// detectAndTrack runs the detector when it is due and something moved (or
// a standing object is due for a look), and the tracker either way.
func (a *Analyser) detectAndTrack(p Picture, size image.Point, at time.Time) ([]track.Track, bool, error) {
	a.sinceDetect++
	if a.sinceDetect < a.cfg.Detect.Every {
		return a.tracker.Advance(at), false, nil
	}
	a.stats.DetectorDue++
	live := a.tracker.Advance(at)
	var rois []image.Rectangle
	fm := a.motion.Frame()
	switch {
	case a.cfg.Detect.Gating == GateAlways || !a.motion.Warm():
		// the whole frame (rois nil)
	case len(fm.Blobs) > 0 || (len(live) > 0 && at.Sub(a.lastDetect) >= a.cfg.Detect.Refresh):
		for _, b := range fm.Blobs {
			rois = append(rois, toPixels(b, size))
		}
		for _, t := range live {
			rois = append(rois, t.Predicted)
		}
	default:
		// Nothing moved: this turn is skipped, the next comes N frames on,
		// as if the detector had run (so "due" counts the turns of the
		// every-Nth cadence, gated or not).
		a.stats.GatedSkips++
		a.sinceDetect = 0
		return live, false, nil
	}
	frame, err := p.Full()
	if err != nil {
		return live, false, fmt.Errorf("pipeline: %w", err)
	}
	dets, err := a.det.Detect(frame, rois)
	if err != nil {
		return live, false, err
	}
	a.stats.DetectorCalls++
	a.sinceDetect, a.lastDetect = 0, at
	kept := dets[:0]
	for _, d := range dets {
		a.stats.Detections[d.Class]++
		if d.Score < a.cfg.Detect.MinScore || !slices.Contains(a.classes, d.Class) {
			continue
		}
		if a.zones.Excluded(zone.Anchor(toNormalised(d.Box, size))) {
			continue
		}
		kept = append(kept, d)
	}
	return a.tracker.Update(at, kept, size.X, size.Y), true, nil
}

// objects turns tracks into what the rules see: confirmed tracks that are
// matched, or missed for at most a second; boxes where the motion prior
// puts them now; dwell counted up to now while they stay.
func (a *Analyser) objects(tracks []track.Track, size image.Point, at time.Time) []scenario.Object {
	out := make([]scenario.Object, 0, len(tracks))
	for _, t := range tracks {
		if t.Lost && at.Sub(t.LastSeen) > time.Second {
			continue
		}
		o := scenario.Object{TrackID: t.ID, Class: t.Class, Score: float64(t.Score),
			Box: toNormalised(t.Predicted, size), Zones: t.Zones, Dwell: t.Dwell}
		if !t.Lost && at.After(t.LastSeen) && len(t.Zones) > 0 {
			o.Dwell = make(map[string]time.Duration, len(t.Dwell))
			for z, d := range t.Dwell {
				o.Dwell[z] = d
			}
			for _, z := range t.Zones {
				o.Dwell[z] += at.Sub(t.LastSeen)
			}
		}
		out = append(out, o)
	}
	return out
}

// Flush ends every open event at at.
func (a *Analyser) Flush(at time.Time) []scenario.Result { return a.engine.Flush(at) }

func toPixels(b [4]float64, size image.Point) image.Rectangle {
	w, h := float64(size.X), float64(size.Y)
	return image.Rect(int(b[0]*w), int(b[1]*h), int(math.Ceil((b[0]+b[2])*w)), int(math.Ceil((b[1]+b[3])*h)))
}

// toNormalised clips r to the frame and normalises it.
func toNormalised(r image.Rectangle, size image.Point) [4]float64 {
	r = r.Intersect(image.Rectangle{Max: size})
	w, h := float64(size.X), float64(size.Y)
	return [4]float64{float64(r.Min.X) / w, float64(r.Min.Y) / h, float64(r.Dx()) / w, float64(r.Dy()) / h}
}
