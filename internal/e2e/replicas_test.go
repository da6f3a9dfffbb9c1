package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/xueliang/xl/internal/pgtest"
	"github.com/xueliang/xl/internal/testenv"
	"github.com/xueliang/xl/internal/wire"
)

// replica is one xl-central process of a replicated deployment.
type replica struct {
	name, base, cfg string
	env             []string
	p               *proc
}

func (r *replica) start(t *testing.T, bin string) {
	t.Helper()
	r.p = start(t, r.name, r.env, filepath.Join(bin, "xl-central"), "serve", "--config", r.cfg)
	waitFor(t, r.p, 30*time.Second, r.name+" ready", func() bool {
		resp, err := http.Get(r.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (r *replica) kill(t *testing.T) {
	t.Helper()
	_ = r.p.cmd.Process.Signal(syscall.SIGKILL)
	<-r.p.done
	r.p.done <- nil
}

func getJSON(url string, v any) error {
	resp, err := apiGet(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// startReplicas starts one xl-central replica per name with the
// configuration at cfgPath on the PostgreSQL at dsn, behind the Mosquitto m
// with a shared intake subscription, and gives the test API access to all.
func startReplicas(t *testing.T, bin, cfgPath, dsn string, m *mosquitto, names ...string) []*replica {
	t.Helper()
	var reps []*replica
	var bases []string
	for _, name := range names {
		port := freePort(t)
		r := &replica{name: "xl-central-" + name, base: fmt.Sprintf("http://127.0.0.1:%d", port), cfg: cfgPath,
			env: []string{fmt.Sprintf("XL_HTTP_ADDR=127.0.0.1:%d", port), "XL_LOG_FORMAT=text", "XL_BROKER_ENABLED=false",
				"XL_MQTT_URL=" + m.url, "XL_MQTT_USERNAME=xl-central", "XL_MQTT_PASSWORD=central-test-password",
				"XL_MQTT_CLIENT_ID=xl-central-" + name, "XL_INTAKE_SHARE_GROUP=xl-central",
				"XL_STORE_DRIVER=postgres", "XL_STORE_DSN=" + dsn}}
		reps, bases = append(reps, r), append(bases, r.base)
	}
	for _, r := range reps {
		r.start(t, bin)
	}
	grantAPI(t, bin, reps[0].env, cfgPath, bases...)
	return reps
}

// TestReplicasKillOneDuringBurst runs two xl-central replicas on one
// PostgreSQL schema behind Mosquitto with a shared subscription. An agent
// sends a burst of 1,000 illegal-fishing alerts from one camera; one
// replica is killed with SIGKILL halfway and started again. Every alert is
// stored and counted once, there is one incident with one order per
// agency, and each SLA card (blue, yellow, red, with a 2 s accept
// deadline) is raised once per order although both replicas run timers.
func TestReplicasKillOneDuringBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two centrals, Mosquitto and PostgreSQL for about 30 s")
	}
	bin, work := buildBinaries(t), t.TempDir()
	m := startMosquitto(t, work)
	dsn := pgtest.Schema(t)
	shipped, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "configs", "central.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(shipped), "{name: standard, accept: 5m,", "{name: standard, accept: 2s,", 1)
	if cfg == string(shipped) {
		t.Fatal("configs/central.yaml: the standard SLA profile changed; update this test")
	}
	cfgPath := filepath.Join(work, "central.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	reps := startReplicas(t, bin, cfgPath, dsn, m, "a", "b")
	a, b := reps[0], reps[1]

	o := mqtt.NewClientOptions().AddBroker(m.url).SetClientID("hm-lixin-01").SetUsername("hm-lixin-01").
		SetPassword("xueliang-demo-2026").SetCleanSession(false).SetAutoReconnect(true)
	agent := mqtt.NewClient(o)
	if tok := agent.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("agent connect: %v", tok.Error())
	}
	defer agent.Disconnect(100)
	const burst = 1000
	t0 := time.Now().UTC()
	send := func(from, to int) {
		var toks []mqtt.Token
		for i := from; i < to; i++ {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			al := &wire.Alert{Schema: wire.SchemaAlert, AlertID: wire.NewULID(at), EventID: "ev-burst", Phase: wire.PhaseUpdate,
				AgentID: "hm-lixin-01", CameraID: "lixin-sluice-east", Type: "illegal_fishing", Severity: 2, Zone: "lawn",
				StartedAt: t0, DetectedAt: at, PublishedAt: at}
			b, err := wire.Marshal(al)
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, agent.Publish(wire.AlertsTopic("hm-lixin-01"), 1, false, b))
		}
		for _, tok := range toks {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
		}
	}
	send(0, burst/2)
	a.kill(t) // mid-burst: whatever Mosquitto handed it and it had not acknowledged waits in its session
	send(burst/2, burst)
	a.start(t, bin) // the same client ID: its session's messages come to it now

	type incident struct {
		ID         string `json:"id"`
		AlertCount int    `json:"alert_count"`
	}
	var incs struct{ Incidents []incident }
	waitFor(t, b.p, 60*time.Second, "one incident with every alert", func() bool {
		return getJSON(b.base+"/api/v1/incidents", &incs) == nil && len(incs.Incidents) == 1 && incs.Incidents[0].AlertCount >= burst
	})
	if n := incs.Incidents[0].AlertCount; n != burst {
		t.Fatalf("incident counts %d alerts, want %d", n, burst)
	}
	var detail struct {
		Orders []struct {
			ID       string `json:"id"`
			AgencyID string `json:"agency_id"`
		}
	}
	if err := getJSON(b.base+"/api/v1/incidents/"+incs.Incidents[0].ID, &detail); err != nil {
		t.Fatal(err)
	}
	agencies := map[string]int{}
	for _, o := range detail.Orders {
		agencies[o.AgencyID]++
	}
	if len(detail.Orders) != 2 || agencies["agri-brigade"] != 1 || agencies["river-police"] != 1 {
		t.Fatalf("orders: %+v", detail.Orders)
	}
	// Nobody accepts: blue at 2 s, yellow at 3 s, red at 4 s, each once.
	for _, o := range detail.Orders {
		var view struct {
			Order struct {
				Card string `json:"card"`
			} `json:"order"`
			Deliveries []struct {
				Event    string `json:"event"`
				AgencyID string `json:"agency_id"`
			} `json:"deliveries"`
		}
		waitFor(t, b.p, 30*time.Second, "red card on "+o.AgencyID, func() bool {
			return getJSON(b.base+"/api/v1/orders/"+o.ID, &view) == nil && view.Order.Card == "red"
		})
		time.Sleep(time.Second) // time for a second firing, were there one
		if err := getJSON(b.base+"/api/v1/orders/"+o.ID, &view); err != nil {
			t.Fatal(err)
		}
		cards := 0
		for _, d := range view.Deliveries {
			if d.Event == wire.OrderCard && d.AgencyID == o.AgencyID {
				cards++
			}
		}
		if cards != 3 {
			t.Errorf("order of %s: %d card messages, want 3 (blue, yellow, red once each): %+v", o.AgencyID, cards, view.Deliveries)
		}
	}
	// Every alert stored once, through either replica.
	seen := map[string]bool{}
	before := ""
	for {
		var page struct {
			Alerts []struct {
				AlertID string `json:"alert_id"`
			}
			Next string
		}
		if err := getJSON(a.base+"/api/v1/alerts?type=illegal_fishing&limit=1000"+before, &page); err != nil {
			t.Fatal(err)
		}
		for _, al := range page.Alerts {
			if seen[al.AlertID] {
				t.Fatalf("alert %s listed twice", al.AlertID)
			}
			seen[al.AlertID] = true
		}
		if page.Next == "" {
			break
		}
		before = "&before=" + page.Next
	}
	if len(seen) != burst {
		t.Fatalf("%d alerts stored, want %d", len(seen), burst)
	}
	// The shared subscription split the burst: b stored only part of it.
	if n := metricValue(t, b.base, "xl_central_alerts_ingested_total"); n < 1 || n >= burst {
		t.Errorf("replica b stored %v of %d alerts: the replicas did not share the intake", n, burst)
	}
	out, err := execCombinedEnv(a.env, filepath.Join(bin, "xl-central"), "audit", "verify", "--config", cfgPath)
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

// metricValue is the value of an unlabelled metric on a central's /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
