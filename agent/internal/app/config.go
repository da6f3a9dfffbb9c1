package app

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // camera time zones on boxes without a zoneinfo database

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/pipeline"
	"github.com/xueliang/xl/agent/internal/recorder"
	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/agent/internal/scenario"
	"github.com/xueliang/xl/agent/internal/tamper"
	"github.com/xueliang/xl/agent/internal/zone"
	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/logging"
	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/wire"
)

// Config is xl-agent's configuration (configs/agent.yaml).
type Config struct {
	Agent    AgentConfig    `mapstructure:"agent"`
	MQTT     mqttc.Config   `mapstructure:"mqtt"`
	HTTP     HTTPConfig     `mapstructure:"http"`
	Publish  PublishConfig  `mapstructure:"publish"`
	Outbox   OutboxConfig   `mapstructure:"outbox"`
	Detector DetectorConfig `mapstructure:"detector"`
	Cameras  []CameraConfig `mapstructure:"cameras"`
	Log      logging.Config `mapstructure:"log"`

	// Version identifies the configuration file's content in alerts.
	Version string `mapstructure:"-"`
}

// AgentConfig identifies the edge box.
type AgentConfig struct {
	ID string `mapstructure:"id"`
}

// HTTPConfig is the agent's metrics and health listener.
type HTTPConfig struct {
	Addr  string `mapstructure:"addr"`
	Pprof bool   `mapstructure:"pprof"` // serve /debug/pprof/ (off: it reveals internals)
}

// PublishConfig tunes how alerts leave the box.
type PublishConfig struct {
	StatusInterval  time.Duration `mapstructure:"status_interval"`
	SnapshotQuality int           `mapstructure:"snapshot_quality"`
	// CleanSnapshot sends the unannotated frame with each snapshot.
	CleanSnapshot bool `mapstructure:"clean_snapshot"`
}

// DetectorConfig is the object detector the cameras share: YOLOX (ONNX)
// when a model file is configured, OpenCV's HOG person detector otherwise.
type DetectorConfig struct {
	Model          string   `mapstructure:"model"`           // ONNX file; empty: HOG (people only)
	Manifest       string   `mapstructure:"manifest"`        // model manifest with the file's sha256; empty: none
	Name           string   `mapstructure:"name"`            // the model's manifest entry (default: the file name without .onnx)
	InputSize      int      `mapstructure:"input_size"`      // network input side (default: the manifest's, else 416)
	Classes        []string `mapstructure:"classes"`         // class names in the model's order (default: COCO's 80)
	ScoreThreshold float64  `mapstructure:"score_threshold"` // objectness × class score
	NMSThreshold   float64  `mapstructure:"nms_threshold"`   // IoU above which the weaker box is dropped
	// Threads OpenCV uses (network passes, resizes), process-wide; 0: one
	// per core. With as many cameras as cores, 1 is usually faster.
	Threads int `mapstructure:"threads"`
}

// OutboxConfig is the durable queue of unsent alerts and evidence.
type OutboxConfig struct {
	Path     string        `mapstructure:"path"`
	MaxBytes int64         `mapstructure:"max_bytes"`
	MaxAge   time.Duration `mapstructure:"max_age"`
}

// GeoConfig is a camera's position.
type GeoConfig struct {
	Lat float64 `mapstructure:"lat"`
	Lon float64 `mapstructure:"lon"`
}

// MotionConfig tunes the background model.
type MotionConfig struct {
	Width        int     `mapstructure:"width"`
	History      int     `mapstructure:"history"`
	VarThreshold float64 `mapstructure:"var_threshold"`
	Warmup       int     `mapstructure:"warmup_frames"`
	MinBlob      float64 `mapstructure:"min_blob"`
}

// ZoneConfig is a named polygon in normalised coordinates (0–1, origin at
// the top left of the frame).
type ZoneConfig struct {
	Name    string       `mapstructure:"name"`
	Tags    []string     `mapstructure:"tags"`
	Polygon [][2]float64 `mapstructure:"polygon"`
	// Exclude masks the zone out: its motion is ignored and objects
	// standing in it count nowhere (timestamps, trees, glare on water).
	Exclude bool `mapstructure:"exclude"`
}

