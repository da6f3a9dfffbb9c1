package app

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/recorder"
	"github.com/xueliang/xl/agent/internal/rtsp"
)

// newRecorder builds the evidence clip recorder for the cameras with clips
// enabled; nil when none has them.
func newRecorder(cfg *Config, sink recorder.Sink, rm *rtsp.Metrics, reg prometheus.Registerer, log *slog.Logger) (*recorder.Recorder, error) {
	var cams []recorder.Camera
	for _, cc := range cfg.Cameras {
		if cc.Clip.Enabled == nil || !*cc.Clip.Enabled {
			continue
		}
		cams = append(cams, recorder.Camera{
			ID: cc.ID, Record: cc.Record, Transport: cc.Transport, StallTimeout: cc.StallTimeout,
			ReadInterval: readInterval(cc),
			Pre:          cc.Clip.Pre, Post: cc.Clip.Post, MaxBytes: cc.Clip.MaxBytes,
		})
	}
	if len(cams) == 0 {
		return nil, nil
	}
	m, err := recorder.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return recorder.New(cams, sink, m, rm, log)
}

// readInterval is a camera's read_interval (the record stream is never
// decoded, so analysis does not bound it).
func readInterval(cc CameraConfig) time.Duration {
	if cc.ReadInterval == nil {
		return DefaultReadInterval
	}
	return *cc.ReadInterval
}
