// Package app wires xl-agent together: publisher, one pipeline per camera,
// and the ops HTTP server.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/agent/internal/outbox"
	"github.com/xueliang/xl/agent/internal/pipeline"
	"github.com/xueliang/xl/agent/internal/publish"
	"github.com/xueliang/xl/agent/internal/source"
	"github.com/xueliang/xl/agent/internal/track"
	"github.com/xueliang/xl/internal/lifecycle"
	"github.com/xueliang/xl/internal/opshttp"
	"github.com/xueliang/xl/internal/sdnotify"
	"github.com/xueliang/xl/internal/version"
	"github.com/xueliang/xl/internal/wire"
)

// Agent is one running xl-agent.
type Agent struct {
	path    string // the configuration file, for reload
	log     *slog.Logger
	ob      *outbox.Outbox
	Reg     *prometheus.Registry
	pub     *publish.Publisher
	det     *detector // nil when every camera is motion-only
	cameras []*pipeline.Camera
	http    *opshttp.Server
	parts   lifecycle.Group

	reloadMu sync.Mutex // one reload at a time
	cfgMu    sync.Mutex // cfg is replaced by a reload
	cfg      *Config
}

// New builds every component, opens the outbox and binds the HTTP port.
// path is the configuration file (for the reload command).
func New(cfg *Config, path string, log *slog.Logger) (_ *Agent, err error) {
	a := &Agent{cfg: cfg, path: path, log: log, Reg: prometheus.NewRegistry()}
	a.Reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_agent_build_info",
		Help: "Build version of xl-agent and the agent's ID (join on instance to name a scrape target)."}, []string{"version", "agent_id"})
	buildInfo.WithLabelValues(version.Version, cfg.Agent.ID).Set(1)
	a.Reg.MustRegister(buildInfo)
	defer func() {
		if err != nil {
			a.parts.Close()
			if a.ob != nil {
				a.ob.Close()
			}
			a.det.Close()
		}
	}()
	// The detector first: a wrong model file is a start-up error before
	// anything else is opened.
	if a.det, err = newDetector(cfg, detect.NewMetrics(a.Reg), log); err != nil {
		return nil, err
	}
	a.ob, err = outbox.Open(cfg.Outbox.Path, outbox.Limits{MaxBytes: cfg.Outbox.MaxBytes, MaxAge: cfg.Outbox.MaxAge}, a.Reg, log)
	if err != nil {
		return nil, err
	}
	a.pub, err = publish.New(cfg.Agent.ID, cfg.MQTT, a.ob, cfg.Publish.StatusInterval, a.status, a.command, a.Reg, log)
	if err != nil {
		return nil, err
	}
	a.parts.Add(a.pub)
	srcMetrics, pipeMetrics := source.NewMetrics(a.Reg), pipeline.NewMetrics(a.Reg)
	rec, err := newRecorder(cfg, a.pub, srcMetrics.RTSP, a.Reg, log)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		a.parts.Add(rec)
	}
	for _, cc := range cfg.Cameras {
		src, err := source.New(cc.ID, source.Config{
			URL: cc.URL, FPS: cc.DetectFPS, Realtime: *cc.Realtime, QueueSize: 4,
			ReconnectMin: time.Second, ReconnectMax: 30 * time.Second,
			Transport: cc.Transport, KeyframeOnly: cc.KeyframeOnly, StallTimeout: cc.StallTimeout,
			ReadInterval: detectReadInterval(cc), Width: cc.Motion.Width,
			OnState: func(source.State) { a.pub.RefreshStatus() }, OnAccessUnit: rec.Feed(cc.ID),
		}, srcMetrics, log)
		if err != nil {
			return nil, err
		}
		pc, err := pipelineConfig(cfg, cc, a.det)
		if err != nil {
			src.Close()
			return nil, err
		}
		if rec.Records(cc.ID) {
			pc.Clips = rec
		}
		cam, err := pipeline.New(pc, src, a.pub, pipeMetrics, log)
		if err != nil {
			src.Close()
			return nil, err
		}
		a.cameras = append(a.cameras, cam)
		// Every camera's counters start at zero, so that rules and
		// dashboards see its series (and increase()) before the first event.
		srcMetrics.FramesDropped.WithLabelValues(cc.ID)
		srcMetrics.Reconnects.WithLabelValues(cc.ID)
		srcMetrics.DecodeSeconds.WithLabelValues(cc.ID)
		pipeMetrics.GatedSkips.WithLabelValues(cc.ID)
		a.parts.Add(cam)
	}
	a.http, err = opshttp.New(cfg.HTTP.Addr, a.Reg, log.With("component", "http"))
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Pprof {
		a.http.EnablePprof()
	}
	a.parts.Add(newHUPReloader(a))
	a.http.AddCheck("mqtt", a.pub.Ready)
	a.http.AddCheck("cameras", a.camerasReady)
	a.parts.Add(a.http)
	// Under systemd: READY=1, and watchdog keep-alives while the outbox answers.
	a.parts.Add(sdnotify.New(a.ob.Ping, log))
	return a, nil
}

