package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/xueliang/xl/central/internal/store/storetest"
)

// BenchmarkStore measures the store in the shapes central uses it (see
// storetest.Benchmark); the postgres package runs the same cases with this
// store as its baseline.
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) storetest.Central {
		return openAt(b, filepath.Join(b.TempDir(), "bench.db")).Store
	}, nil)
}
