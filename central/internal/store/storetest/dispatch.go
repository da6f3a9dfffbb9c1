package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

var errRollback = errors.New("storetest: roll back")

// id is a new ULID at t: IDs made later sort later.
func id(at time.Time) string { return ulid.MustNew(ulid.Timestamp(at), ulid.DefaultEntropy()).String() }

func incident(camera string, at time.Time) store.Incident {
	return store.Incident{
		ID: id(at), CameraID: camera, Type: "illegal_fishing", Zone: "lawn", Grid: "HM-ZY-QZ-03", State: order.IncidentOpen,
		Severity: 2, FirstAlertAt: at, LastAlertAt: at, AlertCount: 1, Rule: "illegal-fishing", SLAProfile: "standard",
		Why: []string{"type illegal_fishing matches", "grid HM-ZY-QZ-03"}, CreatedAt: at.Add(3), UpdatedAt: at.Add(3), Version: 1,
	}
}

func orderRec(incidentID, agency string, role order.Role, at time.Time) store.OrderRecord {
	return store.OrderRecord{Order: order.New(id(at), incidentID, agency, role, at), SLAProfile: "standard"}
}

// sameJSON compares records through their JSON, which carries every field
// (times with nanoseconds).
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func mustTx(t *testing.T, s Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.InTx(t.Context(), fn); err != nil {
		t.Fatal(err)
	}
}

