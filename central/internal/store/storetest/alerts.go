package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

func testInsertIsIdempotent(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	a := newAlert("a1", "c1", "intrusion", t0)
	ins, err := s.InsertAlert(ctx, a, t0)
	if err != nil || !ins {
		t.Fatalf("first insert: %v %v", ins, err)
	}
	ins, err = s.InsertAlert(ctx, a, t0.Add(time.Second))
	if err != nil || ins {
		t.Fatalf("second insert must be a no-op: %v %v", ins, err)
	}
	got, err := s.GetAlert(ctx, a.AlertID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq <= 0 || !got.ReceivedAt.Equal(t0) {
		t.Fatalf("seq %d, received %v: the first insert's must stay", got.Seq, got.ReceivedAt)
	}
	if _, err := s.GetAlert(ctx, "01JD3Z8Q6P4X2N7M5K9R1T0VWZ"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing alert: %v", err)
	}
}

func testBatchInsertReportsDuplicates(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	a1 := newAlert("a1", "c1", "intrusion", t0)
	a2 := newAlert("a1", "c1", "intrusion", t0.Add(time.Second))
	a3 := newAlert("a1", "c1", "intrusion", t0.Add(2*time.Second))
	if _, err := s.InsertAlert(ctx, a1, t0); err != nil {
		t.Fatal(err)
	}
	// Stored before, new, repeated within the batch, new.
	ins, err := s.InsertAlerts(ctx, []*wire.Alert{a1, a3, a3, a2}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, false, true}; !slices.Equal(ins, want) {
		t.Fatalf("inserted %v, want %v", ins, want)
	}
	if ins, err := s.InsertAlerts(ctx, nil, t0); err != nil || len(ins) != 0 {
		t.Fatalf("empty batch: %v %v", ins, err)
	}
	all, err := s.ListAlerts(ctx, store.AlertFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("%d alerts stored (%v), want 3", len(all), err)
	}
	// Seq is the order of arrival, within a batch too.
	seq := map[string]int64{}
	for _, r := range all {
		seq[r.Alert.AlertID] = r.Seq
	}
	if !(seq[a1.AlertID] < seq[a3.AlertID] && seq[a3.AlertID] < seq[a2.AlertID]) {
		t.Fatalf("seq does not follow arrival: a1 %d, a3 %d, a2 %d", seq[a1.AlertID], seq[a3.AlertID], seq[a2.AlertID])
	}
}

// Everything the agent sent comes back, with nanoseconds.
func testAlertRoundTrip(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	a := newAlert("hm-lixin-01", "lixin-sluice-east", "illegal_fishing", t0)
	a.Site, a.GridCode, a.Geo = "利民水闸东", "HM-ZY-QZ-03", &wire.Geo{Lat: 31.871234, Lon: 121.160987}
	a.PublishedAt = t0.Add(3*time.Second + 7)
	a.Evidence = wire.Evidence{SnapshotSHA256: "aa", ClipSHA256: "bb"}
	a.Model = &wire.Model{Name: "yolox-nano", Version: "0.1.1", SHA256: "cc"}
	a.ConfigVersion = "cfg-7"
	a.Objects = append(a.Objects, wire.Object{Class: "boat", Score: 0.51, BBox: [4]float64{0.5, 0.5, 0.25, 0.125}, TrackID: 9, DwellS: 41.5})
	received := t0.Add(5*time.Second + 1)
	if _, err := s.InsertAlerts(ctx, []*wire.Alert{a}, received); err != nil {
		t.Fatal(err)
	}
	want, err := wire.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	check := func(how string, r store.AlertRecord) {
		t.Helper()
		got, err := wire.Marshal(&r.Alert)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", how, got, want)
		}
		if r.ReceivedAt != received || r.Alert.DetectedAt != t0 {
			t.Errorf("%s: received %v detected %v: times must come back exact, in UTC", how, r.ReceivedAt, r.Alert.DetectedAt)
		}
	}
	got, err := s.GetAlert(ctx, a.AlertID)
	if err != nil {
		t.Fatal(err)
	}
	check("GetAlert", got)
	list, err := s.ListAlerts(ctx, store.AlertFilter{})
	if err != nil || len(list) != 1 {
		t.Fatalf("%d %v", len(list), err)
	}
	check("ListAlerts", list[0])
}

