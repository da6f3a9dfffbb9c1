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
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/events"
	"github.com/xueliang/xl/internal/opshttp"
)

// raw sends body as it is, as user, and returns the status and error code.
func (w *world) raw(t *testing.T, user, method, path, contentType string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, w.srv.URL+path, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+w.tok[user])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error apiError `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.Code
}

// orderVersion reads an order's version through the API.
func (w *world) orderVersion(t *testing.T, id string) int64 {
	t.Helper()
	var v struct {
		Order struct {
			Version int64 `json:"version"`
		} `json:"order"`
	}
	if code := w.do(t, "duty", "GET", "/api/v1/orders/"+id, nil, &v); code != 200 {
		t.Fatalf("get order = %d", code)
	}
	return v.Order.Version
}

func photoForm(t *testing.T, data []byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("photo", "p.jpg")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(data)
	_ = mw.WriteField("note", "现场")
	_ = mw.Close()
	return mw.FormDataContentType(), &buf
}

func TestOversizedBodiesGet413AndStoreNothing(t *testing.T) {
	w := newWorld(t)
	w.api.WithLimits(Limits{MaxPhotoBytes: 64 << 10})
	id := w.orders["agri-brigade"]
	before := w.orderVersion(t, id)

	big := `{"action":"accept","expected_version":` + jsonInt(before) + `,"command_id":"c1","note":"` + strings.Repeat("长", MaxTransitionBytes/3+1) + `"}`
	if code, ec := w.raw(t, "agri", "POST", "/api/v1/orders/"+id+"/transitions", "application/json", strings.NewReader(big)); code != 413 || ec != "too_large" {
		t.Fatalf("oversized transition = %d %q, want 413 too_large", code, ec)
	}
	if v := w.orderVersion(t, id); v != before {
		t.Fatalf("order changed by a refused request: version %d → %d", before, v)
	}
	login := `{"username":"duty","password":"` + strings.Repeat("x", MaxJSONBytes) + `"}`
	if code, ec := w.raw(t, "", "POST", "/api/v1/session", "application/json", strings.NewReader(login)); code != 413 || ec != "too_large" {
		t.Fatalf("oversized sign-in = %d %q", code, ec)
	}
	user := `{"username":"big","role":"officer","display_name":"` + strings.Repeat("x", MaxJSONBytes) + `"}`
	if code, _ := w.raw(t, "admin", "POST", "/api/v1/users", "application/json", strings.NewReader(user)); code != 413 {
		t.Fatalf("oversized user = %d", code)
	}
	if _, err := w.st.GetUser(context.Background(), "big"); err == nil {
		t.Fatal("the user of a refused request was stored")
	}

	jpeg := append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 64<<10)...) // just over the limit
	ct, body := photoForm(t, jpeg)
	if code, ec := w.raw(t, "agri", "POST", "/api/v1/orders/"+id+"/photos", ct, body); code != 413 || ec != "too_large" {
		t.Fatalf("oversized photo = %d %q", code, ec)
	}
	huge := append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 1<<20)...) // over the form's limit too
	ct, body = photoForm(t, huge)
	if code, ec := w.raw(t, "agri", "POST", "/api/v1/orders/"+id+"/photos", ct, body); code != 413 || ec != "too_large" {
		t.Fatalf("photo larger than the form limit = %d %q", code, ec)
	}
	if list, err := w.st.OrderPhotos(context.Background(), id); err != nil || len(list) != 0 {
		t.Fatalf("photos stored from refused uploads: %d, %v", len(list), err)
	}
	ct, body = photoForm(t, jpeg[:60<<10])
	if code, _ := w.raw(t, "agri", "POST", "/api/v1/orders/"+id+"/photos", ct, body); code != 201 {
		t.Fatalf("photo within the limit = %d", code)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestJSONBodiesAreStrict(t *testing.T) {
	w := newWorld(t)
	id := w.orders["agri-brigade"]
	v := w.orderVersion(t, id)
	path := "/api/v1/orders/" + id + "/transitions"
	good := `{"action":"accept","expected_version":` + jsonInt(v) + `,"command_id":"c1"}`
	for name, body := range map[string]string{
		"trailing garbage":    good + ` {"action":"reject"}`,
		"trailing text":       good + `x`,
		"unknown field":       `{"action":"accept","expected_version":` + jsonInt(v) + `,"command_id":"c1","force":true}`,
		"empty":               ``,
		"array":               `[` + good + `]`,
		"wrong type":          `{"action":"accept","expected_version":"1","command_id":"c1"}`,
		"truncated":           good[:len(good)-1],
		"number out of range": `{"action":"accept","expected_version":1e40,"command_id":"c1"}`,
	} {
		if code, _ := w.raw(t, "agri", "POST", path, "application/json", strings.NewReader(body)); code != 400 && code != 422 {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}
	if got := w.orderVersion(t, id); got != v {
		t.Fatalf("a refused body changed the order: version %d → %d", v, got)
	}
	if code, _ := w.raw(t, "", "POST", "/api/v1/session", "application/json", strings.NewReader(`{"username":"duty","password":"correct horse battery","remember":true}`)); code != 400 {
		t.Fatalf("sign-in with an unknown field = %d, want 400", code)
	}
	if code, _ := w.raw(t, "agri", "POST", path, "application/json", strings.NewReader(good+"\n")); code != 200 {
		t.Fatalf("valid transition with a trailing newline = %d", code)
	}
}

// An event stream outlives the server's write timeout: each write gets its
// own deadline instead. The test waits past the write timeout before the
// event is published; with the server's deadline in force, the write fails.
func TestEventStreamOutlivesWriteTimeout(t *testing.T) {
	w := newWorld(t)
	const writeTimeout = 200 * time.Millisecond
	mux := http.NewServeMux()
	api := New(w.st, nil, slog.New(slog.DiscardHandler)).WithAuth(w.st, AuthOptions{}).WithEvents(w.hub).
		WithLimits(Limits{WriteTimeout: 10 * time.Second})
	api.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config = opshttp.NewServer(mux, opshttp.Limits{WriteTimeout: writeTimeout}, slog.New(slog.DiscardHandler))
	srv.Start()
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+w.tok["duty"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, resp)
	}
	defer resp.Body.Close()
	for w.hub.Clients() < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * writeTimeout) // past the server's write deadline
	w.hub.Publish(events.Event{Type: events.TypeAlert, Data: json.RawMessage(`{"late":true}`)})
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before the late event: %v", err)
		}
		if strings.TrimSpace(line) == `data: {"late":true}` {
			return
		}
	}
}

// Sign-ins with names no user can have count against the client's address
// only, so they cannot fill the limiter with long keys.
func TestLoginWithJunkNamesCountsTheAddressOnly(t *testing.T) {
	w := newWorld(t)
	for i := range LoginFailures {
		name := strings.Repeat("x", 100) + string(rune('a'+i)) // longer than any username
		if code, _ := w.raw(t, "", "POST", "/api/v1/session", "application/json",
			strings.NewReader(`{"username":"`+name+`","password":"p"}`)); code != 401 {
			t.Fatalf("junk name %d: %d, want 401", i, code)
		}
	}
	w.api.limiter.mu.Lock()
	n := len(w.api.limiter.fails)
	w.api.limiter.mu.Unlock()
	if n != 1 {
		t.Fatalf("limiter holds %d keys, want only the address", n)
	}
	if code, _ := w.raw(t, "", "POST", "/api/v1/session", "application/json",
		strings.NewReader(`{"username":"duty","password":"correct horse battery"}`)); code != 429 {
		t.Fatalf("after %d junk sign-ins the address is not locked out: %d", LoginFailures, code)
	}
}
