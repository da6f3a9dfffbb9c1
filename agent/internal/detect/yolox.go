package detect

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// CheckPolicy says when a model is loaded in a child process first.
type CheckPolicy int

const (
	// CheckUnverified checks models whose sha256 the manifest does not
	// vouch for (no entry, or an entry without sha256). The default.
	CheckUnverified CheckPolicy = iota
	// CheckAlways checks every model, verified or not.
	CheckAlways
)

// Config configures a detector. With Model empty, New makes the HOG person
// detector; otherwise YOLOX.
type Config struct {
	Model          string      // ONNX file; empty: HOG
	Entry          *ModelEntry // the model's manifest entry: size and sha256 are checked, input and output taken from it
	InputSize      int         // network input side, default 416 (or the entry's input.width)
	Strides        []int       // output strides, default 8, 16, 32 (or the entry's)
	PadValue       float64     // letterbox padding, default 114 (or the entry's)
	Classes        []string    // class names in the model's order, default COCO80
	Allowed        []string    // classes to report, default all (e.g. person, boat)
	ScoreThreshold float32     // objectness × class score, default 0.35
	NMSThreshold   float32     // IoU above which the weaker box is dropped, default 0.45
	ROI            ROIConfig
	HOG            HOGConfig
	Check          CheckPolicy
}

func (c *Config) setDefaults() {
	if c.Entry != nil {
		if c.InputSize == 0 {
			c.InputSize = c.Entry.Input.Width
		}
		if len(c.Strides) == 0 {
			c.Strides = slices.Clone(c.Entry.Output.Strides)
		}
		if c.PadValue == 0 {
			c.PadValue = c.Entry.Input.PadValue
		}
	}
	if c.InputSize == 0 {
		c.InputSize = 416
	}
	if len(c.Strides) == 0 {
		c.Strides = []int{8, 16, 32}
	}
	if c.PadValue == 0 {
		c.PadValue = 114
	}
	if len(c.Classes) == 0 {
		c.Classes = COCO80
	}
	if c.ScoreThreshold == 0 {
		c.ScoreThreshold = 0.35
	}
	if c.NMSThreshold == 0 {
		c.NMSThreshold = 0.45
	}
	c.ROI.setDefaults()
	c.HOG.setDefaults()
}

// spec is the model input and output the configuration implies.
func (c *Config) spec() ModelSpec {
	rows := 0
	for _, s := range c.Strides {
		rows += (c.InputSize / s) * (c.InputSize / s)
	}
	return ModelSpec{InputWidth: c.InputSize, InputHeight: c.InputSize, InputChannels: 3,
		OutputShape: []int{1, rows, 5 + len(c.Classes)}}
}

func (c *Config) validateYOLOX() error {
	if c.InputSize < 32 || c.InputSize > 2048 {
		return fmt.Errorf("input size %d outside 32–2048", c.InputSize)
	}
	for _, s := range c.Strides {
		if s < 1 || c.InputSize%s != 0 {
			return fmt.Errorf("stride %d does not divide the input size %d", s, c.InputSize)
		}
	}
	if c.ScoreThreshold <= 0 || c.ScoreThreshold >= 1 || c.NMSThreshold <= 0 || c.NMSThreshold > 1 {
		return fmt.Errorf("score threshold %g and NMS threshold %g must be within (0, 1)", c.ScoreThreshold, c.NMSThreshold)
	}
	if c.PadValue < 0 || c.PadValue > 255 {
		return fmt.Errorf("pad value %g outside 0–255", c.PadValue)
	}
	if e := c.Entry; e != nil {
		if e.Input.Width != 0 && (e.Input.Width != c.InputSize || e.Input.Height != c.InputSize) {
			return fmt.Errorf("input size %d, but manifest %s says %dx%d", c.InputSize, e.Name, e.Input.Width, e.Input.Height)
		}
		if e.Input.Order == "RGB" || (e.Input.Scale != 0 && e.Input.Scale != 1) {
			return fmt.Errorf("manifest %s wants order %s scale %g; only BGR, scale 1 is implemented", e.Name, e.Input.Order, e.Input.Scale)
		}
		if len(e.Output.Shape) > 0 && !slices.Equal(e.Output.Shape, c.spec().OutputShape) {
			return fmt.Errorf("manifest %s says output %v, but %d classes at strides %v give %v",
				e.Name, e.Output.Shape, len(c.Classes), c.Strides, c.spec().OutputShape)
		}
	}
	return c.ROI.validate()
}