func testEvidenceJoinsEitherOrder(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	early := newAlert("a1", "c1", "intrusion", t0)
	late := newAlert("a1", "c1", "intrusion", t0.Add(time.Second))
	snap := func(a *wire.Alert, b ...byte) store.Evidence {
		return store.Evidence{EvidenceMeta: store.EvidenceMeta{AlertID: a.AlertID, Kind: wire.EvidenceSnapshot, SHA256: fmt.Sprintf("%x", b), ReceivedAt: t0.Add(7)}, Data: b}
	}
	// Evidence before its alert.
	ev := snap(early, 0xff, 0xd8, 0xff, 1)
	if ins, err := s.PutEvidence(ctx, ev); err != nil || !ins {
		t.Fatal(ins, err)
	}
	if ins, err := s.PutEvidence(ctx, ev); err != nil || ins {
		t.Fatalf("evidence stored twice: %v %v", ins, err)
	}
	if _, err := s.InsertAlerts(ctx, []*wire.Alert{early, late}, t0); err != nil {
		t.Fatal(err)
	}
	// Evidence after its alert, two kinds.
	if _, err := s.PutEvidence(ctx, snap(late, 1, 2)); err != nil {
		t.Fatal(err)
	}
	clip := store.Evidence{EvidenceMeta: store.EvidenceMeta{AlertID: late.AlertID, Kind: wire.EvidenceClip, SHA256: "c1", ReceivedAt: t0}, Data: []byte("mp4")}
	if _, err := s.PutEvidence(ctx, clip); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAlert(ctx, early.AlertID)
	if err != nil || len(got.Evidence) != 1 {
		t.Fatalf("evidence not joined: %+v %v", got.Evidence, err)
	}
	if m := got.Evidence[0]; m.Size != 4 || m.SHA256 != ev.SHA256 || m.Kind != wire.EvidenceSnapshot || m.ReceivedAt != ev.ReceivedAt || m.AlertID != early.AlertID {
		t.Fatalf("evidence meta %+v", m)
	}
	list, err := s.ListAlerts(ctx, store.AlertFilter{})
	if err != nil || len(list) != 2 {
		t.Fatal(len(list), err)
	}
	if list[0].Alert.AlertID != late.AlertID || len(list[0].Evidence) != 2 || len(list[1].Evidence) != 1 {
		t.Fatalf("listed evidence: %+v / %+v", list[0].Evidence, list[1].Evidence)
	}
	if k := []wire.EvidenceKind{list[0].Evidence[0].Kind, list[0].Evidence[1].Kind}; k[0] != wire.EvidenceClip || k[1] != wire.EvidenceSnapshot {
		t.Fatalf("evidence kinds in order %v, want clip, snapshot", k)
	}
	e, err := s.GetEvidence(ctx, early.AlertID, wire.EvidenceSnapshot)
	if err != nil || !bytes.Equal(e.Data, ev.Data) || e.Size != 4 || e.AlertID != early.AlertID || e.Kind != wire.EvidenceSnapshot {
		t.Fatal(e, err)
	}
	if _, err := s.GetEvidence(ctx, early.AlertID, wire.EvidenceClip); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing evidence: %v", err)
	}
}

