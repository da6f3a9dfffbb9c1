package detect

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include "hogcoef.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"gocv.io/x/gocv"
)

// hogCoefficients is the size of OpenCV's default people detector: a
// 3780-long HOG descriptor for the 64×128 window, plus the SVM bias.
const hogCoefficients = 3781

// defaultPeopleDetector returns OpenCV's default HOG people detector as a
// 1×3781 CV_32F Mat the caller closes.
//
// Not gocv.HOGDefaultPeopleDetector: in gocv v0.31 (and later; gocv issues
// #300 and #1062) it wraps the temporary std::vector OpenCV returns in a Mat
// without copying it, so the Mat points at freed memory. SetSVMDetector then
// usually copies zeros, every window matches, and detection takes seconds
// and returns one meaningless box. This copies the coefficients in C++
// while the vector is alive.
func defaultPeopleDetector() (gocv.Mat, error) {
	buf := make([]float32, hogCoefficients)
	n := int(C.xl_hog_default_people_detector((*C.float)(unsafe.Pointer(&buf[0])), C.int(len(buf))))
	if n != hogCoefficients {
		return gocv.Mat{}, fmt.Errorf("OpenCV's default people detector has %d coefficients, want %d", n, hogCoefficients)
	}
	raw := make([]byte, 4*n)
	for i, f := range buf {
		binary.NativeEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	m, err := gocv.NewMatFromBytes(1, n, gocv.MatTypeCV32F, raw)
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("people detector coefficients: %w", err)
	}
	return m, nil
}
