// Package motion finds moving things inside a zone: MOG2 background
// subtraction on a down-scaled frame, shadows and specks removed, masked by
// the zone polygon. Ignore polygons (exclude zones: a timestamp overlay,
// trees, glare on water) are removed from the foreground first; what moves
// anywhere else in the frame is reported too, for the detector to look at.
// Every Mat it makes is closed by Close.
package motion

import (
	"errors"
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"
)

// Config tunes the detector.
type Config struct {
	Width        int     // analysis width in pixels; height keeps the aspect ratio
	History      int     // MOG2 history in frames
	VarThreshold float64 // MOG2 variance threshold
	Warmup       int     // frames to learn the background before reporting
	MinBlobRatio float64 // smallest moving blob, as a fraction of the frame area
	// Ignore are polygons (normalised) whose motion never counts.
	Ignore [][][2]float64
}

// Result is the motion in the zone for one frame.
type Result struct {
	Warm  bool         // false while the background is still being learnt
	Ratio float64      // share of the zone's area that moves, 0–1
	Blobs [][4]float64 // moving blobs in the zone: x, y, w, h normalised to the frame
}

// Detector is the motion state of one camera: one background model, and a
// mask for each zone. Not safe for concurrent use.
type Detector struct {
	cfg      Config
	polygons [][][2]float64

	mog         gocv.BackgroundSubtractorMOG2
	kOpen, kDil gocv.Mat
	small, fg   gocv.Mat
	bin, masked gocv.Mat
	zoneMasks   []gocv.Mat
	zoneAreas   []int
	keep        gocv.Mat // 255 outside the ignore polygons; empty when there are none
	keepArea    int
	size        image.Point // analysis size the masks were made for
	src         image.Point // source size
	frames      int
	frame       Result // the whole frame's motion, of the last Process
	closed      bool
}

// ValidatePolygon checks a normalised polygon before it reaches OpenCV.
func ValidatePolygon(p [][2]float64) error {
	if len(p) < 3 {
		return fmt.Errorf("polygon needs at least 3 points, has %d", len(p))
	}
	for i, pt := range p {
		if pt[0] < 0 || pt[0] > 1 || pt[1] < 0 || pt[1] > 1 {
			return fmt.Errorf("point %d (%g, %g) is outside 0–1", i, pt[0], pt[1])
		}
	}
	return nil
}

// New returns a detector for the zones given as normalised polygons.
func New(cfg Config, polygons [][][2]float64) (*Detector, error) {
	if cfg.Width < 32 || cfg.Width > 4096 {
		return nil, fmt.Errorf("motion: width %d outside 32–4096", cfg.Width)
	}
	if cfg.History < 1 || cfg.VarThreshold <= 0 {
		return nil, errors.New("motion: history and var_threshold must be positive")
	}
	if err := validatePolygons(polygons, cfg.Ignore); err != nil {
		return nil, err
	}
	return &Detector{
		cfg:      cfg,
		polygons: polygons,
		mog:      gocv.NewBackgroundSubtractorMOG2WithParams(cfg.History, cfg.VarThreshold, true),
		kOpen:    gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(3, 3)),
		kDil:     gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(7, 7)),
		small:    gocv.NewMat(),
		keep:     gocv.NewMat(),
		fg:       gocv.NewMat(),
		bin:      gocv.NewMat(),
		masked:   gocv.NewMat(),
	}, nil
}

// PolygonPoints scales a normalised polygon to a w×h image.
func PolygonPoints(p [][2]float64, w, h int) []image.Point {
	pts := make([]image.Point, len(p))
	for i, q := range p {
		pts[i] = image.Pt(int(q[0]*float64(w-1)+0.5), int(q[1]*float64(h-1)+0.5))
	}
	return pts
}

func validatePolygons(zones, ignore [][][2]float64) error {
	for i, p := range zones {
		if err := ValidatePolygon(p); err != nil {
			return fmt.Errorf("motion: zone %d: %w", i, err)
		}
	}
	for i, p := range ignore {
		if err := ValidatePolygon(p); err != nil {
			return fmt.Errorf("motion: ignore polygon %d: %w", i, err)
		}
	}
	return nil
}

// SetZones replaces the zone and ignore polygons (a configuration reload)
// and keeps the background learnt so far.
func (d *Detector) SetZones(polygons, ignore [][][2]float64) error {
	if d.closed {
		return errors.New("motion: detector is closed")
	}
	if err := validatePolygons(polygons, ignore); err != nil {
		return err
	}
	d.polygons, d.cfg.Ignore = polygons, ignore
	if d.size != (image.Point{}) {
		d.makeMasks()
	}
	return nil
}

func (d *Detector) prepare(src image.Point) {
	d.src = src
	h := int(float64(d.cfg.Width)*float64(src.Y)/float64(src.X) + 0.5)
	d.size = image.Pt(d.cfg.Width, max(h, 1))
	d.makeMasks()
	d.frames = 0 // a new geometry means a new background
}

func (d *Detector) fill(m *gocv.Mat, p [][2]float64, c color.RGBA) {
	pv := gocv.NewPointsVectorFromPoints([][]image.Point{PolygonPoints(p, d.size.X, d.size.Y)})
	gocv.FillPoly(m, pv, c)
	pv.Close()
}

