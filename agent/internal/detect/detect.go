// Package detect finds objects in camera frames: YOLOX-Nano (ONNX, through
// gocv's DNN module) when a model file is configured, a HOG person detector
// otherwise. Both can restrict themselves to regions of interest (where the
// motion is): nearby regions are merged, cropped with a margin and scaled up
// when small, so that small, distant people are seen at a usable size.
//
// OpenCV aborts the whole process on a C++ exception, and gocv does not catch
// them. So everything is validated before it reaches gocv, and a model file
// that is not known good (see VerifyFile) is first loaded in a child process
// (CheckModel). Every Mat, Net and descriptor made here is closed by Close.
package detect

import (
	"errors"
	"fmt"
	"image"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"
)

// Detection is one object found in a frame.
type Detection struct {
	Class   string
	ClassID int
	Score   float32
	Box     image.Rectangle // in frame pixels
}

// Detector finds objects in BGR frames. When rois is non-empty only the
// regions of interest (in frame pixels) are searched. Implementations are
// safe for concurrent use but serialise calls.
type Detector interface {
	Detect(frame gocv.Mat, rois []image.Rectangle) ([]Detection, error)
	Name() string
	Close() error
}

// ErrClosed is returned by Detect after Close.
var ErrClosed = errors.New("detect: detector is closed")

// COCO80 are the class names of the COCO detection set, in the order the
// model's class scores come in.
var COCO80 = []string{
	"person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
	"fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
	"elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
	"skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
	"wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
	"broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
	"dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
	"toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
}

// Metrics are the detection metrics, registered once per agent and shared by
// every detector.
type Metrics struct {
	Seconds    *prometheus.HistogramVec // by detector and mode (full, roi)
	Passes     *prometheus.CounterVec   // network or HOG passes, by detector
	Detections *prometheus.CounterVec   // by detector and class
}

// NewMetrics registers the detection metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xl_agent_detect_seconds",
			Help:    "Time to run object detection on one frame.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 12)}, []string{"detector", "mode"}),
		Passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_detect_passes_total",
			Help: "Detector passes (one per crop in ROI mode)."}, []string{"detector"}),
		Detections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_detections_total",
			Help: "Objects detected, by detector and class."}, []string{"detector", "class"}),
	}
	reg.MustRegister(m.Seconds, m.Passes, m.Detections)
	return m
}

// checkFrame validates a frame before it reaches OpenCV.
func checkFrame(frame gocv.Mat) (image.Point, error) {
	if frame.Ptr() == nil || frame.Empty() {
		return image.Point{}, errors.New("detect: empty frame")
	}
	if frame.Type() != gocv.MatTypeCV8UC3 {
		return image.Point{}, fmt.Errorf("detect: want an 8-bit BGR frame, got type %v", frame.Type())
	}
	size := image.Pt(frame.Cols(), frame.Rows())
	if size.X < 16 || size.Y < 16 {
		return image.Point{}, fmt.Errorf("detect: frame %dx%d is too small", size.X, size.Y)
	}
	if size.X > 16384 || size.Y > 16384 {
		return image.Point{}, fmt.Errorf("detect: frame %dx%d is too large", size.X, size.Y)
	}
	return size, nil
}

// classFilter maps allowed class names to IDs; nil allows every class.
func classFilter(names []string, allowed []string) (map[int]bool, error) {
	if len(allowed) == 0 {
		return nil, nil
	}
	idx := make(map[string]int, len(names))
	for i, n := range names {
		idx[n] = i
	}
	out := make(map[int]bool, len(allowed))
	for _, a := range allowed {
		id, ok := idx[a]
		if !ok {
			return nil, fmt.Errorf("unknown class %q", a)
		}
		out[id] = true
	}
	return out, nil
}
