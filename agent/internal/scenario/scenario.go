// Package scenario decides, frame by frame, which of a camera's scenarios
// are true, and runs each one's event lifecycle (start, update, end,
// minimum duration, cool-down; see package event).
//
// A scenario on zones becomes one rule per zone it selects: intrusion
// (enough objects of its classes in the zone), loitering (the same, each
// there for at least the minimum dwell), illegal_fishing (a person or a boat
// in a no-fishing zone for the dwell), boat_in_restricted_water and crowd
// (at least N people in the zone together). camera_tamper is one rule for
// the whole camera, true while the tamper check reports the view covered,
// blurred or moved. Every rule can be limited to daily time windows in the
// camera's time zone.
//
// Pure Go: the pipeline hands in tracked objects, motion per zone and the
// tamper verdict; nothing here touches OpenCV.
package scenario

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/zone"
	"github.com/xueliang/xl/internal/wire"
)

// Scenario types.
const (
	IllegalFishing        = wire.TypeIllegalFishing
	Intrusion             = wire.TypeIntrusion
	Loitering             = wire.TypeLoitering
	BoatInRestrictedWater = wire.TypeBoatInRestrictedWater
	Crowd                 = wire.TypeCrowd
	CameraTamper          = wire.TypeCameraTamper
)

// Types lists the scenario types, in the order the documentation gives them.
var Types = []string{IllegalFishing, Intrusion, Loitering, BoatInRestrictedWater, Crowd, CameraTamper}

// MotionClass is the class of objects reported by motion-only intrusion.
const MotionClass = "motion"

// Spec is one scenario as configured.
type Spec struct {
	Type     string
	Severity int      // 1 (most urgent) – 4
	Zones    []string // zone names
	// Tags select zones too: a zone carrying any of them. "a+b" selects
	// zones carrying both a and b.
	Tags      []string
	Classes   []string      // object classes that count
	MinDwell  time.Duration // each object in the zone at least this long
	MinCount  int           // at least this many objects together
	MinMotion float64       // motion-only intrusion: share of the zone moving
	Schedule  []string      // daily windows "HH:MM-HH:MM" in the camera's time zone; empty: always
	Lifecycle event.Config
}

// WithDefaults fills what a type implies when the configuration leaves it
// out: the classes, the zones by tag, the minimum count and dwell.
func (s Spec) WithDefaults() Spec {
	if len(s.Classes) == 0 {
		switch s.Type {
		case IllegalFishing:
			s.Classes = []string{"person", "boat"}
		case BoatInRestrictedWater:
			s.Classes = []string{"boat"}
		case Intrusion, Loitering, Crowd:
			s.Classes = []string{"person"}
		}
	}
	if len(s.Zones) == 0 && len(s.Tags) == 0 {
		switch s.Type {
		case IllegalFishing:
			s.Tags = []string{"no_fishing"}
		case BoatInRestrictedWater:
			s.Tags = []string{"water+restricted"}
		}
	}
	if s.MinCount == 0 {
		s.MinCount = 1
		if s.Type == Crowd {
			s.MinCount = 3
		}
	}
	if s.MinDwell == 0 && (s.Type == Loitering || s.Type == IllegalFishing) {
		s.MinDwell = 30 * time.Second
	}
	if s.MinMotion == 0 {
		s.MinMotion = 0.01
	}
	return s
}

// ZoneBased reports whether the type is evaluated per zone.
func ZoneBased(typ string) bool { return typ != CameraTamper }

// Options are what rules need besides their specs.
type Options struct {
	// Location is the camera's time zone for schedules (default: the
	// local zone of the box).
	Location *time.Location
	// MotionOnly: the camera has no object detector. Intrusion is then
	// motion in the zone (MinMotion); other object scenarios are refused.
	MotionOnly bool
	// Classes the detector can report; nil skips the check.
	Classes []string
	// NewID makes event IDs (default wire.NewULID).
	NewID func(time.Time) string
}

// Problem is one thing wrong with a spec; Field is its configuration key
// (type, severity, zones, classes, min_dwell, min_count, min_motion,
// schedule, end_after, …).
type Problem struct {
	Field, Msg string
}

func (p Problem) String() string { return p.Field + ": " + p.Msg }

// Problems are everything wrong with a spec.
type Problems []Problem