// New makes the detector the configuration asks for: YOLOX when a model
// file is configured, HOG otherwise. m and log may be nil.
func New(cfg Config, m *Metrics, log *slog.Logger) (Detector, error) {
	if cfg.Model == "" {
		return NewHOG(cfg, m, log)
	}
	return NewYOLOX(cfg, m, log)
}

// ModelInfo names the loaded model, for alerts.
type ModelInfo struct {
	Name, Version, SHA256 string
}

// YOLOX is the YOLOX-Nano ONNX detector. Safe for concurrent use; calls are
// serialised.
type YOLOX struct {
	cfg     Config
	spec    ModelSpec
	allowed map[int]bool
	info    ModelInfo
	m       *Metrics
	log     *slog.Logger

	mu      sync.Mutex
	net     gocv.Net
	resized gocv.Mat
	padded  gocv.Mat
	closed  bool
}

// NewYOLOX verifies the model file (size and sha256 against cfg.Entry),
// checks its ONNX structure, loads it in a child process first unless the
// manifest vouches for it (see CheckPolicy), then loads it and runs one
// forward pass to confirm the output shape.
func NewYOLOX(cfg Config, m *Metrics, log *slog.Logger) (*YOLOX, error) {
	if cfg.Model == "" {
		return nil, errNoModel
	}
	cfg.setDefaults()
	if err := cfg.validateYOLOX(); err != nil {
		return nil, fmt.Errorf("yolox: %w", err)
	}
	allowed, err := classFilter(cfg.Classes, cfg.Allowed)
	if err != nil {
		return nil, fmt.Errorf("yolox: allowed classes: %w", err)
	}
	data, digest, err := readModel(cfg.Model, cfg.Entry)
	if err != nil {
		return nil, fmt.Errorf("yolox: %w", err)
	}
	spec := cfg.spec()
	onnx, err := inspectONNX(data)
	if err != nil {
		return nil, fmt.Errorf("yolox: model file %s: %w", cfg.Model, err)
	}
	if err := onnx.checkDeclared(spec); err != nil {
		return nil, fmt.Errorf("yolox: model file %s: %w", cfg.Model, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "detect", "detector", "yolox", "model", cfg.Model)
	if cfg.Check == CheckAlways || !digest.Verified {
		start := time.Now()
		if err := checkModelData(context.Background(), data, digest, spec); err != nil {
			return nil, fmt.Errorf("yolox: %w", err)
		}
		log.Info("model checked in a child process", "took", time.Since(start).Round(time.Millisecond))
	}
	net, err := gocv.ReadNetFromONNXBytes(data)
	if err != nil {
		return nil, fmt.Errorf("yolox: reading %s: %w", cfg.Model, err)
	}
	if net.Empty() {
		net.Close()
		return nil, fmt.Errorf("yolox: OpenCV read no layers from %s", cfg.Model)
	}
	y := &YOLOX{cfg: cfg, spec: spec, allowed: allowed, m: m, log: log, net: net,
		resized: gocv.NewMat(), padded: gocv.NewMat()}
	if cfg.Entry != nil {
		y.info = ModelInfo{Name: cfg.Entry.Name, Version: cfg.Entry.Version}
	}
	y.info.SHA256 = digest.SHA256
	if err := y.warmUp(); err != nil {
		y.Close()
		return nil, fmt.Errorf("yolox: %s: %w", cfg.Model, err)
	}
	log.Info("model loaded", "sha256", digest.SHA256, "verified", digest.Verified, "nodes", onnx.Nodes)
	return y, nil
}

// warmUp runs one pass on a grey frame: it confirms the output shape and
// moves OpenCV's one-off set-up cost out of the first real frame.
func (y *YOLOX) warmUp() error {
	grey := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(114, 114, 114, 0), y.cfg.InputSize, y.cfg.InputSize, gocv.MatTypeCV8UC3)
	defer grey.Close()
	_, err := y.pass(grey, y.fullFrame(image.Pt(y.cfg.InputSize, y.cfg.InputSize)), nil)
	return err
}

// Name is "yolox".
func (y *YOLOX) Name() string { return "yolox" }

// Model names the loaded model and its sha256.
func (y *YOLOX) Model() ModelInfo { return y.info }

// Close frees the network and buffers.
func (y *YOLOX) Close() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.closed {
		return nil
	}
	y.closed = true
	y.net.Close()
	y.resized.Close()
	y.padded.Close()
	return nil
}

