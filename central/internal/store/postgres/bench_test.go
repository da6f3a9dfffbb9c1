package postgres

import (
	"path/filepath"
	"testing"

	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/central/internal/store/storetest"
	"github.com/xueliang/xl/internal/pgtest"
)

// BenchmarkStore runs storetest's cases on SQLite, then on PostgreSQL
// (127.0.0.1, a fresh schema each) with SQLite's rates of the same run as
// the baseline: "x-baseline" is PostgreSQL's rate over SQLite's.
func BenchmarkStore(b *testing.B) {
	var base storetest.Rates
	b.Run("sqlite", func(b *testing.B) {
		base = storetest.Benchmark(b, func(b *testing.B) storetest.Central {
			s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}, nil)
	})
	b.Run("postgres", func(b *testing.B) {
		storetest.Benchmark(b, func(b *testing.B) storetest.Central {
			return openAt(b, pgtest.Schema(b)).Store
		}, base)
	})
}
