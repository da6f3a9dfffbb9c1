package web

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/xueliang/xl/central/internal/order"
)

// fuzzRoutes are the write endpoints FuzzAPIBodies posts to, each with the
// user who posts and the content type.
var fuzzRoutes = []struct {
	user, path, contentType string
}{
	{"", "/api/v1/session", "application/json"},
	{"admin", "/api/v1/users", "application/json"},
	{"admin", "/api/v1/users/duty/tokens", "application/json"},
	{"agri", "/api/v1/orders/{agri}/transitions", "application/json"},
	{"duty", "/api/v1/orders/{river}/transitions", "application/json"},
	{"agri", "/api/v1/orders/{agri}/photos", "multipart/form-data; boundary=xlfuzz"},
	{"ops", "/api/v1/egress/1/retry", "application/json"},
	{"agri", "/api/v1/orders/{river}/transitions", "application/json"},
}

// FuzzAPIBodies posts arbitrary bodies to central's write endpoints: the
// real handler on a real SQLite store, over loopback HTTP, signed in. Every
// answer is 2xx or 4xx with a JSON body (never 5xx, never a dropped
// connection, which is how net/http shows a handler's panic); afterwards
// the orders are readable in a valid state, versions never go back, an
// agency's request never touches another agency's order, and the audit
// chain verifies.
func FuzzAPIBodies(f *testing.F) {
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, `{"username":"duty","password":"correct horse battery"}`},
		{0, `{"username":"duty","password":"wrong"}`},
		{0, `{"username":"","password":""}`},
		{1, `{"username":"u1","role":"officer","password":"0123456789ab"}`},
		{1, `{"username":"a2","role":"agency","agency_id":"agri-brigade"}`},
		{1, `{"username":"a/b","role":"root"}`},
		{2, `{"name":"ci"}`},
		{3, `{"action":"accept","expected_version":1,"command_id":"c1"}`},
		{3, `{"action":"depart","expected_version":2,"command_id":"c2","note":"出发"}`},
		{3, `{"action":"resolve","expected_version":99,"command_id":"c3"}`},
		{3, `{"action":"cancel","expected_version":1,"command_id":"c4"}`},
		{4, `{"action":"cancel","expected_version":1,"command_id":"c5","reason":"duplicate"}`},
		{4, `{"action":"accept","expected_version":-1,"command_id":""}`},
		{5, "--xlfuzz\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0\x00\x10JFIF\r\n--xlfuzz\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnote\r\n--xlfuzz--\r\n"},
		{5, "--xlfuzz\r\nContent-Disposition: form-data; name=\"photo\"\r\n\r\n#!/bin/sh\r\n--xlfuzz--\r\n"},
		{5, "--xlfuzz\r\n\r\n"},
		{6, ``},
		{6, `{}`},
		{7, `{"action":"accept","expected_version":1,"command_id":"c6"}`},
		{3, `{"action":"accept","expected_version":1,"command_id":"c1"} trailing`},
		{3, `{"action":"accept","expected_version":1e999}`},
		{3, `[{"action":"accept"}]`},
		{3, `{"action":"accept","action":"reject","expected_version":1,"command_id":"c7"}`},
	} {
		f.Add(s.route, []byte(s.body))
	}
	w := newWorld(f)
	ctx := context.Background()
	ids := map[string]string{"{agri}": w.orders["agri-brigade"], "{river}": w.orders["river-police"]}
	versions := map[string]int64{}
	for _, id := range ids {
		rec, err := w.st.GetOrder(ctx, id)
		if err != nil {
			f.Fatal(err)
		}
		versions[id] = rec.Order.Version
	}
	client := &http.Client{}

	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := rt.path
		for k, v := range ids {
			path = string(bytes.ReplaceAll([]byte(path), []byte(k), []byte(v)))
		}
		req, err := http.NewRequest("POST", w.srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", rt.contentType)
		if rt.user != "" {
			req.Header.Set("Authorization", "Bearer "+w.tok[rt.user])
		}
		before := map[string]int64{}
		for _, id := range ids {
			rec, err := w.st.GetOrder(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			before[id] = rec.Order.Version
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: no answer (a panic in the handler?): %v", path, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 500 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, answer)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" && resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: %d with Content-Type %q", path, resp.StatusCode, ct)
		}

		for name, id := range ids {
			rec, err := w.st.GetOrder(ctx, id)
			if err != nil {
				t.Fatalf("order %s unreadable: %v", id, err)
			}
			if !slices.Contains(order.States(), rec.Order.State) {
				t.Fatalf("order %s in state %q", id, rec.Order.State)
			}
			if rec.Order.Version < versions[id] {
				t.Fatalf("order %s went back from version %d to %d", id, versions[id], rec.Order.Version)
			}
			versions[id] = rec.Order.Version
			if rt.user == "agri" && name == "{river}" && rec.Order.Version != before[id] {
				t.Fatalf("agency agri-brigade changed river-police's order: %s", answer)
			}
		}
		if _, _, err := w.st.VerifyAudit(ctx); err != nil {
			t.Fatalf("audit chain: %v", err)
		}
	})
}

