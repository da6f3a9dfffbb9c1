package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/events"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/wire"
)

// world is an API with every part on, one incident with an order for
// each of two agencies, and a token per role.
type world struct {
	srv    *httptest.Server
	st     *sqlite.Store
	api    *API
	hub    *events.Hub
	tok    map[string]string // by username
	orders map[string]string // order ID by agency
}

func newWorld(t testing.TB) *world {
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
	jpeg := append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 64)...)
	if _, err := st.PutEvidence(ctx, store.Evidence{EvidenceMeta: store.EvidenceMeta{AlertID: a.AlertID, Kind: wire.EvidenceSnapshot, SHA256: "abc", ReceivedAt: t0}, Data: jpeg}); err != nil {
		t.Fatal(err)
	}
	res, err := d.Dispatch(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{st: st, hub: events.New(prometheus.NewRegistry()), tok: map[string]string{}, orders: map[string]string{}}
	for _, id := range res.Orders {
		rec, err := st.GetOrder(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		w.orders[rec.Order.AgencyID] = id
	}
	mux := http.NewServeMux()
	w.api = New(st, nil, slog.New(slog.DiscardHandler)).WithDispatch(st, d).WithEgress(st, nil).WithAuth(st, AuthOptions{}).
		WithEvents(w.hub).WithPhotos(st).WithPlaces(Places{Cameras: []CameraInfo{{ID: "lixin-sluice-east", Geo: &wire.Geo{Lat: 31.9, Lon: 121.2}}}})
	w.api.Register(mux)
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	for _, u := range []store.User{{Username: "admin", Role: store.RoleAdmin}, {Username: "duty", Role: store.RoleOfficer},
		{Username: "ops", Role: store.RoleOps}, {Username: "agri", Role: store.RoleAgency, AgencyID: "agri-brigade"},
		{Username: "river", Role: store.RoleAgency, AgencyID: "river-police"}} {
		if _, err := NewUser(ctx, st, u, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		w.tok[u.Username] = tokenFor(t, st, u.Username)
	}
	return w
}

// do sends a request as user ("" = nobody) and decodes a JSON answer.
func (w *world) do(t *testing.T, user, method, path string, body any, v any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, w.srv.URL+path, rd)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+w.tok[user])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

func TestEveryRouteButLoginNeedsAuth(t *testing.T) {
	w := newWorld(t)
	open := map[string]bool{"POST /api/v1/session": true, "GET /api/v1/openapi.json": true}
	for _, route := range w.api.Routes() {
		method, path, _ := strings.Cut(route, " ")
		path = strings.NewReplacer("{alert_id}", "x", "{id}", "1", "{agent_id}", "a1", "{username}", "duty", "{photo_id}", "1").Replace(path)
		var e struct{ Error apiError }
		code := w.do(t, "", method, path, nil, &e)
		if open[route] {
			if code == http.StatusUnauthorized {
				t.Errorf("%s: 401, should be open", route)
			}
			continue
		}
		if code != http.StatusUnauthorized || e.Error.Code != "unauthenticated" {
			t.Errorf("%s without credentials: %d %q, want 401 unauthenticated", route, code, e.Error.Code)
		}
		req, _ := http.NewRequest(method, w.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer xlt_not-a-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", route, resp.StatusCode)
		}
	}
}

func TestRoleMatrix(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		user, method, path string
		want               int
	}{
		{"duty", "GET", "/api/v1/alerts", 200},
		{"ops", "GET", "/api/v1/alerts", 200},
		{"agri", "GET", "/api/v1/alerts", 403},
		{"agri", "GET", "/api/v1/incidents", 403},
		{"agri", "GET", "/api/v1/agents", 403},
		{"agri", "GET", "/api/v1/cameras", 403},
		{"agri", "GET", "/api/v1/agencies", 200},
		{"agri", "GET", "/api/v1/egress", 403},
		{"duty", "GET", "/api/v1/users", 403},
		{"ops", "GET", "/api/v1/users", 403},
		{"admin", "GET", "/api/v1/users", 200},
		{"duty", "POST", "/api/v1/egress/1/retry", 403},
		{"ops", "POST", "/api/v1/egress/1/retry", 409},
		{"ops", "POST", "/api/v1/orders/" + "x" + "/transitions", 403},
		{"agri", "GET", "/api/v1/session", 200},
	} {
		if got := w.do(t, tc.user, tc.method, tc.path, map[string]any{}, nil); got != tc.want {
			t.Errorf("%s %s %s = %d, want %d", tc.user, tc.method, tc.path, got, tc.want)
		}
	}
}