// pipelineConfig is one camera's analysis as configured; det may be nil
// when no camera uses a detector.
func pipelineConfig(cfg *Config, cc CameraConfig, det *detector) (pipeline.Config, error) {
	loc, err := location(cc.Timezone)
	if err != nil {
		return pipeline.Config{}, fmt.Errorf("camera %s: %w", cc.ID, err)
	}
	pc := pipeline.Config{
		AgentID: cfg.Agent.ID, CameraID: cc.ID, Site: cc.Site, GridCode: cc.GridCode, Location: loc,
		ConfigVersion: cfg.Version, SnapshotQuality: cfg.Publish.SnapshotQuality, CleanSnapshot: cfg.Publish.CleanSnapshot,
		StreamLostAfter: cc.StreamLostAfter,
		Motion: motion.Config{Width: cc.Motion.Width, History: cc.Motion.History, VarThreshold: cc.Motion.VarThreshold,
			Warmup: cc.Motion.Warmup, MinBlobRatio: cc.Motion.MinBlob},
		Detect: pipeline.DetectConfig{Gating: cc.Detect.Gating, Every: cc.Detect.Every, Refresh: cc.Detect.Refresh,
			MinScore: float32(cc.Detect.MinScore)},
		Track:  track.Config{IoUThreshold: cc.Track.IoUThreshold, MaxLost: cc.Track.MaxLost, MinHits: cc.Track.MinHits},
		Tamper: tamperConfig(cc.Tamper),
		Zones:  zoneList(cc),
	}
	if cc.Geo != nil {
		pc.Geo = &wire.Geo{Lat: cc.Geo.Lat, Lon: cc.Geo.Lon}
	}
	for _, s := range cc.Scenarios {
		pc.Scenarios = append(pc.Scenarios, scenarioSpec(s))
	}
	if *cc.Detect.Enabled {
		if det == nil {
			return pipeline.Config{}, fmt.Errorf("camera %s: no detector", cc.ID)
		}
		pc.Detector, pc.DetectorClasses, pc.DetectorModel = det.Detector, det.classes, det.model
	}
	return pc, nil
}

func (a *Agent) config() *Config {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.cfg
}

func (a *Agent) status() wire.Status {
	st := wire.Status{Version: version.Version, ConfigVersion: a.config().Version}
	for _, c := range a.cameras {
		st.Cameras = append(st.Cameras, c.State())
	}
	return st
}

func (a *Agent) camerasReady(context.Context) error {
	for _, c := range a.cameras {
		if s := c.State(); s.State != string(source.StateStreaming) && s.State != string(source.StateEnded) {
			return errors.New("camera " + s.CameraID + " is " + s.State)
		}
	}
	return nil
}

// HTTPAddr is the address of the metrics and health endpoints.
func (a *Agent) HTTPAddr() string { return a.http.Addr() }

// Run runs until ctx is cancelled or a component fails, then closes the
// outbox.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.config()
	det := "none (motion only)"
	if a.det != nil {
		det = a.det.model.Name
	}
	a.log.Info("xl-agent running", "version", version.Version, "agent_id", cfg.Agent.ID,
		"cameras", len(a.cameras), "detector", det, "broker", cfg.MQTT.URL, "http", a.HTTPAddr(), "config_version", cfg.Version)
	err := a.parts.Run(ctx)
	return errors.Join(err, a.ob.Close(), a.det.Close())
}

// detectReadInterval is how far apart a camera's detect stream is read: its
// read_interval, but never longer than analysis waits between frames, so a
// batch holds at most about one frame analysis takes.
func detectReadInterval(cc CameraConfig) time.Duration {
	ri := readInterval(cc)
	if cc.DetectFPS > 0 {
		ri = min(ri, time.Duration(float64(time.Second)/cc.DetectFPS))
	}
	return ri
}
