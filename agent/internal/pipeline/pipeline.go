// Package pipeline is one camera's analysis worker: frames from the source,
// motion per zone, scenario rules, event lifecycle, alerts with annotated
// snapshots handed to the publisher.
package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/agent/internal/snapshot"
	"github.com/xueliang/xl/agent/internal/source"
	"github.com/xueliang/xl/internal/wire"
)

// Publisher takes finished alerts; it must not block.
type Publisher interface {
	Publish(a *wire.Alert, snapshot []byte) error
}

// ClipRequester records evidence clips: RequestClip asks for the camera's
// video around at as the clip of alertID. It must not block.
type ClipRequester interface {
	RequestClip(cameraID, alertID string, at time.Time)
}

// Zone is a named polygon in normalised coordinates.
type Zone struct {
	Name    string
	Tags    []string
	Polygon [][2]float64
}

// Scenario is a rule evaluated on each of its zones.
type Scenario struct {
	Type      string
	Severity  int
	Zones     []string
	MinMotion float64 // share of the zone that must move
	Lifecycle event.Config
}

// Config is one camera's analysis.
type Config struct {
	AgentID         string
	CameraID        string
	Site            string
	GridCode        string
	Geo             *wire.Geo
	ConfigVersion   string
	Motion          motion.Config
	Zones           []Zone
	Scenarios       []Scenario
	SnapshotQuality int
	// StreamLostAfter: a camera that delivers no frame this long raises
	// stream_lost; stream_restored follows when frames come back.
	StreamLostAfter time.Duration
	// Clips, when set, records a clip for every event start.
	Clips ClipRequester
}

// Model is how motion-only alerts name their detector.
var Model = wire.Model{Name: "mog2-motion", Version: "1"}

// Metrics are the analysis metrics, registered once per agent.
type Metrics struct {
	Analysed *prometheus.CounterVec
	Seconds  *prometheus.HistogramVec
	Events   *prometheus.CounterVec
	Errors   *prometheus.CounterVec
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
	}
	reg.MustRegister(m.Analysed, m.Seconds, m.Events, m.Errors)
	return m
}

// rule is one scenario on one zone, with its own lifecycle.
type rule struct {
	scenario *Scenario
	zone     int // index into cfg.Zones and the detector's results
	lc       *event.Lifecycle
}

// Camera is one camera's worker.
type Camera struct {
	cfg   Config
	src   *source.Source
	det   *motion.Detector
	pub   Publisher
	m     *Metrics
	log   *slog.Logger
	rules []*rule
	last  time.Time // frame time of the last frame analysed

	frameMu   sync.Mutex
	lastFrame gocv.Mat // the last frame analysed, for snapshot commands
	hasFrame  bool

	lostEvent string    // event ID of the open stream_lost event, if any
	lostAt    time.Time // when that stream was lost
}

// New builds the worker; src is owned (run and closed) by the Camera.
func New(cfg Config, src *source.Source, pub Publisher, m *Metrics, log *slog.Logger) (*Camera, error) {
	zoneIdx := map[string]int{}
	polys := make([][][2]float64, len(cfg.Zones))
	for i, z := range cfg.Zones {
		zoneIdx[z.Name] = i
		polys[i] = z.Polygon
	}
	det, err := motion.New(cfg.Motion, polys)
	if err != nil {
		return nil, fmt.Errorf("camera %s: %w", cfg.CameraID, err)
	}
	c := &Camera{cfg: cfg, src: src, det: det, pub: pub, m: m, log: log.With("component", "pipeline", "camera_id", cfg.CameraID)}
	for i := range cfg.Scenarios {
		s := &cfg.Scenarios[i]
		for _, zn := range s.Zones {
			zi, ok := zoneIdx[zn]
			if !ok {
				det.Close()
				return nil, fmt.Errorf("camera %s: scenario %s names unknown zone %q", cfg.CameraID, s.Type, zn)
			}
			c.rules = append(c.rules, &rule{scenario: s, zone: zi, lc: event.New(s.Lifecycle, wire.NewULID)})
		}
	}
	return c, nil
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
		c.keep(f.Mat)
	}
	wg.Wait()
	if ctx.Err() == nil { // the source ended: analyse what it left
		for f, ok := frames.TryPop(); ok; f, ok = frames.TryPop() {
			c.analyse(f)
			c.keep(f.Mat)
		}
	}
	c.flush(c.last)
	if errors.Is(srcErr, source.ErrEnded) {
		return nil
	}
	return srcErr
}

