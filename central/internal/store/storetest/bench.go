package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/internal/wire"
)

// Rates are alerts per second by benchmark case.
type Rates map[string]float64

// Benchmark measures a store in the shapes central uses it, each on a fresh
// store from open, and reports alerts/s:
//
//   - insert-batch100, insert-batch1: InsertAlerts as intake's group commit
//     calls it under load and when alerts trickle in;
//   - dispatch-tx: one dispatcher transaction per alert (the alert joins an
//     open incident: look-ups, incident update, link, audit append, mark);
//   - insert+drain-batch100: a batch stored, then drained from the queue
//     by the dispatcher: intake to incident.
//
// With a baseline (another store's Rates from the same run), each case also
// reports its rate as a ratio of the baseline's ("x-baseline"). It returns
// this store's rates.
func Benchmark(b *testing.B, open func(b *testing.B) Central, baseline Rates) Rates {
	rates := Rates{}
	report := func(b *testing.B, name string, alerts int) {
		r := float64(alerts) / b.Elapsed().Seconds()
		rates[name] = r
		b.ReportMetric(r, "alerts/s")
		if base := baseline[name]; base > 0 {
			b.ReportMetric(r/base, "x-baseline")
		}
	}
	for _, size := range []int{100, 1} {
		name := fmt.Sprintf("insert-batch%d", size)
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := b.Context()
			at := time.Now().UTC()
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				batch := make([]*wire.Alert, size)
				for i := range batch {
					batch[i] = newAlert("a1", fmt.Sprintf("c%d", n%16), "intrusion", at.Add(time.Duration(n)*time.Millisecond))
					n++
				}
				if _, err := s.InsertAlerts(ctx, batch, at); err != nil {
					b.Fatal(err)
				}
			}
			report(b, name, n)
		})
	}
	b.Run("dispatch-tx", func(b *testing.B) {
		s := open(b)
		d := newDispatcher(b, s, prometheus.NewRegistry())
		ctx := b.Context()
		at := time.Now().UTC()
		n := 0
		for b.Loop() {
			// Inside the incident window of the one before: it joins.
			a := newAlert("a1", "c1", "intrusion", at.Add(time.Duration(n)*time.Millisecond))
			n++
			if _, err := d.Dispatch(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
		report(b, "dispatch-tx", n)
	})
	b.Run("insert+drain-batch100", func(b *testing.B) {
		s := open(b)
		d := newDispatcher(b, s, prometheus.NewRegistry())
		ctx := b.Context()
		at := time.Now().UTC()
		n := 0
		for b.Loop() {
			batch := make([]*wire.Alert, 100)
			for i := range batch {
				batch[i] = newAlert("a1", fmt.Sprintf("c%d", n%16), "intrusion", at.Add(time.Duration(n)*time.Millisecond))
				n++
			}
			if _, err := s.InsertAlerts(ctx, batch, at); err != nil {
				b.Fatal(err)
			}
			if m, err := d.DrainAlerts(ctx); err != nil || m != len(batch) {
				b.Fatalf("drained %d (%v), want %d", m, err, len(batch))
			}
		}
		report(b, "insert+drain-batch100", n)
	})
	return rates
}
