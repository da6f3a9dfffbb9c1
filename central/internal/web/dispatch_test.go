package web

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/wire"
)

func dispatchServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := testRouting()
	r, err := routing.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := dispatch.New(st, r, dispatch.Options{})
	t0 := time.Now().UTC().Truncate(time.Second)
	a := &wire.Alert{AlertID: wire.NewULID(t0), EventID: "e", Phase: wire.PhaseStart, AgentID: "a1", CameraID: "lixin-sluice-east",
		Type: "illegal_fishing", Severity: 2, Zone: "lawn", StartedAt: t0, DetectedAt: t0}
	if _, err := st.InsertAlert(ctx, a, t0); err != nil {
		t.Fatal(err)
	}
	res, err := d.Dispatch(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	New(st, nil, slog.New(slog.DiscardHandler)).WithDispatch(st, d).WithAuth(st, AuthOptions{}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	adminFor(t, st, srv.URL)
	return srv, res.IncidentID
}

func post(t *testing.T, url string, body any, v any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := client.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

func TestIncidentAndOrderAPI(t *testing.T) {
	srv, incID := dispatchServer(t)

	var list struct {
		Incidents []struct {
			ID         string `json:"id"`
			State      string `json:"state"`
			AlertCount int    `json:"alert_count"`
		} `json:"incidents"`
	}
	if resp := get(t, srv.URL+"/api/v1/incidents", &list); resp.StatusCode != 200 || len(list.Incidents) != 1 ||
		list.Incidents[0].ID != incID || list.Incidents[0].State != "dispatched" {
		t.Fatalf("%d %+v", resp.StatusCode, list)
	}

	var one struct {
		Incident struct {
			ID   string   `json:"id"`
			Grid string   `json:"grid"`
			Why  []string `json:"why"`
		} `json:"incident"`
		Alerts []AlertView `json:"alerts"`
		Orders []OrderView `json:"orders"`
	}
	if resp := get(t, srv.URL+"/api/v1/incidents/"+incID, &one); resp.StatusCode != 200 || one.Incident.Grid != "HM-ZY-QZ-03" ||
		len(one.Alerts) != 1 || len(one.Orders) != 2 || len(one.Incident.Why) == 0 {
		t.Fatalf("%d %+v", resp.StatusCode, one)
	}
	if resp := get(t, srv.URL+"/api/v1/incidents/nope", nil); resp.StatusCode != 404 {
		t.Fatalf("missing incident: %d", resp.StatusCode)
	}

	var orders struct {
		Orders []OrderView `json:"orders"`
	}
	if get(t, srv.URL+"/api/v1/orders?agency_id=river-police", &orders); len(orders.Orders) != 1 ||
		orders.Orders[0].Role != order.RoleSupport || orders.Orders[0].State != order.StateDispatched {
		t.Fatalf("%+v", orders)
	}
	o := orders.Orders[0]
	url := srv.URL + "/api/v1/orders/" + o.ID + "/transitions"

	var out struct {
		Order OrderView `json:"order"`
		Error apiError  `json:"error"`
	}
	accept := TransitionRequest{Action: order.ActionAccept, ExpectedVersion: o.Version, CommandID: "c1", Actor: "river-police/duty"}
	if code := post(t, url, accept, &out); code != 200 || out.Order.State != order.StateAccepted || out.Order.Version != o.Version+1 {
		t.Fatalf("accept: %d %+v", code, out)
	}
	// A retry of the same command is answered with the order as it is.
	if code := post(t, url, accept, &out); code != 200 || out.Order.Version != o.Version+1 {
		t.Fatalf("retry: %d %+v", code, out)
	}
	// Stale version: conflict.
	stale := TransitionRequest{Action: order.ActionArrive, ExpectedVersion: o.Version, CommandID: "c2", Actor: "river-police/duty"}
	if code := post(t, url, stale, &out); code != 409 || out.Error.Code != "conflict" {
		t.Fatalf("stale: %d %+v", code, out)
	}
	// Not allowed in this state.
	bad := TransitionRequest{Action: order.ActionClose, ExpectedVersion: o.Version + 1, CommandID: "c3", Actor: "river-police/duty"}
	if code := post(t, url, bad, &out); code != 422 || out.Error.Code != "invalid_transition" {
		t.Fatalf("invalid: %d %+v", code, out)
	}
	// Cards are raised by the timers only.
	card := TransitionRequest{Action: order.ActionRaiseCard, ExpectedVersion: o.Version + 1, CommandID: "c4", Actor: "x"}
	if code := post(t, url, card, &out); code != 422 {
		t.Fatalf("raise_card: %d %+v", code, out)
	}
	if code := post(t, srv.URL+"/api/v1/orders/nope/transitions", accept, &out); code != 404 {
		t.Fatalf("missing order: %d", code)
	}
	if code := post(t, url, map[string]any{"action": "accept", "bogus": 1}, &out); code != 400 {
		t.Fatalf("unknown field: %d", code)
	}
	// The incident rolled up: in progress.
	if get(t, srv.URL+"/api/v1/incidents", &list); list.Incidents[0].State != "in_progress" {
		t.Fatalf("rollup: %+v", list)
	}
}
