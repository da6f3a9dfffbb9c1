// Package pipeline is one camera's analysis worker: frames from the source;
// scale to the analysis width, tamper check, motion (MOG2 with zone and
// exclude masks), object detection only where something moves and at most
// every Nth frame, tracking, zones, scenario rules, event lifecycles; alerts
// with annotated (and clean) snapshots handed to the publisher.
package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/decode"
	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/agent/internal/scenario"
	"github.com/xueliang/xl/agent/internal/snapshot"
	"github.com/xueliang/xl/agent/internal/source"
	"github.com/xueliang/xl/agent/internal/tamper"
	"github.com/xueliang/xl/agent/internal/track"
	"github.com/xueliang/xl/agent/internal/zone"
	"github.com/xueliang/xl/internal/wire"
)

// Publisher takes finished alerts; it must not block. snapshot is the
// annotated JPEG, clean the same frame as the camera saw it (either may be
// nil); the alert's evidence fields name them.
type Publisher interface {
	Publish(a *wire.Alert, snapshot, clean []byte) error
}

// ClipRequester records evidence clips: RequestClip asks for the camera's
// video around at as the clip of alertID. It must not block.
type ClipRequester interface {
	RequestClip(cameraID, alertID string, at time.Time)
}

// Zone is a named polygon in normalised coordinates, with tags; an exclude
// zone masks out what must not count.
type Zone = zone.Zone

// Scenario is a rule evaluated on each of its zones (see package scenario).
type Scenario = scenario.Spec

// Config is one camera's analysis.
type Config struct {
	AgentID       string
	CameraID      string
	Site          string
	GridCode      string
	Geo           *wire.Geo
	ConfigVersion string
	// Location is the camera's time zone, for scenario schedules (nil: the
	// box's local zone).
	Location        *time.Location
	Motion          motion.Config // Width is the analysis width
	Zones           []Zone
	Scenarios       []Scenario
	Detect          DetectConfig
	Track           track.Config // its Zones are set from Zones
	Tamper          tamper.Config
	SnapshotQuality int
	// CleanSnapshot: send the unannotated frame too (see wire.Evidence).
	CleanSnapshot bool
	// StreamLostAfter: a camera that delivers no frame this long raises
	// stream_lost; stream_restored follows when frames come back.
	StreamLostAfter time.Duration

	// Detector finds objects; nil makes the camera motion-only (intrusion
	// on motion). It is used, not owned: cameras may share one.
	Detector detect.Detector
	// DetectorClasses are the classes Detector can report (scenario classes
	// are checked against them); nil skips the check.
	DetectorClasses []string
	// DetectorModel names Detector in alerts.
	DetectorModel wire.Model
	// NewEventID makes event IDs (default wire.NewULID); tests set it.
	NewEventID func(time.Time) string
	// Clips, when set, records a clip for every event start.
	Clips ClipRequester
}

// Model is how motion-only alerts name their detector.
var Model = wire.Model{Name: "mog2-motion", Version: "1"}

// TamperModel is how camera_tamper alerts name their check.
var TamperModel = wire.Model{Name: "xl-tamper", Version: "1"}

// Metrics are the analysis metrics, registered once per agent.
type Metrics struct {
	Analysed      *prometheus.CounterVec
	Seconds       *prometheus.HistogramVec
	Events        *prometheus.CounterVec
	Errors        *prometheus.CounterVec
	DetectorCalls *prometheus.CounterVec
	GatedSkips    *prometheus.CounterVec
	Tracks        *prometheus.GaugeVec
	Tampered      *prometheus.GaugeVec
}

// NewMetrics registers the analysis metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Analysed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_frames_analysed_total",
			Help: "Frames analysed."}, []string{"camera_id"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xl_agent_analysis_seconds",
			Help: "Time to analyse one frame.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 12)}, []string{"camera_id"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_events_total",
			Help: "Event phases raised, by camera, scenario type and phase."}, []string{"camera_id", "type", "phase"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_analysis_errors_total",
			Help: "Frames that could not be analysed or alerts that could not be built."}, []string{"camera_id"}),
		DetectorCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_detector_runs_total",
			Help: "Analysed frames on which the object detector ran."}, []string{"camera_id"}),
		GatedSkips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_detector_gated_total",
			Help: "Frames on which the detector was due but did not run because nothing moved."}, []string{"camera_id"}),
		Tracks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_agent_tracks",
			Help: "Objects being tracked."}, []string{"camera_id"}),
		Tampered: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_agent_camera_tampered",
			Help: "1 while the view is judged covered, blurred or moved."}, []string{"camera_id"}),
	}
	reg.MustRegister(m.Analysed, m.Seconds, m.Events, m.Errors, m.DetectorCalls, m.GatedSkips, m.Tracks, m.Tampered)
	return m
}

