package e2e

import (
	"os/exec"
	"strings"
)

func execCombined(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func replaceAll(s, old, new string) string { return strings.ReplaceAll(s, old, new) }
