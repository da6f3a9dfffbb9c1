// Package gocvtest helps tests find leaked gocv Mats and read video frames. Built with
// -tags matprofile, MatCount is the number of open Mats; without it Mats are
// not counted and MatCount is -1 (so before == after always holds).
package gocvtest

import (
	"fmt"
	"os"
	"testing"
)

// RunCheckingMats runs a package's tests and fails the run when more Mats
// are open afterwards than before (with -tags matprofile). It returns the
// exit code for os.Exit.
func RunCheckingMats(m *testing.M) int {
	before := MatCount()
	code := m.Run()
	if after := MatCount(); after != before {
		fmt.Fprintf(os.Stderr, "gocv Mats leaked: %d open before the tests, %d after:\n%s", before, after, OpenMats())
		if code == 0 {
			code = 1
		}
	}
	return code
}

// CheckMats fails t when it leaves Mats open (with -tags matprofile).
func CheckMats(t testing.TB) {
	t.Helper()
	before := MatCount()
	t.Cleanup(func() {
		if after := MatCount(); after != before {
			t.Errorf("gocv Mats: %d open before, %d after:\n%s", before, after, OpenMats())
		}
	})
}