// Camera is one camera's worker: frames from its source through the
// Analyser, alerts with snapshots to the publisher.
type Camera struct {
	src *source.Source
	pub Publisher
	m   *Metrics
	log *slog.Logger

	mu     sync.Mutex // the analyser, cfg and best: held for one frame, or a reload
	cfg    Config
	an     *Analyser
	best   map[string]*evidence // by rule key: the best frame of an open event since its last alert
	last   time.Time            // frame time of the last frame analysed
	events map[string]int       // events started, by type
	alerts int

	frameMu sync.Mutex
	lastPic *decode.Picture // the last frame analysed, for snapshot commands
	zones   [][][2]float64  // outlined on snapshot commands

	lostEvent string    // event ID of the open stream_lost event, if any
	lostAt    time.Time // when that stream was lost
}

// evidence is a frame kept as the best picture of an open event.
type evidence struct {
	frame gocv.Mat
	res   scenario.Result
	score float64
}

func (e *evidence) close() { e.frame.Close() }

// New builds the worker; src is owned (run and closed) by the Camera.
func New(cfg Config, src *source.Source, pub Publisher, m *Metrics, log *slog.Logger) (*Camera, error) {
	an, err := NewAnalyser(cfg)
	if err != nil {
		return nil, fmt.Errorf("camera %s: %w", cfg.CameraID, err)
	}
	c := &Camera{cfg: cfg, src: src, an: an, pub: pub, m: m, best: map[string]*evidence{}, events: map[string]int{},
		log: log.With("component", "pipeline", "camera_id", cfg.CameraID), zones: outlines(cfg.Zones)}
	return c, nil
}

func outlines(zones []Zone) [][][2]float64 {
	var out [][][2]float64
	for _, z := range zones {
		out = append(out, z.Polygon)
	}
	return out
}

// Run analyses frames until ctx is cancelled or a file source ends; open
// events are ended then.
func (c *Camera) Run(ctx context.Context) error {
	// popCtx ends with ctx or when the source returns (a file ended).
	popCtx, stopPop := context.WithCancel(ctx)
	defer stopPop()
	var wg sync.WaitGroup
	var srcErr error
	wg.Go(func() {
		srcErr = c.src.Run(ctx)
		stopPop()
	})
	frames := c.src.Frames()
	for popCtx.Err() == nil {
		c.checkStream(time.Now())
		waitCtx, cancel := context.WithTimeout(popCtx, time.Second)
		f, ok := frames.Pop(waitCtx)
		cancel()
		if !ok {
			continue
		}
		c.analyse(f)
		c.keep(f.Pic)
	}
	wg.Wait()
	if ctx.Err() == nil { // the source ended: analyse what it left
		for f, ok := frames.TryPop(); ok; f, ok = frames.TryPop() {
			c.analyse(f)
			c.keep(f.Pic)
		}
	}
	c.flush()
	if errors.Is(srcErr, source.ErrEnded) {
		return nil
	}
	return srcErr
}

func (c *Camera) analyse(f source.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	gated := c.an.stats.GatedSkips
	step, err := c.an.AnalysePicture(f.Pic, f.At)
	c.m.Seconds.WithLabelValues(c.cfg.CameraID).Observe(time.Since(start).Seconds())
	if err != nil {
		c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
		c.log.Warn("frame not analysed", "err", err)
		return
	}
	id := c.cfg.CameraID
	c.m.Analysed.WithLabelValues(id).Inc()
	if step.Detected {
		c.m.DetectorCalls.WithLabelValues(id).Inc()
	}
	c.m.Tracks.WithLabelValues(id).Set(float64(len(step.Tracks)))
	tampered := 0.0
	if step.Tamper.Reason != "" {
		tampered = 1
	}
	c.m.Tampered.WithLabelValues(id).Set(tampered)
	c.last = f.At
	for _, r := range step.Results {
		c.handle(r, f.Pic)
	}
	if c.an.stats.GatedSkips > gated {
		c.m.GatedSkips.WithLabelValues(id).Inc()
	}
}