func TestAgencySeesAndChangesOnlyItsOrders(t *testing.T) {
	w := newWorld(t)
	mine, theirs := w.orders["agri-brigade"], w.orders["river-police"]
	if mine == "" || theirs == "" {
		t.Fatalf("orders: %v", w.orders)
	}
	var list struct{ Orders []OrderView }
	if code := w.do(t, "agri", "GET", "/api/v1/orders?agency_id=river-police", nil, &list); code != 200 || len(list.Orders) != 1 || list.Orders[0].ID != mine {
		t.Fatalf("agri lists %d %+v; want only its own order", code, list.Orders)
	}
	if code := w.do(t, "duty", "GET", "/api/v1/orders", nil, &list); code != 200 || len(list.Orders) != 2 {
		t.Fatalf("officer lists %d orders", len(list.Orders))
	}
	for _, p := range []string{"", "/snapshot.jpg", "/photos"} {
		if code := w.do(t, "agri", "GET", "/api/v1/orders/"+theirs+p, nil, nil); code != 404 {
			t.Errorf("agri GET another agency's order%s = %d, want 404", p, code)
		}
	}
	var one struct {
		Order      OrderView
		Incident   store.Incident
		FirstAlert map[string]any `json:"first_alert"`
		Deliveries []any
	}
	if code := w.do(t, "agri", "GET", "/api/v1/orders/"+mine, nil, &one); code != 200 || one.Incident.ID == "" || one.FirstAlert["snapshot_url"] != "/api/v1/orders/"+mine+"/snapshot.jpg" || one.Deliveries != nil {
		t.Fatalf("agri GET its order = %d %+v", code, one)
	}
	if code := w.do(t, "agri", "GET", "/api/v1/orders/"+mine+"/snapshot.jpg", nil, nil); code != 200 {
		t.Fatalf("agri snapshot of its order = %d", code)
	}
	accept := TransitionRequest{Action: order.ActionAccept, ExpectedVersion: one.Order.Version, CommandID: "c1"}
	if code := w.do(t, "agri", "POST", "/api/v1/orders/"+theirs+"/transitions", accept, nil); code != 404 {
		t.Fatalf("agri accepts another agency's order: %d, want 404", code)
	}
	cancel := TransitionRequest{Action: order.ActionCancel, ExpectedVersion: one.Order.Version, CommandID: "c0", Reason: "x"}
	if code := w.do(t, "agri", "POST", "/api/v1/orders/"+mine+"/transitions", cancel, nil); code != 403 {
		t.Fatalf("agri cancels its order: %d, want 403", code)
	}
	var got struct{ Order OrderView }
	if code := w.do(t, "agri", "POST", "/api/v1/orders/"+mine+"/transitions", accept, &got); code != 200 || got.Order.State != order.StateAccepted {
		t.Fatalf("agri accepts its order: %d %+v", code, got.Order)
	}
	audit, err := w.st.AuditOf(context.Background(), "order", mine)
	if err != nil || audit[len(audit)-1].Actor != "agency:agri-brigade/agri" {
		t.Fatalf("audit actor: %+v %v", audit, err)
	}

	// A photo of the order, stored as its evidence; another agency cannot add one.
	upload := func(user, id string, data []byte) int {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("photo", "p.jpg")
		fw.Write(data)
		mw.WriteField("note", "现场照片")
		mw.Close()
		req, _ := http.NewRequest("POST", w.srv.URL+"/api/v1/orders/"+id+"/photos", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+w.tok[user])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	jpeg := append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 100)...)
	if code := upload("agri", mine, jpeg); code != 201 {
		t.Fatalf("photo upload = %d", code)
	}
	if code := upload("agri", theirs, jpeg); code != 404 {
		t.Fatalf("photo to another agency's order = %d", code)
	}
	if code := upload("agri", mine, []byte("#!/bin/sh\n")); code != 415 {
		t.Fatalf("a script as a photo = %d, want 415", code)
	}
	var photos struct {
		Photos []struct {
			store.OrderPhoto
			URL string
		}
	}
	if code := w.do(t, "duty", "GET", "/api/v1/orders/"+mine+"/photos", nil, &photos); code != 200 || len(photos.Photos) != 1 || photos.Photos[0].Note != "现场照片" {
		t.Fatalf("photos = %d %+v", code, photos)
	}
	req, _ := http.NewRequest("GET", w.srv.URL+photos.Photos[0].URL, nil)
	req.Header.Set("Authorization", "Bearer "+w.tok["agri"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(b, jpeg) || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("photo GET = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestSessionLoginCSRFAndLogout(t *testing.T) {
	w := newWorld(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	login := func(pw string) (*http.Response, sessionView) {
		b, _ := json.Marshal(map[string]string{"username": "duty", "password": pw})
		resp, err := c.Post(w.srv.URL+"/api/v1/session", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sv sessionView
		_ = json.NewDecoder(resp.Body).Decode(&sv)
		return resp, sv
	}
	resp, sv := login("correct horse battery")
	if resp.StatusCode != 200 || sv.User.Username != "duty" || sv.CSRFToken == "" || sv.User.PasswordHash != "" {
		t.Fatalf("login = %d %+v", resp.StatusCode, sv)
	}
	ck := resp.Cookies()[0]
	if ck.Name != SessionCookie || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", ck)
	}
	if r, _ := c.Get(w.srv.URL + "/api/v1/alerts"); r.StatusCode != 200 {
		t.Fatalf("GET with the session = %d", r.StatusCode)
	}
	tr := func(hdr map[string]string) int {
		req, _ := http.NewRequest("POST", w.srv.URL+"/api/v1/orders/"+w.orders["agri-brigade"]+"/transitions",
			strings.NewReader(`{"action":"escalate","expected_version":2,"command_id":"e1"}`))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		r, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if code := tr(nil); code != 403 {
		t.Fatalf("POST with the session but no CSRF token = %d, want 403", code)
	}
	if code := tr(map[string]string{CSRFHeader: sv.CSRFToken, "Origin": "https://evil.example"}); code != 403 {
		t.Fatalf("POST from another origin = %d, want 403", code)
	}
	if code := tr(map[string]string{CSRFHeader: sv.CSRFToken, "Origin": w.srv.URL}); code != 200 {
		t.Fatalf("POST with the CSRF token = %d, want 200", code)
	}
	req, _ := http.NewRequest("DELETE", w.srv.URL+"/api/v1/session", nil)
	req.Header.Set(CSRFHeader, sv.CSRFToken)
	if r, err := c.Do(req); err != nil || r.StatusCode != 204 {
		t.Fatalf("logout: %v", err)
	}
	req, _ = http.NewRequest("GET", w.srv.URL+"/api/v1/alerts", nil)
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: ck.Value})
	if r, _ := http.DefaultClient.Do(req); r.StatusCode != 401 {
		t.Fatalf("the cookie after sign-out = %d, want 401", r.StatusCode)
	}
}

func TestLoginIsRateLimited(t *testing.T) {
	w := newWorld(t)
	try := func(user, pw string) int {
		b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
		resp, err := http.Post(w.srv.URL+"/api/v1/session", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := try("nobody", "whatever"); code != 401 {
		t.Fatalf("unknown user = %d", code)
	}
	for i := 1; i < LoginFailures; i++ {
		if code := try("duty", "wrong password"); code != 401 {
			t.Fatalf("failure %d = %d", i, code)
		}
	}
	// Locked out now, even with the right password.
	if code := try("duty", "correct horse battery"); code != 429 {
		t.Fatalf("after %d failures = %d, want 429", LoginFailures, code)
	}
}

func TestOpenAPIListsExactlyTheRoutes(t *testing.T) {
	w := newWorld(t)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if code := w.do(t, "", "GET", "/api/v1/openapi.json", nil, &doc); code != 200 || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %d %q", code, doc.OpenAPI)
	}
	var documented, registered []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	// The world registers every optional route but the agent commands;
	// add them as the app does.
	registered = append(w.api.Routes(), "POST /api/v1/agents/{agent_id}/commands")
	sort.Strings(documented)
	sort.Strings(registered)
	if !slices.Equal(documented, registered) {
		t.Fatalf("openapi.json and the routes differ:\ndocumented %q\nregistered %q", documented, registered)
	}
}

func TestEventsStreamAndAgencyFilter(t *testing.T) {
	w := newWorld(t)
	open := func(user string) (*bufio.Reader, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", w.srv.URL+"/api/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+w.tok[user])
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %v %v", err, resp)
		}
		return bufio.NewReader(resp.Body), func() { cancel(); resp.Body.Close() }
	}
	next := func(r *bufio.Reader) (string, string) {
		var ev, data string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				ev = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && ev != "":
				return ev, data
			}
		}
	}
	duty, stop1 := open("duty")
	defer stop1()
	river, stop2 := open("river")
	defer stop2()
	// Poll until both streams are subscribed, then publish.
	deadline := time.Now().Add(10 * time.Second)
	for w.hub.Clients() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w.hub.Publish(events.Event{Type: events.TypeOrder, AgencyID: "agri-brigade", Data: json.RawMessage(`{"id":"o-agri"}`)})
	w.hub.Publish(events.Event{Type: events.TypeOrder, AgencyID: "river-police", Data: json.RawMessage(`{"id":"o-river"}`)})
	if ev, data := next(duty); ev != "order" || data != `{"id":"o-agri"}` {
		t.Fatalf("officer's first event: %s %s", ev, data)
	}
	if ev, data := next(river); ev != "order" || data != `{"id":"o-river"}` {
		t.Fatalf("river-police's first event: %s %s (another agency's order leaked?)", ev, data)
	}
}

func TestCamerasCarryGeoAndStreamState(t *testing.T) {
	w := newWorld(t)
	var out struct{ Cameras []cameraView }
	if code := w.do(t, "duty", "GET", "/api/v1/cameras", nil, &out); code != 200 || len(out.Cameras) != 1 || out.Cameras[0].Geo == nil || out.Cameras[0].State != "unknown" {
		t.Fatalf("cameras = %d %+v", code, out)
	}
}
