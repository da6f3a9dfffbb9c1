package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/gocvtest"
	"github.com/xueliang/xl/internal/testenv"
)

// childEnv switches the test binary into the model-check child, as the
// agent's hidden __check-model command does for the real binary.
const childEnv = "XL_APP_TEST_MODEL_CHECK_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := detect.ServeModelCheck(os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	detect.ChildCommand = detect.SelfCommand([]string{"-test.run=^$"}, childEnv+"=1")
	os.Exit(gocvtest.RunCheckingMats(m))
}

// writeConfig writes an agent configuration to a temporary file.
func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// manifestPath is the repository's model manifest.
func manifestPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(testenv.RepoRoot(t), "models", "manifest.yaml")
}

// yamlList is a Go string slice as a YAML flow list.
func yamlList(s []string) string { return "[" + strings.Join(s, ", ") + "]" }