// fuzzReads are the read endpoints FuzzAPIQueries calls; {x} is replaced
// by the fuzzed path element.
var fuzzReads = []struct{ user, path string }{
	{"duty", "/api/v1/alerts"},
	{"duty", "/api/v1/incidents"},
	{"duty", "/api/v1/orders"},
	{"agri", "/api/v1/orders"},
	{"ops", "/api/v1/egress"},
	{"duty", "/api/v1/alerts/{x}"},
	{"duty", "/api/v1/alerts/{x}/snapshot.jpg"},
	{"duty", "/api/v1/incidents/{x}"},
	{"agri", "/api/v1/orders/{x}"},
	{"agri", "/api/v1/orders/{agri}/photos/{x}"},
	{"duty", "/api/v1/cameras"},
}

// FuzzAPIQueries calls the read endpoints with arbitrary query strings and
// path elements: 2xx, 304 or 4xx, never 5xx, and an agency never sees
// another agency's order.
func FuzzAPIQueries(f *testing.F) {
	for _, s := range []struct {
		route      uint8
		query, arg string
	}{
		{0, "limit=10&camera_id=lixin-sluice-east&type=illegal_fishing&since=2026-11-21T20:00:00%2B08:00", ""},
		{0, "limit=0", ""},
		{0, "limit=1001", ""},
		{0, "before=1763726400000000000.1&limit=1", ""},
		{0, "before=-9223372036854775808.9223372036854775807", ""},
		{0, "since=9999-12-31T23:59:59.999999999Z", ""},
		{0, "agent_id=../../etc&type=DROP%20TABLE", ""},
		{1, "state=open&camera_id=x&limit=5", ""},
		{2, "agency_id=river-police&state=dispatched", ""},
		{3, "agency_id=river-police", ""},
		{4, "state=dead&order_id=x&limit=1000", ""},
		{4, "state=%00", ""},
		{5, "", "01JD3Z8Q6P4X2N7M5K9R1T0VWC"},
		{6, "", "%2e%2e"},
		{7, "", "1"},
		{8, "", "{river}"},
		{9, "", "9223372036854775807"},
		{9, "", "-1"},
		{10, "x=" + string(bytes.Repeat([]byte("a"), 2000)), ""},
	} {
		f.Add(s.route, s.query, s.arg)
	}
	w := newWorld(f)
	ids := map[string]string{"{agri}": w.orders["agri-brigade"], "{river}": w.orders["river-police"]}
	client := &http.Client{}
	f.Fuzz(func(t *testing.T, route uint8, query, arg string) {
		rt := fuzzReads[int(route)%len(fuzzReads)]
		if v, ok := ids[arg]; ok {
			arg = v
		}
		path := strings.ReplaceAll(rt.path, "{x}", url.PathEscape(arg))
		for k, v := range ids {
			path = strings.ReplaceAll(path, k, v)
		}
		u, err := url.Parse(w.srv.URL + path)
		if err != nil {
			return
		}
		u.RawQuery = query
		req, err := http.NewRequest("GET", u.String(), nil)
		if err != nil {
			return // not a request a client can send
		}
		req.Header.Set("Authorization", "Bearer "+w.tok[rt.user])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: no answer (a panic in the handler?): %v", u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 || resp.StatusCode < 200 {
			t.Fatalf("%s: %d %s", u, resp.StatusCode, body)
		}
		if rt.user == "agri" && resp.StatusCode == 200 && bytes.Contains(body, []byte(ids["{river}"])) {
			t.Fatalf("agency agri-brigade saw river-police's order: %s", body)
		}
	})
}
