package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "sub", "central.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func alert(camera, typ string, detected time.Time) *wire.Alert {
	return &wire.Alert{
		Schema: wire.SchemaAlert, AlertID: wire.NewULID(detected), EventID: "e1", Phase: wire.PhaseStart,
		AgentID: "a1", CameraID: camera, Type: typ, Severity: 2, Zone: "bank",
		StartedAt: detected.Add(-time.Second), DetectedAt: detected,
		Objects: []wire.Object{{Class: "person", Score: 0.8, BBox: [4]float64{0.1, 0.2, 0.1, 0.3}, TrackID: 3, DwellS: 4}},
	}
}

func TestInsertIsIdempotent(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a := alert("c1", "intrusion", time.Now())
	ins, err := s.InsertAlert(ctx, a, time.Now())
	if err != nil || !ins {
		t.Fatalf("first insert: %v %v", ins, err)
	}
	ins, err = s.InsertAlert(ctx, a, time.Now())
	if err != nil || ins {
		t.Fatalf("second insert must be a no-op: %v %v", ins, err)
	}
	got, err := s.GetAlert(ctx, a.AlertID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Alert.CameraID != "c1" || len(got.Alert.Objects) != 1 || got.Alert.Objects[0].TrackID != 3 || !got.Alert.DetectedAt.Equal(a.DetectedAt) {
		t.Fatalf("round trip: %+v", got.Alert)
	}
	if _, err := s.GetAlert(ctx, "01JD3Z8Q6P4X2N7M5K9R1T0VWZ"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing alert: %v", err)
	}
}

func TestListFiltersAndOrder(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for i, c := range []struct{ cam, typ string }{{"c1", "intrusion"}, {"c2", "intrusion"}, {"c1", "crowd"}, {"c1", "intrusion"}} {
		if _, err := s.InsertAlert(ctx, alert(c.cam, c.typ, t0.Add(time.Duration(i)*time.Minute)), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ListAlerts(ctx, store.AlertFilter{})
	if err != nil || len(all) != 4 {
		t.Fatalf("all: %d %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Alert.DetectedAt.After(all[i-1].Alert.DetectedAt) {
			t.Fatal("not newest first")
		}
	}
	for _, tc := range []struct {
		f    store.AlertFilter
		want int
	}{
		{store.AlertFilter{CameraID: "c1"}, 3},
		{store.AlertFilter{Type: "crowd"}, 1},
		{store.AlertFilter{CameraID: "c1", Type: "intrusion"}, 2},
		{store.AlertFilter{Since: t0.Add(90 * time.Second)}, 2},
		{store.AlertFilter{Limit: 3}, 3},
		{store.AlertFilter{Before: &store.Cursor{DetectedAt: all[1].Alert.DetectedAt, Seq: all[1].Seq}}, 2},
		{store.AlertFilter{CameraID: "nope"}, 0},
	} {
		got, err := s.ListAlerts(ctx, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("%+v: %d alerts (%v), want %d", tc.f, len(got), err, tc.want)
		}
	}
}

// Paging with the cursor visits every alert once even when arrival order
// and detection order differ (agents replaying after an outage).
func TestPagingFollowsTheListOrder(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	const n = 57
	for i := range n {
		// arrival order scrambled against detection order, with ties
		d := t0.Add(time.Duration((i*37)%19) * time.Second)
		if _, err := s.InsertAlert(ctx, alert("c1", "intrusion", d), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	f := store.AlertFilter{Limit: 10}
	for {
		page, err := s.ListAlerts(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			if seen[r.Alert.AlertID] {
				t.Fatalf("alert %s on two pages", r.Alert.AlertID)
			}
			seen[r.Alert.AlertID] = true
		}
		if len(page) < f.Limit {
			break
		}
		last := page[len(page)-1]
		f.Before = &store.Cursor{DetectedAt: last.Alert.DetectedAt, Seq: last.Seq}
	}
	if len(seen) != n {
		t.Fatalf("paging visited %d of %d alerts", len(seen), n)
	}
}

func TestEvidenceJoinsEitherOrder(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a := alert("c1", "intrusion", time.Now())
	ev := store.Evidence{EvidenceMeta: store.EvidenceMeta{AlertID: a.AlertID, Kind: wire.EvidenceSnapshot, SHA256: "ab", ReceivedAt: time.Now()}, Data: []byte{0xff, 0xd8, 0xff, 1}}
	// evidence first
	if ins, err := s.PutEvidence(ctx, ev); err != nil || !ins {
		t.Fatal(ins, err)
	}
	if ins, _ := s.PutEvidence(ctx, ev); ins {
		t.Fatal("evidence stored twice")
	}
	if _, err := s.InsertAlert(ctx, a, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAlert(ctx, a.AlertID)
	if err != nil || len(got.Evidence) != 1 || got.Evidence[0].Size != 4 {
		t.Fatalf("evidence not joined: %+v %v", got.Evidence, err)
	}
	e, err := s.GetEvidence(ctx, a.AlertID, wire.EvidenceSnapshot)
	if err != nil || len(e.Data) != 4 {
		t.Fatal(e, err)
	}
	if _, err := s.GetEvidence(ctx, a.AlertID, wire.EvidenceClip); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
}

func TestAgentStatusLastArrivalWins(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	t0 := time.Now()
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "a1", State: wire.StateOnline, TS: t0}, t0); err != nil {
		t.Fatal(err)
	}
	// A last will carries the time the agent connected, older than the
	// statuses it sent since; it still wins, because it arrived last.
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "a1", State: wire.StateOffline, TS: t0.Add(-time.Minute)}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ags, err := s.ListAgents(ctx)
	if err != nil || len(ags) != 1 || ags[0].State != wire.StateOffline || !ags[0].LastSeen.Equal(t0.Add(time.Second).UTC()) {
		t.Fatalf("%+v %v", ags, err)
	}
	if err := s.MarkAllOffline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "a1", State: wire.StateOnline, TS: t0}, t0); err != nil {
		t.Fatal(err)
	}
	if ags, _ = s.ListAgents(ctx); ags[0].State != wire.StateOnline {
		t.Fatalf("reconnect after MarkAllOffline: %+v", ags)
	}
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	a := alert("c1", "intrusion", time.Now())
	if _, err := s.InsertAlert(ctx, a, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetAlert(ctx, a.AlertID); err != nil {
		t.Fatal(err)
	}
}