func testIncidents(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	inc := incident("c1", t0)
	mustTx(t, s, func(tx store.Tx) error {
		if _, ok, err := tx.LatestIncident("c1", inc.Type, inc.Zone); err != nil || ok {
			return fmt.Errorf("latest of an empty store: %v %v", ok, err)
		}
		return tx.InsertIncident(inc)
	})
	got, err := s.GetIncident(ctx, inc.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "incident round trip", got, inc)
	if _, err := s.GetIncident(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing incident: %v", err)
	}

	// Optimistic locking: an update names the version it read.
	next := inc
	next.AlertCount, next.LastAlertAt, next.Severity, next.Version, next.UpdatedAt = 2, t0.Add(time.Minute), 1, 2, t0.Add(time.Minute)
	next.State, next.Why = order.IncidentDispatched, nil
	mustTx(t, s, func(tx store.Tx) error { return tx.UpdateIncident(next, 1) })
	stale := next
	stale.Version = 3
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateIncident(stale, 1) })
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	err = s.InTx(ctx, func(tx store.Tx) error {
		missing := incident("c1", t0)
		return tx.UpdateIncident(missing, 1)
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update of a missing incident: %v, want ErrConflict", err)
	}
	next.Why = []string{}
	got, _ = s.GetIncident(ctx, inc.ID)
	sameJSON(t, "updated incident", got, next)

	// The latest incident of a key, and the last closed one (a recurrence
	// links to it).
	closed := incident("c1", t0.Add(2*time.Minute))
	closed.State = order.IncidentClosed
	rec := incident("c1", t0.Add(3*time.Minute))
	rec.RecurrenceOf = closed.ID
	other := incident("c2", t0.Add(4*time.Minute))
	mustTx(t, s, func(tx store.Tx) error {
		for _, i := range []store.Incident{closed, rec, other} {
			if err := tx.InsertIncident(i); err != nil {
				return err
			}
		}
		return nil
	})
	mustTx(t, s, func(tx store.Tx) error {
		latest, ok, err := tx.LatestIncident("c1", inc.Type, inc.Zone)
		if err != nil || !ok || latest.ID != rec.ID || latest.RecurrenceOf != closed.ID {
			return fmt.Errorf("latest incident: %+v %v %v", latest, ok, err)
		}
		last, ok, err := tx.LastClosedIncident("c1", inc.Type, inc.Zone)
		if err != nil || !ok || last.ID != closed.ID {
			return fmt.Errorf("last closed incident: %+v %v %v", last, ok, err)
		}
		if _, ok, err := tx.LastClosedIncident("c2", inc.Type, inc.Zone); err != nil || ok {
			return fmt.Errorf("no closed incident for c2: %v %v", ok, err)
		}
		if _, ok, err := tx.LatestIncident("c1", inc.Type, "other-zone"); err != nil || ok {
			return fmt.Errorf("no incident in another zone: %v %v", ok, err)
		}
		if _, err := tx.GetIncident("nope"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("missing incident in a transaction: %v", err)
		}
		return nil
	})

	// Listed by the most recent alert, filtered.
	list, err := s.ListIncidents(ctx, store.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := incIDs(list), []string{other.ID, rec.ID, closed.ID, inc.ID}; !slices.Equal(got, want) {
		t.Fatalf("incidents %v, want %v", got, want)
	}
	for _, tc := range []struct {
		f    store.IncidentFilter
		want []string
	}{
		{store.IncidentFilter{CameraID: "c1"}, []string{rec.ID, closed.ID, inc.ID}},
		{store.IncidentFilter{State: string(order.IncidentClosed)}, []string{closed.ID}},
		{store.IncidentFilter{CameraID: "c2", State: string(order.IncidentOpen)}, []string{other.ID}},
		{store.IncidentFilter{Limit: 2}, []string{other.ID, rec.ID}},
		{store.IncidentFilter{CameraID: "nope"}, nil},
	} {
		list, err := s.ListIncidents(ctx, tc.f)
		if err != nil || !slices.Equal(incIDs(list), tc.want) {
			t.Errorf("%+v: %v (%v), want %v", tc.f, incIDs(list), err, tc.want)
		}
	}
}

func incIDs(list []store.Incident) []string {
	var out []string
	for _, i := range list {
		out = append(out, i.ID)
	}
	return out
}

// An alert joins one incident once: the link is what makes dispatching
// idempotent.
func testIncidentAlerts(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	inc := incident("c1", t0)
	// Linked out of detection order; the last one is never stored as an
	// alert (IncidentAlerts lists stored alerts only).
	a := []*wire.Alert{
		newAlert("a1", "c1", "illegal_fishing", t0.Add(2*time.Second)),
		newAlert("a1", "c1", "illegal_fishing", t0),
		newAlert("a1", "c1", "illegal_fishing", t0.Add(time.Second)),
		newAlert("a1", "c1", "illegal_fishing", t0.Add(3*time.Second)),
	}
	if _, err := s.InsertAlerts(ctx, a[:3], t0); err != nil {
		t.Fatal(err)
	}
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.InsertIncident(inc); err != nil {
			return err
		}
		for _, x := range a {
			if err := tx.LinkAlert(inc.ID, x.AlertID, x.DetectedAt); err != nil {
				return err
			}
		}
		return nil
	})
	err := s.InTx(ctx, func(tx store.Tx) error { return tx.LinkAlert(inc.ID, a[0].AlertID, a[0].DetectedAt) })
	if err == nil {
		t.Fatal("an alert linked twice")
	}
	mustTx(t, s, func(tx store.Tx) error {
		got, err := tx.IncidentsOfAlerts([]string{a[1].AlertID, "01JD3Z8Q6P4X2N7M5K9R1T0VWZ", a[2].AlertID})
		if err != nil || len(got) != 2 || got[a[1].AlertID] != inc.ID || got[a[2].AlertID] != inc.ID {
			return fmt.Errorf("incidents of alerts (one in none): %v %v", got, err)
		}
		return nil
	})
	byTime := []string{a[1].AlertID, a[2].AlertID, a[0].AlertID, a[3].AlertID}
	got, err := s.IncidentAlertIDs(ctx, inc.ID, 0)
	if err != nil || !slices.Equal(got, byTime) {
		t.Fatalf("alert IDs %v (%v), want %v", got, err, byTime)
	}
	if got, _ := s.IncidentAlertIDs(ctx, inc.ID, 2); !slices.Equal(got, byTime[:2]) {
		t.Fatalf("limit: %v", got)
	}
	recs, err := s.IncidentAlerts(ctx, inc.ID, 0)
	if err != nil || !slices.Equal(recIDs(recs), byTime[:3]) {
		t.Fatalf("incident alerts %v (%v), want %v", recIDs(recs), err, byTime[:3])
	}
	if recs[0].Alert.DetectedAt != t0 || recs[0].Seq == 0 {
		t.Fatalf("incident alert record: %+v", recs[0])
	}
	if recs, _ := s.IncidentAlerts(ctx, inc.ID, 1); len(recs) != 1 {
		t.Fatalf("limit: %d", len(recs))
	}
	if got, err := s.IncidentAlertIDs(ctx, "nope", 0); err != nil || len(got) != 0 {
		t.Fatalf("alerts of a missing incident: %v %v", got, err)
	}
}

