//go:build !matprofile

package track

// matCount is -1 without the matprofile build tag: Mats are not counted.
func matCount() int { return -1 }

func openMats() string { return "" }
