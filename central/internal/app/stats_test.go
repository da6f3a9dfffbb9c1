package app

import (
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/wire"
)

// gather returns every sample of reg as "name{k=v,…}" → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

func TestStateGaugesReadTheStore(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStatsCollector(st, 0, slog.New(slog.DiscardHandler)))

	got := gather(t, reg)
	for _, k := range []string{"xl_central_orders{state=pending}", "xl_central_incidents{state=open}",
		"xl_central_active_orders{card=red}", "xl_central_egress_messages{state=dead}", "xl_central_agents_online{}"} {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("empty store: %s = %v (present %v), want a zero series", k, v, ok)
		}
	}
	for _, id := range []string{"a1", "a2"} {
		if err := st.PutAgentStatus(ctx, &wire.Status{AgentID: id, State: wire.StateOnline, TS: time.Now()}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	got = gather(t, reg)
	if got["xl_central_agents_online{}"] != 2 || got["xl_central_agents{state=online}"] != 2 || got["xl_central_agents{state=offline}"] != 0 {
		t.Errorf("two agents online: %v", got)
	}

	// A store that fails keeps the last reading and counts the failure.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	got = gather(t, reg)
	if got["xl_central_stats_errors_total{}"] != 1 || got["xl_central_agents_online{}"] != 2 {
		t.Errorf("after a failed reading: errors %v, online %v", got["xl_central_stats_errors_total{}"], got["xl_central_agents_online{}"])
	}
}