// handle emits a rule's phase change, and keeps the best frame of an open
// event for its next update. The full-size frame is converted only here,
// when evidence needs it.
func (c *Camera) handle(r scenario.Result, pic Picture) {
	key := r.Rule.Key
	if tr := r.Transition; tr != nil {
		switch tr.Phase {
		case wire.PhaseStart:
			c.emit(r, c.full(pic))
			c.dropBest(key)
		case wire.PhaseUpdate:
			if b := c.best[key]; b != nil && b.score >= r.Score() {
				b.res.Transition = tr
				c.emit(b.res, b.frame)
			} else {
				c.emit(r, c.full(pic))
			}
			c.dropBest(key)
		case wire.PhaseEnd:
			c.emit(r, gocv.Mat{})
			c.dropBest(key)
		}
		return
	}
	if !r.Active || !r.True {
		return
	}
	if b := c.best[key]; b == nil || r.Score() > b.score {
		frame := c.full(pic)
		if !usable(frame) {
			return
		}
		c.dropBest(key)
		c.best[key] = &evidence{frame: frame.Clone(), res: r, score: r.Score()}
	}
}

// full is pic at full size for evidence; the zero Mat (an alert without a
// snapshot) without a picture (events ended by a flush or reload) or if it
// cannot be converted.
func (c *Camera) full(pic Picture) gocv.Mat {
	if pic == nil {
		return gocv.Mat{}
	}
	m, err := pic.Full()
	if err != nil {
		c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
		c.log.Warn("frame not converted for evidence", "err", err)
		return gocv.Mat{}
	}
	return m
}

func (c *Camera) dropBest(key string) {
	if b := c.best[key]; b != nil {
		b.close()
		delete(c.best, key)
	}
}

// Stream health types.
const (
	TypeStreamLost     = wire.TypeStreamLost
	TypeStreamRestored = wire.TypeStreamRestored
)

// checkStream raises stream_lost when the source has delivered nothing for
// StreamLostAfter, and stream_lost's end with a stream_restored when frames
// come back.
func (c *Camera) checkStream(now time.Time) {
	if c.cfg.StreamLostAfter <= 0 {
		return
	}
	down := c.src.DownSince()
	switch {
	case c.lostEvent == "" && !down.IsZero() && now.Sub(down) >= c.cfg.StreamLostAfter:
		c.lostEvent, c.lostAt = wire.NewULID(down), down
		c.health(TypeStreamLost, wire.PhaseStart, c.lostEvent, down, now, 3)
	case c.lostEvent != "" && down.IsZero():
		c.health(TypeStreamLost, wire.PhaseEnd, c.lostEvent, c.lostAt, now, 3)
		c.health(TypeStreamRestored, wire.PhaseStart, wire.NewULID(now), now, now, 4)
		c.lostEvent = ""
	}
}

func (c *Camera) health(typ string, phase wire.Phase, eventID string, started, at time.Time, severity int) {
	c.mu.Lock()
	a := &wire.Alert{
		AlertID: wire.NewULID(time.Now()), EventID: eventID, Phase: phase, AgentID: c.cfg.AgentID, CameraID: c.cfg.CameraID,
		Site: c.cfg.Site, GridCode: c.cfg.GridCode, Geo: c.cfg.Geo, Type: typ, Severity: severity,
		StartedAt: started, DetectedAt: at, ConfigVersion: c.cfg.ConfigVersion,
	}
	c.mu.Unlock()
	if err := c.pub.Publish(a, nil, nil); err != nil {
		c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
		c.log.Error("stream health alert not published", "type", typ, "err", err)
		return
	}
	c.m.Events.WithLabelValues(c.cfg.CameraID, typ, string(phase)).Inc()
	c.log.Warn("stream health", "type", typ, "phase", phase, "since", started.Format(time.RFC3339))
}

// flush ends every open event (the stream ended or the agent stops).
func (c *Camera) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.last
	if at.IsZero() {
		at = time.Now()
	}
	for _, r := range c.an.Flush(at) {
		c.handle(r, nil)
	}
}

