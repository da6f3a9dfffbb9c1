package decode

/*
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
*/
import "C"

import (
	"errors"
	"image"
	"math"
	"sync"

	"gocv.io/x/gocv"
)

// Picture is one frame for analysis. Decoded frames carry a BGR copy at
// the analysis size, made as they were decoded, and keep the decoded frame
// to convert at full size only when something needs it (the detector, a
// snapshot): at 720p and 5 frames a second the full conversion would cost
// more than motion analysis on the small copy. FromMat wraps a BGR Mat
// (frames read through OpenCV). A Picture is owned by one goroutine at a
// time; its Mats are valid until Close.
type Picture struct {
	size  image.Point
	small gocv.Mat   // BGR at the analysis size; empty if none was made
	full  gocv.Mat   // full-size BGR; empty until converted
	frame *C.AVFrame // the decoded frame, until converted; nil for FromMat
	err   error      // the full conversion's error
}

// FromMat returns a picture of a BGR Mat, which it takes over.
func FromMat(m gocv.Mat) *Picture {
	return &Picture{size: image.Pt(m.Cols(), m.Rows()), full: m}
}

// ScaledSize is size scaled to width pixels across, the height in
// proportion (rounded, at least 1); width 0 or wider than size keeps size.
func ScaledSize(size image.Point, width int) image.Point {
	if width <= 0 || width >= size.X || size.X <= 0 {
		return size
	}
	h := int(math.Round(float64(width) * float64(size.Y) / float64(size.X)))
	return image.Pt(width, max(h, 1))
}

// Size is the frame's full size.
func (p *Picture) Size() image.Point { return p.size }

// Full returns the frame in BGR at full size, converting it on the first
// call. The Mat belongs to the picture.
func (p *Picture) Full() (gocv.Mat, error) {
	if has(p.full) || p.err != nil {
		return p.full, p.err
	}
	if p.frame == nil {
		p.err = errors.New("decode: picture has no frame")
		return p.full, p.err
	}
	s := scalers.get()
	p.full, p.err = s.convert(p.frame, p.size.X, p.size.Y)
	scalers.put(s)
	C.av_frame_free(&p.frame) // back to the decoder's pool
	return p.full, p.err
}

// Scaled returns the frame in BGR at width pixels across (see ScaledSize):
// the copy made at decode time when it has that width, else one scaled
// from Full (INTER_AREA) and kept. The Mat belongs to the picture.
func (p *Picture) Scaled(width int) (gocv.Mat, error) {
	sz := ScaledSize(p.size, width)
	if sz == p.size {
		return p.Full()
	}
	if has(p.small) && p.small.Cols() == sz.X && p.small.Rows() == sz.Y {
		return p.small, nil
	}
	full, err := p.Full()
	if err != nil {
		return gocv.Mat{}, err
	}
	if p.small.Ptr() == nil {
		p.small = gocv.NewMat()
	}
	gocv.Resize(full, &p.small, sz, 0, 0, gocv.InterpolationArea)
	return p.small, nil
}

// has reports whether m holds a picture; the zero Mat has no native object
// and asking it Empty would crash.
func has(m gocv.Mat) bool { return m.Ptr() != nil && !m.Empty() }

// Close frees the picture. It is safe to call more than once.
func (p *Picture) Close() {
	if p == nil {
		return
	}
	if p.frame != nil {
		C.av_frame_free(&p.frame)
	}
	if p.small.Ptr() != nil {
		p.small.Close()
		p.small = gocv.Mat{}
	}
	if p.full.Ptr() != nil {
		p.full.Close()
		p.full = gocv.Mat{}
	}
}

// scalers are swscale contexts for Picture.Full, which runs on whichever
// goroutine analyses the picture; a few are kept for reuse, as making one
// costs more than a conversion.
var scalers scalerPool

type scalerPool struct {
	mu   sync.Mutex
	free []*scaler
}

// maxFreeScalers bounds the idle contexts kept (about one per camera
// converting at the same moment).
const maxFreeScalers = 16

func (sp *scalerPool) get() *scaler {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if n := len(sp.free); n > 0 {
		s := sp.free[n-1]
		sp.free = sp.free[:n-1]
		return s
	}
	return &scaler{}
}

func (sp *scalerPool) put(s *scaler) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.free) >= maxFreeScalers {
		s.free()
		return
	}
	sp.free = append(sp.free, s)
}