func testListFiltersAndOrder(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	for i, c := range []struct{ agent, cam, typ string }{
		{"a1", "c1", "intrusion"}, {"a2", "c2", "intrusion"}, {"a1", "c1", "crowd"}, {"a1", "c1", "intrusion"},
	} {
		if _, err := s.InsertAlert(ctx, newAlert(c.agent, c.cam, c.typ, t0.Add(time.Duration(i)*time.Minute)), t0); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ListAlerts(ctx, store.AlertFilter{})
	if err != nil || len(all) != 4 {
		t.Fatalf("all: %d %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if !all[i].Alert.DetectedAt.Before(all[i-1].Alert.DetectedAt) {
			t.Fatal("not newest first")
		}
	}
	for _, tc := range []struct {
		f    store.AlertFilter
		want int
	}{
		{store.AlertFilter{CameraID: "c1"}, 3},
		{store.AlertFilter{AgentID: "a2"}, 1},
		{store.AlertFilter{Type: "crowd"}, 1},
		{store.AlertFilter{CameraID: "c1", Type: "intrusion"}, 2},
		{store.AlertFilter{Since: t0.Add(90 * time.Second)}, 2},
		{store.AlertFilter{Since: t0.Add(2 * time.Minute)}, 2}, // at or after
		{store.AlertFilter{Limit: 3}, 3},
		{store.AlertFilter{Before: &store.Cursor{DetectedAt: all[1].Alert.DetectedAt, Seq: all[1].Seq}}, 2},
		{store.AlertFilter{Before: &store.Cursor{DetectedAt: all[1].Alert.DetectedAt, Seq: all[1].Seq}, CameraID: "c1"}, 1},
		{store.AlertFilter{CameraID: "nope"}, 0},
	} {
		got, err := s.ListAlerts(ctx, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("%+v: %d alerts (%v), want %d", tc.f, len(got), err, tc.want)
		}
	}
}

// Paging with the cursor visits every alert once, in the list's order,
// even when arrival order and detection order differ (agents replaying
// after an outage) and many alerts share a detection time.
func testPaging(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	const n = 57
	var batch []*wire.Alert
	for i := range n {
		// arrival order scrambled against detection order, with ties
		d := t0.Add(time.Duration((i*37)%19) * time.Second)
		batch = append(batch, newAlert("a1", "c1", "intrusion", d))
		if len(batch) == 10 || i == n-1 {
			if _, err := s.InsertAlerts(ctx, batch, t0); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	all, err := s.ListAlerts(ctx, store.AlertFilter{Limit: 1000})
	if err != nil || len(all) != n {
		t.Fatalf("%d %v", len(all), err)
	}
	for i := 1; i < n; i++ {
		p, c := all[i-1], all[i]
		if c.Alert.DetectedAt.After(p.Alert.DetectedAt) || (c.Alert.DetectedAt.Equal(p.Alert.DetectedAt) && c.Seq >= p.Seq) {
			t.Fatalf("list order broken at %d: (%v, %d) after (%v, %d)", i, c.Alert.DetectedAt, c.Seq, p.Alert.DetectedAt, p.Seq)
		}
	}
	var paged []string
	f := store.AlertFilter{Limit: 10}
	for {
		page, err := s.ListAlerts(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, recIDs(page)...)
		if len(page) < f.Limit {
			break
		}
		last := page[len(page)-1]
		f.Before = &store.Cursor{DetectedAt: last.Alert.DetectedAt, Seq: last.Seq}
	}
	if !slices.Equal(paged, recIDs(all)) {
		t.Fatalf("pages visited %d alerts, not the %d of the list in its order", len(paged), n)
	}
}

func testAgentStatus(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	cams := []wire.CameraStatus{{CameraID: "c1", State: "streaming", FPS: 5}}
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "b2", State: wire.StateOnline, TS: t0}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "a1", State: wire.StateOnline, Version: "1.2.0", ConfigVersion: "cfg-3", Cameras: cams, TS: t0}, t0); err != nil {
		t.Fatal(err)
	}
	// A last will carries the time the agent connected, older than the
	// statuses it sent since; it still wins, because it arrived last.
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "a1", State: wire.StateOffline, Version: "1.2.0", ConfigVersion: "cfg-3", Cameras: cams, TS: t0.Add(-time.Minute)}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ags, err := s.ListAgents(ctx)
	if err != nil || len(ags) != 2 || ags[0].AgentID != "a1" || ags[1].AgentID != "b2" {
		t.Fatalf("agents by ID: %+v %v", ags, err)
	}
	a := ags[0]
	if a.State != wire.StateOffline || a.LastSeen != t0.Add(time.Second) || a.StatusAt != t0.Add(-time.Minute) ||
		a.Version != "1.2.0" || a.ConfigVersion != "cfg-3" || !slices.Equal(a.Cameras, cams) {
		t.Fatalf("last arrival must win: %+v", a)
	}
	if err := s.MarkAllOffline(ctx); err != nil {
		t.Fatal(err)
	}
	if ags, _ = s.ListAgents(ctx); ags[1].State != wire.StateOffline || ags[1].StatusAt != t0 || ags[1].LastSeen != t0 {
		t.Fatalf("MarkAllOffline changes the state only: %+v", ags[1])
	}
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "a1", State: wire.StateOnline, TS: t0}, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ags, _ = s.ListAgents(ctx); ags[0].State != wire.StateOnline || len(ags[0].Cameras) != 0 {
		t.Fatalf("reconnect after MarkAllOffline: %+v", ags[0])
	}
}