// Detect finds objects in a BGR frame, in the whole frame when rois is
// empty, else only in and around the regions of interest. The crops the
// regions become (see ROIConfig) are scaled by one factor, up to
// ROI.MaxUpscale, and packed side by side on the network's input, so a frame
// costs one pass whatever the number of regions; when packing would shrink
// them below the whole frame's own scale, the whole frame is searched.
func (y *YOLOX) Detect(frame gocv.Mat, rois []image.Rectangle) ([]Detection, error) {
	size, err := checkFrame(frame)
	if err != nil {
		return nil, err
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.closed {
		return nil, ErrClosed
	}
	start := time.Now()
	mode := "full"
	tiles := y.fullFrame(size)
	var clipped []image.Rectangle
	if len(rois) > 0 {
		mode = "roi"
		clipped = clipROIs(size, rois)
		tiles = y.roiTiles(size, clipped)
	}
	var cands []candidate
	if len(tiles) > 0 {
		if cands, err = y.pass(frame, tiles, nil); err != nil {
			return nil, err
		}
	}
	dets := suppress(cands, func(boxes []image.Rectangle, scores []float32) []int {
		return nmsBoxes(boxes, scores, y.cfg.ScoreThreshold, y.cfg.NMSThreshold)
	})
	if len(rois) > 0 {
		dets = inAnyROI(dets, clipped)
	}
	y.observe(mode, min(len(tiles), 1), dets, time.Since(start))
	return dets, nil
}

// fullFrame letterboxes the whole frame: scaled to fit, at the top-left.
func (y *YOLOX) fullFrame(size image.Point) []tile {
	in := y.cfg.InputSize
	s := min(float64(in)/float64(size.X), float64(in)/float64(size.Y))
	w, h := min(in, scaledSize(size.X, s)), min(in, scaledSize(size.Y, s))
	return []tile{{src: image.Rectangle{Max: size}, dst: image.Rect(0, 0, w, h)}}
}

// tileGap separates packed crops on the input canvas (padding value).
const tileGap = 8

// roiTiles plans the crops for the regions and places them on the canvas.
func (y *YOLOX) roiTiles(size image.Point, clipped []image.Rectangle) []tile {
	in := y.cfg.InputSize
	crops := planCrops(size, clipped, y.cfg.ROI, int(math.Ceil(float64(in)/y.cfg.ROI.MaxUpscale)))
	if len(crops) == 0 {
		return nil
	}
	full := y.fullFrame(size)
	if len(crops) == 1 && crops[0] == full[0].src {
		return full
	}
	tiles, s := packTiles(crops, in, tileGap, y.cfg.ROI.MaxUpscale)
	if fullScale := float64(full[0].dst.Dx()) / float64(size.X); s <= fullScale {
		return full // no better than the whole frame, which has all the context
	}
	return tiles
}

func (y *YOLOX) observe(mode string, passes int, dets []Detection, took time.Duration) {
	if y.m == nil {
		return
	}
	y.m.Seconds.WithLabelValues("yolox", mode).Observe(took.Seconds())
	y.m.Passes.WithLabelValues("yolox").Add(float64(passes))
	for _, d := range dets {
		y.m.Detections.WithLabelValues("yolox", d.Class).Inc()
	}
}

// pass draws the tiles on the padded input canvas (the letterbox: image at
// the top-left, padding value elsewhere), runs the network once and appends
// the boxes found, in frame pixels, to cands.
func (y *YOLOX) pass(frame gocv.Mat, tiles []tile, cands []candidate) ([]candidate, error) {
	in := y.cfg.InputSize
	if y.padded.Empty() {
		y.padded.Close()
		y.padded = gocv.NewMatWithSize(in, in, gocv.MatTypeCV8UC3)
	}
	pad := y.cfg.PadValue
	y.padded.SetTo(gocv.NewScalar(pad, pad, pad, 0))
	for _, t := range tiles {
		if !t.src.In(image.Rect(0, 0, frame.Cols(), frame.Rows())) || !t.dst.In(image.Rect(0, 0, in, in)) || t.dst.Empty() {
			return cands, fmt.Errorf("internal error: tile %v → %v outside the frame or input", t.src, t.dst)
		}
		src := frame.Region(t.src)
		dst := y.padded.Region(t.dst)
		interp := gocv.InterpolationArea
		if t.dst.Dx() > t.src.Dx() {
			interp = gocv.InterpolationLinear
		}
		gocv.Resize(src, &y.resized, t.dst.Size(), 0, 0, interp)
		y.resized.CopyTo(&dst)
		src.Close()
		dst.Close()
	}
	blob := gocv.BlobFromImage(y.padded, 1.0, image.Pt(in, in), gocv.NewScalar(0, 0, 0, 0), false, false)
	defer blob.Close()
	y.net.SetInput(blob, "")
	out := y.net.Forward("")
	defer out.Close()
	if got := out.Size(); !slices.Equal(got, y.spec.OutputShape) {
		return cands, fmt.Errorf("network output shape %s, want %s", dimsString(got), dimsString(y.spec.OutputShape))
	}
	data, err := out.DataPtrFloat32()
	if err != nil {
		return cands, fmt.Errorf("network output: %w", err)
	}
	return y.decode(data, tiles, cands), nil
}

// decode turns the network output into boxes in frame pixels. Rows are grid
// cells over the strides in order, [tx, ty, tw, th, objectness, classes…]:
// centre (t + grid) × stride, size exp(t) × stride, score objectness × best
// class. A box belongs to the tile holding its centre, is clipped to it and
// mapped back to the frame; boxes centred on padding are dropped.
func (y *YOLOX) decode(data []float32, tiles []tile, cands []candidate) []candidate {
	nc := len(y.cfg.Classes)
	stride := 5 + nc
	thr := y.cfg.ScoreThreshold
	row := 0
	for _, s := range y.cfg.Strides {
		g := y.cfg.InputSize / s
		for gy := range g {
			for gx := range g {
				r := data[row*stride : (row+1)*stride]
				row++
				obj := r[4]
				if obj < thr {
					continue
				}
				best, bestScore := 0, r[5]
				for c := 1; c < nc; c++ {
					if r[5+c] > bestScore {
						best, bestScore = c, r[5+c]
					}
				}
				score := obj * bestScore
				if score < thr || (y.allowed != nil && !y.allowed[best]) {
					continue
				}
				fs := float64(s)
				cx := (float64(r[0]) + float64(gx)) * fs
				cy := (float64(r[1]) + float64(gy)) * fs
				bw := math.Exp(float64(r[2])) * fs
				bh := math.Exp(float64(r[3])) * fs
				for i, t := range tiles {
					box, ok := t.toFrame(cx, cy, bw, bh)
					if ok {
						cands = append(cands, candidate{Detection: Detection{Class: y.cfg.Classes[best], ClassID: best, Score: score, Box: box}, pass: i})
						break
					}
				}
			}
		}
	}
	return cands
}

// toFrame maps a box (centre, size) on the canvas back to the frame when its
// centre lies on the tile.
func (t tile) toFrame(cx, cy, w, h float64) (image.Rectangle, bool) {
	d := t.dst
	if cx < float64(d.Min.X) || cx >= float64(d.Max.X) || cy < float64(d.Min.Y) || cy >= float64(d.Max.Y) {
		return image.Rectangle{}, false
	}
	sx := float64(d.Dx()) / float64(t.src.Dx())
	sy := float64(d.Dy()) / float64(t.src.Dy())
	x0 := max(cx-w/2, float64(d.Min.X))
	y0 := max(cy-h/2, float64(d.Min.Y))
	x1 := min(cx+w/2, float64(d.Max.X))
	y1 := min(cy+h/2, float64(d.Max.Y))
	box := image.Rect(
		t.src.Min.X+int(math.Round((x0-float64(d.Min.X))/sx)),
		t.src.Min.Y+int(math.Round((y0-float64(d.Min.Y))/sy)),
		t.src.Min.X+int(math.Round((x1-float64(d.Min.X))/sx)),
		t.src.Min.Y+int(math.Round((y1-float64(d.Min.Y))/sy)),
	).Intersect(t.src)
	return box, !box.Empty()
}

// nmsBoxes is gocv.NMSBoxes made safe: no call with no boxes, and the kept
// indices returned as a slice (gocv fills a caller-sized slice).
func nmsBoxes(boxes []image.Rectangle, scores []float32, scoreThr, nmsThr float32) []int {
	if len(boxes) == 0 {
		return nil
	}
	idx := make([]int, len(boxes))
	for i := range idx {
		idx[i] = -1
	}
	gocv.NMSBoxes(boxes, scores, scoreThr, nmsThr, idx)
	keep := idx[:0]
	for _, i := range idx {
		if i < 0 || i >= len(boxes) {
			break
		}
		keep = append(keep, i)
	}
	return keep
}

// errNoModel is returned when a YOLOX detector is asked for without a model.
var errNoModel = errors.New("yolox: no model file configured")
