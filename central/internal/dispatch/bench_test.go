package dispatch_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/postgres"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/pgtest"
	"github.com/xueliang/xl/internal/wire"
)

// benchStore is what the benchmarks need of a store.
type benchStore interface {
	dispatch.Store
	InsertAlerts(ctx context.Context, alerts []*wire.Alert, receivedAt time.Time) ([]bool, error)
	ListIncidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error)
	OrdersOf(ctx context.Context, incidentID string) ([]store.OrderRecord, error)
	GetOrder(ctx context.Context, id string) (store.OrderRecord, error)
}

// benchStores are the stores the benchmarks run on.
var benchStores = []struct {
	name string
	open func(b *testing.B) benchStore
}{
	{"sqlite", func(b *testing.B) benchStore {
		st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}},
	{"postgres", func(b *testing.B) benchStore {
		st, err := postgres.Open(context.Background(), pgtest.Schema(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}},
}

func benchRouter(b *testing.B) *routing.Router {
	cfg := referenceRouting()
	r, err := routing.New(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// benchAlert is an illegal_fishing alert (auto-dispatched to two agencies)
// from one of cameras cameras.
func benchAlert(at time.Time, camera int) *wire.Alert {
	return &wire.Alert{Schema: wire.SchemaAlert, AlertID: wire.NewULID(at), EventID: fmt.Sprintf("e%d", camera), Phase: wire.PhaseStart,
		AgentID: "bench", CameraID: fmt.Sprintf("cam-%05d", camera), Type: "illegal_fishing", Severity: 2, Zone: "lawn",
		StartedAt: at, DetectedAt: at, PublishedAt: at}
}

// BenchmarkDispatchThroughput stores alerts and groups them into
// incidents and orders as central does (intake's batch insert, then the
// dispatcher draining the queue): 2,000 cameras, 10 alerts each, so every
// tenth alert opens an incident with two auto-dispatched orders.
func BenchmarkDispatchThroughput(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			const cameras, perCamera, batch = 2000, 10, 500
			var insertTime, dispatchTime time.Duration
			var alerts int
			for b.Loop() {
				b.StopTimer()
				st := bs.open(b)
				d := dispatch.New(st, benchRouter(b), dispatch.Options{})
				t0 := time.Now().UTC().Add(-time.Hour)
				var all []*wire.Alert
				for i := range perCamera {
					for c := range cameras {
						all = append(all, benchAlert(t0.Add(time.Duration(i)*time.Second), c))
					}
				}
				ctx := context.Background()
				b.StartTimer()
				start := time.Now()
				for i := 0; i < len(all); i += batch {
					if _, err := st.InsertAlerts(ctx, all[i:min(i+batch, len(all))], time.Now()); err != nil {
						b.Fatal(err)
					}
				}
				mid := time.Now()
				n, err := d.DrainAlerts(ctx)
				if err != nil || n != len(all) {
					b.Fatalf("dispatched %d of %d: %v", n, len(all), err)
				}
				end := time.Now()
				insertTime += mid.Sub(start)
				dispatchTime += end.Sub(mid)
				alerts += len(all)
			}
			b.ReportMetric(float64(alerts)/(insertTime+dispatchTime).Seconds(), "alerts/s")
			b.ReportMetric(float64(alerts)/dispatchTime.Seconds(), "dispatch-alerts/s")
			b.ReportMetric(float64(alerts)/insertTime.Seconds(), "insert-alerts/s")
			b.ReportMetric(float64(alerts/perCamera*2)/(insertTime+dispatchTime).Seconds(), "orders/s")
		})
	}
}

// BenchmarkAlertToOrder measures, with the dispatcher running as in
// central, the time from an alert's insert to its orders being dispatched
// (each alert opens a new incident with two auto-dispatched orders), at a
// steady 500 new incidents per second for 4 s.
func BenchmarkAlertToOrder(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			const rate, seconds = 500, 4
			var lat []time.Duration
			for b.Loop() {
				st := bs.open(b)
				d := dispatch.New(st, benchRouter(b), dispatch.Options{})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- d.Run(ctx) }()
				inserted := map[string]time.Time{} // camera → insert time
				tick := time.NewTicker(time.Second / 100)
				cam := 0
				for range seconds * 100 {
					<-tick.C
					var batch []*wire.Alert
					now := time.Now().UTC()
					for range rate / 100 {
						batch = append(batch, benchAlert(now, cam))
						inserted[batch[len(batch)-1].CameraID] = now
						cam++
					}
					if _, err := st.InsertAlerts(ctx, batch, now); err != nil {
						b.Fatal(err)
					}
					d.NotifyStored()
				}
				tick.Stop()
				deadline := time.Now().Add(30 * time.Second)
				var incs []store.Incident
				var err error
				for {
					// Not UndispatchedAlerts: on PostgreSQL it claims what it returns.
					incs, err = st.ListIncidents(ctx, store.IncidentFilter{Limit: cam + 10})
					if err != nil {
						b.Fatal(err)
					}
					if len(incs) >= cam || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
				<-done
				if err != nil || len(incs) != cam {
					b.Fatalf("%d of %d incidents: %v", len(incs), cam, err)
				}
				for _, inc := range incs {
					recs, err := st.OrdersOf(context.Background(), inc.ID)
					if err != nil || len(recs) != 2 {
						b.Fatalf("incident %s: %d orders: %v", inc.ID, len(recs), err)
					}
					for _, r := range recs {
						lat = append(lat, r.Order.DispatchedAt.Sub(inserted[inc.CameraID]))
					}
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
		})
	}
}

