package app

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/wire"
)

// shippedWithStore is configs/central.yaml with the store in dir.
func shippedWithStore(t testing.TB, dir string) (cfgPath, dbPath string) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "..", "configs", "central.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dbPath = filepath.Join(dir, "c.db")
	s := strings.Replace(string(body), "path: data/xl-central.db", "path: "+dbPath, 1)
	cfgPath = filepath.Join(dir, "central.yaml")
	if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dbPath
}

func run(args ...string) (string, error) {
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	cfgPath, dbPath := shippedWithStore(t, dir)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	r, err := routing.New(&cfg.Routing)
	if err != nil {
		t.Fatal(err)
	}
	d := dispatch.New(st, r, dispatch.Options{})
	now := time.Now().UTC()
	a := &wire.Alert{AlertID: wire.NewULID(now), EventID: "e", Phase: wire.PhaseStart, AgentID: "hm-lixin-01",
		CameraID: "lixin-sluice-east", Type: "illegal_fishing", Severity: 2, Zone: "lawn", StartedAt: now, DetectedAt: now}
	if _, err := st.InsertAlert(ctx, a, now); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Dispatch(ctx, a); err != nil || len(res.Orders) != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	st.Close()

	out, err := run("audit", "verify", "--config", cfgPath)
	if err != nil || !strings.Contains(out, "3 entries verify") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit SET after = replace(after, 'agri-brigade', 'someone') WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = run("audit", "verify", "--config", cfgPath)
	if err == nil || !strings.Contains(err.Error(), "seq 2") {
		t.Fatalf("tampering not reported at seq 2: %v", err)
	}
}

func TestRouteTestCommand(t *testing.T) {
	dir := t.TempDir()
	cfgPath, _ := shippedWithStore(t, dir)
	alert := filepath.Join(dir, "alert.json")
	body := `{"alert_id":"01JD000000000000000000000A","camera_id":"lixin-sluice-east","type":"illegal_fishing","severity":2,"zone":"lawn","detected_at":"2026-11-21T12:00:00Z"}`
	if err := os.WriteFile(alert, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run("route", "test", "--config", cfgPath, "--alert", alert)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rule:        illegal-fishing", "lead:        agri-brigade", "support:     river-police",
		"dispatch:    auto", "place: HM-ZY-QZ-03 (camera lixin-sluice-east)"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if _, err := run("route", "test", "--config", cfgPath); err == nil {
		t.Fatal("no --alert accepted")
	}
}

// route replay: alerts stored yesterday routed with a proposal that sends
// illegal fishing to the river police alone; intrusions do not change.
func TestRouteReplayCommand(t *testing.T) {
	dir := t.TempDir()
	cfgPath, dbPath := shippedWithStore(t, dir)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var alerts []*wire.Alert
	for i, typ := range []string{"illegal_fishing", "illegal_fishing", "intrusion", "illegal_fishing"} {
		at := now.Add(-time.Duration(10-i) * time.Hour)
		if i == 3 {
			at = now.Add(-48 * time.Hour) // before --since
		}
		alerts = append(alerts, &wire.Alert{AlertID: wire.NewULID(at), EventID: fmt.Sprintf("e%d", i), Phase: wire.PhaseStart,
			AgentID: "hm-lixin-01", CameraID: "lixin-sluice-east", Type: typ, Severity: 2, Zone: "lawn", StartedAt: at, DetectedAt: at})
	}
	if _, err := st.InsertAlerts(ctx, alerts, now); err != nil {
		t.Fatal(err)
	}
	st.Close()
	body, _ := os.ReadFile(cfgPath)
	proposed := strings.Replace(string(body), "result: {lead: agri-brigade, support: [river-police], reroute: [qz-enforcement], dispatch: auto}",
		"result: {lead: river-police, dispatch: auto}", 1)
	if proposed == string(body) {
		t.Fatal("the shipped illegal-fishing rule changed; update this test")
	}
	propPath := filepath.Join(dir, "proposed.yaml")
	if err := os.WriteFile(propPath, []byte(proposed), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run("route", "replay", "--config", cfgPath, "--proposed", propPath, "--since", "24h")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"now:      rule illegal-fishing → lead agri-brigade, support river-police, sla standard, auto",
		"proposed: rule illegal-fishing → lead river-police, sla standard, auto",
		"replayed 3 alerts of 2 cameras/types/zones", "2 alerts of 1 would route differently"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "intrusion/lawn") {
		t.Errorf("intrusion listed as changed:\n%s", out)
	}
	if _, err := run("route", "replay", "--config", cfgPath); err == nil {
		t.Fatal("no --proposed accepted")
	}
}
