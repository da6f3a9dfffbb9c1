package sqlite

import (
	"context"
	"testing"
	"time"
)

// BenchmarkInsertAlert is one alert per transaction, as intake stores them
// today; the batching intake of the transport issue is measured against it.
func BenchmarkInsertAlert(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir()+"/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.InsertAlert(ctx, alert("c1", "intrusion", now), now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}
