//go:build matprofile

package gocvtest

import (
	"bytes"

	"gocv.io/x/gocv"
)

// MatCount is the number of open gocv Mats.
func MatCount() int { return gocv.MatProfile.Count() }

// OpenMats lists where the open Mats were made.
func OpenMats() string {
	var b bytes.Buffer
	_ = gocv.MatProfile.WriteTo(&b, 1)
	return b.String()
}