// emit publishes one phase of an event: start and update with the frame as
// evidence (annotated, and clean when configured), end without. Called
// with c.mu held.
func (c *Camera) emit(r scenario.Result, frame gocv.Mat) {
	tr := r.Transition
	rule := r.Rule
	a := &wire.Alert{
		AlertID:       wire.NewULID(time.Now()),
		EventID:       tr.EventID,
		Phase:         tr.Phase,
		AgentID:       c.cfg.AgentID,
		CameraID:      c.cfg.CameraID,
		Site:          c.cfg.Site,
		GridCode:      c.cfg.GridCode,
		Geo:           c.cfg.Geo,
		Type:          rule.Type(),
		Severity:      rule.Spec.Severity,
		Zone:          rule.Zone,
		Reason:        r.Reason,
		StartedAt:     tr.StartedAt,
		DetectedAt:    tr.At,
		ConfigVersion: c.cfg.ConfigVersion,
	}
	model := c.model(rule)
	a.Model = &model
	var boxes []snapshot.Box
	for _, h := range r.Hits {
		if len(a.Objects) == wire.MaxObjects {
			break
		}
		// Rounded: a thousandth of a score, a ten-thousandth of the frame
		// and a tenth of a second are more than the detector knows.
		o := wire.Object{Class: h.Class, Score: round(clamp01(h.Score), 1e3), TrackID: h.TrackID, DwellS: round(h.DwellIn.Seconds(), 10)}
		for i, v := range h.Box {
			o.BBox[i] = round(v, 1e4)
		}
		o.BBox[2], o.BBox[3] = min(o.BBox[2], 1-o.BBox[0]), min(o.BBox[3], 1-o.BBox[1]) // still inside the frame
		if h.Class == scenario.MotionClass {
			o.DwellS = round(tr.At.Sub(tr.StartedAt).Seconds(), 10)
		}
		a.Objects = append(a.Objects, o)
		label := h.Class
		if h.TrackID > 0 {
			label = fmt.Sprintf("%s %.2f #%d", h.Class, h.Score, h.TrackID)
		}
		boxes = append(boxes, snapshot.Box{Rect: h.Box, Label: label})
	}
	var snap, clean []byte
	if usable(frame) && tr.Phase != wire.PhaseEnd {
		var poly [][2]float64
		if z, ok := c.an.zones.Get(rule.Zone); ok {
			poly = z.Polygon
		}
		var err error
		caption := strings.TrimSpace(a.Type + " " + a.Zone + " " + a.Reason)
		if snap, err = snapshot.Render(frame, poly, boxes, caption, c.cfg.SnapshotQuality); err == nil && c.cfg.CleanSnapshot {
			clean, err = snapshot.Encode(frame, c.cfg.SnapshotQuality)
		}
		if err != nil {
			c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
			c.log.Warn("snapshot failed; sending the alert without it", "err", err)
			snap, clean = nil, nil
		}
		if snap != nil {
			sum := sha256.Sum256(snap)
			a.Evidence.SnapshotSHA256 = hex.EncodeToString(sum[:])
		}
		if clean != nil {
			sum := sha256.Sum256(clean)
			a.Evidence.CleanSnapshotID = wire.NewULID(time.Now())
			a.Evidence.CleanSnapshotSHA256 = hex.EncodeToString(sum[:])
		}
	}
	if err := c.pub.Publish(a, snap, clean); err != nil {
		c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
		c.log.Error("alert not published", "alert_id", a.AlertID, "err", err)
		return
	}
	c.alerts++
	if c.cfg.Clips != nil && a.Phase == wire.PhaseStart {
		c.cfg.Clips.RequestClip(c.cfg.CameraID, a.AlertID, tr.At)
	}
	if tr.Phase == wire.PhaseStart {
		c.events[a.Type]++
	}
	c.m.Events.WithLabelValues(c.cfg.CameraID, a.Type, string(a.Phase)).Inc()
	c.log.Info("event", "type", a.Type, "phase", a.Phase, "zone", a.Zone, "reason", a.Reason, "alert_id", a.AlertID,
		"event_id", a.EventID, "objects", len(a.Objects))
}

// model names what decided a rule.
func (c *Camera) model(r *scenario.Rule) wire.Model {
	switch {
	case r.Type() == scenario.CameraTamper:
		return TamperModel
	case c.cfg.Detector == nil:
		return Model
	default:
		return c.cfg.DetectorModel
	}
}