// ScenarioConfig is a rule raising alerts of one type in some zones.
type ScenarioConfig struct {
	Type           string        `mapstructure:"type"`
	Zones          []string      `mapstructure:"zones"`
	Tags           []string      `mapstructure:"tags"`
	Classes        []string      `mapstructure:"classes"`
	MinDwell       time.Duration `mapstructure:"min_dwell"`
	MinCount       int           `mapstructure:"min_count"`
	Schedule       []string      `mapstructure:"schedule"`
	Severity       int           `mapstructure:"severity"`
	MinMotion      float64       `mapstructure:"min_motion"`
	MinDuration    time.Duration `mapstructure:"min_duration"`
	EndAfter       time.Duration `mapstructure:"end_after"`
	UpdateInterval time.Duration `mapstructure:"update_interval"`
	Cooldown       time.Duration `mapstructure:"cooldown"`
}

// CameraConfig is one camera and what to look for in it.
type CameraConfig struct {
	ID        string     `mapstructure:"id"`
	URL       string     `mapstructure:"url"`
	Site      string     `mapstructure:"site"`
	GridCode  string     `mapstructure:"grid_code"`
	Geo       *GeoConfig `mapstructure:"geo"`
	DetectFPS float64    `mapstructure:"detect_fps"`
	Realtime  *bool      `mapstructure:"realtime"`
	// RTSP cameras.
	Transport       string        `mapstructure:"transport"`
	KeyframeOnly    bool          `mapstructure:"keyframe_only"`
	StallTimeout    time.Duration `mapstructure:"stall_timeout"`
	StreamLostAfter time.Duration `mapstructure:"stream_lost_after"`
	// ReadInterval reads TCP sessions in batches this far apart (never
	// further apart than the analysis takes frames); 0 reads packets as
	// they arrive. Default 200ms.
	ReadInterval *time.Duration `mapstructure:"read_interval"`
	// Timezone (IANA name) in which scenario schedules are read; empty: the
	// box's local time.
	Timezone  string             `mapstructure:"timezone"`
	Motion    MotionConfig       `mapstructure:"motion"`
	Detect    CameraDetectConfig `mapstructure:"detect"`
	Track     TrackConfig        `mapstructure:"track"`
	Tamper    TamperConfig       `mapstructure:"tamper"`
	Zones     []ZoneConfig       `mapstructure:"zones"`
	Scenarios []ScenarioConfig   `mapstructure:"scenarios"`
	// Record is the camera's main stream, pulled (never decoded) for
	// evidence clips; empty: clips are cut from the detect stream (url).
	Record string     `mapstructure:"record"`
	Clip   ClipConfig `mapstructure:"clip"`
}

// DefaultReadInterval is a camera's read_interval when the file sets none.
const DefaultReadInterval = 200 * time.Millisecond

// ClipConfig is a camera's evidence clips: when an event starts, pre
// seconds before it and post seconds after it are sent as an MP4.
type ClipConfig struct {
	// Enabled defaults to true for RTSP cameras (url or record) and false
	// for file:// sources without a record stream.
	Enabled  *bool         `mapstructure:"enabled"`
	Pre      time.Duration `mapstructure:"pre"`
	Post     time.Duration `mapstructure:"post"`
	MaxBytes int           `mapstructure:"max_bytes"`
}

// CameraDetectConfig says when a camera's frames go to the detector.
type CameraDetectConfig struct {
	// Enabled: false makes the camera motion-only (intrusion on motion).
	Enabled *bool `mapstructure:"enabled"`
	// Gating: motion (detect only where something moves) or always.
	Gating string `mapstructure:"gating"`
	// Every: the detector runs at most every Nth analysed frame; the
	// tracker carries the boxes in between.
	Every int `mapstructure:"every"`
	// Refresh: with motion gating, objects standing still are looked at
	// again this often.
	Refresh  time.Duration `mapstructure:"refresh"`
	MinScore float64       `mapstructure:"min_score"`
}