func (c *Camera) analyse(f source.Frame) {
	start := time.Now()
	results, err := c.det.Process(f.Mat)
	c.m.Seconds.WithLabelValues(c.cfg.CameraID).Observe(time.Since(start).Seconds())
	if err != nil {
		c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
		c.log.Warn("frame not analysed", "err", err)
		return
	}
	c.m.Analysed.WithLabelValues(c.cfg.CameraID).Inc()
	c.last = f.At
	for _, r := range c.rules {
		res := results[r.zone]
		isTrue := res.Warm && res.Ratio >= r.scenario.MinMotion && len(res.Blobs) > 0
		if tr, ok := r.lc.Step(f.At, isTrue); ok {
			c.emit(r, tr, res, &f)
		}
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
	a := &wire.Alert{
		AlertID: wire.NewULID(time.Now()), EventID: eventID, Phase: phase, AgentID: c.cfg.AgentID, CameraID: c.cfg.CameraID,
		Site: c.cfg.Site, GridCode: c.cfg.GridCode, Geo: c.cfg.Geo, Type: typ, Severity: severity,
		StartedAt: started, DetectedAt: at, ConfigVersion: c.cfg.ConfigVersion,
	}
	if err := c.pub.Publish(a, nil); err != nil {
		c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
		c.log.Error("stream health alert not published", "type", typ, "err", err)
		return
	}
	c.m.Events.WithLabelValues(c.cfg.CameraID, typ, string(phase)).Inc()
	c.log.Warn("stream health", "type", typ, "phase", phase, "since", started.Format(time.RFC3339))
}

// flush ends every open event (the stream ended or the agent stops).
func (c *Camera) flush(at time.Time) {
	if at.IsZero() {
		at = time.Now()
	}
	for _, r := range c.rules {
		if tr, ok := r.lc.Flush(at); ok {
			c.emit(r, tr, motion.Result{}, nil)
		}
	}
}

func (c *Camera) emit(r *rule, tr event.Transition, res motion.Result, f *source.Frame) {
	zone := c.cfg.Zones[r.zone]
	model := Model
	a := &wire.Alert{
		AlertID:       wire.NewULID(time.Now()),
		EventID:       tr.EventID,
		Phase:         tr.Phase,
		AgentID:       c.cfg.AgentID,
		CameraID:      c.cfg.CameraID,
		Site:          c.cfg.Site,
		GridCode:      c.cfg.GridCode,
		Geo:           c.cfg.Geo,
		Type:          r.scenario.Type,
		Severity:      r.scenario.Severity,
		Zone:          zone.Name,
		StartedAt:     tr.StartedAt,
		DetectedAt:    tr.At,
		Model:         &model,
		ConfigVersion: c.cfg.ConfigVersion,
	}
	dwell := tr.At.Sub(tr.StartedAt).Seconds()
	for _, b := range res.Blobs {
		if len(a.Objects) == wire.MaxObjects {
			break
		}
		a.Objects = append(a.Objects, wire.Object{Class: "motion", Score: 1, BBox: b, DwellS: dwell})
	}
	var snap []byte
	if f != nil && tr.Phase != wire.PhaseEnd {
		var err error
		snap, err = snapshot.Annotated(f.Mat, zone.Polygon, res.Blobs, c.cfg.SnapshotQuality)
		if err != nil {
			c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
			c.log.Warn("snapshot failed; sending the alert without it", "err", err)
			snap = nil
		} else {
			sum := sha256.Sum256(snap)
			a.Evidence.SnapshotSHA256 = hex.EncodeToString(sum[:])
		}
	}
	if err := c.pub.Publish(a, snap); err != nil {
		c.m.Errors.WithLabelValues(c.cfg.CameraID).Inc()
		c.log.Error("alert not published", "alert_id", a.AlertID, "err", err)
		return
	}
	if c.cfg.Clips != nil && a.Phase == wire.PhaseStart {
		c.cfg.Clips.RequestClip(c.cfg.CameraID, a.AlertID, tr.At)
	}
	c.m.Events.WithLabelValues(c.cfg.CameraID, a.Type, string(a.Phase)).Inc()
	c.log.Info("event", "type", a.Type, "phase", a.Phase, "zone", a.Zone, "alert_id", a.AlertID,
		"event_id", a.EventID, "motion", fmt.Sprintf("%.3f", res.Ratio), "objects", len(a.Objects))
}

// State is the camera's stream state and measured frame rate for status.
func (c *Camera) State() wire.CameraStatus {
	st, fps := c.src.State()
	return wire.CameraStatus{CameraID: c.cfg.CameraID, State: string(st), FPS: fps}
}

// keep makes m the last frame, freeing the one before.
func (c *Camera) keep(m gocv.Mat) {
	c.frameMu.Lock()
	defer c.frameMu.Unlock()
	if c.hasFrame {
		c.lastFrame.Close()
	}
	c.lastFrame, c.hasFrame = m, true
}

// ErrNoFrame is returned by Snapshot before the first frame was analysed.
var ErrNoFrame = errors.New("no frame analysed yet")

// Snapshot returns the last analysed frame as a JPEG with the zones drawn.
func (c *Camera) Snapshot() ([]byte, error) {
	c.frameMu.Lock()
	defer c.frameMu.Unlock()
	if !c.hasFrame || c.lastFrame.Empty() {
		return nil, ErrNoFrame
	}
	var zones [][][2]float64
	for _, z := range c.cfg.Zones {
		zones = append(zones, z.Polygon)
	}
	return snapshot.WithZones(c.lastFrame, zones, c.cfg.SnapshotQuality)
}

// ID is the camera's ID.
func (c *Camera) ID() string { return c.cfg.CameraID }

// Close frees the detector, the last frame and the frames still queued.
func (c *Camera) Close() error {
	c.src.Close()
	c.det.Close()
	c.frameMu.Lock()
	if c.hasFrame {
		c.lastFrame.Close()
		c.hasFrame = false
	}
	c.frameMu.Unlock()
	return nil
}