func testOrders(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	inc := incident("c1", t0)
	support := orderRec(inc.ID, "river-police", order.RoleSupport, t0)
	lead := orderRec(inc.ID, "agri-brigade", order.RoleLead, t0.Add(time.Millisecond))
	lead.AutoDispatchAt, lead.NextTimerAt = t0.Add(5*time.Minute+1), t0.Add(5*time.Minute+1)
	inc2 := incident("c2", t0.Add(time.Second))
	later := orderRec(inc2.ID, "agri-brigade", order.RoleLead, t0.Add(time.Second))
	mustTx(t, s, func(tx store.Tx) error {
		for _, i := range []store.Incident{inc, inc2} {
			if err := tx.InsertIncident(i); err != nil {
				return err
			}
		}
		for _, o := range []store.OrderRecord{support, lead, later} { // support first
			if err := tx.InsertOrder(o); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.GetOrder(ctx, lead.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "order round trip", got, lead)
	if got.NextTimerAt != lead.NextTimerAt || got.AutoDispatchAt != lead.AutoDispatchAt {
		t.Fatalf("timers %v %v, want %v", got.NextTimerAt, got.AutoDispatchAt, lead.NextTimerAt)
	}
	if got, _ := s.GetOrder(ctx, support.Order.ID); !got.NextTimerAt.IsZero() || !got.AutoDispatchAt.IsZero() {
		t.Fatalf("no timer must read as zero: %+v", got)
	}
	if _, err := s.GetOrder(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing order: %v", err)
	}
	of, err := s.OrdersOf(ctx, inc.ID)
	if err != nil || len(of) != 2 || of[0].Order.ID != lead.Order.ID || of[1].Order.ID != support.Order.ID {
		t.Fatalf("orders of the incident, lead first: %+v %v", of, err)
	}
	all, err := s.ListOrders(ctx, "", 0)
	if err != nil || !slices.Equal(orderIDs(all), []string{later.Order.ID, lead.Order.ID, support.Order.ID}) {
		t.Fatalf("orders newest first: %v %v", orderIDs(all), err)
	}
	if got, _ := s.ListOrders(ctx, "agri-brigade", 0); !slices.Equal(orderIDs(got), []string{later.Order.ID, lead.Order.ID}) {
		t.Fatalf("orders of an agency: %v", orderIDs(got))
	}
	if got, _ := s.ListOrders(ctx, "", 1); len(got) != 1 {
		t.Fatalf("limit: %d", len(got))
	}
	mustTx(t, s, func(tx store.Tx) error {
		if _, err := tx.GetOrder("nope"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("missing order in a transaction: %v", err)
		}
		return nil
	})

	// An officer's command against the version read.
	o, _, err := order.Apply(lead.Order, order.Command{ID: "cmd-1", Action: order.ActionDispatch, ExpectedVersion: lead.Order.Version, Actor: "officer-7"}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	upd := lead
	upd.Order, upd.AutoDispatchAt, upd.NextTimerAt = o, time.Time{}, t0.Add(6*time.Minute)
	mustTx(t, s, func(tx store.Tx) error { return tx.UpdateOrder(upd, lead.Order.Version, time.Time{}) })
	got, _ = s.GetOrder(ctx, lead.Order.ID)
	sameJSON(t, "updated order", got, upd)
	err = s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateOrder(upd, lead.Order.Version, time.Time{}) })
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale order update: %v, want ErrConflict", err)
	}
	err = s.InTx(ctx, func(tx store.Tx) error {
		return tx.UpdateOrder(orderRec(inc.ID, "x", order.RoleSupport, t0), 1, time.Time{})
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("update of a missing order: %v, want ErrConflict", err)
	}
	// One order per agency and incident.
	err = s.InTx(ctx, func(tx store.Tx) error {
		return tx.InsertOrder(orderRec(inc.ID, "river-police", order.RoleSupport, t0))
	})
	if err == nil {
		t.Fatal("a second order for the same agency and incident")
	}
}

func orderIDs(recs []store.OrderRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Order.ID)
	}
	return out
}

// Whatever fn wrote is gone when it fails, and its error comes back.
func testTxRollsBack(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	inc := incident("c1", t0)
	err := s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.InsertIncident(inc); err != nil {
			return err
		}
		if err := tx.InsertOrder(orderRec(inc.ID, "agri-brigade", order.RoleLead, t0)); err != nil {
			return err
		}
		if err := tx.LinkAlert(inc.ID, "01JD3Z8Q6P4X2N7M5K9R1T0VWZ", t0); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(audit.Entry{At: t0, Actor: "x", Entity: "incident", EntityID: inc.ID, Action: "created"}); err != nil {
			return err
		}
		if got, err := tx.GetIncident(inc.ID); err != nil || got.ID != inc.ID {
			return fmt.Errorf("a transaction reads its own writes: %v", err)
		}
		return fmt.Errorf("wrapped: %w", errRollback)
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("InTx returned %v, want fn's error", err)
	}
	if _, err := s.GetIncident(ctx, inc.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolled-back incident: %v", err)
	}
	if list, _ := s.ListOrders(ctx, "", 0); len(list) != 0 {
		t.Fatalf("rolled-back orders: %d", len(list))
	}
	if n, _, err := s.VerifyAudit(ctx); err != nil || n != 0 {
		t.Fatalf("rolled-back audit: %d %v", n, err)
	}
}