// TrackConfig tunes the tracker.
type TrackConfig struct {
	IoUThreshold float64       `mapstructure:"iou_threshold"`
	MaxLost      time.Duration `mapstructure:"max_lost"`
	MinHits      int           `mapstructure:"min_hits"`
}

// TamperConfig tunes the camera_tamper check (see package tamper).
type TamperConfig struct {
	CoveredContrast float64       `mapstructure:"covered_contrast"`
	BlurRatio       float64       `mapstructure:"blur_ratio"`
	MoveShift       float64       `mapstructure:"move_shift"`
	RelearnAfter    time.Duration `mapstructure:"relearn_after"`
}

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() *Config {
	return &Config{
		MQTT:     mqttc.Default(),
		HTTP:     HTTPConfig{Addr: "127.0.0.1:9101"},
		Publish:  PublishConfig{StatusInterval: 30 * time.Second, SnapshotQuality: 85, CleanSnapshot: true},
		Detector: DetectorConfig{ScoreThreshold: 0.35, NMSThreshold: 0.45},
		Outbox:   OutboxConfig{Path: "data/xl-agent-outbox.db", MaxBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour},
		Log:      logging.Default(),
	}
}

// ApplyDefaults fills in per-camera and per-scenario defaults.
func (c *Config) ApplyDefaults() {
	for i := range c.Cameras {
		cam := &c.Cameras[i]
		if cam.DetectFPS == 0 {
			cam.DetectFPS = 5
		}
		if cam.Realtime == nil {
			t := true
			cam.Realtime = &t
		}
		if cam.Transport == "" {
			cam.Transport = "tcp"
		}
		if cam.StallTimeout == 0 {
			cam.StallTimeout = 10 * time.Second
		}
		if cam.StreamLostAfter == 0 {
			cam.StreamLostAfter = 30 * time.Second
		}
		if cam.ReadInterval == nil {
			d := DefaultReadInterval
			cam.ReadInterval = &d
		}
		if cam.Clip.Enabled == nil {
			on := cam.Record != "" || !strings.HasPrefix(cam.URL, "file:")
			cam.Clip.Enabled = &on
		}
		if cam.Clip.Pre == 0 {
			cam.Clip.Pre = recorder.DefaultPre
		}
		if cam.Clip.Post == 0 {
			cam.Clip.Post = recorder.DefaultPost
		}
		if cam.Clip.MaxBytes == 0 {
			cam.Clip.MaxBytes = recorder.DefaultMaxBytes
		}
		m := &cam.Motion
		if m.Width == 0 {
			// 320 px keeps 99.7 % of 640 px's recall of moving people and
			// 96.5 % of it for distant ones (~10 px wide at full size), at
			// a third of the CPU (TestMotionRecallAcrossWidths).
			m.Width = 320
		}
		if m.History == 0 {
			m.History = 300
		}
		if m.VarThreshold == 0 {
			m.VarThreshold = 16
		}
		if m.Warmup == 0 {
			m.Warmup = 25
		}
		if m.MinBlob == 0 {
			m.MinBlob = 0.0005
		}
		d := &cam.Detect
		if d.Enabled == nil {
			t := true
			d.Enabled = &t
		}
		if d.Gating == "" {
			d.Gating = pipeline.GateMotion
		}
		if d.Every == 0 {
			d.Every = 3
		}
		if d.Refresh == 0 {
			d.Refresh = 10 * time.Second
		}
		tr := &cam.Track
		if tr.IoUThreshold == 0 {
			tr.IoUThreshold = 0.2
		}
		if tr.MaxLost == 0 {
			tr.MaxLost = 3 * time.Second
		}
		if tr.MinHits == 0 {
			tr.MinHits = 2
		}
		tp := &cam.Tamper
		if tp.CoveredContrast == 0 {
			tp.CoveredContrast = 12
		}
		if tp.BlurRatio == 0 {
			tp.BlurRatio = 0.35
		}
		if tp.MoveShift == 0 {
			tp.MoveShift = 0.03
		}
		for j := range cam.Scenarios {
			s := &cam.Scenarios[j]
			if s.Severity == 0 {
				s.Severity = 3
			}
			if s.MinMotion == 0 {
				s.MinMotion = 0.01
			}
			if s.EndAfter == 0 {
				s.EndAfter = 5 * time.Second
			}
			if s.UpdateInterval == 0 {
				s.UpdateInterval = 30 * time.Second
			}
		}
	}
}

