//go:build matprofile

package track

import (
	"bytes"

	"gocv.io/x/gocv"
)

// matCount is the number of open gocv Mats (built with -tags matprofile).
func matCount() int { return gocv.MatProfile.Count() }

func openMats() string {
	var b bytes.Buffer
	_ = gocv.MatProfile.WriteTo(&b, 1)
	return b.String()
}
