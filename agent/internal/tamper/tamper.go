// Package tamper tells when a camera's view has been interfered with: covered
// or blacked out, defocused or smeared, or turned away. It compares each
// frame with a reference background learnt when the camera starts and
// refreshed slowly while the view is normal:
//
//   - covered: the picture has almost no contrast left (grey-level standard
//     deviation low in absolute terms and against the reference), as when a
//     lens is covered, sprayed or the signal is black;
//   - blurred: sharpness (variance of the Laplacian) has fallen well below
//     the reference's;
//   - moved: phase correlation with the reference finds the whole picture
//     shifted.
//
// A scene that is dark from the start is its own reference, so night is not
// "covered"; people walking by change neither the contrast, the sharpness
// nor the phase of the background enough to count. Every Mat made here is
// closed by Close.
package tamper

import (
	"errors"
	"fmt"
	"image"
	"math"
	"time"

	"gocv.io/x/gocv"
)

// Reasons a view is judged tampered with.
const (
	Covered = "covered"
	Blurred = "blurred"
	Moved   = "moved"
)

// Config tunes the checks. Zero values take the defaults.
type Config struct {
	Width       int     // frames are checked at this width, default 320
	LearnFrames int     // frames averaged into the first reference, default 25
	Refresh     float64 // weight of each normal frame in the reference, default 0.01 (about 100 frames)
	// Covered: contrast (grey-level standard deviation, 0–255) below
	// CoveredContrast and below CoveredRatio of the reference's. Defaults
	// 12 and 0.4.
	CoveredContrast float64
	CoveredRatio    float64
	// Blurred: sharpness below BlurRatio of the reference's, default 0.35.
	BlurRatio float64
	// Moved: the picture shifted by at least MoveShift of its width (default
	// 0.03), with a phase correlation peak of at least MinResponse (default
	// 0.1).
	MoveShift   float64
	MinResponse float64
	// RelearnAfter: a view blurred or moved this long is accepted as the
	// new normal and learnt again (the event then ends); 0 never does. A
	// covered view is never learnt.
	RelearnAfter time.Duration
}

func (c *Config) setDefaults() {
	if c.Width == 0 {
		c.Width = 320
	}
	if c.LearnFrames == 0 {
		c.LearnFrames = 25
	}
	if c.Refresh == 0 {
		c.Refresh = 0.01
	}
	if c.CoveredContrast == 0 {
		c.CoveredContrast = 12
	}
	if c.CoveredRatio == 0 {
		c.CoveredRatio = 0.4
	}
	if c.BlurRatio == 0 {
		c.BlurRatio = 0.35
	}
	if c.MoveShift == 0 {
		c.MoveShift = 0.03
	}
	if c.MinResponse == 0 {
		c.MinResponse = 0.1
	}
}

// Validate checks the configuration (defaults applied).
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Width < 64 || c.Width > 1920 {
		errs = append(errs, fmt.Errorf("width %d outside 64–1920", c.Width))
	}
	if c.LearnFrames < 1 || c.LearnFrames > 10000 {
		errs = append(errs, fmt.Errorf("learn_frames %d outside 1–10000", c.LearnFrames))
	}
	if c.Refresh <= 0 || c.Refresh > 1 {
		errs = append(errs, fmt.Errorf("refresh %g outside (0, 1]", c.Refresh))
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"covered_ratio", c.CoveredRatio}, {"blur_ratio", c.BlurRatio}, {"move_shift", c.MoveShift}, {"min_response", c.MinResponse}} {
		if r.v <= 0 || r.v >= 1 {
			errs = append(errs, fmt.Errorf("%s %g outside (0, 1)", r.name, r.v))
		}
	}
	if c.CoveredContrast <= 0 || c.CoveredContrast > 128 {
		errs = append(errs, fmt.Errorf("covered_contrast %g outside (0, 128]", c.CoveredContrast))
	}
	if c.RelearnAfter < 0 {
		errs = append(errs, errors.New("relearn_after must not be negative"))
	}
	return errors.Join(errs...)
}

// Verdict is the check of one frame.
type Verdict struct {
	Warm   bool   // the reference is learnt
	Reason string // Covered, Blurred, Moved, or "" for a normal view

	Brightness float64 // mean grey level, 0–255
	Contrast   float64 // grey-level standard deviation
	Sharpness  float64 // variance of the Laplacian
	Shift      float64 // shift against the reference, share of the width
	Response   float64 // phase correlation peak (0–1)

	RefContrast, RefSharpness float64 // the reference's
}

// Detector checks one camera's frames. Not safe for concurrent use.
type Detector struct {
	cfg Config

	size                  image.Point
	small, grey, lap      gocv.Mat
	cur, ref, window      gocv.Mat
	mean, std             gocv.Mat
	learnt                int
	refContrast, refSharp float64
	badSince              time.Time // start of the current blurred or moved spell
	closed                bool
}