func testTimers(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	if _, ok, err := s.NextTimer(ctx); err != nil || ok {
		t.Fatalf("no timers: %v %v", ok, err)
	}
	inc := incident("c1", t0)
	o1 := orderRec(inc.ID, "o1", order.RoleLead, t0)
	o1.NextTimerAt = t0.Add(time.Minute)
	o2 := orderRec(inc.ID, "o2", order.RoleSupport, t0)
	o2.NextTimerAt = t0.Add(2 * time.Minute)
	o3 := orderRec(inc.ID, "o3", order.RoleSupport, t0) // no timer
	o4 := orderRec(inc.ID, "o4", order.RoleSupport, t0)
	o4.AutoDispatchAt, o4.NextTimerAt = t0.Add(30*time.Second), t0.Add(30*time.Second)
	mustTx(t, s, func(tx store.Tx) error {
		if err := tx.InsertIncident(inc); err != nil {
			return err
		}
		for _, o := range []store.OrderRecord{o1, o2, o3, o4} {
			if err := tx.InsertOrder(o); err != nil {
				return err
			}
		}
		return nil
	})
	if next, ok, err := s.NextTimer(ctx); err != nil || !ok || next != o4.NextTimerAt {
		t.Fatalf("next timer %v %v %v, want %v", next, ok, err, o4.NextTimerAt)
	}
	now := t0.Add(90 * time.Second)
	for _, tc := range []struct {
		at    time.Time
		limit int
		want  []string
	}{
		{now, 10, []string{o4.Order.ID, o1.Order.ID}}, // earliest first
		{now, 1, []string{o4.Order.ID}},
		{o1.NextTimerAt, 10, []string{o4.Order.ID, o1.Order.ID}}, // due at the instant
		{o1.NextTimerAt.Add(-1), 10, []string{o4.Order.ID}},
		{t0, 10, nil},
	} {
		got, err := s.DueTimers(ctx, tc.at, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("due at %v, limit %d: %v (%v), want %v", tc.at, tc.limit, got, err, tc.want)
		}
	}

	// Claiming a timer: the order's version and a due timer, once.
	fire := func(rec store.OrderRecord, claim time.Time) error {
		return s.InTx(ctx, func(tx store.Tx) error {
			prev := rec.Order.Version
			rec.Order.Version++
			rec.NextTimerAt = time.Time{}
			return tx.UpdateOrder(rec, prev, claim)
		})
	}
	if err := fire(o1, now); err != nil {
		t.Fatalf("claim a due timer: %v", err)
	}
	if err := fire(o1, now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("claim it again: %v, want ErrConflict", err)
	}
	if err := fire(o2, now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("claim a timer not due yet: %v, want ErrConflict", err)
	}
	if got, _ := s.DueTimers(ctx, now, 10); !slices.Equal(got, []string{o4.Order.ID}) {
		t.Fatalf("due after the claim: %v", got)
	}
	if err := fire(o4, now); err != nil {
		t.Fatal(err)
	}
	if next, ok, err := s.NextTimer(ctx); err != nil || !ok || next != o2.NextTimerAt {
		t.Fatalf("next timer %v %v %v, want %v", next, ok, err, o2.NextTimerAt)
	}
}

