package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/testenv"
)

// opsAgentConfig: one file camera played at its own pace, HOG person
// detection (no model file; cheap at 2 fps), an intrusion zone over the
// whole picture so that events and detections have series.
const opsAgentConfig = `agent:
  id: hm-lixin-01
mqtt:
  url: tcp://127.0.0.1:%d
  username: hm-lixin-01
  password: xueliang-demo-2026
http:
  addr: 127.0.0.1:%d
outbox:
  path: %s
cameras:
  - id: cam-ops
    url: file://%s
    realtime: true
    detect_fps: 2
    zones:
      - name: all
        polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]
    scenarios:
      - type: intrusion
        zones: [all]
        min_duration: 1s
log:
  format: text
`

// TestPrometheusScrapesAgentAndCentral is issue 6's "done when": a real
// agent and central, their /metrics checked by promtool, the dashboards'
// metric names found in them, and the Debian prometheus binary scraping
// both every second for about 30 s, queried through its HTTP API.
func TestPrometheusScrapesAgentAndCentral(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binaries and Prometheus for about 40 s")
	}
	promtool := testenv.Tool(t, "promtool", "prometheus")
	prometheus := testenv.Tool(t, "prometheus", "prometheus")
	bin := buildBinaries(t)
	video := testenv.Video(t)
	root := testenv.RepoRoot(t)
	work := t.TempDir()
	broker, httpPort, agentPort, promPort := freePort(t), freePort(t), freePort(t), freePort(t)

	central := start(t, "xl-central", []string{
		fmt.Sprintf("XL_BROKER_LISTEN=127.0.0.1:%d", broker), fmt.Sprintf("XL_HTTP_ADDR=127.0.0.1:%d", httpPort),
		"XL_STORE_PATH=" + filepath.Join(work, "central.db"), "XL_LOG_FORMAT=text",
	}, filepath.Join(bin, "xl-central"), "serve", "--config", filepath.Join(root, "configs", "central.yaml"))
	centralURL := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitFor(t, central, 30*time.Second, "central ready", func() bool { return httpStatus(centralURL+"/readyz") == 200 })

	cfgPath := filepath.Join(work, "agent.yaml")
	cfg := fmt.Sprintf(opsAgentConfig, broker, agentPort, filepath.Join(work, "outbox.db"), video)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := start(t, "xl-agent", nil, filepath.Join(bin, "xl-agent"), "run", "--config", cfgPath)
	agentURL := fmt.Sprintf("http://127.0.0.1:%d", agentPort)
	waitFor(t, agent, 60*time.Second, "the agent analysing, detecting and raising an event", func() bool {
		m := scrape(agentURL)
		return strings.Contains(m, "xl_agent_frames_analysed_total{") && strings.Contains(m, "xl_agent_detect_seconds_bucket{") &&
			strings.Contains(m, "xl_agent_events_total{")
	})

	// promtool check metrics: Prometheus' naming and exposition rules.
	exposed := map[string]string{"xl-agent": scrape(agentURL), "xl-central": scrape(centralURL)}
	for name, text := range exposed {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("promtool check metrics on %s: %v\n%s", name, err, out)
		}
	}

	// Every metric a dashboard or alerting rule queries is one the binaries expose.
	names := map[string]bool{}
	for _, text := range exposed {
		for line := range strings.Lines(text) {
			if line == "" || line[0] == '#' {
				continue
			}
			names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	used := dashboardMetrics(t, root)
	for m, where := range rulesMetrics(t, root) {
		used[m] = append(used[m], where...)
	}
	var missing []string
	for m, where := range used {
		if !names[m] {
			missing = append(missing, m+" ("+strings.Join(where, ", ")+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("queried but not exposed by a running agent or central:\n  %s", strings.Join(missing, "\n  "))
	}

	// The real Prometheus scrapes both every second, with the xl rules loaded.
	promDir := filepath.Join(work, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "xl-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(promDir, "xl-rules.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	promCfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [xl-rules.yml]
scrape_configs:
  - job_name: xl-central
    static_configs: [{targets: ["127.0.0.1:%d"]}]
  - job_name: xl-agent
    static_configs: [{targets: ["127.0.0.1:%d"], labels: {agent_id: hm-lixin-01}}]
`, httpPort, agentPort)
	if err := os.WriteFile(filepath.Join(promDir, "prometheus.yml"), []byte(promCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := start(t, "prometheus", nil, prometheus, "--config.file="+filepath.Join(promDir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(promDir, "data"), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort),
		"--log.level=warn")
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/", promPort)
	q := func(expr string) []promSample { return promQuery(api, expr) }
	// About 30 s: until Prometheus holds 28 scrapes of each target.
	waitFor(t, prom, 60*time.Second, "28 scrapes of the agent and of central", func() bool {
		r := q(`min(count_over_time(up[1m]))`)
		return len(r) == 1 && r[0].Value >= 28
	})

	for _, c := range []struct {
		expr string
		ok   func(float64) bool
		want string
	}{
		{`up{job="xl-agent"}`, eq(1), "1"},
		{`up{job="xl-central"}`, eq(1), "1"},
		{`increase(xl_agent_frames_analysed_total{camera_id="cam-ops"}[20s])`, gt(10), "> 10 (2 fps)"},
		{`xl_agent_stream_up{camera_id="cam-ops"}`, eq(1), "1"},
		{`xl_agent_mqtt_connected`, eq(1), "1"},
		{`xl_agent_outbox_messages`, func(v float64) bool { return v >= 0 && v < 1000 }, "a small backlog"},
		{`xl_agent_build_info{agent_id="hm-lixin-01"}`, eq(1), "1"},
		{`process_resident_memory_bytes{job="xl-agent"}`, gt(1 << 20), "> 1 MiB"},
		{`rate(process_cpu_seconds_total{job="xl-agent"}[20s])`, gt(0), "> 0"},
		{`xl_central_agents_online`, eq(1), "1"},
		{`xl_central_mqtt_connected`, eq(1), "1"},
		{`xl_central_alerts_ingested_total`, gt(0), "> 0 (the agent's intrusion alerts)"},
		{`xl_central_alert_detect_to_stored_seconds_count`, gt(0), "> 0"},
		{`count({__name__=~"xl_central_.+"})`, gt(40), "> 40 series"},
		{`count({__name__=~"xl_agent_.+"})`, gt(40), "> 40 series"},
		{`count(ALERTS{alertname=~"XLAgentDown|XLCentralDown|XLStreamDown"}) or vector(0)`, eq(0), "0 (nothing is down)"},
	} {
		r := q(c.expr)
		if len(r) != 1 || !c.ok(r[0].Value) {
			t.Errorf("%s = %+v, want one series %s", c.expr, r, c.want)
		}
	}
	// The rules load and evaluate without error against the real series.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Name  string
				Rules []struct{ Name, Health, LastError string }
			}
		}
	}
	if err := getJSON(api+"rules", &rulesResp); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d rules loaded", n)
	}
}

func eq(w float64) func(float64) bool { return func(v float64) bool { return v == w } }
func gt(w float64) func(float64) bool { return func(v float64) bool { return v > w } }

func httpStatus(u string) int {
	resp, err := http.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func scrape(base string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type promSample struct {
	Labels map[string]string
	Value  float64
}

// promQuery runs an instant query; nil on any error (the caller polls or
// reports).
func promQuery(api, expr string) []promSample {
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := getJSON(api+"query?query="+url.QueryEscape(expr), &r); err != nil || r.Status != "success" {
		return nil
	}
	var out []promSample
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil
		}
		out = append(out, promSample{Labels: s.Metric, Value: v})
	}
	return out
}

// metricName finds metric names in PromQL: xl_… and process_… identifiers.
var metricName = regexp.MustCompile(`\b(?:xl|process)_[a-z0-9_]+\b`)

// dashboardMetrics returns the metric names each Grafana dashboard's
// panels and variables query, with where they are used.
func dashboardMetrics(t *testing.T, root string) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "deploy", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) < 3 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	used := map[string][]string{}
	for _, f := range files {
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
			Templating struct {
				List []struct {
					Name  string
					Query any
				}
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range metricName.FindAllString(tg.Expr, -1) {
					used[m] = append(used[m], filepath.Base(f)+": "+p.Title)
				}
			}
		}
		for _, v := range d.Templating.List {
			q, _ := json.Marshal(v.Query)
			for _, m := range metricName.FindAllString(string(q), -1) {
				used[m] = append(used[m], filepath.Base(f)+": $"+v.Name)
			}
		}
	}
	return used
}

// rulesMetrics returns the metric names the alerting rules query.
func rulesMetrics(t *testing.T, root string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "xl-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string][]string{}
	for line := range strings.Lines(string(b)) {
		if i := strings.Index(line, "expr:"); i >= 0 {
			for _, m := range metricName.FindAllString(line[i:], -1) {
				used[m] = append(used[m], "xl-rules.yml")
			}
		}
	}
	return used
}
