package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkTransport measures the whole path with real processes: several
// `xl-agent selftest` processes write alerts through their fsync'd outboxes
// as fast as they can, and xl-central stores them. It reports sustained
// alerts per second into central's SQLite and the latency from the agent's
// publish call (the alert's detected_at, taken just before it is written to
// the outbox) to the row stored at central, through the embedded broker and
// through Mosquitto. Run with -benchtime=1x: each iteration sends
// benchAlerts alerts.
//
// throughput: 8 agents write batches of 100 alerts per fsync as fast as
// they can (many edge boxes at once, simulated on one machine whose single
// disk would otherwise cap the agents, not central).
// latency: 2 agents each raise one alert every 4 ms, fsync'd one by one as a
// real agent does; the latency is that of an unsaturated system.
func BenchmarkTransport(b *testing.B) {
	for _, broker := range []string{"embedded", "mosquitto"} {
		for _, mode := range []benchMode{
			{name: "throughput", agents: 8, batch: 100, interval: "0"},
			{name: "latency", agents: 2, batch: 1, interval: "4ms"},
		} {
			b.Run(broker+"/"+mode.name, func(b *testing.B) {
				for b.Loop() {
					runTransportBench(b, broker, mode)
				}
			})
		}
	}
}

type benchMode struct {
	name          string
	agents, batch int
	interval      string
}

const benchAlerts = 10000

func runTransportBench(b *testing.B, broker string, mode benchMode) {
	benchAgents := mode.agents
	bin, work := buildBinaries(b), b.TempDir()
	// Eight agent accounts (one password; its bcrypt hash reused).
	hash := "$2a$10$QDDrCTzJzI1ffCHidsPHtOsEd7HgFY4//tSBjDPRuWgutGH2ND73u" // xueliang-demo-2026
	cfg := "broker:\n  users:\n"
	for i := range benchAgents {
		cfg += fmt.Sprintf("    - {username: bench-%d, password_hash: %q, role: agent}\n", i, hash)
	}
	cfg += "log:\n  level: warn\n"
	centralCfg := filepath.Join(work, "central.yaml")
	if err := os.WriteFile(centralCfg, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	var brokerURL string
	env := []string{}
	if broker == "embedded" {
		port := freePort(b)
		brokerURL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
		env = append(env, fmt.Sprintf("XL_BROKER_LISTEN=127.0.0.1:%d", port))
	} else {
		m := startMosquitto(b, work)
		for i := range benchAgents {
			if out, err := execCombined("mosquitto_passwd", "-b", filepath.Join(work, "xl.passwd"), fmt.Sprintf("bench-%d", i), "xueliang-demo-2026"); err != nil {
				b.Fatalf("mosquitto_passwd: %v %s", err, out)
			}
		}
		m.stop(b) // reload the password file
		m.start(b)
		brokerURL = m.url
		env = append(env, "XL_BROKER_ENABLED=false", "XL_MQTT_URL="+m.url, "XL_MQTT_USERNAME=xl-central", "XL_MQTT_PASSWORD=central-test-password")
	}
	c := newCentral(b, bin, work, env...)
	c.p = start(b, "xl-central", c.env, filepath.Join(bin, "xl-central"), "serve", "--config", centralCfg)
	waitFor(b, c.p, 30*time.Second, "central ready", func() bool {
		resp, err := http.Get(c.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	grantAPI(b, bin, c.env, centralCfg, c.base)

	startAt := time.Now()
	var agents []*agentRun
	for i := range benchAgents {
		dir := filepath.Join(work, fmt.Sprintf("agent-%d", i))
		os.MkdirAll(dir, 0o700)
		body := fmt.Sprintf(selftestConfig, brokerURL, filepath.Join(dir, "outbox.db"))
		body = replaceAll(body, "hm-lixin-01", fmt.Sprintf("bench-%d", i))
		body = replaceAll(body, "level: debug", "level: warn")
		path := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
		agents = append(agents, startSelftest(b, bin, path, fmt.Sprintf("agent-%d", i),
			"--count", strconv.Itoa(benchAlerts/benchAgents), "--cameras", "4", "--batch", strconv.Itoa(mode.batch), "--interval", mode.interval))
	}
	for _, a := range agents {
		waitAgentDrained(b, a, 5*time.Minute)
	}
	var recs []struct {
		DetectedAt time.Time `json:"detected_at"`
		ReceivedAt time.Time `json:"received_at"`
		Seq        int64     `json:"seq"`
	}
	waitFor(b, c.p, time.Minute, "all alerts stored", func() bool {
		recs = recs[:0]
		before := ""
		for {
			resp, err := apiGet(c.base + "/api/v1/alerts?type=selftest&limit=1000" + before)
			if err != nil {
				return false
			}
			var page struct {
				Alerts []struct {
					DetectedAt time.Time `json:"detected_at"`
					ReceivedAt time.Time `json:"received_at"`
					Seq        int64     `json:"seq"`
				}
				Next string
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil {
				return false
			}
			recs = append(recs, page.Alerts...)
			if page.Next == "" {
				break
			}
			before = "&before=" + page.Next
		}
		return len(recs) >= benchAlerts
	})
	var lat []time.Duration
	var first, last time.Time
	for _, r := range recs {
		lat = append(lat, r.ReceivedAt.Sub(r.DetectedAt))
		if r.ReceivedAt.After(last) {
			last = r.ReceivedAt
		}
		if first.IsZero() || r.ReceivedAt.Before(first) {
			first = r.ReceivedAt
		}
	}
	sustained := float64(len(recs)-1) / last.Sub(first).Seconds()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	elapsed := last.Sub(startAt)
	b.ReportMetric(sustained, "alerts/s")
	b.ReportMetric(float64(len(recs))/elapsed.Seconds(), "alerts/s-incl-startup")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(benchAgents), "agents")
	b.Logf("%s broker, %s: %d alerts from %d agents: sustained %.0f alerts/s (first to last stored), %.0f alerts/s including agent start-up (%s); latency p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		broker, mode.name, len(recs), benchAgents, sustained, float64(len(recs))/elapsed.Seconds(), elapsed.Round(time.Millisecond), pct(0.5), pct(0.99),
		float64(lat[len(lat)-1].Microseconds())/1000)
}