// Validate reports every problem in c.
func (c *Config) Validate() []config.FieldError {
	var p config.Problems
	if !wire.ValidID(c.Agent.ID) {
		p.Add("agent.id", "%q must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}", c.Agent.ID)
	}
	p.Merge("mqtt", c.MQTT.Validate(false))
	p.HostPort("http.addr", c.HTTP.Addr, true)
	if c.Outbox.Path == "" {
		p.Add("outbox.path", "required")
	}
	if c.Outbox.MaxBytes < 1<<20 {
		p.Add("outbox.max_bytes", "at least 1048576 (1 MiB)")
	}
	if c.Outbox.MaxAge < time.Minute {
		p.Add("outbox.max_age", "at least 1m")
	}
	if c.Publish.StatusInterval < time.Second {
		p.Add("publish.status_interval", "at least 1s")
	}
	if c.Publish.SnapshotQuality < 1 || c.Publish.SnapshotQuality > 100 {
		p.Add("publish.snapshot_quality", "must be within 1–100")
	}
	for _, msg := range c.Log.Validate("log") {
		p.Add("log", "%s", msg)
	}
	if len(c.Cameras) == 0 {
		p.Add("cameras", "at least one camera is required")
	}
	seen := map[string]bool{}
	for i, cam := range c.Cameras {
		key := fmt.Sprintf("cameras[%d]", i)
		if !wire.ValidID(cam.ID) {
			p.Add(key+".id", "%q must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}", cam.ID)
		} else if seen[cam.ID] {
			p.Add(key+".id", "%q is used by another camera", cam.ID)
		}
		seen[cam.ID] = true
		p.URL(key+".url", cam.URL, "rtsp", "rtsps", "file")
		if len(cam.Site) > 128 {
			p.Add(key+".site", "longer than 128 bytes")
		}
		if len(cam.GridCode) > 64 {
			p.Add(key+".grid_code", "longer than 64 bytes")
		}
		if g := cam.Geo; g != nil && (g.Lat < -90 || g.Lat > 90 || g.Lon < -180 || g.Lon > 180) {
			p.Add(key+".geo", "lat must be within ±90 and lon within ±180")
		}
		if cam.DetectFPS <= 0 || cam.DetectFPS > 60 {
			p.Add(key+".detect_fps", "must be within (0, 60]")
		}
		p.OneOf(key+".transport", cam.Transport, "tcp", "udp", "auto")
		if cam.StallTimeout < time.Second {
			p.Add(key+".stall_timeout", "at least 1s")
		}
		if cam.StreamLostAfter < time.Second {
			p.Add(key+".stream_lost_after", "at least 1s")
		}
		if ri := cam.ReadInterval; ri != nil && (*ri < 0 || *ri > rtsp.MaxReadInterval) {
			p.Add(key+".read_interval", "must be within [0, %v]", rtsp.MaxReadInterval)
		}
		if cam.Record != "" {
			p.URL(key+".record", cam.Record, "rtsp", "rtsps")
		}
		if cl := cam.Clip; cl.Enabled != nil && *cl.Enabled {
			if cam.Record == "" && strings.HasPrefix(cam.URL, "file:") {
				p.Add(key+".clip.enabled", "clips need an RTSP stream: set record, or an rtsp:// url")
			}
			if cl.Pre < 0 || cl.Pre > time.Minute {
				p.Add(key+".clip.pre", "must be within 0–1m")
			}
			if cl.Post < 0 || cl.Post > time.Minute {
				p.Add(key+".clip.post", "must be within 0–1m")
			}
			if cl.Pre+cl.Post < time.Second {
				p.Add(key+".clip", "pre + post must be at least 1s")
			}
			if cl.MaxBytes < 1<<20 || cl.MaxBytes > wire.MaxClipTotalBytes {
				p.Add(key+".clip.max_bytes", "must be within 1048576 (1 MiB) – %d (the wire contract's limit for a clip in parts)", wire.MaxClipTotalBytes)
			}
		}
		m := cam.Motion
		if m.Width < 64 || m.Width > 4096 {
			p.Add(key+".motion.width", "must be within 64–4096")
		}
		if m.History < 1 {
			p.Add(key+".motion.history", "must be positive")
		}
		if m.VarThreshold <= 0 {
			p.Add(key+".motion.var_threshold", "must be positive")
		}
		if m.Warmup < 0 {
			p.Add(key+".motion.warmup_frames", "must be ≥ 0")
		}
		if m.MinBlob < 0 || m.MinBlob >= 1 {
			p.Add(key+".motion.min_blob", "must be within 0–1")
		}
		validateAnalysis(&p, key, cam, c.detectorClasses())
	}
	validateDetector(&p, c.Detector)
	return p.List()
}

