package e2e

import (
	"os"
	"os/exec"
	"strings"
)

func execCombined(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func replaceAll(s, old, new string) string { return strings.ReplaceAll(s, old, new) }

// execCombinedEnv runs a command with env added to this process's.
func execCombinedEnv(env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

// execCombinedEnvStdout runs a command with env added to this process's
// and returns its standard output (standard error on failure).
func execCombinedEnvStdout(env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr, err
	}
	return out, err
}
