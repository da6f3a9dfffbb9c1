// Package version carries the build's version, set with -ldflags by make.
package version

import "fmt"

// Set by the linker: -X github.com/xueliang/xl/internal/version.Version=…
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the one-line version shown by `version` commands.
func String(binary string) string {
	return fmt.Sprintf("%s %s (commit %s)", binary, Version, Commit)
}
