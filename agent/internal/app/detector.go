package app

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/internal/wire"
)

// detector is the object detector the cameras share, with how alerts name
// it and the classes it reports.
type detector struct {
	detect.Detector
	model   wire.Model
	classes []string
}

// Close closes the detector; a nil one is fine.
func (d *detector) Close() error {
	if d == nil {
		return nil
	}
	return d.Detector.Close()
}

// newDetector makes the detector the configuration asks for, or nil when
// every camera is motion-only: YOLOX when detector.model is set (the file
// verified against the manifest before OpenCV reads it, or loaded in a
// child process first when the manifest does not vouch for it), else HOG.
// m may be nil.
func newDetector(cfg *Config, m *detect.Metrics, log *slog.Logger) (*detector, error) {
	needed := false
	for _, c := range cfg.Cameras {
		needed = needed || c.Detect.Enabled == nil || *c.Detect.Enabled
	}
	detect.SetThreads(cfg.Detector.Threads)
	if !needed {
		return nil, nil
	}
	dc := cfg.Detector
	if dc.Model == "" {
		h, err := detect.NewHOG(detect.Config{}, m, log)
		if err != nil {
			return nil, fmt.Errorf("detector: %w", err)
		}
		return &detector{Detector: h, classes: []string{"person"},
			model: wire.Model{Name: "opencv-hog-person", Version: gocv.OpenCVVersion()}}, nil
	}
	name := dc.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(dc.Model), filepath.Ext(dc.Model))
	}
	var entry *detect.ModelEntry
	if dc.Manifest != "" {
		mf, err := detect.LoadManifest(dc.Manifest)
		if err != nil {
			return nil, fmt.Errorf("detector: %w", err)
		}
		e, ok := mf.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("detector: model manifest %s has no model named %q (set detector.name)", dc.Manifest, name)
		}
		entry = e
	}
	y, err := detect.NewYOLOX(detect.Config{
		Model: dc.Model, Entry: entry, InputSize: dc.InputSize, Classes: dc.Classes,
		ScoreThreshold: float32(dc.ScoreThreshold), NMSThreshold: float32(dc.NMSThreshold),
	}, m, log)
	if errors.Is(err, detect.ErrNoChildCommand) {
		return nil, fmt.Errorf("detector: %w (the model is not in a manifest, and this build cannot check it in a child process)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	info := y.Model()
	if info.Name == "" {
		info.Name = name
	}
	classes := dc.Classes
	if len(classes) == 0 {
		classes = detect.COCO80
	}
	return &detector{Detector: y, classes: classes,
		model: wire.Model{Name: info.Name, Version: info.Version, SHA256: info.SHA256}}, nil
}
