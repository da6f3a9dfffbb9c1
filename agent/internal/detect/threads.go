package detect

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include "threads.h"
*/
import "C"

// SetThreads sets how many threads OpenCV's parallel loops use, for the
// whole process: the detector's network passes, resizes and colour
// conversions. 0 restores OpenCV's default (one per core). On a box with
// several cameras, 1 lets the cameras' workers run side by side without
// OpenCV's workers spinning against each other. (gocv v0.31 has no
// setNumThreads.)
func SetThreads(n int) { C.xl_set_num_threads(C.int(n)) }

// Threads is how many threads OpenCV's parallel loops use.
func Threads() int { return int(C.xl_get_num_threads()) }
