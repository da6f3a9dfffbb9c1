package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// The dispatch queue: every alert stored for the first time waits, in
// arrival order, until a committed transaction marks it dispatched. Whether
// an alert handed out and not yet marked is handed out again at once (SQLite)
// or only when its claim lapses (PostgreSQL, which spreads alerts over
// replicas) is up to the store; the dispatcher works either way.
func testDispatchQueue(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	a := make([]*wire.Alert, 5)
	for i := range a {
		a[i] = newAlert("a1", "c1", "intrusion", t0.Add(time.Duration(len(a)-i)*time.Second)) // detection order reversed
	}
	if _, err := s.InsertAlerts(ctx, a[:3], t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InsertAlerts(ctx, []*wire.Alert{a[1], a[3]}, t0); err != nil { // a redelivery is not queued again
		t.Fatal(err)
	}
	got, err := s.UndispatchedAlerts(ctx, 2)
	if err != nil || !slices.Equal(ids(got), ids(a[:2])) {
		t.Fatalf("first two waiting: %v (%v), want %v", ids(got), err, ids(a[:2]))
	}
	want, _ := wire.Marshal(a[0])
	if b, _ := wire.Marshal(got[0]); string(b) != string(want) {
		t.Fatalf("queued alert:\n got %s\nwant %s", b, want)
	}
	mustTx(t, s, func(tx store.Tx) error { return tx.MarkDispatched(ids(got)) })
	got, err = s.UndispatchedAlerts(ctx, 10)
	if err != nil || !slices.Equal(ids(got), ids(a[2:4])) {
		t.Fatalf("waiting after the first two: %v (%v), want %v", ids(got), err, ids(a[2:4]))
	}
	// A transaction that fails marks nothing; after a restart (or on
	// another replica) the alerts are there again.
	if err := s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.MarkDispatched(ids(got)); err != nil {
			return err
		}
		return errRollback
	}); err == nil {
		t.Fatal("InTx swallowed the error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := s.Reopen(t)
	if got, err = s2.UndispatchedAlerts(ctx, 10); err != nil || !slices.Equal(ids(got), ids(a[2:4])) {
		t.Fatalf("waiting after a rolled-back mark and a restart: %v (%v), want %v", ids(got), err, ids(a[2:4]))
	}
	mustTx(t, s2, func(tx store.Tx) error { return tx.MarkDispatched(append(ids(got), "01JD3Z8Q6P4X2N7M5K9R1T0VWZ")) })
	if got, err = s2.UndispatchedAlerts(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("all dispatched, yet waiting: %v %v", ids(got), err)
	}
	if _, err := s2.InsertAlerts(ctx, a[4:], t0); err != nil {
		t.Fatal(err)
	}
	if got, err = s2.UndispatchedAlerts(ctx, 10); err != nil || !slices.Equal(ids(got), ids(a[4:])) {
		t.Fatalf("a new alert: %v %v", ids(got), err)
	}
}

// Routing is a small configuration of one agency and one rule for every
// alert type the suite uses.
func Routing() routing.Config {
	return routing.Config{
		Agencies: []routing.AgencyConfig{{ID: "river-police", NameZH: "水上派出所", Level: "district", Jurisdiction: "HM-ZY"}},
		Grids: []routing.GridConfig{
			{Code: "HM", NameZH: "海门", Level: "city"},
			{Code: "HM-ZY", NameZH: "正余", Parent: "HM", Level: "district"},
		},
		SLAProfiles:       []routing.SLAProfileConfig{{Name: "standard", Accept: 5 * time.Minute, OnScene: 30 * time.Minute, Resolve: 2 * time.Hour, Close: 24 * time.Hour}},
		DefaultSLAProfile: "standard",
		Rules: []routing.RuleConfig{{Name: "all", Match: routing.MatchConfig{Types: []string{"intrusion", "illegal_fishing"}},
			Result: routing.ResultConfig{Lead: "river-police"}}},
	}
}

func newDispatcher(t testing.TB, s dispatch.Store, reg prometheus.Registerer) *dispatch.Dispatcher {
	t.Helper()
	cfg := Routing()
	r, err := routing.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dispatch.New(s, r, dispatch.Options{Reg: reg})
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// Two central replicas drain the queue while intake stores alerts: every
// alert ends up in exactly one incident, nothing fails, the audit chain
// verifies.
func testReplicasDispatch(t *testing.T, open func(*testing.T) Store) {
	a := open(t)
	replicas := []Store{a, a.Reopen(t)}
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	const cameras, perCamera, batch = 3, 120, 40
	var all []*wire.Alert
	for i := range perCamera {
		for c := range cameras {
			all = append(all, newAlert("a1", fmt.Sprintf("c%d", c), "intrusion", t0.Add(time.Duration(i)*100*time.Millisecond)))
		}
	}
	var stored atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer stored.Store(true)
		for i := 0; i < len(all); i += batch {
			if _, err := a.InsertAlerts(t.Context(), all[i:i+batch], t0); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i, s := range replicas {
		d := newDispatcher(t, s, regs[i])
		wg.Go(func() {
			for {
				done := stored.Load() // read before draining: an empty drain after it means done
				n, err := d.DrainAlerts(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 && done {
					return
				}
				if n == 0 {
					time.Sleep(time.Millisecond) // intake is still storing
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range replicas {
		if f := counter(t, regs[i], "xl_central_dispatch_failures_total"); f != 0 {
			t.Errorf("replica %d: %v dispatch failures", i, f)
		}
	}
	ctx := t.Context()
	incs, err := a.ListIncidents(ctx, store.IncidentFilter{Limit: 100})
	if err != nil || len(incs) != cameras {
		t.Fatalf("%d incidents (%v), want one per camera", len(incs), err)
	}
	seen := map[string]bool{}
	for _, inc := range incs {
		linked, err := a.IncidentAlertIDs(ctx, inc.ID, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if inc.AlertCount != perCamera || len(linked) != perCamera {
			t.Errorf("incident %s: count %d, %d alerts linked, want %d", inc.CameraID, inc.AlertCount, len(linked), perCamera)
		}
		for _, id := range linked {
			if seen[id] {
				t.Errorf("alert %s in two incidents", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != len(all) {
		t.Fatalf("%d of %d alerts in incidents", len(seen), len(all))
	}
	// The chain verifies, and each incident's audit names every alert it
	// gained (in one entry per dispatch batch).
	if _, _, err := a.VerifyAudit(ctx); err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, inc := range incs {
		entries, err := a.AuditOf(ctx, "incident", inc.ID)
		if err != nil {
			t.Fatal(err)
		}
		added := 0
		for _, e := range entries {
			if e.Action != "alerts_added" {
				continue
			}
			var after struct {
				AlertIDs []string `json:"alert_ids"`
			}
			if err := json.Unmarshal(e.After, &after); err != nil {
				t.Fatal(err)
			}
			added += len(after.AlertIDs)
		}
		if added != perCamera-1 {
			t.Errorf("incident %s: audit names %d added alerts, want %d", inc.CameraID, added, perCamera-1)
		}
	}
	for _, s := range replicas {
		if left, err := s.UndispatchedAlerts(ctx, 10); err != nil || len(left) != 0 {
			t.Fatalf("still waiting: %d %v", len(left), err)
		}
	}
}
