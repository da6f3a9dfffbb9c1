//go:build matprofile

package detect

import (
	"bytes"

	"gocv.io/x/gocv"
)

// matCount is the number of open gocv Mats (built with -tags matprofile).
func matCount() int { return gocv.MatProfile.Count() }

// openMats lists where the open Mats were made.
func openMats() string {
	var b bytes.Buffer
	_ = gocv.MatProfile.WriteTo(&b, 1)
	return b.String()
}