// Err is nil without problems, else one error listing them.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.String()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Check validates one spec (defaults applied) against the camera's zones.
func Check(s Spec, zones *zone.Set, opts Options) Problems {
	var ps Problems
	add := func(field, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(Types, s.Type) {
		add("type", "%q is not one of %s", s.Type, strings.Join(Types, ", "))
		return ps
	}
	if s.Severity < 1 || s.Severity > 4 {
		add("severity", "%d is outside 1 (most urgent) – 4", s.Severity)
	}
	if _, err := ParseSchedule(s.Schedule); err != nil {
		add("schedule", "%v", err)
	}
	if s.Lifecycle.EndAfter <= 0 {
		add("end_after", "must be positive")
	}
	if s.Lifecycle.MinDuration < 0 || s.Lifecycle.Cooldown < 0 {
		add("min_duration", "min_duration and cooldown must not be negative")
	}
	if s.MinDwell < 0 {
		add("min_dwell", "must not be negative")
	}
	if !ZoneBased(s.Type) {
		if len(s.Zones) > 0 || len(s.Tags) > 0 {
			add("zones", "%s watches the whole view: it takes no zones or tags", s.Type)
		}
		return ps
	}
	if _, err := selectZones(zones, s); err != nil {
		add("zones", "%v", err)
	}
	if opts.MotionOnly {
		if s.Type != Intrusion {
			add("type", "%s needs an object detector (detection is disabled for this camera)", s.Type)
		}
		if s.MinMotion <= 0 || s.MinMotion > 1 {
			add("min_motion", "%g is outside (0, 1]", s.MinMotion)
		}
		return ps
	}
	if len(s.Classes) == 0 {
		add("classes", "name at least one object class")
	}
	for _, c := range s.Classes {
		if opts.Classes != nil && !slices.Contains(opts.Classes, c) {
			add("classes", "class %q is not one the detector reports (%s)", c, classList(opts.Classes))
		}
	}
	if s.MinCount < 1 {
		add("min_count", "%d must be at least 1", s.MinCount)
	}
	if s.Type == Crowd && s.MinCount < 2 {
		add("min_count", "crowd needs at least 2, has %d", s.MinCount)
	}
	if s.Type == Loitering && s.MinDwell <= 0 {
		add("min_dwell", "loitering needs a positive min_dwell")
	}
	return ps
}

func classList(c []string) string {
	if len(c) > 8 {
		return strings.Join(c[:8], ", ") + ", …"
	}
	return strings.Join(c, ", ")
}

// selectZones resolves a spec's zones and tags ("a+b" tags: all of them).
func selectZones(zones *zone.Set, s Spec) ([]string, error) {
	var any []string
	var all [][]string
	for _, t := range s.Tags {
		if strings.Contains(t, "+") {
			all = append(all, strings.Split(t, "+"))
		} else {
			any = append(any, t)
		}
	}
	names := slices.Clone(s.Zones)
	for _, z := range zones.Include() {
		for _, group := range all {
			ok := true
			for _, t := range group {
				ok = ok && slices.Contains(z.Tags, t)
			}
			if ok && !slices.Contains(names, z.Name) {
				names = append(names, z.Name)
			}
		}
	}
	if len(names) == 0 && len(any) == 0 {
		return nil, fmt.Errorf("no include zone is named %v or tagged %v", s.Zones, s.Tags)
	}
	return zones.Select(names, any)
}

// Object is a tracked object as rules see it.
type Object struct {
	TrackID int64
	Class   string
	Score   float64
	Box     [4]float64               // x, y, w, h normalised to the frame
	Zones   []string                 // zones holding its anchor (the feet)
	Dwell   map[string]time.Duration // time spent in each zone so far
}

// Motion is the motion in one zone.
type Motion struct {
	Warm  bool         // the background model is learnt
	Ratio float64      // share of the zone moving
	Blobs [][4]float64 // moving blobs, normalised
}

// Frame is what one analysed frame tells the rules.
type Frame struct {
	At      time.Time
	Objects []Object          // tracked objects (ignored when motion only)
	Motion  map[string]Motion // by zone name (motion-only intrusion)
	Tamper  string            // covered, blurred or moved; "" when the view is fine
}

// Hit is an object that makes a rule true, with its dwell in the rule's
// zone.
type Hit struct {
	Object
	DwellIn time.Duration
}

// Rule is one scenario on one zone (or on the whole camera).
type Rule struct {
	Key      string // type/zone/n: stable across reloads
	Spec     Spec
	Zone     string // "" for camera_tamper
	schedule Schedule
	lc       *event.Lifecycle
}

// Type is the rule's scenario type.
func (r *Rule) Type() string { return r.Spec.Type }

// Result is one rule's verdict on one frame.
type Result struct {
	Rule   *Rule
	True   bool  // the scenario holds on this frame
	Hits   []Hit // the objects that make it true, by track ID
	Reason string
	// Transition is the lifecycle phase change this frame caused, if any.
	Transition *event.Transition
	// Active: an event is open after this frame.
	Active bool
}

// Score rates how good this frame is as evidence: more and surer objects
// are better.
func (r Result) Score() float64 {
	s := 0.0
	for _, h := range r.Hits {
		s += 1 + h.Score
	}
	return s
}

// Engine is one camera's rules. Not safe for concurrent use: the camera's
// worker owns it.
type Engine struct {
	opts  Options
	rules []*Rule
}

// New validates the specs (their defaults applied) and makes one rule per
// scenario and zone.
func New(specs []Spec, zones *zone.Set, opts Options) (*Engine, error) {
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.NewID == nil {
		opts.NewID = wire.NewULID
	}
	e := &Engine{opts: opts}
	rules, err := e.build(specs, zones)
	if err != nil {
		return nil, err
	}
	e.rules = rules
	return e, nil
}

func (e *Engine) build(specs []Spec, zones *zone.Set) ([]*Rule, error) {
	var rules []*Rule
	var errs []error
	nth := map[string]int{}
	for i, s := range specs {
		s = s.WithDefaults()
		if err := Check(s, zones, e.opts).Err(); err != nil {
			errs = append(errs, fmt.Errorf("scenarios[%d] (%s): %w", i, s.Type, err))
			continue
		}
		sched, _ := ParseSchedule(s.Schedule)
		n := nth[s.Type]
		nth[s.Type]++
		if !ZoneBased(s.Type) {
			rules = append(rules, &Rule{Key: fmt.Sprintf("%s//%d", s.Type, n), Spec: s, schedule: sched})
			continue
		}
		names, _ := selectZones(zones, s)
		for _, z := range names {
			rules = append(rules, &Rule{Key: fmt.Sprintf("%s/%s/%d", s.Type, z, n), Spec: s, Zone: z, schedule: sched})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, r := range rules {
		r.lc = event.New(r.Spec.Lifecycle, e.opts.NewID)
	}
	return rules, nil
}

// Rules returns the rules in configuration order.
func (e *Engine) Rules() []*Rule { return e.rules }

// SetLocation changes the time zone schedules are read in (nil: the box's
// local zone).
func (e *Engine) SetLocation(loc *time.Location) {
	if loc == nil {
		loc = time.Local
	}
	e.opts.Location = loc
}

// Location is the time zone schedules are read in.
func (e *Engine) Location() *time.Location { return e.opts.Location }

// Step evaluates every rule on one frame and advances its lifecycle. It
// returns one Result per rule, in rule order.
func (e *Engine) Step(f Frame) []Result {
	local := f.At.In(e.opts.Location)
	out := make([]Result, 0, len(e.rules))
	for _, r := range e.rules {
		res := e.evaluate(r, f)
		if !r.schedule.Active(local) {
			res.True, res.Hits, res.Reason = false, nil, ""
		}
		if tr, ok := r.lc.Step(f.At, res.True); ok {
			res.Transition = &tr
		}
		res.Active = r.lc.Active()
		out = append(out, res)
	}
	return out
}

func (e *Engine) evaluate(r *Rule, f Frame) Result {
	res := Result{Rule: r}
	if r.Spec.Type == CameraTamper {
		res.True, res.Reason = f.Tamper != "", f.Tamper
		return res
	}
	if e.opts.MotionOnly {
		m := f.Motion[r.Zone]
		res.True = m.Warm && m.Ratio >= r.Spec.MinMotion && len(m.Blobs) > 0
		if res.True {
			for _, b := range m.Blobs {
				res.Hits = append(res.Hits, Hit{Object: Object{Class: MotionClass, Score: 1, Box: b, Zones: []string{r.Zone}}})
			}
		}
		return res
	}
	for _, o := range f.Objects {
		if !slices.Contains(r.Spec.Classes, o.Class) || !slices.Contains(o.Zones, r.Zone) {
			continue
		}
		d := o.Dwell[r.Zone]
		if d < r.Spec.MinDwell {
			continue
		}
		res.Hits = append(res.Hits, Hit{Object: o, DwellIn: d})
	}
	sort.SliceStable(res.Hits, func(i, j int) bool { return res.Hits[i].TrackID < res.Hits[j].TrackID })
	res.True = len(res.Hits) >= r.Spec.MinCount
	if !res.True {
		res.Hits = nil
	}
	return res
}

// Flush ends every open event at at (the stream ended, the agent stops).
func (e *Engine) Flush(at time.Time) []Result {
	var out []Result
	for _, r := range e.rules {
		if tr, ok := r.lc.Flush(at); ok {
			out = append(out, Result{Rule: r, Transition: &tr})
		}
	}
	return out
}

// Reconfigure replaces the rules (a configuration reload). A rule whose key
// (type, zone and position among the scenarios of its type) survives keeps
// its lifecycle, so an open event goes on under its new settings; the open
// events of rules that disappear end at at. On an error nothing changes.
func (e *Engine) Reconfigure(specs []Spec, zones *zone.Set, at time.Time) ([]Result, error) {
	rules, err := e.build(specs, zones)
	if err != nil {
		return nil, err
	}
	old := map[string]*Rule{}
	for _, r := range e.rules {
		old[r.Key] = r
	}
	for _, r := range rules {
		if o, ok := old[r.Key]; ok {
			r.lc = o.lc
			r.lc.Reconfigure(r.Spec.Lifecycle)
			delete(old, r.Key)
		}
	}
	var ended []Result
	for _, r := range e.rules { // configuration order
		if _, gone := old[r.Key]; !gone {
			continue
		}
		if tr, ok := r.lc.Flush(at); ok {
			ended = append(ended, Result{Rule: r, Transition: &tr})
		}
	}
	e.rules = rules
	return ended, nil
}