// detectorClasses are the classes the configured detector reports: people
// only for HOG, the model's classes for YOLOX.
func (c *Config) detectorClasses() []string {
	if c.Detector.Model == "" {
		return []string{"person"}
	}
	if len(c.Detector.Classes) > 0 {
		return c.Detector.Classes
	}
	return detect.COCO80
}

func validateDetector(p *config.Problems, d DetectorConfig) {
	if d.Model == "" && (d.Manifest != "" || d.Name != "") {
		p.Add("detector.model", "manifest and name are set but no model file is")
	}
	if d.InputSize != 0 && (d.InputSize < 32 || d.InputSize > 2048 || d.InputSize%32 != 0) {
		p.Add("detector.input_size", "must be a multiple of 32 within 32–2048")
	}
	if d.ScoreThreshold <= 0 || d.ScoreThreshold >= 1 {
		p.Add("detector.score_threshold", "must be within (0, 1)")
	}
	if d.NMSThreshold <= 0 || d.NMSThreshold > 1 {
		p.Add("detector.nms_threshold", "must be within (0, 1]")
	}
	if d.Threads < 0 || d.Threads > 256 {
		p.Add("detector.threads", "must be within 0 (one per core) – 256")
	}
	seen := map[string]bool{}
	for i, c := range d.Classes {
		if c == "" || seen[c] {
			p.Add(fmt.Sprintf("detector.classes[%d]", i), "%q is empty or named twice", c)
		}
		seen[c] = true
	}
}

