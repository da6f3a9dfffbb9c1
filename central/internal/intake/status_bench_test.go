package intake

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/postgres"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/pgtest"
	"github.com/xueliang/xl/internal/wire"
)

// statusStore is what the benchmark writes through: the old path
// (PutAgentStatus, a commit per status) and the batch one.
type statusStore interface {
	PutAgentStatus(ctx context.Context, st *wire.Status, seen time.Time) error
	PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error
}

// rowCounter counts the rows and batches the coalescer writes.
type rowCounter struct {
	statusStore
	rows, batches atomic.Int64
}

func (r *rowCounter) PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error {
	if err := r.statusStore.PutAgentStatuses(ctx, sts); err != nil {
		return err
	}
	r.rows.Add(int64(len(sts)))
	r.batches.Add(1)
	return nil
}

// benchAgents is the fleet of the 100,000-camera scale step (8 cameras per
// agent); statuses come from its agents in turn, so a run shorter than the
// fleet coalesces nothing and a longer one sees each agent again.
const benchAgents = 12500

// BenchmarkStatuses measures agent statuses handled per second by one
// goroutine (the MQTT handler's: paho delivers an external broker's
// messages in order in one goroutine), on the real SQLite store and on
// PostgreSQL (127.0.0.1, a fresh schema; skipped when unreachable), in the
// same run:
//
//   - commit_each: PutAgentStatus for each status before the next, as intake
//     did before statuses were coalesced;
//   - coalesced: handed to the coalescer as fast as it takes them, timed
//     until every status is stored; statuses/s is what the handler keeps up
//     with, rows/s and rows/batch what reached the store (most statuses are
//     replaced by their agent's next one while a batch is written);
//   - batched_distinct: the same, but each round of the fleet is stored
//     before the next begins, so every status is written (none replaced):
//     the batch write rate alone.
func BenchmarkStatuses(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) statusStore
	}{
		{"sqlite", func(b *testing.B) statusStore {
			s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", func(b *testing.B) statusStore {
			s, err := postgres.Open(context.Background(), pgtest.Schema(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
	now := time.Now()
	sts := make([]*wire.Status, benchAgents)
	for i := range sts {
		sts[i] = &wire.Status{Schema: wire.SchemaStatus, AgentID: fmt.Sprintf("lg-%05d", i), State: wire.StateOnline,
			Version: "1.0", ConfigVersion: "cfg-1", TS: now, Cameras: make([]wire.CameraStatus, 8)}
		for k := range sts[i].Cameras {
			sts[i].Cameras[k] = wire.CameraStatus{CameraID: fmt.Sprintf("cam-%d", k), State: "streaming", FPS: 5}
		}
	}
	for _, s := range stores {
		b.Run(s.name+"/commit_each", func(b *testing.B) {
			st := s.open(b)
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if err := st.PutAgentStatus(ctx, sts[i%benchAgents], time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "statuses/s")
		})
		for _, distinct := range []bool{false, true} {
			name := map[bool]string{false: "/coalesced", true: "/batched_distinct"}[distinct]
			b.Run(s.name+name, func(b *testing.B) {
				st := &rowCounter{statusStore: s.open(b)}
				m := newMetrics(prometheus.NewRegistry())
				c := newStatusCoalescer(st, m, slog.New(slog.DiscardHandler), statusOptions{})
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				wg.Go(func() { c.Run(ctx) })
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					if !c.Put(sts[i%benchAgents], time.Now()) {
						b.Fatal("status refused")
					}
					// batched_distinct: the fleet's round is stored before
					// an agent comes again, so no status is replaced.
					if distinct && (i+1)%benchAgents == 0 {
						if _, err := c.flush(ctx); err != nil {
							b.Fatal(err)
						}
					}
				}
				// Waits for a flush in progress, then writes what is left.
				if _, err := c.flush(ctx); err != nil {
					b.Fatal(err)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				cancel()
				wg.Wait()
				c.Close()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "statuses/s")
				b.ReportMetric(float64(st.rows.Load())/elapsed.Seconds(), "rows/s")
				if n := st.batches.Load(); n > 0 {
					b.ReportMetric(float64(st.rows.Load())/float64(n), "rows/batch")
				}
				b.ReportMetric(testutil.ToFloat64(m.statusCoalesced)/float64(b.N), "coalesced/status")
			})
		}
	}
}
