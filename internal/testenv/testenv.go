// Package testenv finds what tests need from the machine: the shared test
// footage and the repository root.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// debianVideo is where Debian's opencv-doc package puts the same footage.
const debianVideo = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Video returns the absolute path of vtest.avi (768x576, 10 fps, 79.5 s):
// $XL_TEST_VIDEO, ../shared/media/vtest.avi beside the repository, or
// Debian's opencv-doc copy. `make deps` installs opencv-doc when neither of
// the first two exists, so a missing video is a failure, not a skip.
func Video(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("XL_TEST_VIDEO"), filepath.Join(RepoRoot(t), "..", "shared", "media", "vtest.avi"), debianVideo}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			abs, err := filepath.Abs(c)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	t.Fatalf("testenv: vtest.avi not found (set XL_TEST_VIDEO, or run `make deps` to install opencv-doc)")
	return ""
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// SyncBuffer is a goroutine-safe buffer for a process's or server's output.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Model returns the YOLOX-Nano model used by detector tests:
// $XL_TEST_MODEL or ../shared/models/yolox_nano.onnx beside the repository.
// No package installs it, so on a machine without it the test is skipped
// with a message — except in CI (CI=true), where ../shared is always
// present and a missing model is a failure.
func Model(t testing.TB) string {
	t.Helper()
	for _, c := range []string{os.Getenv("XL_TEST_MODEL"), filepath.Join(RepoRoot(t), "..", "shared", "models", "yolox_nano.onnx")} {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			abs, err := filepath.Abs(c)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("testenv: yolox_nano.onnx not found beside the repository (../shared/models) in CI")
	}
	t.Skip("testenv: yolox_nano.onnx not found; set XL_TEST_MODEL to run the detector tests")
	return ""
}

// Missing reports that something a test needs from the machine is absent:
// the test is skipped with the message, except in CI (CI=true), where
// everything `make deps` installs is present and the test fails instead.
// Use it for dependencies that deploy/scripts/deps.sh installs but that a
// developer's machine may lack (as Model does for the model file).
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI=true: run deploy/scripts/deps.sh)", msg)
	}
	t.Skipf("%s; run `make deps` (deploy/scripts/deps.sh) to run this test", msg)
}

// RunWithTempDir runs a package's tests with *dir set to a new temporary
// directory (a cache the tests share, e.g. for transcoded video), removes it
// afterwards and returns the exit code for os.Exit.
func RunWithTempDir(m *testing.M, prefix string, dir *string) int {
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*dir = d
	code := m.Run()
	_ = os.RemoveAll(d)
	return code
}

// Chromium returns Debian's chromium for the console's browser tests
// ($XL_TEST_CHROMIUM, /usr/bin/chromium). `make deps` installs it; a
// machine without it skips those tests, except in CI (CI=true), where that
// is a failure.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, c := range []string{os.Getenv("XL_TEST_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("testenv: chromium not found in CI (deploy/scripts/deps.sh installs it)")
	}
	t.Skip("testenv: chromium not found; `make deps` installs it (or set XL_TEST_CHROMIUM)")
	return ""
}

// Tool returns the path of a command a test needs from a Debian package
// (e.g. promtool and prometheus from `prometheus`). `make deps` installs
// it, so in CI (CI=true) a missing tool is a failure; elsewhere the test is
// skipped with a message.
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("testenv: %s not found in CI (Debian package %s; run `make deps`)", name, debianPackage)
	}
	t.Skipf("testenv: %s not found; install the Debian package %s (`make deps`) to run this test", name, debianPackage)
	return ""
}