// makeMasks draws the zone and ignore masks at the analysis size.
func (d *Detector) makeMasks() {
	for _, m := range d.zoneMasks {
		m.Close()
	}
	d.zoneMasks, d.zoneAreas = d.zoneMasks[:0], d.zoneAreas[:0]
	d.keep.Close()
	d.keep, d.keepArea = gocv.NewMat(), d.size.X*d.size.Y
	if len(d.cfg.Ignore) > 0 {
		d.keep.Close()
		d.keep = gocv.NewMatWithSizeFromScalar(gocv.NewScalar(255, 0, 0, 0), d.size.Y, d.size.X, gocv.MatTypeCV8U)
		for _, p := range d.cfg.Ignore {
			d.fill(&d.keep, p, color.RGBA{0, 0, 0, 0})
		}
		d.keepArea = gocv.CountNonZero(d.keep)
	}
	for _, p := range d.polygons {
		m := gocv.Zeros(d.size.Y, d.size.X, gocv.MatTypeCV8U)
		d.fill(&m, p, color.RGBA{255, 255, 255, 0})
		if !d.keep.Empty() {
			gocv.BitwiseAnd(m, d.keep, &m)
		}
		d.zoneMasks = append(d.zoneMasks, m)
		d.zoneAreas = append(d.zoneAreas, gocv.CountNonZero(m))
	}
}

// Process analyses one BGR frame and returns one Result per zone, in the
// order the zones were given.
func (d *Detector) Process(frame gocv.Mat) ([]Result, error) {
	if d.closed {
		return nil, errors.New("motion: detector is closed")
	}
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return nil, fmt.Errorf("motion: want a non-empty 8-bit BGR frame, got type %v", frame.Type())
	}
	src := image.Pt(frame.Cols(), frame.Rows())
	if src.X < 16 || src.Y < 16 {
		return nil, fmt.Errorf("motion: frame %dx%d is too small", src.X, src.Y)
	}
	if src != d.src {
		d.prepare(src)
	}
	small := frame // already at the analysis width (the pipeline scales once)
	if src != d.size {
		gocv.Resize(frame, &d.small, d.size, 0, 0, gocv.InterpolationArea)
		small = d.small
	}
	d.mog.Apply(small, &d.fg)
	d.frames++
	out := make([]Result, len(d.polygons))
	d.frame = Result{}
	if d.frames <= d.cfg.Warmup {
		return out, nil
	}
	// 255 is foreground, 127 a shadow: keep the foreground only.
	gocv.Threshold(d.fg, &d.bin, 200, 255, gocv.ThresholdBinary)
	gocv.MorphologyEx(d.bin, &d.bin, gocv.MorphOpen, d.kOpen)
	gocv.Dilate(d.bin, &d.bin, d.kDil)
	if !d.keep.Empty() {
		gocv.BitwiseAnd(d.bin, d.keep, &d.bin)
	}
	d.frame = d.blobs(d.bin, d.keepArea)
	for i := range d.polygons {
		out[i] = d.zone(i)
	}
	return out, nil
}

// Frame is the motion anywhere in the frame (outside the ignore polygons)
// found by the last Process; not Warm while the background is learnt.
func (d *Detector) Frame() Result { return d.frame }

// Warm reports whether the background has been learnt.
func (d *Detector) Warm() bool { return d.frames > d.cfg.Warmup }

func (d *Detector) zone(i int) Result {
	if d.zoneAreas[i] == 0 {
		return Result{Warm: true}
	}
	gocv.BitwiseAnd(d.bin, d.zoneMasks[i], &d.masked)
	return d.blobs(d.masked, d.zoneAreas[i])
}

// blobs measures a binary foreground mask of area pixels: the share that
// moves and the bounding boxes of the blobs big enough to count.
func (d *Detector) blobs(mask gocv.Mat, area int) Result {
	res := Result{Warm: true}
	if area == 0 {
		return res
	}
	res.Ratio = float64(gocv.CountNonZero(mask)) / float64(area)
	if res.Ratio == 0 {
		return res
	}
	contours := gocv.FindContours(mask, gocv.RetrievalExternal, gocv.ChainApproxSimple)
	defer contours.Close()
	minArea := d.cfg.MinBlobRatio * float64(d.size.X*d.size.Y)
	fw, fh := float64(d.size.X), float64(d.size.Y)
	for i := range contours.Size() {
		r := gocv.BoundingRect(contours.At(i))
		if float64(r.Dx()*r.Dy()) < minArea {
			continue
		}
		res.Blobs = append(res.Blobs, [4]float64{float64(r.Min.X) / fw, float64(r.Min.Y) / fh, float64(r.Dx()) / fw, float64(r.Dy()) / fh})
	}
	return res
}

// Close frees the detector's native memory.
func (d *Detector) Close() {
	if d.closed {
		return
	}
	d.closed = true
	d.mog.Close()
	for _, m := range []*gocv.Mat{&d.kOpen, &d.kDil, &d.small, &d.fg, &d.bin, &d.masked, &d.keep} {
		m.Close()
	}
	for _, m := range d.zoneMasks {
		m.Close()
	}
	d.zoneMasks = nil
}