// validateAnalysis checks one camera's detection, tracking, tamper check,
// zones and scenarios.
func validateAnalysis(p *config.Problems, key string, cam CameraConfig, classes []string) {
	d := cam.Detect
	p.OneOf(key+".detect.gating", d.Gating, pipeline.GateMotion, pipeline.GateAlways)
	if d.Every < 1 || d.Every > 100 {
		p.Add(key+".detect.every", "must be within 1–100")
	}
	if d.Refresh < time.Second {
		p.Add(key+".detect.refresh", "at least 1s")
	}
	if d.MinScore < 0 || d.MinScore >= 1 {
		p.Add(key+".detect.min_score", "must be within 0–1")
	}
	if t := cam.Track; t.IoUThreshold <= 0 || t.IoUThreshold >= 1 {
		p.Add(key+".track.iou_threshold", "must be within (0, 1)")
	}
	if cam.Track.MaxLost < 100*time.Millisecond {
		p.Add(key+".track.max_lost", "at least 100ms")
	}
	if cam.Track.MinHits < 1 || cam.Track.MinHits > 100 {
		p.Add(key+".track.min_hits", "must be within 1–100")
	}
	if err := tamperConfig(cam.Tamper).Validate(); err != nil {
		p.Add(key+".tamper", "%v", err)
	}
	if _, err := location(cam.Timezone); err != nil {
		p.Add(key+".timezone", "%v", err)
	}

	zonesOK := true
	names := map[string]bool{}
	for j, z := range cam.Zones {
		zk := fmt.Sprintf("%s.zones[%d]", key, j)
		if !wire.ValidID(z.Name) {
			p.Add(zk+".name", "%q must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}", z.Name)
			zonesOK = false
		} else if names[z.Name] {
			p.Add(zk+".name", "%q is used by another zone of this camera", z.Name)
			zonesOK = false
		}
		names[z.Name] = true
		if err := zone.ValidatePolygon(z.Polygon); err != nil {
			p.Add(zk+".polygon", "%v", err)
			zonesOK = false
		}
	}
	if len(cam.Scenarios) == 0 {
		p.Add(key+".scenarios", "at least one scenario is required")
	}
	needZones := false
	for _, s := range cam.Scenarios {
		needZones = needZones || scenario.ZoneBased(s.Type)
	}
	if needZones && len(cam.Zones) == 0 {
		p.Add(key+".zones", "at least one zone is required")
	}
	var zs *zone.Set
	if zonesOK {
		zs, _ = zone.NewSet(zoneList(cam))
	}
	opts := scenario.Options{MotionOnly: !*cam.Detect.Enabled, Classes: classes}
	for j, s := range cam.Scenarios {
		sk := fmt.Sprintf("%s.scenarios[%d]", key, j)
		// Checked here with the messages and limits of this file; the
		// copy handed to scenario.Check has them fixed, so that they are
		// not reported twice.
		spec := scenarioSpec(s).WithDefaults()
		if s.Severity < 1 || s.Severity > 4 {
			p.Add(sk+".severity", "must be within 1 (most urgent) – 4")
			spec.Severity = 1
		}
		if s.EndAfter < 100*time.Millisecond {
			p.Add(sk+".end_after", "at least 100ms")
			spec.Lifecycle.EndAfter = time.Second
		}
		if s.UpdateInterval < time.Second {
			p.Add(sk+".update_interval", "at least 1s")
		}
		known := slices.Contains(scenario.Types, s.Type)
		if !known {
			p.Add(sk+".type", "%q is not a scenario; available: %s", s.Type, strings.Join(scenario.Types, ", "))
		}
		if zs == nil || !known {
			for _, zn := range s.Zones {
				if !names[zn] {
					p.Add(sk+".zones", "no zone named %q on this camera", zn)
				}
			}
			continue
		}
		for _, pr := range scenario.Check(spec, zs, opts) {
			p.Add(sk+"."+pr.Field, "%s", pr.Msg)
		}
	}
}

// location loads a camera's time zone; empty is the box's local time.
func location(name string) (*time.Location, error) {
	if name == "" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (want an IANA name such as Asia/Shanghai)", name)
	}
	return loc, nil
}

func zoneList(cam CameraConfig) []zone.Zone {
	out := make([]zone.Zone, 0, len(cam.Zones))
	for _, z := range cam.Zones {
		out = append(out, zone.Zone{Name: z.Name, Tags: z.Tags, Polygon: z.Polygon, Exclude: z.Exclude})
	}
	return out
}

func scenarioSpec(s ScenarioConfig) scenario.Spec {
	return scenario.Spec{
		Type: s.Type, Severity: s.Severity, Zones: s.Zones, Tags: s.Tags, Classes: s.Classes,
		MinDwell: s.MinDwell, MinCount: s.MinCount, MinMotion: s.MinMotion, Schedule: s.Schedule,
		Lifecycle: event.Config{MinDuration: s.MinDuration, EndAfter: s.EndAfter, UpdateInterval: s.UpdateInterval, Cooldown: s.Cooldown},
	}
}

func tamperConfig(t TamperConfig) tamper.Config {
	return tamper.Config{CoveredContrast: t.CoveredContrast, BlurRatio: t.BlurRatio, MoveShift: t.MoveShift, RelearnAfter: t.RelearnAfter}
}

// LoadConfig reads, overrides from XL_* and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(path, cfg); err != nil {
		return nil, err
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err == nil {
			sum := sha256.Sum256(b)
			cfg.Version = hex.EncodeToString(sum[:6])
		}
	}
	return cfg, nil
}
