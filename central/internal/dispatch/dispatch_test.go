package dispatch_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/wire"
)

// referenceRouting is the reference case of configs/central.yaml.
func referenceRouting() routing.Config {
	return routing.Config{
		Agencies: []routing.AgencyConfig{
			{ID: "agri-brigade", NameZH: "农业综合执法大队", Level: "district", Jurisdiction: "HM-ZY"},
			{ID: "river-police", NameZH: "水上派出所", Level: "district", Jurisdiction: "HM-ZY", Webhook: "http://127.0.0.1:9/hook"},
			{ID: "qz-enforcement", NameZH: "青龙镇综合执法队", Level: "town", Jurisdiction: "HM-ZY-QZ"},
			{ID: "zy-governance", NameZH: "正余社会治理指挥中心", Level: "district", Jurisdiction: "HM-ZY"},
		},
		Grids: []routing.GridConfig{
			{Code: "HM", NameZH: "海门", Level: "city"},
			{Code: "HM-ZY", NameZH: "正余", Parent: "HM", Level: "district", Supervisor: "zy-governance"},
			{Code: "HM-ZY-QZ", NameZH: "青龙镇", Parent: "HM-ZY", Level: "town"},
			{Code: "HM-ZY-QZ-03", NameZH: "三网格", Parent: "HM-ZY-QZ", Level: "grid"},
		},
		Cameras: []routing.CameraConfig{{ID: "lixin-sluice-east", Grid: "HM-ZY-QZ-03",
			Zones: []routing.ZoneConfig{{Name: "lawn", Tags: []string{"no_fishing"}}}}},
		SLAProfiles:       []routing.SLAProfileConfig{{Name: "standard", Accept: 5 * time.Minute, OnScene: 30 * time.Minute, Resolve: 2 * time.Hour, Close: 24 * time.Hour}},
		DefaultSLAProfile: "standard",
		Rules: []routing.RuleConfig{
			{Name: "illegal-fishing", Match: routing.MatchConfig{Types: []string{"illegal_fishing"}},
				Result: routing.ResultConfig{Lead: "agri-brigade", Support: []string{"river-police"}, Reroute: []string{"qz-enforcement"}}},
			{Name: "intrusion", Match: routing.MatchConfig{Types: []string{"intrusion"}, ZoneTags: []string{"no_fishing"}},
				Result: routing.ResultConfig{Lead: "river-police", Dispatch: "manual", AutoDispatchAfter: 5 * time.Minute}},
		},
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type fixture struct {
	st   *sqlite.Store
	d    *dispatch.Dispatcher
	clk  *clock
	path string
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := referenceRouting()
	r, err := routing.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: t0}
	return &fixture{st: st, clk: clk, path: path, d: dispatch.New(st, r, dispatch.Options{Window: 10 * time.Minute, Now: clk.Now})}
}

var seq int

func alert(typ string, at time.Time) *wire.Alert {
	seq++
	return &wire.Alert{AlertID: wire.NewULID(at), EventID: fmt.Sprintf("e%d", seq), Phase: wire.PhaseStart, AgentID: "hm-lixin-01",
		CameraID: "lixin-sluice-east", Type: typ, Severity: 2, Zone: "lawn", StartedAt: at, DetectedAt: at}
}

// store stores and dispatches alerts the way intake's hook does.
func (f *fixture) store(t *testing.T, alerts ...*wire.Alert) {
	t.Helper()
	ins, err := f.st.InsertAlerts(context.Background(), alerts, f.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	var fresh []*wire.Alert
	for i, a := range alerts {
		if ins[i] {
			fresh = append(fresh, a)
		}
	}
	f.d.HandleStored(context.Background(), fresh)
}

func (f *fixture) incidents(t *testing.T) []store.Incident {
	t.Helper()
	list, err := f.st.ListIncidents(context.Background(), store.IncidentFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func (f *fixture) orders(t *testing.T, incidentID string) []store.OrderRecord {
	t.Helper()
	recs, err := f.st.OrdersOf(context.Background(), incidentID)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (f *fixture) do(t *testing.T, id string, a order.Action, edit ...func(*order.Command)) store.OrderRecord {
	t.Helper()
	rec, err := f.st.GetOrder(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	cmd := order.Command{ID: fmt.Sprintf("%s-%s", a, id), Action: a, ExpectedVersion: rec.Order.Version, Actor: "officer-7"}
	for _, e := range edit {
		e(&cmd)
	}
	out, err := f.d.Transition(context.Background(), id, cmd)
	if err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	return out
}

func TestReferenceCase(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	f.store(t, alert("illegal_fishing", t0))

	incs := f.incidents(t)
	if len(incs) != 1 {
		t.Fatalf("%d incidents", len(incs))
	}
	inc := incs[0]
	if inc.Grid != "HM-ZY-QZ-03" || inc.Rule != "illegal-fishing" || inc.State != order.IncidentDispatched || inc.AlertCount != 1 {
		t.Fatalf("incident: %+v", inc)
	}
	recs := f.orders(t, inc.ID)
	if len(recs) != 2 {
		t.Fatalf("%d orders", len(recs))
	}
	lead, support := recs[0], recs[1]
	if lead.Order.AgencyID != "agri-brigade" || lead.Order.Role != order.RoleLead ||
		support.Order.AgencyID != "river-police" || support.Order.Role != order.RoleSupport {
		t.Fatalf("orders: %+v / %+v", lead.Order, support.Order)
	}
	for _, r := range recs {
		if r.Order.State != order.StateDispatched || !r.NextTimerAt.Equal(t0.Add(5*time.Minute)) {
			t.Fatalf("order %s: state %s, timer %v", r.Order.AgencyID, r.Order.State, r.NextTimerAt)
		}
	}
	// The support agency stands by; the lead accepts at once.
	f.do(t, support.Order.ID, order.ActionCancel, func(c *order.Command) { c.Reason = "not needed" })
	f.clk.Set(t0.Add(time.Minute))
	accepted := f.do(t, lead.Order.ID, order.ActionAccept)
	if want := t0.Add(31 * time.Minute); !accepted.NextTimerAt.Equal(want) {
		t.Fatalf("timer after accept: %v, want %v (blue at 1× on_scene)", accepted.NextTimerAt, want)
	}
	if got, _ := f.st.GetIncident(ctx, inc.ID); got.State != order.IncidentInProgress {
		t.Fatalf("incident state %s", got.State)
	}

	// No arrival: the timer loop raises blue at 1× and yellow at 1.5×,
	// each once, with the notification going up the place chain.
	if fired, err := f.d.FireDue(ctx, t0.Add(30*time.Minute)); err != nil || len(fired) != 0 {
		t.Fatalf("early: %v %v", fired, err)
	}
	fired, err := f.d.FireDue(ctx, t0.Add(31*time.Minute))
	if err != nil || len(fired) != 1 || fired[0].Card != order.CardBlue || fired[0].Notify != "HM-ZY-QZ" {
		t.Fatalf("blue: %+v %v", fired, err)
	}
	yellowAt := t0.Add(time.Minute + 45*time.Minute) // accepted + 1.5 × 30m
	if fired, err := f.d.FireDue(ctx, yellowAt.Add(-time.Second)); err != nil || len(fired) != 0 {
		t.Fatalf("before yellow: %+v %v", fired, err)
	}
	fired, err = f.d.FireDue(ctx, yellowAt)
	if err != nil || len(fired) != 1 || fired[0].Card != order.CardYellow || fired[0].Stage != order.StageOnScene || fired[0].Notify != "HM-ZY" {
		t.Fatalf("yellow: %+v %v", fired, err)
	}
	if fired, err := f.d.FireDue(ctx, yellowAt); err != nil || len(fired) != 0 {
		t.Fatalf("yellow fired twice: %+v %v", fired, err)
	}
	rec, _ := f.st.GetOrder(ctx, lead.Order.ID)
	if rec.Order.Card != order.CardYellow {
		t.Fatalf("card %v", rec.Order.Card)
	}

	f.clk.Set(yellowAt.Add(time.Minute))
	f.do(t, lead.Order.ID, order.ActionArrive)
	f.do(t, lead.Order.ID, order.ActionResolve, func(c *order.Command) { c.Note = "net removed, warned" })
	f.do(t, lead.Order.ID, order.ActionClose)
	if got, _ := f.st.GetIncident(ctx, inc.ID); got.State != order.IncidentClosed {
		t.Fatalf("incident state %s", got.State)
	}
	if rec, _ := f.st.GetOrder(ctx, lead.Order.ID); !rec.NextTimerAt.IsZero() {
		t.Fatalf("closed order keeps a timer: %v", rec.NextTimerAt)
	}

	n, _, err := f.st.VerifyAudit(ctx)
	if err != nil || n < 10 {
		t.Fatalf("verify: %d entries, %v", n, err)
	}
	cards, _ := f.st.AuditOf(ctx, dispatch.EntityOrder, lead.Order.ID)
	var raised []string
	for _, e := range cards {
		if e.Actor == dispatch.ActorTimer {
			raised = append(raised, e.Action)
		}
	}
	if fmt.Sprint(raised) != "[raise_card:blue:on_scene raise_card:yellow:on_scene]" {
		t.Fatalf("audited cards: %v", raised)
	}

	// Editing one audit row breaks verification at that row.
	db, err := sql.Open("sqlite", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit SET actor = 'someone-else' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.st.VerifyAudit(ctx)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Seq != 3 || !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("tampering not found at seq 3: %v", err)
	}
}

func TestBurstIsOneIncident(t *testing.T) {
	f := setup(t)
	var batch []*wire.Alert
	for i := range 1000 {
		batch = append(batch, alert("illegal_fishing", t0.Add(time.Duration(i)*100*time.Millisecond)))
		if len(batch) == 250 {
			f.store(t, batch...)
			batch = nil
		}
	}
	incs := f.incidents(t)
	if len(incs) != 1 || incs[0].AlertCount != 1000 {
		t.Fatalf("%d incidents: %+v", len(incs), incs)
	}
	if n := len(f.orders(t, incs[0].ID)); n != 2 {
		t.Fatalf("%d orders", n)
	}
	ids, _ := f.st.IncidentAlertIDs(context.Background(), incs[0].ID, 2000)
	if len(ids) != 1000 {
		t.Fatalf("%d linked alerts", len(ids))
	}
	if _, _, err := f.st.VerifyAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRedeliveryChangesNothing(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	a := alert("illegal_fishing", t0)
	f.store(t, a)
	n1, head1, _ := f.st.VerifyAudit(ctx)
	// Redelivered to intake (not inserted again) and to the dispatcher itself.
	f.store(t, a)
	res, err := f.d.Dispatch(ctx, a)
	if err != nil || !res.Duplicate {
		t.Fatalf("%+v %v", res, err)
	}
	n2, head2, _ := f.st.VerifyAudit(ctx)
	incs := f.incidents(t)
	if n1 != n2 || head1 != head2 || len(incs) != 1 || incs[0].AlertCount != 1 || len(f.orders(t, incs[0].ID)) != 2 {
		t.Fatalf("redelivery changed something: audit %d→%d, incidents %+v", n1, n2, incs)
	}
}

func TestWindowAndRecurrence(t *testing.T) {
	f := setup(t)
	f.store(t, alert("illegal_fishing", t0), alert("illegal_fishing", t0.Add(9*time.Minute)))
	if incs := f.incidents(t); len(incs) != 1 {
		t.Fatalf("%d incidents within the window", len(incs))
	}
	// Other zone, other type: separate incidents.
	other := alert("illegal_fishing", t0)
	other.Zone = "path"
	f.store(t, other)
	if n := len(f.incidents(t)); n != 2 {
		t.Fatalf("%d incidents", n)
	}
	first := f.incidents(t)[1]
	if first.Zone != "lawn" {
		first = f.incidents(t)[0]
	}
	// Close the first incident: false alarm on both orders.
	for _, r := range f.orders(t, first.ID) {
		f.do(t, r.Order.ID, order.ActionFalseAlarm)
	}
	if got, _ := f.st.GetIncident(context.Background(), first.ID); !got.Closed() {
		t.Fatalf("state %s", got.State)
	}
	// Within the window, but the incident is closed: a recurrence.
	f.store(t, alert("illegal_fishing", t0.Add(10*time.Minute)))
	var rec store.Incident
	for _, inc := range f.incidents(t) {
		if inc.RecurrenceOf != "" {
			rec = inc
		}
	}
	if rec.RecurrenceOf != first.ID || rec.Zone != "lawn" {
		t.Fatalf("no recurrence of %s: %+v", first.ID, f.incidents(t))
	}
	// Past the window of the recurrence (still open): a new incident, which
	// recurs the last closed one.
	f.store(t, alert("illegal_fishing", t0.Add(30*time.Minute)))
	if n := len(f.incidents(t)); n != 4 {
		t.Fatalf("%d incidents", n)
	}
}

func TestManualDispatchFallback(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	f.store(t, alert("intrusion", t0))
	inc := f.incidents(t)[0]
	recs := f.orders(t, inc.ID)
	if len(recs) != 1 || recs[0].Order.State != order.StatePending || inc.State != order.IncidentOpen ||
		!recs[0].NextTimerAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("%+v %+v", inc, recs)
	}
	fired, err := f.d.FireDue(ctx, t0.Add(5*time.Minute))
	if err != nil || len(fired) != 1 || !fired[0].Dispatch {
		t.Fatalf("%+v %v", fired, err)
	}
	rec, _ := f.st.GetOrder(ctx, recs[0].Order.ID)
	if rec.Order.State != order.StateDispatched || !rec.NextTimerAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("%+v", rec)
	}
	if got, _ := f.st.GetIncident(ctx, inc.ID); got.State != order.IncidentDispatched {
		t.Fatalf("incident %s", got.State)
	}
}

func TestTimerFiresOnceAcrossLoops(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	f.store(t, alert("illegal_fishing", t0))
	// A second dispatcher over the same store, like a second loop.
	cfg := referenceRouting()
	r, _ := routing.New(&cfg)
	d2 := dispatch.New(f.st, r, dispatch.Options{Now: f.clk.Now})
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for _, d := range []*dispatch.Dispatcher{f.d, d2, f.d, d2} {
		wg.Go(func() {
			fired, err := d.FireDue(ctx, t0.Add(6*time.Minute))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total += len(fired)
			mu.Unlock()
		})
	}
	wg.Wait()
	if total != 2 { // one blue card for each of the two orders
		t.Fatalf("%d cards fired", total)
	}
}

func TestRunFiresTimers(t *testing.T) {
	f := setup(t)
	cfg := referenceRouting()
	cfg.SLAProfiles[0].Accept = 50 * time.Millisecond
	r, _ := routing.New(&cfg)
	d := dispatch.New(f.st, r, dispatch.Options{})
	now := time.Now().UTC()
	a := alert("illegal_fishing", now)
	if _, err := f.st.InsertAlerts(context.Background(), []*wire.Alert{a}, now); err != nil {
		t.Fatal(err)
	}
	res, err := d.Dispatch(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, _ := f.st.GetOrder(context.Background(), res.Orders[0])
		if rec.Order.Card == order.CardRed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("card %v", rec.Order.Card)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Alerts stored but not yet dispatched (central stopped in between) wait in
// the store; the drain dispatches each once, in arrival order, in batches.
func TestDrainDispatchesWaitingAlertsOnce(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	var alerts []*wire.Alert
	for i := range 1200 {
		alerts = append(alerts, alert("illegal_fishing", t0.Add(time.Duration(i)*100*time.Millisecond)))
	}
	if _, err := f.st.InsertAlerts(ctx, alerts, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if incs := f.incidents(t); len(incs) != 0 {
		t.Fatalf("incidents before the drain: %d", len(incs))
	}
	n, err := f.d.DrainAlerts(ctx)
	if err != nil || n != 1200 {
		t.Fatalf("drained %d (%v), want 1200", n, err)
	}
	incs := f.incidents(t)
	if len(incs) != 1 || incs[0].AlertCount != 1200 {
		t.Fatalf("%d incidents: %+v", len(incs), incs)
	}
	if n, err := f.d.DrainAlerts(ctx); err != nil || n != 0 {
		t.Fatalf("second drain handled %d (%v), want 0", n, err)
	}
	if _, _, err := f.st.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}

// One batch mixing two keys, and a gap past the window within one key:
// every alert lands in the right incident, each incident is stored once
// with its count, and the audit names every alert an incident gained.
func TestBatchGroupsPerIncident(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	lawn := func(at time.Duration) *wire.Alert { return alert("illegal_fishing", t0.Add(at)) }
	path := func(at time.Duration) *wire.Alert {
		a := alert("illegal_fishing", t0.Add(at))
		a.Zone = "path"
		return a
	}
	batch := []*wire.Alert{lawn(0), path(0), lawn(time.Minute), path(time.Minute), lawn(2 * time.Minute),
		lawn(30 * time.Minute), lawn(31 * time.Minute)} // past the window: a second lawn incident
	f.store(t, batch...)

	counts := map[string][]int{}
	byID := map[string]store.Incident{}
	for _, inc := range f.incidents(t) {
		counts[inc.Zone] = append(counts[inc.Zone], inc.AlertCount)
		byID[inc.ID] = inc
	}
	slices.Sort(counts["lawn"])
	if !slices.Equal(counts["lawn"], []int{2, 3}) || !slices.Equal(counts["path"], []int{2}) {
		t.Fatalf("alert counts per zone: %v", counts)
	}
	for id, inc := range byID {
		ids, err := f.st.IncidentAlertIDs(ctx, id, 100)
		if err != nil || len(ids) != inc.AlertCount {
			t.Fatalf("incident %s: %d linked, count %d, %v", id, len(ids), inc.AlertCount, err)
		}
		if inc.Version != 2 { // created, then the batch's joins stored once
			t.Errorf("incident %s version %d, want 2", id, inc.Version)
		}
		entries, err := f.st.AuditOf(ctx, dispatch.EntityIncident, id)
		if err != nil {
			t.Fatal(err)
		}
		var added []string
		for _, e := range entries {
			if e.Action == "alerts_added" {
				var after struct {
					AlertCount int      `json:"alert_count"`
					AlertIDs   []string `json:"alert_ids"`
				}
				if err := json.Unmarshal(e.After, &after); err != nil {
					t.Fatal(err)
				}
				if after.AlertCount != inc.AlertCount {
					t.Errorf("audit count %d, stored %d", after.AlertCount, inc.AlertCount)
				}
				added = append(added, after.AlertIDs...)
			}
		}
		if len(added) != inc.AlertCount-1 {
			t.Errorf("incident %s: audit names %d added alerts, want %d", id, len(added), inc.AlertCount-1)
		}
	}
	if _, _, err := f.st.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
	// A later batch joins the open incidents and stores each once more.
	f.store(t, lawn(32*time.Minute), path(3*time.Minute))
	for _, inc := range f.incidents(t) {
		if old := byID[inc.ID]; inc.AlertCount > old.AlertCount && inc.Version != old.Version+1 {
			t.Errorf("incident %s version %d after one more batch (was %d)", inc.ID, inc.Version, old.Version)
		}
	}
}

// Orders reach agencies through the egress queue, in the transaction of
// the change: dispatched orders, a re-routed order after a rejection, the
// way back to the officer when no agency is left, and card notifications
// to the order's agency and to the supervisor of the level a card
// escalates to.
func TestEgressAndReroute(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	f.store(t, alert("illegal_fishing", t0))
	inc := f.incidents(t)[0]
	var lead, support store.OrderRecord
	for _, r := range f.orders(t, inc.ID) {
		if r.Order.Role == order.RoleLead {
			lead = r
		} else {
			support = r
		}
	}
	type sent struct{ agency, channel, event string }
	msgs := func() []sent {
		list, err := f.st.ListEgress(ctx, store.EgressFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var out []sent
		for i := len(list) - 1; i >= 0; i-- { // oldest first
			e := list[i]
			var m wire.OrderMessage
			if err := json.Unmarshal(e.Payload, &m); err != nil || m.Schema != wire.SchemaOrder || m.Event != e.Event {
				t.Fatalf("payload %s: %v", e.Payload, err)
			}
			if e.Channel == store.ChannelMQTT && e.Target != wire.OrdersTopic(e.AgencyID) {
				t.Fatalf("topic %s for %s", e.Target, e.AgencyID)
			}
			out = append(out, sent{e.AgencyID, e.Channel, e.Event})
		}
		return out
	}
	want := []sent{{"agri-brigade", "mqtt", "dispatched"}, {"river-police", "mqtt", "dispatched"}, {"river-police", "webhook", "dispatched"}}
	if got := msgs(); !slices.Equal(got, want) {
		t.Fatalf("after dispatch: %v, want %v", got, want)
	}

	// The lead rejects: its task goes to the next agency of the rule's
	// re-route list, as a new dispatched order.
	f.do(t, lead.Order.ID, order.ActionReject, func(c *order.Command) { c.Reason = "boat out of service" })
	var rerouted store.OrderRecord
	for _, r := range f.orders(t, inc.ID) {
		if r.Order.AgencyID == "qz-enforcement" {
			rerouted = r
		}
	}
	if rerouted.Order.State != order.StateDispatched || rerouted.Order.Role != order.RoleLead {
		t.Fatalf("re-routed order: %+v", rerouted.Order)
	}
	if got := msgs()[3:]; !slices.Equal(got, []sent{{"qz-enforcement", "mqtt", "rerouted"}}) {
		t.Fatalf("after reject: %v", got)
	}
	// It rejects too: nobody is left, the officer decides (audited).
	f.do(t, rerouted.Order.ID, order.ActionReject, func(c *order.Command) { c.Reason = "not our area" })
	entries, _ := f.st.AuditOf(ctx, dispatch.EntityIncident, inc.ID)
	if last := entries[len(entries)-1]; !slices.ContainsFunc(entries, func(e audit.Entry) bool { return e.Action == "reroute:officer" }) {
		t.Fatalf("no reroute:officer in the audit; last %s", last.Action)
	}
	if n := len(f.orders(t, inc.ID)); n != 3 {
		t.Fatalf("%d orders after the second rejection", n)
	}

	// The support accepts and does not arrive: blue at 1× the on-scene
	// time (the town above the grid has no supervisor: only the agency is
	// told), yellow at 1.5× (the district: its supervisor is told too).
	f.do(t, support.Order.ID, order.ActionAccept)
	before := len(msgs())
	f.clk.Set(t0.Add(31 * time.Minute))
	if _, err := f.d.FireDue(ctx, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	f.clk.Set(t0.Add(46 * time.Minute))
	if _, err := f.d.FireDue(ctx, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	want = []sent{{"river-police", "mqtt", "card"}, {"river-police", "webhook", "card"},
		{"river-police", "mqtt", "card"}, {"river-police", "webhook", "card"}, {"zy-governance", "mqtt", "escalation"}}
	if got := msgs()[before:]; !slices.Equal(got, want) {
		t.Fatalf("cards: %v, want %v", got, want)
	}
	if _, _, err := f.st.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}

// The detected→dispatched histogram observes each alert once, by the
// dispatcher's clock, and not its redelivery.
func TestDetectToDispatchedLatency(t *testing.T) {
	f := setup(t)
	reg := prometheus.NewRegistry()
	cfg := referenceRouting()
	r, _ := routing.New(&cfg)
	f.d = dispatch.New(f.st, r, dispatch.Options{Window: 10 * time.Minute, Now: f.clk.Now, Reg: reg})
	f.clk.Set(t0.Add(3 * time.Second))
	a := alert("illegal_fishing", t0)
	f.store(t, a)
	if _, err := f.d.Dispatch(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "xl_central_alert_detect_to_dispatched_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() != 3 {
				t.Fatalf("count %d sum %v, want 1 observation of 3 s", h.GetSampleCount(), h.GetSampleSum())
			}
			return
		}
	}
	t.Fatal("no xl_central_alert_detect_to_dispatched_seconds")
}
