//go:build !matprofile

package gocvtest

// MatCount is -1 without the matprofile build tag: Mats are not counted.
func MatCount() int { return -1 }

// OpenMats is empty without the matprofile build tag.
func OpenMats() string { return "" }