// New returns a detector that learns its reference from the first frames.
func New(cfg Config) (*Detector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tamper: %w", err)
	}
	return &Detector{cfg: cfg, small: gocv.NewMat(), grey: gocv.NewMat(), lap: gocv.NewMat(), cur: gocv.NewMat(),
		ref: gocv.NewMat(), window: gocv.NewMat(), mean: gocv.NewMat(), std: gocv.NewMat()}, nil
}

// Close frees the detector's native memory.
func (d *Detector) Close() {
	if d.closed {
		return
	}
	d.closed = true
	for _, m := range []*gocv.Mat{&d.small, &d.grey, &d.lap, &d.cur, &d.ref, &d.window, &d.mean, &d.std} {
		m.Close()
	}
}

// Relearn forgets the reference; the next LearnFrames frames make a new one.
func (d *Detector) Relearn() {
	d.learnt = 0
	d.badSince = time.Time{}
}

// Process checks one BGR frame taken at at.
func (d *Detector) Process(frame gocv.Mat, at time.Time) (Verdict, error) {
	if d.closed {
		return Verdict{}, errors.New("tamper: detector is closed")
	}
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 || frame.Cols() < 16 || frame.Rows() < 16 {
		return Verdict{}, fmt.Errorf("tamper: want an 8-bit BGR frame of at least 16x16, got %dx%d type %v", frame.Cols(), frame.Rows(), frame.Type())
	}
	size := image.Pt(d.cfg.Width, max(8, int(math.Round(float64(d.cfg.Width)*float64(frame.Rows())/float64(frame.Cols())))))
	if size != d.size {
		d.size = size
		d.Relearn() // a new geometry means a new reference
	}
	gocv.Resize(frame, &d.small, size, 0, 0, gocv.InterpolationArea)
	gocv.CvtColor(d.small, &d.grey, gocv.ColorBGRToGray)
	v := Verdict{}
	v.Brightness, v.Contrast = d.meanStd(d.grey)
	gocv.Laplacian(d.grey, &d.lap, gocv.MatTypeCV32F, 3, 1, 0, gocv.BorderReplicate)
	_, lapStd := d.meanStd(d.lap)
	v.Sharpness = lapStd * lapStd
	d.grey.ConvertTo(&d.cur, gocv.MatTypeCV32F)

	if d.learnt < d.cfg.LearnFrames {
		d.learn(v, 1/float64(d.learnt+1))
		d.learnt++
		v.RefContrast, v.RefSharpness = d.refContrast, d.refSharp
		return v, nil
	}
	v.Warm = true
	v.RefContrast, v.RefSharpness = d.refContrast, d.refSharp
	switch {
	case v.Contrast < d.cfg.CoveredContrast && v.Contrast < d.cfg.CoveredRatio*d.refContrast:
		v.Reason = Covered
	case v.Sharpness < d.cfg.BlurRatio*d.refSharp:
		// Before the shift: phase correlation is unreliable on a smeared
		// picture.
		v.Reason = Blurred
	default:
		shift, resp := gocv.PhaseCorrelate(d.ref, d.cur, d.window)
		v.Shift = math.Hypot(float64(shift.X), float64(shift.Y)) / float64(size.X)
		v.Response = resp
		if v.Shift >= d.cfg.MoveShift && resp >= d.cfg.MinResponse {
			v.Reason = Moved
		}
	}
	switch v.Reason {
	case "":
		d.badSince = time.Time{}
		d.learn(v, d.cfg.Refresh)
	case Blurred, Moved:
		if d.badSince.IsZero() {
			d.badSince = at
		}
		if d.cfg.RelearnAfter > 0 && at.Sub(d.badSince) >= d.cfg.RelearnAfter {
			d.Relearn()
		}
	}
	return v, nil
}

// learn blends the current frame into the reference with weight w.
func (d *Detector) learn(v Verdict, w float64) {
	if d.learnt == 0 || d.ref.Empty() || d.ref.Rows() != d.cur.Rows() || d.ref.Cols() != d.cur.Cols() {
		d.cur.CopyTo(&d.ref)
		d.refContrast, d.refSharp = v.Contrast, v.Sharpness
		return
	}
	gocv.AccumulatedWeighted(d.cur, &d.ref, w)
	d.refContrast += w * (v.Contrast - d.refContrast)
	d.refSharp += w * (v.Sharpness - d.refSharp)
}

func (d *Detector) meanStd(m gocv.Mat) (float64, float64) {
	gocv.MeanStdDev(m, &d.mean, &d.std)
	return d.mean.GetDoubleAt(0, 0), d.std.GetDoubleAt(0, 0)
}
