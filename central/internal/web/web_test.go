package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/wire"
)

func server(t *testing.T) (*httptest.Server, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mux := http.NewServeMux()
	New(st, nil, slog.New(slog.DiscardHandler)).WithAuth(st, AuthOptions{}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	adminFor(t, st, srv.URL)
	return srv, st
}

func get(t *testing.T, url string, v any) *http.Response {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, body)
		}
	}
	return resp
}

func TestAlertsAPI(t *testing.T) {
	srv, st := server(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i, cam := range []string{"c1", "c2", "c1"} {
		a := &wire.Alert{AlertID: wire.NewULID(t0), EventID: "e", Phase: wire.PhaseStart, AgentID: "a1", CameraID: cam,
			Type: "intrusion", Severity: 3, Zone: "lawn", StartedAt: t0, DetectedAt: t0.Add(time.Duration(i) * time.Minute), Site: "立新闸"}
		if _, err := st.InsertAlert(ctx, a, time.Now()); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.AlertID)
	}
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 1, 2, 3}
	if _, err := st.PutEvidence(ctx, store.Evidence{EvidenceMeta: store.EvidenceMeta{AlertID: ids[0], Kind: wire.EvidenceSnapshot, SHA256: "abc", ReceivedAt: t0}, Data: jpeg}); err != nil {
		t.Fatal(err)
	}

	var list struct{ Alerts []AlertView }
	get(t, srv.URL+"/api/v1/alerts", &list)
	if len(list.Alerts) != 3 || list.Alerts[0].AlertID != ids[2] {
		t.Fatalf("list: %+v", list.Alerts)
	}
	if list.Alerts[2].SnapshotURL != "/api/v1/alerts/"+ids[0]+"/snapshot.jpg" || list.Alerts[0].SnapshotURL != "" {
		t.Fatalf("snapshot urls: %q %q", list.Alerts[2].SnapshotURL, list.Alerts[0].SnapshotURL)
	}
	get(t, srv.URL+"/api/v1/alerts?camera_id=c1&type=intrusion", &list)
	if len(list.Alerts) != 2 {
		t.Fatalf("filtered: %d", len(list.Alerts))
	}
	get(t, srv.URL+"/api/v1/alerts?since=2026-11-21T20:00:30%2B08:00", &list)
	if len(list.Alerts) != 2 {
		t.Fatalf("since: %d", len(list.Alerts))
	}
	var page struct {
		Alerts []AlertView
		Next   string
	}
	get(t, srv.URL+"/api/v1/alerts?limit=2", &page)
	if len(page.Alerts) != 2 || page.Next == "" {
		t.Fatalf("first page: %d alerts, next %q", len(page.Alerts), page.Next)
	}
	next := page.Next
	page.Alerts, page.Next = nil, ""
	get(t, srv.URL+"/api/v1/alerts?limit=2&before="+next, &page)
	if len(page.Alerts) != 1 || page.Alerts[0].AlertID != ids[0] || page.Next != "" {
		t.Fatalf("second page: %+v next %q", page.Alerts, page.Next)
	}

	var one AlertView
	if r := get(t, srv.URL+"/api/v1/alerts/"+ids[1], &one); r.StatusCode != 200 || one.CameraID != "c2" || one.Site != "立新闸" {
		t.Fatalf("one: %d %+v", r.StatusCode, one)
	}
	resp, err := client.Get(srv.URL + "/api/v1/alerts/" + ids[0] + "/snapshot.jpg")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || string(body) != string(jpeg) {
		t.Fatalf("snapshot: %d %s %x", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/v1/alerts/01JD3Z8Q6P4X2N7M5K9R1T0VWZ", 404, "not_found"},
		{"/api/v1/alerts/" + ids[1] + "/snapshot.jpg", 404, "not_found"},
		{"/api/v1/alerts?since=yesterday", 400, "bad_request"},
		{"/api/v1/alerts?limit=0", 400, "bad_request"},
		{"/api/v1/alerts?limit=5000", 400, "bad_request"},
		{"/api/v1/alerts?camera_id=a/b", 400, "bad_request"},
		{"/api/v1/alerts?before=12", 400, "bad_request"},
		{"/api/v1/nothing", 404, "not_found"},
	} {
		var e struct{ Error apiError }
		if r := get(t, srv.URL+tc.path, &e); r.StatusCode != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("%s: %d %+v, want %d %s", tc.path, r.StatusCode, e, tc.status, tc.code)
		}
	}
}

// An agent sends the clean copy of a snapshot as an ordinary snapshot under
// its own ULID, named by the alert's evidence.clean_snapshot_id: the view
// links it, and it is served like any snapshot.
func TestCleanSnapshotURL(t *testing.T) {
	srv, st := server(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	cleanID := wire.NewULID(t0)
	a := &wire.Alert{AlertID: wire.NewULID(t0), EventID: "e", Phase: wire.PhaseStart, AgentID: "a1", CameraID: "c1",
		Type: "intrusion", Severity: 3, StartedAt: t0, DetectedAt: t0,
		Evidence: wire.Evidence{CleanSnapshotID: cleanID, CleanSnapshotSHA256: strings.Repeat("a", 64)}}
	if _, err := st.InsertAlert(ctx, a, time.Now()); err != nil {
		t.Fatal(err)
	}
	clean := []byte{0xff, 0xd8, 0xff, 0xe0, 9, 9}
	if _, err := st.PutEvidence(ctx, store.Evidence{EvidenceMeta: store.EvidenceMeta{AlertID: cleanID, Kind: wire.EvidenceSnapshot, SHA256: "c", ReceivedAt: t0}, Data: clean}); err != nil {
		t.Fatal(err)
	}
	var one AlertView
	get(t, srv.URL+"/api/v1/alerts/"+a.AlertID, &one)
	if one.CleanSnapshotURL != "/api/v1/alerts/"+cleanID+"/snapshot.jpg" || one.Evidence.CleanSnapshotID != cleanID {
		t.Fatalf("view: %+v", one)
	}
	resp, err := client.Get(srv.URL + one.CleanSnapshotURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != string(clean) {
		t.Fatalf("clean snapshot: %d %x", resp.StatusCode, body)
	}
}

func TestConsoleIsServedInChinese(t *testing.T) {
	srv, _ := server(t)
	resp, err := client.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `lang="zh-CN"`) || !strings.Contains(string(body), `src="/i18n.js"`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("console: %d %.200s", resp.StatusCode, body)
	}
	cat, _ := consoleFS.ReadFile("console/i18n.js")
	if !strings.Contains(string(cat), `"zh-CN": {`) || !strings.Contains(string(cat), `"wall.alerts": "最新告警"`) {
		t.Fatal("i18n.js: no zh-CN catalogue")
	}
	resp, _ = client.Post(srv.URL+"/", "text/plain", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST / gave %d", resp.StatusCode)
	}
	resp.Body.Close()
}