// Replicas racing for one due timer: exactly one claims it.
func testTimerAcrossReplicas(t *testing.T, open func(*testing.T) Store) {
	a := open(t)
	b := a.Reopen(t)
	inc := incident("c1", t0)
	o := orderRec(inc.ID, "o1", order.RoleLead, t0)
	o.NextTimerAt = t0.Add(time.Minute)
	mustTx(t, a, func(tx store.Tx) error {
		if err := tx.InsertIncident(inc); err != nil {
			return err
		}
		return tx.InsertOrder(o)
	})
	now := t0.Add(2 * time.Minute)
	var mu sync.Mutex
	fired := 0
	var wg sync.WaitGroup
	for i := range 8 {
		s := []Store{a, b}[i%2]
		wg.Go(func() {
			// What the dispatcher's timer loop does: read, check, claim.
			err := s.InTx(t.Context(), func(tx store.Tx) error {
				rec, err := tx.GetOrder(o.Order.ID)
				if err != nil {
					return err
				}
				if rec.NextTimerAt.IsZero() || rec.NextTimerAt.After(now) {
					return nil
				}
				prev := rec.Order.Version
				rec.Order.Version++
				rec.NextTimerAt = time.Time{}
				if err := tx.UpdateOrder(rec, prev, now); err != nil {
					return err
				}
				mu.Lock()
				fired++
				mu.Unlock()
				return nil
			})
			if err != nil && !errors.Is(err, store.ErrConflict) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if fired != 1 {
		t.Fatalf("timer claimed %d times, want 1", fired)
	}
}

func testAudit(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	if n, head, err := s.VerifyAudit(ctx); err != nil || n != 0 || head != audit.Genesis {
		t.Fatalf("empty chain: %d %s %v", n, head, err)
	}
	in := []audit.Entry{
		{At: t0, Actor: "xl-central/dispatch", Entity: "incident", EntityID: "i1", Action: "created", After: json.RawMessage(`{"b": 1, "a": 2.50, "s": "雪亮 <&>"}`)},
		{At: t0.Add(1), Actor: "officer-7", Entity: "order", EntityID: "o1", Action: "dispatch", Before: json.RawMessage(`{"state":"pending"}`), After: json.RawMessage(`{"state":"dispatched"}`)},
		{At: t0.Add(2), Actor: "xl-central/dispatch", Entity: "incident", EntityID: "i1", Action: "alert_added:x", Before: json.RawMessage(`{}`), After: json.RawMessage(`{"n":2}`)},
	}
	var sealed []audit.Entry
	mustTx(t, s, func(tx store.Tx) error {
		for _, e := range in[:2] {
			out, err := tx.AppendAudit(e)
			if err != nil {
				return err
			}
			sealed = append(sealed, out)
		}
		return nil
	})
	// A rolled-back append leaves no trace.
	if err := s.InTx(ctx, func(tx store.Tx) error {
		if _, err := tx.AppendAudit(in[2]); err != nil {
			return err
		}
		return errRollback
	}); !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	mustTx(t, s, func(tx store.Tx) error {
		out, err := tx.AppendAudit(in[2])
		sealed = append(sealed, out)
		return err
	})
	for i, e := range sealed {
		if e.Seq != uint64(i+1) || (i > 0 && e.PrevHash != sealed[i-1].Hash) || e.At != in[i].At {
			t.Fatalf("entry %d sealed as %+v", i, e)
		}
	}
	var all []audit.Entry
	entries, readErr := s.AuditEntries(ctx)
	for e := range entries {
		all = append(all, e)
	}
	if err := readErr(); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "audit entries as stored", all, sealed)
	of, err := s.AuditOf(ctx, "incident", "i1")
	if err != nil || len(of) != 2 || of[0].Seq != 1 || of[1].Seq != 3 {
		t.Fatalf("audit of i1: %+v %v", of, err)
	}
	if of, _ := s.AuditOf(ctx, "order", "nope"); len(of) != 0 {
		t.Fatalf("audit of nothing: %+v", of)
	}
	n, head, err := s.VerifyAudit(ctx)
	if err != nil || n != 3 || head != sealed[2].Hash {
		t.Fatalf("verify: %d %s %v", n, head, err)
	}

	// Editing a row breaks verification at that row.
	if err := s.TamperAudit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.VerifyAudit(ctx)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Seq != 2 || !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("tampering not found at seq 2: %v", err)
	}
}

// Replicas appending at the same time make one linear chain.
func testAuditAcrossReplicas(t *testing.T, open func(*testing.T) Store) {
	a := open(t)
	stores := []Store{a, a.Reopen(t)}
	const workers, each = 4, 15
	var wg sync.WaitGroup
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := range each {
				err := s.InTx(t.Context(), func(tx store.Tx) error {
					_, err := tx.AppendAudit(audit.Entry{At: t0.Add(time.Duration(i)), Actor: fmt.Sprintf("w%d", w), Entity: "order",
						EntityID: fmt.Sprintf("o%d", i), Action: "test", After: json.RawMessage(`{}`)})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	n, _, err := stores[1].VerifyAudit(t.Context())
	if err != nil || n != workers*each {
		t.Fatalf("chain of %d entries (%v), want %d", n, err, workers*each)
	}
}