// testAgentStatuses: a batch records each agent as PutAgentStatus does,
// over rows already there, with the last of an agent's statuses winning
// within the batch whatever its timestamp (an "offline" last will after a
// heartbeat).
func testAgentStatuses(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	if err := s.PutAgentStatuses(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: "a0", State: wire.StateOnline, Version: "0.9", TS: t0}, t0); err != nil {
		t.Fatal(err)
	}
	cams := []wire.CameraStatus{{CameraID: "c1", State: "streaming", FPS: 5}}
	const n = 600
	var batch []store.AgentStatus
	for i := range n {
		id := fmt.Sprintf("a%d", i)
		batch = append(batch, store.AgentStatus{Status: &wire.Status{AgentID: id, State: wire.StateOnline, Version: "1.0",
			ConfigVersion: "cfg-" + id, Cameras: cams, TS: t0.Add(time.Duration(i))}, Seen: t0.Add(time.Second)})
	}
	// a7's heartbeat, then its last will dated when it connected.
	batch = append(batch, store.AgentStatus{Status: &wire.Status{AgentID: "a7", State: wire.StateOffline, Version: "1.0",
		TS: t0.Add(-time.Minute)}, Seen: t0.Add(2 * time.Second)})
	if err := s.PutAgentStatuses(ctx, batch); err != nil {
		t.Fatal(err)
	}
	ags, err := s.ListAgents(ctx)
	if err != nil || len(ags) != n {
		t.Fatalf("%d agents (%v), want %d", len(ags), err, n)
	}
	for _, a := range ags {
		var i int
		if _, err := fmt.Sscanf(a.AgentID, "a%d", &i); err != nil {
			t.Fatalf("agent %q", a.AgentID)
		}
		if i == 7 {
			if a.State != wire.StateOffline || a.StatusAt != t0.Add(-time.Minute) || a.LastSeen != t0.Add(2*time.Second) ||
				a.ConfigVersion != "" || len(a.Cameras) != 0 {
				t.Fatalf("the last status of a7 in the batch must win: %+v", a)
			}
			continue
		}
		if a.State != wire.StateOnline || a.Version != "1.0" || a.ConfigVersion != "cfg-"+a.AgentID || !slices.Equal(a.Cameras, cams) ||
			a.StatusAt != t0.Add(time.Duration(i)) || a.LastSeen != t0.Add(time.Second) {
			t.Fatalf("agent %s: %+v", a.AgentID, a)
		}
	}
	// A later batch wins over the rows, again whatever the timestamps.
	if err := s.PutAgentStatuses(ctx, []store.AgentStatus{
		{Status: &wire.Status{AgentID: "a0", State: wire.StateOffline, TS: t0.Add(-time.Hour)}, Seen: t0.Add(3 * time.Second)},
		{Status: &wire.Status{AgentID: "a7", State: wire.StateOnline, TS: t0}, Seen: t0.Add(3 * time.Second)},
	}); err != nil {
		t.Fatal(err)
	}
	if ags, _ = s.ListAgents(ctx); ags[0].AgentID != "a0" || ags[0].State != wire.StateOffline || ags[0].StatusAt != t0.Add(-time.Hour) {
		t.Fatalf("a0 after the second batch: %+v", ags[0])
	}
	for _, a := range ags {
		if a.AgentID == "a7" && (a.State != wire.StateOnline || a.LastSeen != t0.Add(3*time.Second)) {
			t.Fatalf("a7 after the second batch: %+v", a)
		}
	}
}

func testReopenKeepsData(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	a := newAlert("a1", "c1", "intrusion", t0)
	if _, err := s.InsertAlert(ctx, a, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening again finds the schema migrated and the data there.
	s2 := s.Reopen(t)
	if _, err := s2.GetAlert(ctx, a.AlertID); err != nil {
		t.Fatal(err)
	}
	if ins, err := s2.InsertAlert(ctx, a, t0); err != nil || ins {
		t.Fatalf("a redelivery after a restart: %v %v", ins, err)
	}
}
