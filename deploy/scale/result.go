package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/xueliang/xl/internal/loadgen"
)

// result is one step's measurements; latencies in milliseconds, CPU in
// cores (CPU seconds per second), memory in MiB (proportional set size,
// the window's maximum).
type result struct {
	Step             string             `json:"step"`
	Cameras          int                `json:"cameras"`
	Agents           int                `json:"agents"`
	Replicas         int                `json:"replicas"`
	Rate             string             `json:"rate"`
	LoadBefore       string             `json:"load_before"`
	LoadAfter        string             `json:"load_after"`
	ConnectSeconds   float64            `json:"connect_s"`
	WindowSeconds    float64            `json:"window_s"`
	Held             float64            `json:"connections_held"`
	AgentsOnline     float64            `json:"agents_online_at_central"`
	Offered          float64            `json:"alerts_per_s_sent"`
	Stored           float64            `json:"alerts_per_s_stored"`
	Dropped          float64            `json:"alerts_dropped_by_loadgen"`
	StoredP50        float64            `json:"detect_to_stored_p50_ms"`
	StoredP99        float64            `json:"detect_to_stored_p99_ms"`
	StoredHistP50    float64            `json:"detect_to_stored_hist_p50_ms"`
	StoredHistP99    float64            `json:"detect_to_stored_hist_p99_ms"`
	DispatchP50      float64            `json:"detect_to_dispatched_p50_ms"`
	DispatchP99      float64            `json:"detect_to_dispatched_p99_ms"`
	DispatchBacklog  int64              `json:"dispatch_backlog_at_end"`
	AlertsTotal      int64              `json:"alerts_total"`
	Incidents        int64              `json:"incidents"`
	Orders           int64              `json:"orders"`
	CPU              map[string]float64 `json:"cpu_cores"`
	RSSMiB           map[string]float64 `json:"rss_mib"`
	PostgresBackends int                `json:"postgres_backends"`
	Loadgen          loadgen.Summary    `json:"loadgen"`
	Err              string             `json:"error,omitempty"`
}

// saturated: central no longer keeps up (stores under 90 % of what is
// sent, or alerts wait seconds to be stored or dispatched).
func (r result) saturated() bool {
	return r.Err != "" || r.Stored < 0.9*r.Offered || r.StoredP99 > 2000 || r.DispatchP99 > 10000 ||
		float64(r.DispatchBacklog) > 5*r.Offered
}

func (r result) print() {
	fmt.Printf("   held %.0f (central sees %.0f online), sent %.0f/s, stored %.0f/s; detect→stored p50 %.0f ms p99 %.0f ms; detect→dispatched p50 %s p99 %s; backlog %d; %d incidents, %d orders\n",
		r.Held, r.AgentsOnline, r.Offered, r.Stored, r.StoredP50, r.StoredP99, ms(r.DispatchP50), ms(r.DispatchP99), r.DispatchBacklog, r.Incidents, r.Orders)
	fmt.Printf("   cpu %s; memory %s; load %s → %s\n", components(r.CPU, "%.2f"), components(r.RSSMiB, "%.0f MiB"), r.LoadBefore, r.LoadAfter)
}

func ms(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f ms", v)
}

func components(m map[string]float64, format string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+fmt.Sprintf(format, m[k]))
	}
	return strings.Join(parts, ", ")
}

// sumCentral is the centrals' total (all replicas).
func sumCentral(m map[string]float64) float64 {
	s := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "central-") {
			s += v
		}
	}
	return s
}

func table(rs []result) string {
	var b strings.Builder
	b.WriteString("| step | cameras | connections held | centrals | alerts/s sent → stored | detect→stored p50 / p99 | detect→dispatched p50 / p99 | CPU cores: mosquitto / central(s) / postgres / loadgen | memory (PSS) MiB: mosquitto / central(s) / postgres / loadgen | load |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		if r.Err != "" {
			fmt.Fprintf(&b, "| %s | %d | – | %d | failed: %s | | | | | |\n", r.Step, r.Cameras, r.Replicas, strings.ReplaceAll(r.Err, "\n", " "))
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %.0f | %d | %.0f → %.0f | %.0f / %.0f ms | %s / %s | %.2f / %.2f / %.2f / %.2f | %.0f / %.0f / %.0f / %.0f | %s |\n",
			r.Step, r.Cameras, r.Held, r.Replicas, r.Offered, r.Stored, r.StoredP50, r.StoredP99, ms(r.DispatchP50), ms(r.DispatchP99),
			r.CPU["mosquitto"], sumCentral(r.CPU), r.CPU["postgres"], r.CPU["loadgen"],
			r.RSSMiB["mosquitto"], sumCentral(r.RSSMiB), r.RSSMiB["postgres"], r.RSSMiB["loadgen"], r.LoadBefore)
	}
	return b.String()
}

func writeResults(dir string, rs []result) error {
	md := fmt.Sprintf("# xl scale run, %s\n\n%s\nMachine: %d CPUs (load average before each step in the last column).\n",
		time.Now().UTC().Format(time.RFC3339), table(rs), numCPU())
	if err := os.WriteFile(filepath.Join(dir, "scale.md"), []byte(md), 0o644); err != nil {
		return err
	}
	j, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "scale.json"), j, 0o644)
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}