func clamp01(f float64) float64 { return max(0, min(1, f)) }

func round(f, per float64) float64 { return math.Round(f*per) / per }

// usable reports whether m holds a picture; the zero Mat (no frame, as for
// an end) has no native object, and asking it Empty would crash.
func usable(m gocv.Mat) bool { return m.Ptr() != nil && !m.Empty() }

// State is the camera's stream state and measured frame rate for status.
func (c *Camera) State() wire.CameraStatus {
	st, fps := c.src.State()
	return wire.CameraStatus{CameraID: c.cfg.CameraID, State: string(st), FPS: fps}
}

// keep makes p the last frame, freeing the one before.
func (c *Camera) keep(p *decode.Picture) {
	c.frameMu.Lock()
	defer c.frameMu.Unlock()
	c.lastPic.Close()
	c.lastPic = p
}

// ErrNoFrame is returned by Snapshot before the first frame was analysed.
var ErrNoFrame = errors.New("no frame analysed yet")

// Snapshot returns the last analysed frame as a JPEG with the zones drawn.
func (c *Camera) Snapshot() ([]byte, error) {
	c.frameMu.Lock()
	defer c.frameMu.Unlock()
	if c.lastPic == nil {
		return nil, ErrNoFrame
	}
	frame, err := c.lastPic.Full()
	if err != nil {
		return nil, err
	}
	return snapshot.WithZones(frame, c.zones, c.cfg.SnapshotQuality)
}

// ID is the camera's ID.
func (c *Camera) ID() string { return c.cfg.CameraID }

// Rules lists the scenario rules in force as "type/zone" (camera_tamper:
// "camera_tamper/").
func (c *Camera) Rules() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.an.Rules() {
		out = append(out, r.Type()+"/"+r.Zone)
	}
	return out
}

// CheckReload reports whether Reload would accept cfg, changing nothing.
func (c *Camera) CheckReload(cfg Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.an.checkReload(cfg); err != nil {
		return fmt.Errorf("camera %s: %w", c.cfg.CameraID, err)
	}
	return nil
}

// Reload applies what may change while the camera streams: zones,
// scenarios, the time zone, site, grid code, position and the configuration
// version. The source, the background model, the tracks and the open events
// of the rules that remain are kept; the events of rules that are gone end
// now. Everything else in cfg is ignored (the caller refuses such changes).
func (c *Camera) Reload(cfg Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.last
	if at.IsZero() {
		at = time.Now()
	}
	ended, err := c.an.reload(cfg, at)
	if err != nil {
		return fmt.Errorf("camera %s: %w", c.cfg.CameraID, err)
	}
	c.cfg.Zones, c.cfg.Scenarios, c.cfg.Location = cfg.Zones, cfg.Scenarios, cfg.Location
	c.cfg.Site, c.cfg.GridCode, c.cfg.Geo, c.cfg.ConfigVersion = cfg.Site, cfg.GridCode, cfg.Geo, cfg.ConfigVersion
	for _, r := range ended {
		c.handle(r, nil)
	}
	for key := range c.best { // best frames of rules that are gone
		if !slices.ContainsFunc(c.an.Rules(), func(r *scenario.Rule) bool { return r.Key == key }) {
			c.dropBest(key)
		}
	}
	c.frameMu.Lock()
	c.zones = outlines(cfg.Zones)
	c.frameMu.Unlock()
	c.log.Info("configuration reloaded", "config_version", cfg.ConfigVersion, "zones", len(cfg.Zones),
		"rules", len(c.an.Rules()), "ended", len(ended))
	return nil
}

// Summary is what a camera did, for replay summaries.
type Summary struct {
	Stats
	Events map[string]int // events started, by type
	Alerts int            // alerts published (start, update, end)
}

// Summary returns the counts so far.
func (c *Camera) Summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Summary{Stats: c.an.Stats(), Events: cloneCounts(c.events), Alerts: c.alerts}
}

// Close frees the analysis state, the kept frames and the frames still
// queued.
func (c *Camera) Close() error {
	c.src.Close()
	c.mu.Lock()
	c.an.Close()
	for key := range c.best {
		c.dropBest(key)
	}
	c.mu.Unlock()
	c.frameMu.Lock()
	c.lastPic.Close()
	c.lastPic = nil
	c.frameMu.Unlock()
	return nil
}