// BenchmarkTimerLag measures how late SLA timers fire with 100,000 open
// timers: 100,000 dispatched orders, of which 2,000 come due during a 5 s
// window and the rest later; the dispatcher's timer loop runs on the real
// clock. Lag is the card's time minus its deadline.
func BenchmarkTimerLag(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			const open, firing, window = 100_000, 2_000, 5 * time.Second
			accept := 5 * time.Minute // the reference profile's accept deadline
			var lat []time.Duration
			for b.Loop() {
				b.StopTimer()
				st := bs.open(b)
				r := benchRouter(b)
				d := dispatch.New(st, r, dispatch.Options{})
				ctx := context.Background()
				due := make(map[string]time.Time, firing)
				// The timers that stay open, then the ones that fire, due from
				// half a second after they are stored.
				insert := func(from, to int, start time.Time) {
					err := st.InTx(ctx, func(tx store.Tx) error {
						for i := from; i < to; i++ {
							inc := store.Incident{ID: fmt.Sprintf("i%06d", i), CameraID: "lixin-sluice-east", Type: "illegal_fishing",
								Zone: fmt.Sprintf("z%06d", i), Grid: "HM-ZY-QZ-03", State: order.IncidentDispatched, Severity: 2,
								FirstAlertAt: start, LastAlertAt: start, AlertCount: 1, CreatedAt: start, UpdatedAt: start, Version: 1}
							if err := tx.InsertIncident(inc); err != nil {
								return err
							}
							at := start.Add(window + time.Hour + time.Duration(rand.Int64N(int64(time.Hour))))
							if i < firing {
								at = start.Add(time.Duration(i) * window / firing)
							}
							o := order.New(fmt.Sprintf("o%06d", i), inc.ID, "agri-brigade", order.RoleLead, at.Add(-accept))
							o.State, o.Version, o.DispatchedAt, o.StateSince = order.StateDispatched, 2, at.Add(-accept), at.Add(-accept)
							if err := tx.InsertOrder(store.OrderRecord{Order: o, SLAProfile: "standard", NextTimerAt: at}); err != nil {
								return err
							}
							if i < firing {
								due[o.ID] = at
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				insert(firing, open, time.Now().UTC())
				start := time.Now().UTC().Add(500 * time.Millisecond)
				insert(0, firing, start)
				if wait := time.Until(start); wait > 0 {
					time.Sleep(wait)
				}
				b.StartTimer()
				runCtx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- d.Run(runCtx) }()
				time.Sleep(window + time.Second)
				for {
					n := 0
					for id := range due {
						rec, err := st.GetOrder(ctx, id)
						if err != nil {
							b.Fatal(err)
						}
						if rec.Order.Card != order.CardNone {
							lat = append(lat, rec.Order.CardAt.Sub(due[id]))
							delete(due, id)
							n++
						}
					}
					if len(due) == 0 || n == 0 {
						break
					}
				}
				cancel()
				<-done
				if len(due) > 0 {
					b.Fatalf("%d timers did not fire", len(due))
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
			b.ReportMetric(open, "open-timers")
		})
	}
}
