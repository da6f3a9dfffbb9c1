package detect

import (
	"fmt"
	"image"
	"log/slog"
	"math"
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// HOG detection window (OpenCV's default people detector).
const hogWinW, hogWinH = 64, 128

// HOGConfig tunes the HOG person detector.
type HOGConfig struct {
	HitThreshold   float64 // SVM distance a window must exceed, default 0
	WinStride      int     // window step in pixels, a multiple of 8, default 8
	Padding        int     // padding around the image, a multiple of 8, default 8
	Scale          float64 // pyramid step, default 1.05
	FinalThreshold float64 // grouping threshold, default 2
	Upscale        float64 // full-frame scaling before detection, default 1 (people shorter than 128 px are missed)
	TargetHeight   int     // ROI crops are scaled up to this height (within ROI.MaxUpscale), default 256
	Score          float32 // gocv's HOG gives no confidence; every detection reports this, default 0.5
}

func (c *HOGConfig) setDefaults() {
	if c.WinStride == 0 {
		c.WinStride = 8
	}
	if c.Padding == 0 {
		c.Padding = 8
	}
	if c.Scale == 0 {
		c.Scale = 1.05
	}
	if c.FinalThreshold == 0 {
		c.FinalThreshold = 2
	}
	if c.Upscale == 0 {
		c.Upscale = 1
	}
	if c.TargetHeight == 0 {
		c.TargetHeight = 256
	}
	if c.Score == 0 {
		c.Score = 0.5
	}
}

func (c *HOGConfig) validate() error {
	switch {
	case c.WinStride < 8 || c.WinStride > 64 || c.WinStride%8 != 0:
		return fmt.Errorf("hog.win_stride %d: want a multiple of 8 within 8–64", c.WinStride)
	case c.Padding < 0 || c.Padding > 64 || c.Padding%8 != 0:
		return fmt.Errorf("hog.padding %d: want a multiple of 8 within 0–64", c.Padding)
	case c.Scale < 1.01 || c.Scale > 2:
		return fmt.Errorf("hog.scale %g outside 1.01–2", c.Scale)
	case c.FinalThreshold < 0 || c.FinalThreshold > 100:
		return fmt.Errorf("hog.final_threshold %g outside 0–100", c.FinalThreshold)
	case c.HitThreshold < -10 || c.HitThreshold > 10:
		return fmt.Errorf("hog.hit_threshold %g outside -10–10", c.HitThreshold)
	case c.Upscale < 0.25 || c.Upscale > 4:
		return fmt.Errorf("hog.upscale %g outside 0.25–4", c.Upscale)
	case c.TargetHeight < hogWinH || c.TargetHeight > 2048:
		return fmt.Errorf("hog.target_height %d outside %d–2048", c.TargetHeight, hogWinH)
	case c.Score <= 0 || c.Score > 1:
		return fmt.Errorf("hog.score %g outside (0, 1]", c.Score)
	}
	return nil
}

// HOG is OpenCV's HOG + linear SVM people detector, for cameras without a
// model file. It finds only upright people, reported as class "person".
// Safe for concurrent use; calls are serialised.
type HOG struct {
	cfg     Config
	classID int
	m       *Metrics
	log     *slog.Logger

	mu     sync.Mutex
	hog    gocv.HOGDescriptor
	svm    gocv.Mat
	scaled gocv.Mat
	closed bool
}

// NewHOG makes the HOG person detector. Only cfg.HOG, cfg.ROI and
// cfg.NMSThreshold are used. m may be nil.
func NewHOG(cfg Config, m *Metrics, log *slog.Logger) (*HOG, error) {
	cfg.setDefaults()
	if err := cfg.HOG.validate(); err != nil {
		return nil, fmt.Errorf("hog: %w", err)
	}
	if err := cfg.ROI.validate(); err != nil {
		return nil, fmt.Errorf("hog: %w", err)
	}
	if cfg.NMSThreshold <= 0 || cfg.NMSThreshold > 1 {
		return nil, fmt.Errorf("hog: NMS threshold %g outside (0, 1]", cfg.NMSThreshold)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	svm, err := defaultPeopleDetector()
	if err != nil {
		return nil, fmt.Errorf("hog: %w", err)
	}
	h := &HOG{cfg: cfg, classID: 0 /* COCO person */, m: m, log: log.With("component", "detect", "detector", "hog"),
		hog: gocv.NewHOGDescriptor(), svm: svm, scaled: gocv.NewMat()}
	if err := h.hog.SetSVMDetector(h.svm); err != nil {
		h.Close()
		return nil, fmt.Errorf("hog: %w", err)
	}
	h.log.Info("HOG person detector ready (no model file configured)")
	return h, nil
}

// Name is "hog".
func (h *HOG) Name() string { return "hog" }

// Close frees the descriptor and buffers.
func (h *HOG) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	h.hog.Close()
	h.svm.Close()
	h.scaled.Close()
	return nil
}

// Detect finds people in a BGR frame, in the whole frame when rois is empty,
// else in and around the regions of interest, scaled up to
// HOG.TargetHeight so that smaller people fill the 64×128 window.
func (h *HOG) Detect(frame gocv.Mat, rois []image.Rectangle) ([]Detection, error) {
	size, err := checkFrame(frame)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	start := time.Now()
	mode := "full"
	var cands []candidate
	var clipped []image.Rectangle
	passes := 0
	if len(rois) == 0 {
		cands = h.pass(frame, image.Rectangle{Max: size}, h.cfg.HOG.Upscale, 0, cands)
		passes++
	} else {
		mode = "roi"
		clipped = clipROIs(size, rois)
		for i, c := range planCrops(size, clipped, h.cfg.ROI, hogWinH) {
			scale := float64(h.cfg.HOG.TargetHeight) / float64(c.Dy())
			scale = max(1, min(scale, h.cfg.ROI.MaxUpscale))
			if c == (image.Rectangle{Max: size}) {
				scale = h.cfg.HOG.Upscale
			}
			cands = h.pass(frame, c, scale, i, cands)
			passes++
		}
	}
	dets := suppress(cands, func(boxes []image.Rectangle, scores []float32) []int {
		return nmsBoxes(boxes, scores, 0, h.cfg.NMSThreshold)
	})
	if len(rois) > 0 {
		dets = inAnyROI(dets, clipped)
	}
	if h.m != nil {
		h.m.Seconds.WithLabelValues("hog", mode).Observe(time.Since(start).Seconds())
		h.m.Passes.WithLabelValues("hog").Add(float64(passes))
		h.m.Detections.WithLabelValues("hog", "person").Add(float64(len(dets)))
	}
	return dets, nil
}

// pass runs HOG on one crop scaled by scale and appends the people found, in
// frame pixels.
func (h *HOG) pass(frame gocv.Mat, crop image.Rectangle, scale float64, id int, cands []candidate) []candidate {
	w := int(math.Round(float64(crop.Dx()) * scale))
	ht := int(math.Round(float64(crop.Dy()) * scale))
	if w < hogWinW || ht < hogWinH {
		return cands // smaller than the window: nothing to find
	}
	region := frame.Region(crop)
	defer region.Close()
	img := region
	if scale != 1 {
		interp := gocv.InterpolationLinear
		if scale < 1 {
			interp = gocv.InterpolationArea
		}
		gocv.Resize(region, &h.scaled, image.Pt(w, ht), 0, 0, interp)
		img = h.scaled
	}
	c := h.cfg.HOG
	rects := h.hog.DetectMultiScaleWithParams(img, c.HitThreshold, image.Pt(c.WinStride, c.WinStride),
		image.Pt(c.Padding, c.Padding), c.Scale, c.FinalThreshold, false)
	for _, r := range rects {
		// The window has a margin around the person (OpenCV's peopledetect
		// sample draws the box inset by 15 % and 5 %).
		r = image.Rect(r.Min.X+r.Dx()*15/100, r.Min.Y+r.Dy()*5/100, r.Max.X-r.Dx()*15/100, r.Max.Y-r.Dy()*5/100)
		box := image.Rect(
			crop.Min.X+int(math.Round(float64(r.Min.X)/scale)),
			crop.Min.Y+int(math.Round(float64(r.Min.Y)/scale)),
			crop.Min.X+int(math.Round(float64(r.Max.X)/scale)),
			crop.Min.Y+int(math.Round(float64(r.Max.Y)/scale)),
		).Intersect(crop)
		if !box.Empty() {
			cands = append(cands, candidate{Detection: Detection{Class: "person", ClassID: h.classID, Score: c.Score, Box: box}, pass: id})
		}
	}
	return cands
}
